"""The harness's verdicts over seeds: one lucky seed, or two, is not a claim; a seed far from the mean fails it."""

import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare  # noqa: E402
import levels as lv  # noqa: E402
from seeds import summary, target_lines  # noqa: E402

LEVEL = {"key": "sst2-fast", "recipe": "recipes/sst2-fast.yaml", "suite": "sst2", "target": asdict(lv.Target(3.0, "ov-int8", 1.0))}


def _entries(drops: list[float], bundle_ms: float = 2.0) -> list[dict]:
    """The teacher (90.0), the OpenVINO INT8 peer (7.0 ms) and one bundle per seed with the given drops."""
    base = {"suite": "sst2", "int8": True, "real_p50_ms": 3.0}
    teacher = base | {"name": "teacher", "group": "teacher", "quality": 90.0, "p50_ms": 20.0, "int8": False}
    peer = base | {"name": "ov peer", "group": "peer", "role": "ov-int8", "quality": 90.0, "p50_ms": 7.0}
    bundles = [base | {"name": f"b{s}", "group": "edgesmith", "bundle": True, "level": "sst2-fast", "seed": s,
                       "quality": 90.0 - d, "p50_ms": bundle_ms, "real_p50_ms": 1.0, "artifact": "structured:openvino-int8-static"}
               for s, d in enumerate(drops)]
    return [teacher, peer] + bundles


def test_three_seeds_within_the_bars_meet_the_target():
    s = summary(_entries([0.2, 0.5, 0.8]), LEVEL)
    assert s["met"] and s["speedups"] == [pytest.approx(3.5)] * 3
    assert "**met** over 3 seeds" in target_lines(_entries([0.2, 0.5, 0.8]), LEVEL)[0]


def test_fewer_than_three_seeds_never_meet_it():
    for drops in ([0.1], [0.1, 0.3]):
        s = summary(_entries(drops), LEVEL)
        assert s["speed_met"] and s["drop_met"] and not s["met"]
        assert "(a verdict needs 3 seeds)" in target_lines(_entries(drops), LEVEL)[0]


def test_a_seed_far_from_the_mean_fails_it_even_on_a_good_mean():
    s = summary(_entries([0.0, 0.0, 1.6]), LEVEL)  # mean 0.53 <= 1.0, but seed 2 sits 1.07 away from it
    assert s["drop_met"] and not s["spread_met"] and not s["met"]


def test_a_slow_bundle_fails_it():
    assert not summary(_entries([0.2, 0.2, 0.2], bundle_ms=3.0), LEVEL)["met"]  # 7.0 / 3.0 = 2.33x < 3x


def test_the_first_seed_of_each_level_stands_for_it(tmp_path):
    fast, sts = lv.LEVELS["sst2-fast"], lv.LEVELS["sts"]
    runs = [lv.Run(fast, s, tmp_path / "r.yaml", tmp_path / f"f{s}") for s in (2, 1)] + [lv.Run(sts, 0, tmp_path / "r.yaml", tmp_path / "s0")]
    assert [(r.level.key, r.seed) for r in lv.first_runs(runs)] == [("sst2-fast", 1), ("sts", 0)]


def test_the_sparse_comparison_runs_seed_0_alone_both_branches_on_20k_rows(tmp_path):
    import yaml

    runs = lv.plan([lv.LEVELS["sst2"], lv.LEVELS["sst2-sparse"]], [0, 1, 2], tmp_path, smoke=False)
    assert [r.name for r in runs] == ["sst2-seed0", "sst2-seed1", "sst2-seed2", "sst2-sparse-seed0"]
    recipes = {r.name: yaml.safe_load(r.recipe.read_text()) for r in runs}
    assert recipes["sst2-sparse-seed0"]["prune"]["branches"] == ["structured", "sparse"]
    assert recipes["sst2-sparse-seed0"]["data"]["max_train_samples"] == lv.TRAIN_ROWS
    assert all(recipes[f"sst2-seed{s}"]["prune"]["branches"] == ["structured"] for s in range(3))
    assert all("max_train_samples" not in recipes[f"sst2-seed{s}"]["data"] for s in range(3))  # the recipe's own rows
    assert lv.plan([lv.LEVELS["sst2-sparse"]], [1, 2], tmp_path, smoke=False) == []
    chosen = [lv.LEVELS["sst2"], lv.LEVELS["sst2-sparse"]]
    assert [m["key"] for m in compare.level_meta(chosen, runs, smoke=False)] == ["sst2", "sst2-sparse"]
    some = lv.plan(chosen, [1, 2], tmp_path, smoke=False)  # --seeds 1,2: the sparse level has no run, so no entry
    meta = compare.level_meta(chosen, some, smoke=False)
    assert [(m["key"], m["seeds"], m["recipe"]) for m in meta] == [("sst2", [1, 2], "recipes/sst2.yaml")]


def test_a_branch_the_recipe_dropped_is_not_listed_from_its_old_folders(tmp_path, monkeypatch):
    """runs/compare/sst2-seed0 from before 2026-12-07 holds 06-quantize-sparse: the sst2 recipe no longer has it."""
    run = lv.plan([lv.LEVELS["sst2"]], [0], tmp_path, smoke=False)[0]
    for branch in ("structured", "sparse", "unpruned"):
        (run.out / f"06-quantize-{branch}").mkdir(parents=True)
    monkeypatch.setattr(lv, "bundle_entry", lambda r: {"artifact": "structured:openvino-int8-static", "level": r.level.key,
                                                        "seed": r.seed, "bundle": True})
    monkeypatch.setattr(lv, "candidate_entries", lambda r, b: [{"artifact": f"{b}:openvino-int8-static", "level": r.level.key, "seed": r.seed}])
    monkeypatch.setattr(lv, "mark_copies", lambda entries: entries)
    listed = {e["artifact"] for e in lv.run_entries([run]) if not e.get("bundle")}
    assert listed == {"structured:openvino-int8-static", "unpruned:openvino-int8-static"}


def test_some_seeds_write_beside_the_full_report_never_over_it(capsys):
    assert compare.docs_folder(compare.parse([])) == compare.ROOT / "docs"
    assert compare.docs_folder(compare.parse(["--only", "sst2-fast"])).name == "only-sst2-fast"
    assert compare.docs_folder(compare.parse(["--only", "sst2-fast", "--seeds", "2,1"])).name == "only-sst2-fast-seeds-1+2"
    assert compare.docs_folder(compare.parse(["--seeds", "0"])).name == "only-seeds-0"
    with pytest.raises(SystemExit):
        compare.parse(["--seeds", "1,x"])
    assert "--seeds takes comma-separated integers" in capsys.readouterr().err


def test_runs_side_by_side_start_longest_first_and_redo_contended_benches_alone(tmp_path, monkeypatch):
    import os
    import subprocess
    import threading

    import edgesmith.cli

    sst2, fast = replace(lv.LEVELS["sst2"], minutes=10.0), lv.LEVELS["sst2-fast"]
    runs = [lv.Run(sst2, 0, tmp_path / "a.yaml", tmp_path / "sst2-seed0"), lv.Run(sst2, 1, tmp_path / "c.yaml", tmp_path / "sst2-seed1"),
            lv.Run(fast, 0, tmp_path / "b.yaml", tmp_path / "fast-seed0")]
    done_before = runs[1].out / f"07-bench-{lv.PROFILE}" / "manifest.json"  # a run the harness finished earlier
    done_before.parent.mkdir(parents=True)
    done_before.write_text("{}")
    os.utime(done_before, (1, 1))
    killed = runs[0].out / f"07-bench-{lv.PROFILE}" / "manifest.json"  # benched beside another run, then killed
    killed.parent.mkdir(parents=True)
    killed.write_text("{}")
    os.utime(killed, (1, 1))
    lv._contended(runs[0]).touch()
    launched, alone = [], []
    lock, first_two = threading.Lock(), threading.Barrier(2, timeout=60)

    def fake_run(cmd, stdout, stderr, env):
        out = Path(cmd[cmd.index("--out") + 1])
        with lock:
            launched.append((out.name, env["OMP_NUM_THREADS"]))
            nth = len(launched)
        if nth <= 2:  # the first two wait for each other: a third run can only start once one of them has ended,
            first_two.wait()  # so the order in `launched` is the order the runs started, whatever the threads do
        bench = out / f"07-bench-{lv.PROFILE}" / "manifest.json"
        if not bench.exists():
            bench.parent.mkdir(parents=True)
            bench.write_text("{}")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(edgesmith.cli, "main", lambda argv: alone.append(argv) or 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    seconds = lv.run_all(runs, lambda msg: None, jobs=2)
    # two at a time: the longest (sst2-fast) is among the first two started, the last given run starts last
    assert ("fast-seed0", "1") in launched[:2] and launched[2] == ("sst2-seed1", "1")
    assert sorted(a[a.index("--out") + 1] for a in alone) == [str(runs[2].out), str(runs[0].out)]
    assert all(a[-2:] == ["--force", "bench"] for a in alone) and set(seconds) == {r.name for r in runs}
    assert not any(lv._contended(r).exists() for r in runs)


def test_a_failed_run_side_by_side_stops_the_harness_naming_its_log(tmp_path, monkeypatch):
    import subprocess

    runs = [lv.Run(lv.LEVELS["sst2"], s, tmp_path / "a.yaml", tmp_path / f"sst2-seed{s}") for s in range(4)]
    started = []

    def failing(cmd, stdout, stderr, env):
        started.append(cmd)
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(SystemExit, match=r"sst2-seed\d failed .*sst2-seed\d.log"):
        lv.run_all(runs, lambda msg: None, jobs=2)
    assert len(started) <= 2  # the two started together may both fail; no queued run starts after a failure


def test_jobs_below_one_are_refused(capsys):
    with pytest.raises(SystemExit):
        compare.parse(["--jobs", "0"])
    assert "--jobs takes a whole number of runs at a time" in capsys.readouterr().err
