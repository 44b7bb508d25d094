"""Value objects: what a suite declares and what one cell measures.

Data flows one way: ``Suite`` -> ``CellSpec`` (one per cell) -> ``bench.result.CellResult`` (a record)
-> store -> reports.
Everything here is frozen and hashable so that a cell's key is a value (``CellKey``) that can be
compared, sorted, stored and joined on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

#: dtypes the CLI accepts, mapped to torch dtype names.
DTYPES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: devices the CLI accepts (``auto`` expands to every available one).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: what one cell times: a forward under inference mode, or a whole training step.
MODES: tuple[str, ...] = ("infer", "train")


def freeze(mapping: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """Turn keyword arguments into a sorted tuple of pairs (hashable; lists become tuples)."""

    def _f(v: Any) -> Any:
        if isinstance(v, list | tuple):
            return tuple(_f(x) for x in v)
        if isinstance(v, Mapping):
            return freeze(v)
        return v

    return tuple(sorted((str(k), _f(v)) for k, v in (mapping or {}).items()))


@dataclass(frozen=True)
class Knob:
    """One model argument the matched-size solver may set, over a sorted grid of values.

    ``derive`` names other model arguments computed from the knob's value (e.g. a width list
    from a base width); it is a dotted path ``module:function`` taking the value and returning
    a dict of extra model arguments, so that a resolved variant stays plain data.
    """

    name: str
    values: tuple[Any, ...]
    derive: str | None = None


@dataclass(frozen=True)
class VariantSpec:
    """How a family's model is built for one tier, before sizing.

    ``builder`` is ``"timm:<model name>"`` (``timm.create_model(name, pretrained=False, **args)``)
    or ``"<module>:<function>"`` (called with the model arguments). ``knob`` is solved so that
    the parameter count (or MACs, ``target='macs'``) lands on the tier's target; ``None`` means
    the canonical config is used as is.
    """

    family: str
    builder: str
    model_args: tuple[tuple[str, Any], ...] = ()
    knob: Knob | None = None
    name: str | None = None  # display name; defaults to the builder's model name
    target: str = "params"  # or "macs"
    # Sub-module whose parameters the tier's budget counts (``model.get_submodule(count)``, e.g. "backbone"
    # when embeddings and heads differ by family); None: the whole model.
    count: str | None = None


@dataclass(frozen=True)
class Variant:
    """A resolved, buildable model: everything a worker process needs to rebuild it."""

    family: str
    model: str  # display name, unique within a tier, e.g. "convnext_tiny[dims=88]"
    builder: str
    model_args: tuple[tuple[str, Any], ...]
    target_params: int
    achieved_params: int
    tolerance: float
    knob: str | None = None
    knob_value: Any = None

    @property
    def args(self) -> dict[str, Any]:
        """Model arguments as a (fresh, mutable) dict."""
        return {k: _thaw(v) for k, v in self.model_args}

    @property
    def param_error(self) -> float:
        """Relative distance of the achieved parameter count from the tier's target."""
        return self.achieved_params / self.target_params - 1.0


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple) and v and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in v):
        return {k: _thaw(x) for k, x in v}
    return v


@dataclass(frozen=True)
class Tier:
    """A parameter budget shared by every family in it."""

    name: str
    target_params: int
    variants: tuple[VariantSpec, ...]
    tolerance: float = 0.10
    input_shape: tuple[int, ...] = (3, 224, 224)  # one sample, without the batch dimension
    description: str = ""


@dataclass(frozen=True)
class AccuracySpec:
    """How a profile measures accuracy: which task, on which tiers, with what training budget and seeds.

    The protocol is the same for every family (``bench.accuracy.train``; docs/accuracy.md): AdamW with
    ``weight_decay`` (not on biases and norms), ``lr`` after a linear warm-up over ``warmup`` of the steps,
    then a cosine decay to 0; gradients clipped to ``clip_grad_norm``; ``epochs`` passes over the training
    split in batches of ``batch_size``, so every family sees the same samples in the same number of steps.
    ``task_args`` go to ``bench.accuracy.data.make_task``; with ``length_from_cell`` a length-parametrised
    task (``adding``, ``recall``) takes the cell's ``seq_len`` as its ``length``. ``augment`` is ``None``
    or ``"shift:<pixels>"`` (random translations of images). The runner gives each tier in ``tiers`` one
    cell per variant (one per length with ``length_from_cell``): accuracy does not depend on the timed axes.
    With ``teacher``, a variant that has a distillation token is also trained with that family as its teacher.
    """

    task: str
    task_args: tuple[tuple[str, Any], ...] = ()
    tiers: tuple[str, ...] = ("micro",)  # only these tiers' cells train
    epochs: float = 10.0
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of the steps
    clip_grad_norm: float | None = 1.0
    seeds: int = 3  # seeds 0 .. seeds-1
    augment: str | None = None
    length_from_cell: bool = False
    #: family (of the same tier) that teaches, by DeiT's hard-label distillation, every variant with a distillation
    #: token: it is trained first by this same protocol and seed, inside the student's cell (bench.accuracy.distill)
    teacher: str | None = None


@dataclass(frozen=True)
class Profile:
    """How much of a suite to run and how long to measure.

    ``seq_lens`` is empty for suites whose input length is fixed by the tier's ``input_shape``.
    """

    name: str
    tiers: tuple[str, ...] | None = None  # None: every tier
    families: tuple[str, ...] | None = None  # None: every family (``--family`` overrides)
    batch_sizes: tuple[int, ...] = (1,)
    dtypes: tuple[str, ...] = ("fp32",)
    modes: tuple[str, ...] = ("infer",)
    seq_lens: tuple[int, ...] = ()
    metrics: tuple[str, ...] = ("params", "flops", "memory", "latency")
    # How each cell's model runs (``bench.execution``; docs/executions.md): eager, compile, channels_last, ...
    executions: tuple[str, ...] = ("eager",)
    cuda_executions: tuple[str, ...] = ()  # added to ``executions`` on CUDA devices (compile-max, reduce-overhead)
    warmup_s: float = 0.5  # at most this long (or until stable) before measuring
    min_run_time_s: float = 1.0  # measurement window per cell
    max_samples: int = 2000
    # A cell that reports no progress for this long, or runs 10x this in all, is killed and recorded as
    # "timeout" (a stall timeout: training reports progress every second; bench.runner.HARD_CAP_FACTOR).
    timeout_s: float = 300.0
    description: str = ""
    accuracy: AccuracySpec | None = None  # what the "accuracy" metric trains (bench.accuracy)


@dataclass(frozen=True)
class Suite:
    """A suite declared as data: families, tiers, inputs, metrics and profiles."""

    name: str
    description: str
    input_kind: str  # key into bench.inputs' registry ("image", "tokens", ...)
    tiers: tuple[Tier, ...]
    profiles: tuple[Profile, ...]
    default_profile: str = "default"
    input_args: tuple[tuple[str, Any], ...] = ()  # e.g. vocabulary size for token inputs
    #: the family the report's "vs <family>" latency ratios compare against (None: no ratio columns)
    reference_family: str | None = None
    #: family pairs (A, B) whose crossover length ``bench.scaling`` reports: where A's cost passes B's
    crossovers: tuple[tuple[str, str], ...] = ()

    #: fields that choose how results are analysed and shown, not what is measured. ``to_dict`` leaves them
    #: out, so the stored definition and its hash (``runner.definition_hash``; resume, merge and compare
    #: refuse or warn on a changed one) stay those of the runs made before these fields existed.
    VIEW_FIELDS: ClassVar[tuple[str, ...]] = ("reference_family", "crossovers")

    def __post_init__(self) -> None:
        from bench.errors import UnknownNameError

        named = [self.reference_family] if self.reference_family is not None else []
        for name in [*named, *(f for pair in self.crossovers for f in pair)]:
            if name not in self.families:
                raise UnknownNameError(f"family of suite {self.name!r}", name, self.families)

    def tier(self, name: str) -> Tier:
        from bench.errors import UnknownNameError

        for t in self.tiers:
            if t.name == name:
                return t
        raise UnknownNameError("tier", name, [t.name for t in self.tiers])

    def profile(self, name: str | None = None) -> Profile:
        from bench.errors import UnknownNameError

        name = name or self.default_profile
        for p in self.profiles:
            if p.name == name:
                return p
        raise UnknownNameError(f"profile of suite {self.name!r}", name, [p.name for p in self.profiles])

    @property
    def families(self) -> tuple[str, ...]:
        """Family names in declaration order."""
        seen: dict[str, None] = {}
        for t in self.tiers:
            for v in t.variants:
                seen.setdefault(v.family, None)
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        """The suite definition as JSON-able data (stored with every run), without ``VIEW_FIELDS``."""
        d = asdict(self)
        for name in self.VIEW_FIELDS:
            del d[name]
        # Profiles that run other executions than eager are left out, and eager profiles store no ``executions``:
        # the definition and its hash stay those of the runs made before executions existed. A run of such a
        # profile stores its executions in its settings (``bench.runner.open_run``).
        d["profiles"] = [_eager_profile(p) for p in d["profiles"] if _is_eager(p)]
        return _jsonable(d)


#: the executions of a profile that runs the model as built (``Profile.executions``' default)
EAGER_ONLY: tuple[str, ...] = ("eager",)


def _is_eager(p: dict[str, Any]) -> bool:
    return tuple(p.get("executions") or EAGER_ONLY) == EAGER_ONLY and not p.get("cuda_executions")


def _eager_profile(p: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if k not in ("executions", "cuda_executions")}


@dataclass(frozen=True, order=True)
class CellKey:
    """What one cell measured: the join key of results, comparisons and reports.

    ``execution`` (``bench.execution``): how the model ran. ``eager`` is the default and is left out of the
    id and of the stored key, so cells measured before executions existed keep their ids and records.
    """

    suite: str
    tier: str
    family: str
    model: str
    device: str
    dtype: str
    batch_size: int
    input_shape: tuple[int, ...]
    seq_len: int | None = None
    mode: str = "infer"
    execution: str = "eager"

    @property
    def id(self) -> str:
        """A stable, readable string form, unique within a suite."""
        parts = [
            self.suite,
            self.tier,
            self.family,
            self.model,
            self.device,
            self.dtype,
            f"b{self.batch_size}",
            "x".join(map(str, self.input_shape)),
        ]
        if self.seq_len is not None:
            parts.append(f"T{self.seq_len}")
        parts.append(self.mode)
        if self.execution != "eager":
            parts.append(self.execution)
        return "/".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        if self.execution == "eager":  # as stored before executions existed
            del d["execution"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CellKey:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["input_shape"] = tuple(kw.get("input_shape") or ())
        kw["execution"] = kw.get("execution") or "eager"  # a record or frame row from before executions
        return cls(**kw)


@dataclass(frozen=True)
class CellSpec:
    """Everything a worker needs to measure one cell (picklable, no live objects)."""

    key: CellKey
    variant: Variant
    input_kind: str
    input_args: tuple[tuple[str, Any], ...]
    profile: Profile
    threads: int | None = None
    extra: tuple[tuple[str, Any], ...] = field(default=())  # e.g. data/weights paths
    allocator: str = "steady"  # malloc regime of the worker process (bench.allocator.REGIMES)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float | int | str | bool) or x is None:
        return x
    return repr(x)
