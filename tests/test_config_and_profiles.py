import json

import pytest

from edgesmith import profiles
from edgesmith.config import Profile, Recipe, load_recipe
from edgesmith.errors import EdgesmithError


def test_builtin_profiles_validate_and_cover_the_three_device_classes():
    names = profiles.available()
    assert {"mobile-cpu", "embedded", "server-gpu"} <= set(names)
    loaded = {n: profiles.load(n) for n in names}
    assert "onnxruntime" in loaded["mobile-cpu"].runtimes and loaded["mobile-cpu"].batch == 1 and loaded["mobile-cpu"].seq_len == 128
    assert loaded["embedded"].threads == 1 and loaded["embedded"].seq_len < 128
    assert loaded["server-gpu"].device == "cuda" and loaded["server-gpu"].candidates() == [("onnxruntime", "fp16")]


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(EdgesmithError, match="unknown profile 'phone'.*mobile-cpu"):
        profiles.load("phone")


def test_unknown_recipe_key_is_an_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("teacher: {model: x}\ndata: {source: y}\nprune: {structured: {keep_head: 0.5}}\n")
    with pytest.raises(EdgesmithError, match="unknown key 'prune.structured.keep_head'"):
        load_recipe(path, {})


def test_bad_value_names_the_field(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("teacher: {model: x}\ndata: {source: y}\nprune: {sparse: {sparsity: 1.5}}\n")
    with pytest.raises(EdgesmithError, match="prune.sparse.sparsity"):
        load_recipe(path, {})


def test_recipe_round_trips_through_canonical_json(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("teacher: {model: x}\ndata: {source: y}\n")
    recipe = load_recipe(path, {"distill.epochs": 2.0, "profiles": ["embedded"]})
    again = Recipe.model_validate(json.loads(recipe.canonical_json()))
    assert again == recipe and again.distill.epochs == 2.0 and again.profiles == ("embedded",)


def test_an_override_through_an_empty_or_scalar_section_is_one_line(tmp_path):
    """`distill:` written empty reads as None: `--epochs 2` had raised a TypeError traceback through it; an override
    through a setting that is not a section (the API's `teacher.model.path`) had too."""
    path = tmp_path / "r.yaml"
    path.write_text("teacher: {model: x}\ndata: {source: y}\ndistill:\n")
    assert load_recipe(path, {"distill.epochs": 2.0}).distill.epochs == 2.0
    with pytest.raises(EdgesmithError, match=r"teacher.model is str 'x', not a section, so teacher.model.path cannot be set"):
        load_recipe(path, {"teacher.model.path": "z"})


def test_training_lengths_past_any_useful_run_are_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("teacher: {model: x}\ndata: {source: y}\n")
    for dotted, value in (("distill.epochs", 1e308), ("distill.max_steps", 10**20), ("teacher.finetune_epochs", 5000)):
        with pytest.raises(EdgesmithError, match=dotted):
            load_recipe(path, {dotted: value})
    assert load_recipe(path, {"distill.epochs": 1000}).distill.epochs == 1000


def test_configs_are_frozen():
    p = profiles.load("embedded")
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        p.threads = 4  # type: ignore[misc]
    assert isinstance(p, Profile)


def test_importing_pipeline_is_cheap():
    import subprocess
    import sys

    code = "import sys, edgesmith, edgesmith.cli, edgesmith.config, edgesmith.profiles; print(sorted(m for m in ('torch','onnxruntime','openvino','transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize(("text", "says"), [
    ("name: a\ndistill: {epochs: 5}\ndistill: {max_steps: 1}\n", "the key 'distill' is given twice (line 3)"),
    ("? [a, b]\n: 1\nname: x\n", "while constructing a mapping"),  # the duplicate check had raised a TypeError traceback on it
    ("base: &b {epochs: 1}\ndistill: {<<: *b, epochs: 2}\n", None),  # a merge key then an own key: YAML's override
])
def test_a_key_given_twice_is_refused_and_odd_keys_stay_one_line(tmp_path, text, says):
    from edgesmith.config import read_yaml

    path = tmp_path / "r.yaml"
    path.write_text(text)
    if says is None:
        assert read_yaml(path)["distill"] == {"epochs": 2}
        return
    with pytest.raises(EdgesmithError, match=r"not valid YAML \(.*" + says.replace("(", r"\(").replace(")", r"\)")):
        read_yaml(path)


def test_a_mapping_override_sets_what_it_names_and_keeps_the_sections_other_settings():
    base = {"teacher": {"model": "minilm"}, "distill": {"batch_size": 8, "temperature": 3.0},
            "data": {"source": "pydoc", "augment": {"copies": 2}}}
    r = load_recipe(base, {"distill": {"max_steps": 3}, "data": {"augment": {"seed": 1}}})
    assert (r.distill.batch_size, r.distill.temperature, r.distill.max_steps) == (8, 3.0, 3)
    assert (r.data.augment.copies, r.data.augment.seed) == (2, 1)
    assert base["distill"] == {"batch_size": 8, "temperature": 3.0}  # the caller's dict is never edited
    assert load_recipe(base, {"distill.max_steps": 4}).distill.batch_size == 8


@pytest.mark.parametrize("setting, yaml_value", [("quantize.accuracy_budget", "no"), ("prune.structured.keep_heads", "yes"),
                                                 ("prune.structured.keep_layers", "yes"), ("distill.epochs", "on"),
                                                 ("distill.hidden_weight", "off"), ("distill.seed", "true"), ("teacher.model", "yes")])
def test_a_yes_no_value_where_a_number_or_name_goes_is_refused(tmp_path, setting, yaml_value):
    """YAML reads yes/no/on/off/true/false as booleans and pydantic read them as 1 or 0: `accuracy_budget: no` had
    become a budget of 0 points and `keep_heads: yes` kept every head, silently."""
    section, *rest = setting.split(".")
    inner = yaml_value
    for key in reversed(rest):
        inner = f"{{{key}: {inner}}}"
    base = {"teacher": "{model: x}", "data": "{source: y}"}
    if section in base and section == "teacher":
        base.pop("teacher")
    path = tmp_path / "r.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in base.items()) + f"{section}: {inner}\n")
    with pytest.raises(EdgesmithError, match=rf"{setting}: \w+ is a yes/no value .* takes a number or a name; fix that value"):
        load_recipe(path, {})


def test_yes_no_settings_still_take_yes_and_no_and_profiles_refuse_them_for_numbers(tmp_path):
    from edgesmith.config import parse, read_yaml

    path = tmp_path / "r.yaml"
    path.write_text("teacher: {model: x, reinit_head: yes, allow_pickle: no}\ndata: {source: y}\n"
                    "prune: {structured: {reconstruct: on}}\n")
    recipe = load_recipe(path, {})
    assert recipe.teacher.reinit_head is True and recipe.teacher.allow_pickle is False and recipe.prune.structured.reconstruct
    good = {"name": "p", "description": "d", "device": "cpu", "runtimes": "{onnxruntime: [int8-dynamic]}", "threads": "1",
            "batch": "1", "seq_len": "64", "budgets": "{p90_ms: 20}"}
    p = tmp_path / "p.yaml"
    p.write_text("".join(f"{k}: {v}\n" for k, v in good.items()))
    assert parse(Profile, read_yaml(p), str(p)).threads == 1
    for field, key, value in (("threads", "threads", "yes"), ("batch", "batch", "on"), ("budgets.p90_ms", "budgets", "{p90_ms: yes}")):
        p.write_text("".join(f"{k}: {value if k == key else v}\n" for k, v in good.items()))
        with pytest.raises(EdgesmithError, match=rf"{field}: true is a yes/no value"):
            parse(Profile, read_yaml(p), str(p))


def test_an_override_through_a_yaml_alias_bomb_fails_fast(tmp_path):
    """A 1 KB recipe whose distill section is 10^8 aliased items: an override walking through it built its error
    message from str() of the whole section (3.6 GB and rising after a minute)."""
    import signal

    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 8)]
    path = tmp_path / "bomb.yaml"
    path.write_text("x_anchors:\n" + "".join(f"  {line}\n" for line in lines) + "teacher: {model: x}\ndata: {source: y}\ndistill: *l7\n")

    def too_slow(*_):
        raise TimeoutError("the override expanded the alias bomb")

    old = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(20)
    try:
        with pytest.raises(EdgesmithError, match=r"distill is list \[.{0,40}, not a section, so distill.epochs cannot be set"):
            load_recipe(path, {"distill.epochs": 2.0})
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize(("providers", "says"), [
    ("[CUDAExecutionProviderr]", "unknown: CUDAExecutionProviderr"),  # had been dropped at run time: a GPU profile measured on the CPU
    ("[]", "none given or one repeated"),
    ("[CPUExecutionProvider, CPUExecutionProvider]", "none given or one repeated"),
])
def test_execution_providers_must_be_distinct_names_onnx_runtime_knows(tmp_path, providers, says):
    from edgesmith.config import parse, read_yaml

    p = tmp_path / "p.yaml"
    p.write_text("name: p\ndescription: d\ndevice: cpu\nruntimes: {onnxruntime: [int8-dynamic]}\nthreads: 1\n"
                 f"execution_providers: {providers}\n")
    with pytest.raises(EdgesmithError, match=rf"execution_providers.*{says}.*known: .*CPUExecutionProvider"):
        parse(Profile, read_yaml(p), str(p))
    p.write_text(p.read_text().replace(f"execution_providers: {providers}", "execution_providers: [CPUExecutionProvider]"))
    assert parse(Profile, read_yaml(p), str(p)).execution_providers == ("CPUExecutionProvider",)
