"""Matched-size solver: turn a tier's ``VariantSpec``s into ``Variant``s whose size lands on the tier's target.

A canonical variant (``knob=None``) is built as declared and only its parameter count is recorded. A knob
variant gets the grid value of its knob whose parameter count (or MACs) is closest to the target. The count
must be monotone (non-decreasing) in the knob, so the grid is bisected and only a handful of configurations
are ever built, each on the meta device.

A variant that misses its tier's tolerance still resolves -- a run must go on -- but ``Variant.param_error``
shows by how much, a warning is logged, and the suite's tests fail on it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.build import build_model, count_params, load_callable
from bench.errors import UsageError
from bench.spec import Knob, Suite, Tier, Variant, VariantSpec, _thaw, freeze

logger = logging.getLogger(__name__)

MEASURES: tuple[str, ...] = ("params", "macs")


def knob_args(base_args: Mapping[str, Any], knob: Knob, value: Any) -> dict[str, Any]:
    """Model arguments with the knob set to ``value``.

    Without ``derive`` the knob is itself a model argument. With it, the derive function's dict is what is
    added (it may set the knob's own name, e.g. ``dims=88`` -> ``dims=(88, 176, 352, 704)``, or arguments
    named otherwise, e.g. a compound-scaling coefficient -> width and depth multipliers).
    """
    extra = _derive_fn(knob.derive)(value) if knob.derive else {knob.name: value}
    return {**base_args, **extra}


def solve(
    builder: str,
    base_args: Mapping[str, Any],
    knob: Knob,
    target: int,
    *,
    measure: str = "params",
    input_shape: tuple[int, ...] | None = None,
    submodule: str | None = None,
) -> tuple[Any, int]:
    """The value of ``knob.values`` whose count (``measure``) is closest to ``target``, and that count.

    Bisects the sorted grid for the first value reaching the target, then compares it with its neighbours.
    ``measure="macs"`` counts one sample of shape ``input_shape`` with ``bench.flops.count_flops``;
    ``submodule`` counts only that part of the model's parameters. Ties go to the smaller value.
    """
    values = tuple(knob.values)
    if not values:
        raise UsageError(f"knob {knob.name!r} has no values")
    if list(values) != sorted(values):
        raise UsageError(f"knob {knob.name!r}: values must be sorted ascending, got {values}")
    if measure not in MEASURES:
        raise UsageError(f"unknown measure {measure!r}; valid choices: {', '.join(MEASURES)}")
    if measure == "macs" and not input_shape:
        raise UsageError("measure='macs' needs input_shape (one sample, without the batch dimension)")

    base = dict(base_args)

    @functools.cache
    def count(i: int) -> int:
        args = knob_args(base, knob, values[i])
        if measure == "params":
            return count_params(builder, args, submodule=submodule)
        return count_macs(builder, freeze(args), tuple(input_shape or ()))

    lo, hi = 0, len(values)
    while lo < hi:  # first index whose count reaches the target (len(values) if none does)
        mid = (lo + hi) // 2
        if count(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    near = [i for i in (lo - 1, lo, lo + 1) if 0 <= i < len(values)]
    counts = [count(i) for i in near]
    if counts != sorted(counts):
        logger.warning(
            "%s: %s are not monotone in knob %r near %s; the solver may miss the closest value",
            builder,
            measure,
            knob.name,
            [values[i] for i in near],
        )
    best = min(near, key=lambda i: (abs(count(i) - target), i))
    return values[best], count(best)


@functools.lru_cache(maxsize=1024)
def count_macs(builder: str, frozen_args: tuple[tuple[str, Any], ...], input_shape: tuple[int, ...]) -> int:
    """MACs of one forward of one sample, with the project's counter (``bench.flops.count_flops``).

    Tried on the meta device first (no memory, no arithmetic); a model or counter that cannot run there is
    counted on the CPU.
    """
    import torch

    from bench.flops import count_flops  # imported here: parameter sizing must work without it

    spec = VariantSpec(family="", builder=builder, model_args=frozen_args)
    for device in ("meta", "cpu"):
        try:
            model = build_model(spec, device=device)
            x = torch.zeros((1, *input_shape), device=device)
            with torch.no_grad():
                return int(count_flops(model, (x,)).macs)
        except (NotImplementedError, RuntimeError) as e:
            if device == "cpu":
                raise
            logger.debug("counting MACs of %s on meta failed (%s); counting on cpu", builder, e)
    raise AssertionError("unreachable")


@functools.cache
def resolve_tier(tier: Tier) -> tuple[Variant, ...]:
    """The tier's variants, sized: canonical ones as declared, knob ones solved onto the tier's target.

    Model names are unique within the tier: families whose default names collide (two families on one
    builder) are told apart as ``name@family``; a collision that remains is a ``UsageError``.
    """
    variants = _cached_resolve(tier)
    names = Counter(v.model for v in variants)
    variants = [replace(v, model=f"{v.model}@{v.family}") if names[v.model] > 1 else v for v in variants]
    seen: dict[str, str] = {}
    for v in variants:
        if v.model in seen:
            raise UsageError(
                f"tier {tier.name!r}: two variants of family {v.family!r} are both named {v.model!r}; "
                "give one of them a VariantSpec name"
            )
        seen[v.model] = v.family
        if abs(v.param_error) > v.tolerance:
            logger.warning(
                "tier %s: %s has %d params, %+.1f%% from the target %d (tolerance ±%.0f%%)",
                tier.name,
                v.model,
                v.achieved_params,
                100 * v.param_error,
                v.target_params,
                100 * v.tolerance,
            )
    return tuple(variants)


def resolve_suite(suite: Suite) -> dict[str, tuple[Variant, ...]]:
    """Every tier of ``suite`` resolved, by tier name."""
    return {t.name: resolve_tier(t) for t in suite.tiers}


def _resolve(spec: VariantSpec, tier: Tier) -> Variant:
    base = {k: _thaw(v) for k, v in spec.model_args}
    part = getattr(spec, "count", None)  # the sub-module the budget counts; None: the whole model
    common = dict(family=spec.family, builder=spec.builder, target_params=tier.target_params, tolerance=tier.tolerance)
    if spec.knob is None:
        achieved = count_params(spec.builder, spec.model_args, submodule=part)
        return Variant(model=_base_name(spec), model_args=spec.model_args, achieved_params=achieved, **common)
    target = tier.target_params
    if spec.target == "macs":
        # Tier declares no MAC budget yet: a suite that sizes on MACs declares ``target_macs`` on its tier.
        target = getattr(tier, "target_macs", None)
        if target is None:
            raise UsageError(
                f"tier {tier.name!r}: family {spec.family!r} sizes on MACs but the tier has no target_macs"
            )
    value, _ = solve(
        spec.builder, base, spec.knob, target, measure=spec.target, input_shape=tier.input_shape, submodule=part
    )
    args = knob_args(base, spec.knob, value)
    return Variant(
        model=_display_name(spec, value),
        model_args=freeze(args),
        achieved_params=count_params(spec.builder, args, submodule=part),
        knob=spec.knob.name,
        knob_value=value,
        **common,
    )


def _base_name(spec: VariantSpec) -> str:
    return spec.name or spec.builder.partition(":")[2]


def _display_name(spec: VariantSpec, value: Any) -> str:
    """``base[knob=value]``, plus derived integer arguments (head counts) that the value alone does not show."""
    assert spec.knob is not None
    parts = [f"{spec.knob.name}={_fmt(value)}"]
    if spec.knob.derive:
        derived = _derive_fn(spec.knob.derive)(value)
        parts += [f"{k}={v}" for k, v in derived.items() if k != spec.knob.name and type(v) is int and v != value]
    return f"{_base_name(spec)}[{','.join(parts)}]"


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@functools.cache
def _derive_fn(path: str) -> Callable[[Any], dict[str, Any]]:
    return load_callable(path, "knob derive")


# --- resolved variants cached on disk ----------------------------------------------------------------------
# Resolving a suite builds a few configurations per knob family (about 7 s for cv-backbones on 2 cores), and
# every run needs every tier resolved for its suite hash. The result depends only on the tier's declaration
# and the code that builds and counts, so it is cached per tier under a key of both.

#: Where resolved tiers are cached; empty, "0" or "off" turns the cache off. Default:
#: ``$XDG_CACHE_HOME/aigc-bench/resolved`` (``~/.cache/...``).
CACHE_ENV = "AIGC_BENCH_CACHE_DIR"
#: Bumped when the cached file's layout or the solver's meaning changes: older entries are not read.
CACHE_FORMAT = 1
#: A cached file larger than this is not read (a tier resolves to a few kB): never load a stray big file.
MAX_CACHE_BYTES = 1_000_000


def cache_dir() -> Path | None:
    """The folder of resolved tiers, or None when the cache is off (``AIGC_BENCH_CACHE_DIR``)."""
    got = os.environ.get(CACHE_ENV)
    if got is not None:
        return None if got.strip() in ("", "0", "off") else Path(got)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aigc-bench" / "resolved"


def _source_digest(target: str) -> str:
    """What the code behind ``module:function`` (or ``timm:name``) is: the module file's hash, or the
    package's version; "?" when it cannot be found (the key then changes with nothing, which is safe: the
    versions of torch, timm and aigc-bench are in the key too)."""
    module = target.partition(":")[0]
    if module == "timm":
        return f"timm=={_version('timm')}"
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return "?"
    origin = getattr(spec, "origin", None)
    try:
        return hashlib.sha256(Path(origin).read_bytes()).hexdigest() if origin else "?"
    except OSError:
        return "?"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def _own_code_digest(with_flops: bool) -> str:
    """Hash of the sizing and building code (and of the MAC counter, for tiers sized on MACs)."""
    here = Path(__file__).resolve().parent
    files = [here / "sizing.py", here / "build.py", here / "spec.py"]
    if with_flops:
        files += sorted((here / "flops").rglob("*.py"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def cache_key(tier: Tier) -> str:
    """The key of a tier's resolved variants: its declaration, the code that builds and counts its models
    (builder and derive modules, ``bench.sizing``/``build``/``spec``, the MAC counter when a family sizes on
    MACs) and the versions of torch, timm and aigc-bench."""
    targets = {v.builder for v in tier.variants} | {v.knob.derive for v in tier.variants if v.knob and v.knob.derive}
    blob = {
        "format": CACHE_FORMAT,
        "tier": asdict(tier),
        "sources": {t: _source_digest(t) for t in sorted(targets)},
        "code": _own_code_digest(any(v.target == "macs" for v in tier.variants)),
        "versions": {d: _version(d) for d in ("torch", "timm", "aigc-bench")},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=repr).encode()).hexdigest()[:32]


def _tuples(x: Any) -> Any:
    """JSON lists back to the tuples ``freeze`` made of every sequence in a variant."""
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def _decode(doc: Any) -> list[Variant] | None:
    names = {f.name for f in fields(Variant)}
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or not isinstance(doc.get("variants"), list):
        return None
    out = []
    for v in doc["variants"]:
        if not isinstance(v, dict) or set(v) != names:
            return None
        out.append(Variant(**{k: _tuples(x) for k, x in v.items()}))
    return out


def _cached_resolve(tier: Tier) -> list[Variant]:
    """``_resolve`` of every variant of ``tier``, read from the cache when there (``cache_key``), else
    resolved and stored. A cache entry that cannot be read, or would not give back the same variants, is
    ignored: the cache only ever saves time."""
    folder = cache_dir()
    path = folder / f"{cache_key(tier)}.json" if folder is not None else None
    if path is not None:
        try:
            if path.stat().st_size <= MAX_CACHE_BYTES:
                got = _decode(json.loads(path.read_text(encoding="utf-8")))
                if got is not None and [v.family for v in got] == [s.family for s in tier.variants]:
                    return got
        except (OSError, ValueError, TypeError):
            pass
    variants = [_resolve(spec, tier) for spec in tier.variants]
    if path is not None:
        _store(path, variants)
    return variants


def _store(path: Path, variants: list[Variant]) -> None:
    doc = {"format": CACHE_FORMAT, "variants": [asdict(v) for v in variants]}
    try:
        text = json.dumps(doc, sort_keys=True)
        if _decode(json.loads(text)) != variants:  # a value JSON cannot carry exactly: do not cache this tier
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)  # atomic: a concurrent run reads the old entry or the new, never half
    except (OSError, TypeError, ValueError) as e:
        logger.debug("resolved variants not cached (%s)", e)
