"""Recipes and profiles are data: YAML on disk, frozen pydantic models in memory, unknown keys are errors."""

from __future__ import annotations

import copy
import json
import reprlib
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from .errors import EdgesmithError
from .runfolder import check_name


def _known_task(name: str) -> str:
    from .tasks import TASKS

    if name not in TASKS:  # a ValueError, so that the error names the recipe field
        raise ValueError(f"unknown task {name!r}; use one of {', '.join(TASKS)}")
    return name


Task = Annotated[str, AfterValidator(_known_task)]  # a name in edgesmith.tasks.TASKS
Branch = Literal["structured", "sparse"]
UNPRUNED = "unpruned"  # the pseudo-branch of the teacher exported and quantized as is: the baseline every run beats or ships


def _known(kind: str, name: str, known: list[str]) -> str:
    if name not in known:  # a ValueError, so that the error names the recipe or profile field
        raise ValueError(f"unknown {kind} {name!r}; use one of {', '.join(known)}")
    return name


def _known_runtime(name: str) -> str:
    from .runtimes import RUNTIMES

    return _known("runtime", name, list(RUNTIMES))


def _known_precision(name: str) -> str:
    from .runtimes import RUNTIMES

    return _known("precision", name, list(dict.fromkeys(p for r in RUNTIMES.values() for p in r.precisions)))


def _export_formats() -> tuple[str, ...]:
    from .runtimes import RUNTIMES

    return tuple(dict.fromkeys(r.export_format for r in RUNTIMES.values()))


def _known_format(name: str) -> str:
    return _known("export format", name, list(_export_formats()))


Runtime = Annotated[str, AfterValidator(_known_runtime)]  # a name in edgesmith.runtimes.RUNTIMES
Precision = Annotated[str, AfterValidator(_known_precision)]  # one a runtime declares; Profile checks each pair
ExportFormat = Annotated[str, AfterValidator(_known_format)]  # a runtime's export_format


def _takes_bool(annotation: Any) -> bool:
    return annotation in (bool, Any, object) or any(_takes_bool(a) for a in get_args(annotation))


class Frozen(BaseModel):
    # allow_inf_nan: `.inf` is valid YAML for a float, and no setting has a use for it (keep_heads: .inf had
    # raised an OverflowError traceback; epochs: .inf failed only after pruning and export)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    # Fields added after cache keys were written -> the value that keeps the old behaviour: at that value a field is
    # left out of the dump, so the cache keys of runs that do not set it are unchanged (no cached work reruns).
    added_defaults: ClassVar[dict[str, Any]] = {}

    @model_serializer(mode="wrap")
    def _omit_added_defaults(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for name, default in self.added_defaults.items():
            if getattr(self, name) == default:
                data.pop(name, None)
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _no_yes_no_for_other_values(cls, value: Any, info: Any) -> Any:
        """YAML reads yes/no/on/off/true/false as booleans, and pydantic reads a boolean as 1 or 0 where a number goes:
        `accuracy_budget: no` had become a budget of 0 and `keep_heads: yes` kept every head, silently."""
        if isinstance(value, bool) and not _takes_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"{str(value).lower()} is a yes/no value (YAML reads yes, no, on, off, true and false as "
                             "booleans), and this setting takes a number or a name")
        return value

    def canonical_json(self) -> str:
        """Stable JSON used for cache keys and manifests."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class TeacherConfig(Frozen):
    model: str = Field(description="local model directory (safetensors), or 'minilm' for the packaged all-MiniLM-L6-v2")
    allow_pickle: bool = False
    reinit_head: bool = Field(False, description="train a new classification head on the data's labels, discarding the "
                              "checkpoint's (needed when its label count or names differ from the data's)")
    finetune_epochs: float | None = Field(None, gt=0, le=1000, description="None: from the data size (up to 10 epochs on a few "
                                          "thousand rows, 1-2 on tens of thousands)")
    finetune_lr: float | None = Field(None, gt=0, description="None: from the model size (1e-4 under 50M parameters, "
                                      "3e-5 for BERT-base, 2e-5 above)")
    finetune_max_samples: int | None = Field(20000, gt=0)


class AugmentConfig(Frozen):
    """TinyBERT-style augmentation for distillation (edgesmith.augment): copies of the training and unlabeled texts
    with whole words swapped for near neighbours in the teacher's word embeddings, labelled by the teacher alone."""
    copies: int = Field(4, ge=1, le=50, description="augmented copies of each text")
    replace_prob: float = Field(0.4, gt=0, le=1, description="chance that each whole word is replaced")
    neighbours: int = Field(15, ge=1, description="a word is replaced by one of this many nearest words (cosine)")
    seed: int = 0


class DataConfig(Frozen):
    source: str = Field(description="folder with train/dev files, a file, a `datasets` name, or 'pydoc'")
    eval_source: str | None = Field(None, description="held-out data apart from `source` (a file, or a folder's dev "
                                    "file; its text columns are data.text_columns where it has them, else found in "
                                    "it on their own): then every row of `source` trains")
    text_columns: tuple[str, ...] | None = None
    label_column: str = "label"
    score_column: str = Field("score", description="embedding task: the gold similarity of two sentences (STS); "
                              "scored held-out pairs are rated by Spearman correlation")
    max_length: int = Field(128, ge=8, le=512, description="tokens per text (pair) the bundle takes; unset: 128, or "
                            "the model's positions where they are fewer; set above them: refused")
    max_train_samples: int | None = Field(None, gt=0)
    max_eval_samples: int | None = Field(None, gt=0)
    eval_fraction: float = Field(0.1, gt=0, lt=1)
    unlabeled: str | None = Field(None, description="in-domain text for distillation only (never teacher fine-tuning or "
                                  "evaluation): a .txt, one text per line, or a TSV/CSV/JSONL with the text columns")
    augment: AugmentConfig | None = Field(None, description="teacher-labelled augmentation of the distillation texts")
    min_words: StrictInt | None = Field(None, ge=1, description="leave out training and unlabeled rows of fewer words (all "
                                  "texts of a row counted), before max_train_samples: SST-2's training file is mostly "
                                  "parse-tree phrase fragments; a sentence encoder distilled on its full sentences "
                                  "keeps more of its teacher (docs/recovery.md)")

    added_defaults: ClassVar[dict[str, Any]] = {"min_words": None}  # came after data caches were written


def keep_count(spec: float, total: int) -> int:
    """How many of `total` units a keep setting keeps: spec <= 1 is a share of total (at least one), spec > 1 an
    absolute count (at most total)."""
    return max(1, min(total, round(spec * total) if spec <= 1 else int(spec)))


class StructuredConfig(Frozen):
    keep_layers: float = Field(1.0, gt=0, description="depth: share of encoder layers kept (<=1) or a layer count (>1); "
                               "the set of layers that alone moves the outputs least is kept (every subset where there "
                               "are few, else greedily)")
    # StrictInt: YAML's `true` must not be read as layer 1
    layers: tuple[StrictInt, ...] | None = Field(None, min_length=1, description="depth by hand: keep exactly these encoder "
                                           "layers (0-based, e.g. [0, 2, 4] for every other one, as DistilBERT was "
                                           "initialised) instead of keep_layers' measured choice")
    keep_heads: float = Field(0.5, gt=0, description="share of the kept layers' heads kept (<=1) or a total head count (>1)")
    keep_ffn: float = Field(0.5, gt=0, description="share of the kept layers' FFN neurons kept (<=1) or a total count (>1)")
    min_heads_per_layer: int = Field(1, ge=1)
    ffn_multiple_of: int = Field(16, ge=1, description="round kept FFN widths to this (int8 GEMM tiles)")
    importance_samples: int = Field(512, ge=8)
    steps: int = Field(1, ge=1, le=5, description="gradual pruning: cut in this many nested steps (keep shares "
                       "geometric from 1 to the target), distilling on an equal slice of the data after each")
    fit_profile: str | None = Field(None, description="choose the keep ratio by measured latency: the largest whose "
                                    "quantized model meets this profile's p90 budget (overrides keep_heads/keep_ffn)")
    fit_speedup: float | None = Field(None, ge=1, allow_inf_nan=False, description="with fit_profile: instead of its p90 budget, the target is "
                                      "this many times faster (p50) than the unpruned teacher quantized the same way, "
                                      "measured side by side on this machine")
    reconstruct: bool = Field(False, description="retraining-free start (Kwon et al. 2022): rescale the kept heads and "
                              "neurons of each layer by least squares so the layer's output matches the unpruned model's")

    @field_validator("keep_layers", "keep_heads", "keep_ffn")
    @classmethod
    def _share_or_count(cls, v: float) -> float:
        if v > 1 and not v.is_integer():  # 1.5 is neither a share nor a count: it was read as a count of 1
            raise ValueError(f"{v:g} is neither a share (at most 1) nor a whole count; write e.g. 0.75 or {int(v) + 1}")
        return v

    @field_validator("layers")
    @classmethod
    def _layers_once_each(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is None:
            return v
        if min(v) < 0 or len(set(v)) != len(v):
            raise ValueError(f"{list(v)} must name each kept layer once, numbered from 0; write e.g. [0, 2, 4]")
        return tuple(sorted(v))  # a set of layers: the student keeps the teacher's order whatever the listing's

    added_defaults: ClassVar[dict[str, Any]] = {"fit_speedup": None, "layers": None}  # came after prune caches were written

    @model_validator(mode="after")
    def _one_depth_setting(self) -> "StructuredConfig":
        if self.layers is not None and self.keep_layers != 1:
            raise ValueError("set the depth once: prune.structured.layers lists the kept layers, keep_layers counts them; "
                             "remove one of the two")
        return self

    @model_validator(mode="after")
    def _speedup_needs_a_profile(self) -> "StructuredConfig":
        if self.fit_speedup is not None and self.fit_profile is None:  # the profile says which runtime and settings
            raise ValueError("fit_speedup needs fit_profile (the profile whose runtime and settings are measured); "
                             "add e.g. fit_profile: mobile-cpu")
        return self

    @model_validator(mode="after")
    def _reconstruct_one_shot(self) -> "StructuredConfig":
        if self.reconstruct and self.steps > 1:  # the scales fit one plan; a gradual cut changes the plan each step
            raise ValueError("reconstruct needs steps: 1 (the least-squares scales fit one keep-plan); set one of them")
        return self

    def check_keep_layers(self, layers: int) -> None:
        """The depth setting against a model of `layers` encoder layers."""
        if self.layers is not None and self.layers[-1] >= layers:
            raise EdgesmithError(f"prune.structured.layers: {list(self.layers)} names layer {self.layers[-1]}, but the model's "
                                 f"{layers} layers are numbered 0 to {layers - 1}; list only those")
        if self.keep_layers > layers:
            raise EdgesmithError(f"prune.structured.keep_layers: {self.keep_layers:g} is more than the model's {layers}; "
                                 f"use a share (at most 1) or a count up to {layers}")

    def kept_layer_count(self, layers: int) -> int:
        if self.layers is not None:
            return len(self.layers)
        return keep_count(self.keep_layers, layers)

    def check_keep(self, layers: int, heads: int, ffn: int) -> None:
        """Against a model of `layers` layers with `heads` attention heads and `ffn` FFN neurons per layer: no count
        above what it has, and something pruned."""
        self.check_keep_layers(layers)
        kept_layers = self.kept_layer_count(layers)
        totals = (("keep_heads", self.keep_heads, kept_layers * heads), ("keep_ffn", self.keep_ffn, kept_layers * ffn))
        for name, spec, total in totals:
            if spec > total:
                raise EdgesmithError(f"prune.structured.{name}: {spec:g} is more than the model's {total}; "
                                     f"use a share (at most 1) or a count up to {total}")
        if kept_layers == layers and all(spec in (1, total) for _, spec, total in totals):
            depth = f"layers {list(self.layers)}" if self.layers is not None else f"keep_layers {self.keep_layers:g}"
            raise EdgesmithError(f"prune.structured keeps every layer, head and FFN neuron ({depth}, keep_heads "
                                 f"{self.keep_heads:g}, keep_ffn {self.keep_ffn:g}): nothing would be pruned; lower one of them")


class SparseConfig(Frozen):
    sparsity: float = Field(0.8, gt=0, lt=1)


class PruneConfig(Frozen):
    branches: tuple[Branch, ...] = ("structured",)
    structured: StructuredConfig = StructuredConfig()
    sparse: SparseConfig = SparseConfig()

    @model_validator(mode="after")
    def _branches(self) -> "PruneConfig":
        if not self.branches or len(set(self.branches)) != len(self.branches):
            raise ValueError("prune.branches must list 'structured' and/or 'sparse' once each")
        return self


class DistillConfig(Frozen):
    # Upper bounds far past any useful run: 1e308 epochs had been accepted, and the dry run promised "about inf min"
    epochs: float = Field(1.0, gt=0, le=1000)
    max_steps: int | None = Field(None, gt=0, le=10_000_000)
    learning_rate: float = Field(1e-4, gt=0)
    batch_size: int = Field(32, ge=1)
    temperature: float = Field(2.0, gt=0)
    hidden_weight: float = Field(1.0, ge=0, description="weight of the hidden-state MSE term")
    attention_weight: float = Field(0.0, ge=0, description="weight of the attention terms (TinyBERT/MiniLM): KL between "
                                    "the teacher's and the student's attention distributions and value relations, "
                                    "for every kept head of every kept layer")
    label_weight: float = Field(0.0, ge=0, description="weight of cross-entropy on the gold labels (classification "
                                "data with labels only); 0 = learn from the teacher alone")
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    seed: int = 0
    teacher_precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: the teacher's forward pass (it only gives targets; the student trains in fp32) runs "
        "under bf16 autocast where the device computes bf16 natively (CPUs with AVX512-BF16 or AMX, GPUs with bf16), "
        "else in fp32; the distill stage records which ran (sst2-fast: each step 1.27x faster on 2 AMD EPYC cores)")

    hidden_targets: Literal["kept", "block_end"] = Field(
        "kept", description="with whole layers pruned, the teacher output each student layer's output learns: kept = "
        "the output of the teacher layer it was cut from; block_end = the output of the last teacher layer before the "
        "next kept one (TinyBERT's map), so a kept layer followed by dropped ones learns to do their work too")

    added_defaults: ClassVar[dict[str, Any]] = {"teacher_precision": "fp32", "hidden_targets": "kept"}  # came after distill caches were written


class ExportConfig(Frozen):
    opset: int = Field(17, ge=14)
    formats: tuple[ExportFormat, ...] = Field(default_factory=_export_formats, description="default: every runtime's")


class QuantizeConfig(Frozen):
    calibration_samples: int = Field(200, ge=8)
    # Off by default: on 7 SST-2 students and the teacher the closer-logit choice moved dev accuracy both ways
    # (docs/recovery.md, "SmoothQuant chosen per model"), so NNCF's default, what the peers build, stays the default.
    fidelity_samples: int = Field(0, ge=0, description="training rows after the calibration rows that choose between a "
                                  "runtime's ways of quantizing (OpenVINO INT8: with or without SmoothQuant) by closeness "
                                  "to FP32, e.g. 500; 0: NNCF's defaults, unchosen")
    accuracy_budget: float = Field(1.5, ge=0, description="largest allowed drop vs the teacher, in points")


class BenchMeasurement(Frozen):
    """How the bench stage measures (its cache key holds these, not the bundle's rule below)."""
    warmup: int = Field(10, ge=1)
    iterations: int = Field(100, ge=5)
    eval_samples: int | None = Field(None, gt=0)


class BenchConfig(BenchMeasurement):
    # A pruned build trades quality for speed, so a gain within the noise of paired rounds buys nothing: one run on 2
    # AMD EPYC cores shipped a student 1.61 points below the quantized teacher on rounds of 1.001x, 1.05x and 1.07x
    # (docs/reliability.md). 1.0 restores "faster in every round".
    min_speedup: float = Field(1.05, ge=1.0, le=100, description="a pruned build ships in place of the teacher "
                               "quantized alone only if at least this much faster in every paired round (at the profile's "
                               "length and at the longest input the bundle takes)")

    def measurement(self) -> BenchMeasurement:
        return BenchMeasurement.model_validate(self.model_dump(include=set(BenchMeasurement.model_fields)))


class Recipe(Frozen):
    name: str = Field("edgesmith", description="names the default run folder runs/NAME: a safe slug")
    task: Task = "classification"
    teacher: TeacherConfig
    data: DataConfig
    prune: PruneConfig = PruneConfig()
    distill: DistillConfig = DistillConfig()
    export: ExportConfig = ExportConfig()
    quantize: QuantizeConfig = QuantizeConfig()
    bench: BenchConfig = BenchConfig()
    profiles: tuple[str, ...] = ("mobile-cpu", "embedded")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return check_name(v, "name")


class Budgets(Frozen):
    p90_ms: float | None = Field(None, gt=0)
    peak_memory_mb: float | None = Field(None, gt=0)
    size_mb: float | None = Field(None, gt=0)


class Measurement(Frozen):
    """What measuring a model reads of a profile: where and how it runs. A profile is this plus its name, words and
    budgets, which the bench stage does not read: editing a budget re-picks the bundle without re-measuring."""
    device: Literal["cpu", "cuda"] = "cpu"
    runtimes: dict[Runtime, tuple[Precision, ...]] = Field(
        description="runtime -> precisions to try; every pair is built and measured, the fastest within budget ships")
    execution_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = Field(ge=1)  # more than this machine's cores are clamped when measuring (latency.effective_threads)
    # batch: as the bundle's bench.py takes it; 2,000,000 had been accepted and asked for 16 GB at the bench stage
    batch: int = Field(1, ge=1, le=4096)
    seq_len: int = Field(128, ge=8, le=512)

    @field_validator("runtimes")
    @classmethod
    def _declared_precisions(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        """Each (runtime, precision) pair against the precisions the runtime declares (edgesmith.runtimes)."""
        from .runtimes import RUNTIMES

        for name, precisions in v.items():
            lacking = [p for p in precisions if p not in RUNTIMES[name].precisions]
            if lacking:
                raise ValueError(f"{name} has no {', '.join(lacking)}; it builds {', '.join(RUNTIMES[name].precisions)}")
        return v

    @field_validator("execution_providers")
    @classmethod
    def _known_providers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        """Provider names ONNX Runtime knows, each once: a misspelt one would be dropped at run time, and the profile
        measured on the CPU while it names a GPU."""
        import onnxruntime as ort

        known = ort.get_all_providers()
        unknown = [p for p in v if p not in known]
        if not v or unknown or len(set(v)) != len(v):
            raise ValueError(f"{list(v)} must be distinct ONNX Runtime provider names "
                             f"({'unknown: ' + ', '.join(unknown) if unknown else 'none given or one repeated'}); "
                             f"known: {', '.join(known)}")
        return v

    @model_validator(mode="after")
    def _some_candidate(self) -> "Measurement":
        from .runtimes import RUNTIMES

        if not self.runtimes or not all(self.runtimes.values()):
            raise ValueError("runtimes must map at least one runtime to a non-empty list of precisions")
        for name in self.runtimes:
            if self.device not in RUNTIMES[name].devices:
                raise ValueError(f"runtime {name} does not run on device {self.device!r} (only on {', '.join(RUNTIMES[name].devices)}); "
                                 "drop it from this profile or change its device")
        return self

    def candidates(self) -> list[tuple[str, str]]:
        """(runtime, precision) pairs, in the order the profile lists them."""
        return [(r, p) for r, precisions in self.runtimes.items() for p in precisions]


PROFILE_NAME_MAX = 80 - len("08-bundle-")  # a folder name is at most 80 characters (runfolder.SAFE_NAME)


class Profile(Measurement):
    name: str = Field(description="names stage and bundle folders: a safe slug")
    description: str
    budgets: Budgets = Budgets()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        check_name(v, "name")
        if len(v) > PROFILE_NAME_MAX:  # else refused only after training, when its bench folder is made
            raise ValueError(f"name {v!r} is {len(v)} characters; a profile name is at most {PROFILE_NAME_MAX}, as it names "
                             "the folders 07-bench-NAME and 08-bundle-NAME")
        return v

    def measurement(self) -> Measurement:
        """The fields a benchmark reads (the bench stage's cache key holds these, not the budgets)."""
        return Measurement.model_validate(self.model_dump(include=set(Measurement.model_fields)))


def _format_error(err: ValidationError, what: str) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{what}: unknown key {where!r}; remove it or fix its spelling"
    return f"{what}: {where}: {first['msg'].removeprefix('Value error, ')}; fix that value"


def parse(cls: type[Frozen], data: Any, what: str) -> Any:
    """Validate data into cls, turning pydantic's report into one actionable line."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise EdgesmithError(_format_error(err, what)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: PyYAML keeps the last, so a second `distill:`
    section had silently dropped the first's settings."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` then an own key overrides, as YAML means
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # `? [a, b]`: SafeLoader's own error says so, in one line
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice (line "
                                                        f"{key_node.start_mark.line + 1}); merge the two", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise EdgesmithError(f"{path}: file not found; pass the path of an existing YAML file")
    try:
        data = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_UniqueKeyLoader)  # safe: no tags, no code
    except UnicodeDecodeError as err:
        raise EdgesmithError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
                             "save the file as UTF-8") from None
    except yaml.YAMLError as err:
        raise EdgesmithError(f"{path}: not valid YAML ({str(err).splitlines()[0]}); fix the syntax") from None
    if not isinstance(data, dict):
        raise EdgesmithError(f"{path}: expected a mapping of keys at the top level")
    return data


def load_recipe(path: Path | dict[str, Any] | None, overrides: dict[str, Any]) -> Recipe:
    """A recipe from YAML (or a dict of the same fields, from the Python API; or the defaults) with CLI overrides
    merged in, then validated."""
    if isinstance(path, dict):
        data, path = copy.deepcopy(path), None  # the overrides never edit the caller's dict
    else:
        data = read_yaml(path) if path else {}
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for i, p in enumerate(parents):
            if node.get(p) is None:  # absent, or an empty section (`distill:` alone reads as None)
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):  # the message built only then, and from a glimpse: str() of a YAML alias
                section = ".".join(parents[: i + 1])  # bomb's section expands 10^9 items
                raise EdgesmithError(f"{path or 'recipe'}: {section} is {type(node).__name__} {reprlib.repr(node)[:40]}, "
                                     f"not a section, so {dotted} cannot be set; write {section} as a mapping of settings")
        # a mapping sets the settings it names and keeps the section's others ({"distill": {"max_steps": 3}} had
        # dropped the recipe's other distill settings for their defaults); to replace a whole section, edit the recipe
        node[leaf] = _merged(node[leaf], value) if isinstance(value, dict) and isinstance(node.get(leaf), dict) else value
    return parse(Recipe, data, str(path or "recipe"))


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    return base | {k: _merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v for k, v in over.items()}
