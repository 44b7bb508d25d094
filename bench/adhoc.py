"""Ad-hoc suites: ``aigc-bench run --model timm:resnet50 --model mypkg.models:build [--match-params 25M]``.

A one-off comparison, like timm's ``benchmark.py --model``, without writing a suite file: the models given
become one tier of a suite named ``adhoc`` (results under ``results/adhoc/``, reports under
``reports/adhoc/``), with the same cells, metrics, store and reports as any suite. Models are built as given
(tier ``as-built``), or, with ``--match-params``, each model's width knob is solved by ``bench.sizing`` so its
parameter count lands on the target (tier ``matched``). The knob is the one the user names (``--knob``) or
one inferred: for timm's ViT/DeiT, Swin, ConvNeXt and ResNet a width (below, ``KNOWN_KNOBS``); for a
``module:function`` builder, its first argument named like a width (``WIDTH_ARGS``) with a number default.

Cells carry their resolved variants (builder and arguments), so worker processes rebuild each model without
this suite; the current folder is put on ``sys.path`` (as ``python -m`` does) so that ``mypkg.models`` is found
there, by this process and by the spawned workers, which inherit ``sys.path``.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.errors import UsageError
from bench.spec import Knob, Profile, Suite, Tier, VariantSpec, freeze

#: the suite name of every ad-hoc run (its results folder and its reports' folder)
ADHOC_SUITE = "adhoc"
#: ``--model`` given more often than this is a typo or a script gone wrong
MAX_MODELS = 32
#: tolerance of a matched tier (as the built-in suites': ±10%)
MATCH_TOLERANCE = 0.10
#: argument names of a ``module:function`` builder taken as its width knob, in this order of preference
WIDTH_ARGS = ("width", "embed_dim", "dim", "d_model", "hidden_size", "hidden_dim", "channels", "base_width",
              "width_multiplier", "channel_multiplier", "width_mult")  # fmt: skip
#: the grids of a knob the user names (``--knob``) with no known layout: integers or multipliers; the solver
#: bisects, so a long grid costs a dozen builds on the meta device, not thousands
INT_GRID = tuple(range(1, 4097))
FLOAT_GRID = tuple(i / 100 for i in range(1, 1601))


def vit_width(dim: int) -> dict[str, Any]:
    """ViT/DeiT width with the head count whose head dim is nearest 64 (ViT's), among ``dim``'s divisors."""
    heads = min((h for h in range(1, dim + 1) if dim % h == 0), key=lambda h: (abs(dim / h - 64), h))
    return {"embed_dim": dim, "num_heads": heads}


def stage_widths(width: int) -> dict[str, Any]:
    """ConvNeXt stage widths (w, 2w, 4w, 8w), as in every canonical ConvNeXt."""
    return {"dims": (width, 2 * width, 4 * width, 8 * width)}


def resnet_widths(width: int) -> dict[str, Any]:
    """ResNet stage widths (w, 2w, 4w, 8w) and a stem as wide as the first stage (64 canonical)."""
    return {"channels": (width, 2 * width, 4 * width, 8 * width), "stem_width": width}


#: timm model class -> its width knob (Swin keeps its (3, 6, 12, 24) heads: the embedding width steps by 3)
KNOWN_KNOBS: dict[str, Knob] = {
    "VisionTransformer": Knob("embed_dim", tuple(range(64, 2049, 16)), derive=f"{__name__}:vit_width"),
    "VisionTransformerDistilled": Knob("embed_dim", tuple(range(64, 2049, 16)), derive=f"{__name__}:vit_width"),
    "SwinTransformer": Knob("embed_dim", tuple(range(24, 769, 3))),
    "ConvNeXt": Knob("dims", tuple(range(8, 513, 8)), derive=f"{__name__}:stage_widths"),
    "ResNet": Knob("width", tuple(range(8, 513, 4)), derive=f"{__name__}:resnet_widths"),
}


@dataclass(frozen=True)
class AdhocSpec:
    """What the command line asked for: builders, one sample's shape, and an optional parameter target."""

    models: tuple[str, ...]
    input_shape: tuple[int, ...] = (3, 224, 224)
    match_params: int | None = None
    knob: str | None = None
    accuracy: bool = False  # --data/--weights given: the profiles also measure the checkpoints' accuracy


def builder_of(model: str) -> str:
    """``timm:resnet50`` and ``mypkg.models:build`` as given; a bare timm name (``resnet50``) gets ``timm:``."""
    text = model.strip()
    if not text:
        raise UsageError("--model: expected 'timm:<name>' or '<module>:<function>', got an empty value")
    return text if ":" in text else f"timm:{text}"


def family_of(builder: str) -> str:
    """The family (and row) name of a model: timm's model name, or the builder function's module and name."""
    module, _, name = builder.partition(":")
    return name if module == "timm" else f"{module.rsplit('.', 1)[-1]}.{name}"


def parse_count(text: str) -> int:
    """``25M``, ``5.5M``, ``500k``, ``1.2G`` or ``25000000`` -> a parameter count."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kKmMgGbB]?)\s*", text[:40])
    if not m:
        raise UsageError(f"--match-params: expected a count such as 25M, 500k or 25000000, got {text[:40]!r}")
    scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}[m.group(2).lower()]
    value = round(float(m.group(1)) * scale)
    if not 1_000 <= value <= 10**12:
        raise UsageError(f"--match-params {text[:40]}: expected between 1k and 1000G parameters")
    return value


def parse_shape(text: str) -> tuple[int, ...]:
    """``3,224,224`` -> one sample's shape (without the batch dimension): 1 to 4 sizes, each 1..65536."""
    parts = [x.strip() for x in text.split(",")]
    try:
        shape = tuple(int(x) for x in parts)
    except ValueError:
        raise UsageError(f"--input-shape: expected sizes such as 3,224,224, got {text[:40]!r}") from None
    if not 1 <= len(shape) <= 4 or not all(1 <= x <= 65536 for x in shape):
        raise UsageError(f"--input-shape {text[:40]}: expected 1 to 4 sizes, each between 1 and 65536")
    return shape


def infer_knob(builder: str, named: str | None = None) -> Knob:
    """The width knob of ``builder``'s model: the known one of its timm class, else the user's ``named``
    argument over a grid, else the builder function's first width-like argument (``WIDTH_ARGS``)."""
    from bench.build import build_model, resolve_builder

    module = builder.partition(":")[0]
    if module == "timm":
        spec = VariantSpec(family="", builder=builder)
        try:
            model = build_model(spec, device="meta")
        except (NotImplementedError, RuntimeError):  # a constructor that reads tensor values: built for real
            model = _checked(lambda: build_model(spec), builder, "building")
        cls = type(model).__name__
        known = KNOWN_KNOBS.get(cls)
        if known is not None and named in (None, known.name):
            return known
        if named is None:
            raise UsageError(f"cannot infer a width knob of {builder} (a timm {cls}); name a model argument the "
                             f"solver may set with --knob, e.g. --knob embed_dim")  # fmt: skip
        return Knob(named, INT_GRID)
    params = inspect.signature(resolve_builder(builder)).parameters
    names = [named] if named is not None else [n for n in WIDTH_ARGS if n in params]
    for n in names:
        p = params.get(n)
        if p is None and not any(q.kind is q.VAR_KEYWORD for q in params.values()):
            raise UsageError(f"--knob {n}: {builder} takes no argument {n!r}; its arguments: {', '.join(params)}")
        default = p.default if p is not None else inspect.Parameter.empty
        return Knob(n, FLOAT_GRID if isinstance(default, float) else INT_GRID)
    raise UsageError(f"cannot infer a width knob of {builder}: it has no argument named {', '.join(WIDTH_ARGS[:4])}"
                     f", ...; name the one the solver may set with --knob")  # fmt: skip


def _profiles(accuracy: bool) -> tuple[Profile, ...]:
    costs = ("params", "flops", "memory", "latency", *(("accuracy",) if accuracy else ()))
    return (
        Profile("quick", batch_sizes=(1,), warmup_s=0.3, min_run_time_s=0.5, timeout_s=120.0, metrics=costs,
                description="batch 1, fp32, short windows: a smoke run"),
        Profile("default", batch_sizes=(1, 8), warmup_s=0.5, min_run_time_s=2.0, timeout_s=300.0, metrics=costs,
                description="batch 1 and 8, fp32"),
        Profile("full", batch_sizes=(1, 8, 32), dtypes=("fp32", "bf16"), warmup_s=1.0, min_run_time_s=5.0,
                max_samples=5000, timeout_s=600.0, metrics=costs, description="batch 1, 8 and 32, fp32 and bf16"),
    )  # fmt: skip


def _checked(fn: Callable[[], Any], builder: str, what: str) -> Any:
    """``fn()``, with any error of the user's model (a wrong argument, a failing constructor) as one line."""
    try:
        return fn()
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 -- the model's own code: whatever it raises is the user's to see
        text = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise UsageError(f"--model {builder}: {what} failed: {text}") from None


def build_suite(spec: AdhocSpec) -> Suite:
    """The ``adhoc`` suite of ``spec``: one tier holding every model, matched to ``match_params`` when given."""
    from bench.build import count_params, resolve_builder

    if not spec.models:
        raise UsageError("--model: give at least one model (timm:<name> or <module>:<function>)")
    if len(spec.models) > MAX_MODELS:
        raise UsageError(f"--model given {len(spec.models)} times; at most {MAX_MODELS} models in one run")
    if spec.knob is not None and spec.match_params is None:
        raise UsageError("--knob goes with --match-params: it names the argument the size solver sets")
    here = os.getcwd()
    if here not in sys.path:  # ``mypkg.models`` in the current folder, as ``python -m`` finds it
        sys.path.insert(0, here)
    builders = [builder_of(m) for m in spec.models]
    seen: dict[str, str] = {}
    for b in builders:
        resolve_builder(b)  # an unknown timm name or a missing function: one line, before anything is built
        f = family_of(b)
        if f in seen:
            raise UsageError(f"--model {b}: given twice (as {seen[f]})")
        seen[f] = b
    if spec.match_params is None:
        variants = tuple(VariantSpec(family=family_of(b), builder=b) for b in builders)
        counts = [_checked(lambda b=b: count_params(b), b, "building") for b in builders]
        tier = Tier(name="as-built", target_params=max(counts), variants=variants, tolerance=1.0,
                    input_shape=spec.input_shape, description="the models as built (no size matching)")  # fmt: skip
    else:
        variants = tuple(VariantSpec(family=family_of(b), builder=b, knob=infer_knob(b, spec.knob)) for b in builders)
        tier = Tier(name="matched", target_params=spec.match_params, variants=variants, tolerance=MATCH_TOLERANCE,
                    input_shape=spec.input_shape,
                    description=f"each model's width solved onto {spec.match_params / 1e6:g}M parameters")  # fmt: skip
        from bench.sizing import resolve_tier

        try:  # sized now: a knob the model does not take is one line naming the model, not a traceback later
            resolve_tier(tier)
        except UsageError:
            raise
        except Exception:  # noqa: BLE001 -- which model: each sized alone
            for v in variants:
                one = Tier(
                    name=tier.name, target_params=tier.target_params, variants=(v,), input_shape=spec.input_shape
                )
                _checked(lambda one=one: resolve_tier(one), v.builder, f"sizing on {v.knob.name if v.knob else '?'}")
            _checked(lambda: resolve_tier(tier), ", ".join(builders), "sizing")
    return Suite(name=ADHOC_SUITE, description=f"ad-hoc comparison of {', '.join(seen)}", input_kind="image",
                 tiers=(tier,), profiles=_profiles(spec.accuracy), default_profile="default", input_args=freeze({}),
                 reference_family=family_of(builders[0]))  # fmt: skip
