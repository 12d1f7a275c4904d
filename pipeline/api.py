"""edgesmith from Python (a notebook, a script): the CLI's verbs as functions, with the same checks and output.

    import edgesmith

    summary = edgesmith.run("recipes/sst2.yaml", out="runs/sst2")  # a path, a dict of recipe fields, or None: the quickstart
    summary.profiles["mobile-cpu"].bundle                          # RUN/08-bundle-mobile-cpu/edgesmith-mobile-cpu
    edgesmith.plan("recipes/sst2.yaml", out="runs/sst2")           # `run --dry-run`: what would run, and why
    edgesmith.verify_bundle(summary.profiles["mobile-cpu"].bundle)  # `verify`: the checks it passed

Bad input raises EdgesmithError before any work (the CLI's exit status 2); a stage that crashes raises StageFailed,
which names the stage's log file. `import edgesmith` stays cheap: the package loads this module on first use.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .errors import EdgesmithError, require

if TYPE_CHECKING:
    from .config import Profile, Recipe
    from .dryrun import Plan
    from .summary import RunSummary

QUICKSTART = Path(__file__).with_name("quickstart.yaml")
RecipeSource = str | Path | dict[str, Any] | None


def run(recipe: RecipeSource = None, *, out: str | Path | None = None, profiles: list[str | Path] | None = None,
        overrides: dict[str, Any] | None = None, force: str | Iterable[str] = (), sign_key: str | Path | None = None,
        verbose: bool = False) -> "RunSummary":
    """Run a recipe into `out` (default runs/RECIPE-NAME) and return its summary: per profile, the bundle chosen and
    its measurements against the budgets.

    recipe: a YAML path, a dict of recipe fields, or None (the offline quickstart). profiles: names or YAML paths
    (default: the recipe's). overrides: dotted recipe fields, as the CLI's options set them
    ({"data.max_train_samples": 500}; a mapping sets the settings it names and keeps the section's others). force:
    stages to redo (a name or names). sign_key: an ed25519 private key (`keygen`).
    verbose: library output on the terminal instead of each stage's log file."""
    from . import runner, terminal
    from .summary import RunSummary

    loaded, chosen, folder = prepare(recipe, out, profiles, overrides, force)
    with terminal.view(verbose=verbose) as view:
        runner.run(loaded, chosen, folder, _stages(force), view, sign_key=_path(sign_key))
    return RunSummary.read(folder)


def plan(recipe: RecipeSource = None, *, out: str | Path | None = None, profiles: list[str | Path] | None = None,
         overrides: dict[str, Any] | None = None, force: str | Iterable[str] = (), sign_key: str | Path | None = None) -> "Plan":
    """What `run` with the same arguments would do, without doing it or writing anything: each stage of the graph,
    skipped (unchanged, proven by its files' hashes) or run and why, with an estimate of its time."""
    from . import dryrun

    loaded, chosen, folder = prepare(recipe, out, profiles, overrides, force)
    return dryrun.plan(loaded, chosen, folder, _stages(force), sign_key=_path(sign_key))


def verify_bundle(bundle: str | Path, *, key: str | Path | None = None, timeout: float | None = None) -> list[str]:
    """`edgesmith verify`: re-check a bundle folder or .tar.gz without running its code; returns the checks it
    passed, raises EdgesmithError at the first that fails. key: the signer's public key (.pub) to require; timeout:
    seconds the checks that run its tokenizer and model may take (default verify.TIMEOUT_S)."""
    from .verify import TIMEOUT_S, verify

    require(timeout is None or (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and 1 <= timeout <= 86400),
            f"timeout={timeout!r}: give seconds from 1 to 86400, or None for {TIMEOUT_S:g}")
    return verify(Path(bundle), _path(key), TIMEOUT_S if timeout is None else float(timeout))


def prepare(recipe: RecipeSource, out: str | Path | None, profiles: list[str | Path] | None, overrides: dict[str, Any] | None,
            force: str | Iterable[str]) -> tuple["Recipe", list["Profile"], Path]:
    """The recipe (with overrides), its profiles and the run folder, all checked (`preflight`) before any work."""
    from edgesmith import profiles as profile_store

    from . import stages  # noqa: F401  (registers the stages)
    from .config import load_recipe
    from .registry import STAGES

    source = Path(recipe) if isinstance(recipe, str) else recipe
    named = {"profiles": [str(p) for p in profiles]} if profiles else {}  # a Path names a YAML file as a str does
    loaded = load_recipe(QUICKSTART if source is None else source, _overrides(overrides) | named)
    unknown = _stages(force) - set(STAGES)
    if unknown:
        raise EdgesmithError(f"--force {sorted(unknown)}: unknown stage; use one of {sorted(STAGES)}")
    chosen = [profile_store.load(n) for n in loaded.profiles]
    _one_name_each(loaded.profiles, chosen)
    loaded = preflight(loaded, chosen)
    return loaded, chosen, Path(out) if out is not None else Path("runs") / loaded.name


def _overrides(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Dotted recipe fields as a dict of str keys; a Path value (data.source, teacher.model), at any depth, counts as
    its str, as `out` does."""
    require(overrides is None or isinstance(overrides, dict), f"overrides={reprlib.repr(overrides)}: give a dict of dotted "
            'recipe fields, like {"data.max_train_samples": 500}')
    return _plain(overrides or {})


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        require(not bad, f"overrides key {reprlib.repr(bad[0]) if bad else ''} is not a str; name recipe fields as "
                'dotted strings, like "distill.max_steps"')
        return {k: _plain(v) for k, v in value.items()}
    return str(value) if isinstance(value, Path) else value


def preflight(recipe: Any, profiles: list[Any]) -> Any:
    """Refuse bad inputs (model, checkpoint, data, labels, keep ratios) and budgets no compression in this pipeline
    can meet, before any work is done: a refusal leaves no run folder and no log. Returns the recipe, its default
    data.max_length lowered to the model's positions where they are fewer."""
    from .arch import dims, max_tokens
    from .stages.teacher import check_inputs

    config = check_inputs(recipe)
    d = dims(config)
    structured = recipe.prune.structured
    if "structured" in recipe.prune.branches and structured.fit_profile is None:
        structured.check_keep(d["layers"], d["heads"], d["ffn"])
    elif "structured" in recipe.prune.branches:  # a fit profile picks the width itself, but the depth is the recipe's
        structured.check_keep_layers(d["layers"])
    embed_mb = config.vocab_size * d["hidden"] / 2**20  # INT8 word embedding: a floor on file size
    for p in profiles:
        size = p.budgets.size_mb
        if size is not None and size < embed_mb:
            raise EdgesmithError(f"profile {p.name}: budgets.size_mb={size} is impossible: the word embedding alone is "
                                 f"{embed_mb:.1f} MB at INT8; raise the budget or pick a smaller-vocabulary model")
        _check_formats(p, recipe, "profile")
        _check_seq_len(p, max_tokens(config), "profile")
    if "structured" in recipe.prune.branches and structured.fit_profile is not None:  # the prune stage walks to it
        from edgesmith import profiles as profile_store

        from .fit import refuse_profile

        fit = profile_store.load(structured.fit_profile)
        refused = refuse_profile(fit, structured)
        if refused:
            raise EdgesmithError(refused)
        _check_seq_len(fit, max_tokens(config), "prune.structured.fit_profile")  # not formats: the walk exports its own ONNX
    if "max_length" not in recipe.data.model_fields_set and recipe.data.max_length > max_tokens(config):
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"max_length": max_tokens(config)})})
    if recipe.data.max_length > max_tokens(config):  # the teacher stage had failed on a size mismatch, after the data stage
        raise EdgesmithError(f"data.max_length {recipe.data.max_length} exceeds the model's {max_tokens(config)} positions; "
                             f"set data.max_length to {max_tokens(config)} or less")
    return recipe


def _stages(force: str | Iterable[str]) -> set[str]:
    """`force` as stage names: one name alone is one stage (set("bench") had been five unknown one-letter stages)."""
    return {force} if isinstance(force, str) else set(force)


def _check_formats(p: Any, recipe: Any, what: str) -> None:
    """The recipe exports what each of profile `p`'s runtimes is built from."""
    from .runtimes import RUNTIMES

    lacking = [r for r in p.runtimes if RUNTIMES[r].export_format not in recipe.export.formats]
    if lacking:
        raise EdgesmithError(f"{what} {p.name} runs {lacking} but the recipe's export.formats is {list(recipe.export.formats)}; "
                             f"add {[RUNTIMES[r].export_format for r in lacking]} to export.formats or drop the runtime from the profile")


def _check_seq_len(p: Any, positions: int, what: str) -> None:
    """Profile `p` measures at a length the model can take."""
    if p.seq_len > positions:
        raise EdgesmithError(f"{what} {p.name}: seq_len {p.seq_len} exceeds the model's {positions} positions; lower seq_len")


def _one_name_each(sources: Iterable[str], profiles: list["Profile"]) -> None:
    """Two profiles of one name (the built-in `embedded` and an edited copy of its file) would share their bench and
    bundle folders: the second would replace the first's finished work."""
    seen: dict[str, str] = {}
    for source, p in zip(sources, profiles):
        if p.name in seen:
            raise EdgesmithError(f"profiles {seen[p.name]!r} and {source!r} are both named {p.name!r} and would share the "
                                 f"folders 07-bench-{p.name} and 08-bundle-{p.name}; rename one (its file, or its `name:`)")
        seen[p.name] = source


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)
