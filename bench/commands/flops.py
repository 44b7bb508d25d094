"""``aigc-bench flops MODEL``: exact MACs of one model, per module or per operator.

MODEL is ``timm:<name>`` (any timm architecture, optionally with a pretrained tag such as
``vit_base_patch16_224.augreg_in21k``, built with ``pretrained=False``: nothing is downloaded) or
``SUITE/TIER/FAMILY`` (a suite's resolved variant; SUITE may be a suite file, ``path/to/my_suite.py`` or
``my_suite.py:NAME``, as ``aigc-bench run`` takes it). Counting runs on the meta device: nothing real
is computed, so large batches and long inputs are counted in seconds.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
from typing import Any

from bench.errors import UnknownNameError, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flops",
        help="count the exact MACs/FLOPs of a model (timm:<name> or SUITE/TIER/FAMILY)",
        description="Count MACs (multiply-accumulates), FLOPs (= 2 x MACs) and other FLOPs "
        "(norm/activation/softmax/pool/elementwise) of one forward pass, on the meta device.",
    )
    p.add_argument("model", metavar="MODEL", help="timm:<name>[.<tag>] (e.g. timm:resnet50, timm:vit_base_patch16_224.augreg_in21k; "
                   "never downloads weights) or SUITE/TIER/FAMILY")  # fmt: skip
    p.add_argument("--input-shape", metavar="SHAPE", help="one sample's shape without the batch, e.g. 3,224,224 "
                   "(default: the timm model's input size, or the suite tier's input shape)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=1, metavar="N", help="batch size (default 1)")
    p.add_argument("--seq-len", type=int, metavar="T", help="sequence length, for suites whose inputs take one")
    p.add_argument("--by", choices=("module", "operator"), default="module", help="breakdown table (default module)")
    p.add_argument("--depth", type=int, default=2, metavar="N", help="module depth shown with --by module (default 2)")
    p.add_argument("--crosscheck", action="store_true", help="also run fvcore and FlopCounterMode (real, batch 1)")
    p.add_argument("--json", action="store_true", help="print FlopCount.to_dict() as JSON instead of tables")
    p.set_defaults(handler=_run)


#: largest accepted batch size or dimension of --input-shape (int32: one sample's axis, not a tensor's size)
MAX_DIM = 2**31 - 1
#: largest input (batch x one sample's elements) built for real: suite inputs are real tensors (1 GiB in fp32)
MAX_REAL_INPUT_ELEMENTS = 2**28

_SHAPE_HELP = "comma-separated positive integers like 3,224,224"


def parse_shape(text: str) -> tuple[int, ...]:
    """``"3,224,224"`` (or ``3x224x224``) -> ``(3, 224, 224)``; a UsageError names the bad input.

    Every element must be an integer in ``1..MAX_DIM``: an empty shape, an empty element (``3,,224``),
    zero, negative or non-integer elements and absurd sizes are refused rather than guessed.
    """
    parts = [p.strip() for p in re.split(r"[,x]", text.strip())]
    if not text.strip():
        raise UsageError(f"--input-shape must be {_SHAPE_HELP}, not an empty string (omit it for the default)")
    if any(not p for p in parts):
        raise UsageError(f"--input-shape must be {_SHAPE_HELP}, not {text!r} (an empty element)")
    if not all(re.fullmatch(r"[0-9]+", p) for p in parts):
        raise UsageError(f"--input-shape must be {_SHAPE_HELP}, not {text!r}")
    shape = tuple(int(p) for p in parts)
    if any(s < 1 for s in shape):
        raise UsageError(f"--input-shape must be {_SHAPE_HELP}, not {text!r} (sizes start at 1)")
    if any(s > MAX_DIM for s in shape):
        raise UsageError(f"--input-shape {text!r}: each size must be at most {MAX_DIM:,}")
    return shape


def _timm_model(name: str, shape: tuple[int, ...] | None) -> tuple[Any, tuple[int, ...]]:
    """``name`` is an architecture, optionally with a pretrained tag (``vit_base_patch16_224.augreg_in21k``).

    The tag selects timm's config for those weights (number of classes, input size); no weights are
    loaded (``pretrained=False``), so nothing is downloaded.
    """
    import timm

    arch, dot, tag = name.partition(".")
    if dot and not tag:
        raise UsageError(f"timm model {name!r}: a pretrained tag must follow the '.' (e.g. {arch}.<tag>)")
    names = timm.list_models()
    if arch not in names:
        # timm has ~1300 architectures: name the close matches only.
        close = difflib.get_close_matches(arch, names, n=5, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"unknown timm model {arch!r}{hint}; see timm.list_models('*{arch[:4]}*')")
    if tag:
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        if tag not in tags:
            close = difflib.get_close_matches(tag, tags, n=5, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"its tags: {', '.join(tags) or 'none'}"
            raise UsageError(f"unknown pretrained tag {tag!r} of timm model {arch!r} ({hint})")
    model = timm.create_model(name, pretrained=False)
    if shape is None:
        shape = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
    return model, shape


def _real_size(size: tuple[int, ...]) -> tuple[int, ...]:
    """``size``, or a UsageError when a real tensor of that size would be too large to build."""
    if math.prod(size) > MAX_REAL_INPUT_ELEMENTS:
        raise UsageError(f"a real input of {'x'.join(map(str, size))} ({math.prod(size):,} elements) is too large: "
                         f"at most {MAX_REAL_INPUT_ELEMENTS:,} (MACs scale linearly with the batch)")  # fmt: skip
    return size


def _suite_model(
    ref: str, shape: tuple[int, ...] | None, batch: int, seq_len: int | None
) -> tuple[Any, tuple[Any, ...], tuple[int, ...], str]:
    import torch

    from bench import registry
    from bench.build import build_model
    from bench.registry import INPUTS, get_suite
    from bench.sizing import resolve_tier
    from bench.spec import CellKey, CellSpec

    suite_arg, tier_name, family = split_suite_ref(ref) or ("", "", "")
    suite = get_suite(registry.suite_name(suite_arg))  # a suite file is loaded here
    suite_name = suite.name
    tier = suite.tier(tier_name)
    variants = {v.family: v for v in resolve_tier(tier)}
    if family not in variants:
        raise UnknownNameError(f"family of tier {suite_name}/{tier_name}", family, variants)
    variant = variants[family]
    profile = suite.profile()
    if seq_len is None and profile.seq_lens:
        seq_len = profile.seq_lens[0]
    key = CellKey(suite=suite.name, tier=tier.name, family=family, model=variant.model, device="cpu", dtype="fp32",
                  batch_size=batch, input_shape=tuple(shape or tier.input_shape), seq_len=seq_len, mode="infer")  # fmt: skip
    cell = CellSpec(key=key, variant=variant, input_kind=suite.input_kind, input_args=suite.input_args, profile=profile)
    # Suite inputs are built for real (their makers choose values and dtypes): refuse absurd sizes first.
    _real_size((batch, *key.input_shape, *((seq_len,) if seq_len else ())))
    model = build_model(variant).eval()
    inputs = INPUTS.get(suite.input_kind)(cell, batch, "cpu", torch.float32)
    args = ", ".join(f"{k}={v}" for k, v in variant.model_args)
    resolved = f"{variant.model} ({variant.builder}{'(' + args + ')' if args else ''})"
    return model, tuple(inputs), key.input_shape, resolved


def split_suite_ref(ref: str) -> tuple[str, str, str] | None:
    """``SUITE/TIER/FAMILY`` -> its three parts, where SUITE is a name or a suite file (``dir/my_suite.py``,
    ``my_suite.py:NAME``: the path may hold ``/`` itself); None when ``ref`` is not of that form."""
    parts = ref.rsplit("/", 2)
    if len(parts) != 3 or not all(parts):
        return None
    suite, tier, family = parts
    path = suite.rpartition(":")[0] if ":" in suite and suite.rpartition(":")[0].endswith(".py") else suite
    if "/" in suite and not path.endswith(".py"):
        return None  # a/b/c/d: neither a name nor a suite file
    return suite, tier, family


def _run(args: argparse.Namespace) -> int:
    import torch

    from bench.flops import count_flops

    if not 1 <= args.batch_size <= MAX_DIM:
        raise UsageError(f"--batch-size must be between 1 and {MAX_DIM:,}, not {args.batch_size}")
    if args.seq_len is not None and not 1 <= args.seq_len <= MAX_DIM:
        raise UsageError(f"--seq-len must be between 1 and {MAX_DIM:,}, not {args.seq_len}")
    # None: the default shape; an empty string is an error (it used to mean the default silently).
    shape = parse_shape(args.input_shape) if args.input_shape is not None else None
    ref = args.model
    resolved = None  # what SUITE/TIER/FAMILY resolved to
    is_timm, is_suite = ref.startswith("timm:"), split_suite_ref(ref) is not None
    if not (is_timm or is_suite):
        raise UsageError(f"MODEL must be timm:<name> or SUITE/TIER/FAMILY (SUITE a name or a suite file .py), "
                         f"not {ref!r}")  # fmt: skip
    if is_timm:
        model, shape = _timm_model(ref[len("timm:") :], shape)
        model.eval()
        # Meta inputs: nothing is allocated even at large batches (real ones only if meta fails).
        real_inputs = lambda: torch.randn(_real_size((args.batch_size, *shape)))  # noqa: E731
    try:
        if is_timm:
            inputs: Any = torch.empty((args.batch_size, *shape), device="meta")
        else:
            model, inputs, shape, resolved = _suite_model(ref, shape, args.batch_size, args.seq_len)
            real_inputs = lambda: inputs  # noqa: E731
        try:
            count = count_flops(model, inputs)
        except RuntimeError as e:
            if "inputs are meta tensors" not in str(e):
                raise
            inputs = real_inputs()
            count = count_flops(model, inputs)
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 -- usually a shape the model does not accept: say so in one line
        what = f"input {tuple(shape)}" if shape else "its inputs"
        raise UsageError(f"cannot run {ref} on {what} at batch {args.batch_size}: {type(e).__name__}: "
                         f"{' '.join(str(e).split())[:300]}") from None  # fmt: skip
    cc = None
    if args.crosscheck:
        from bench.flops.crosscheck import crosscheck

        if isinstance(inputs, torch.Tensor) and inputs.device.type == "meta":
            inputs = real_inputs()
        cc = crosscheck(model, inputs, ours=count, batch_size=args.batch_size)
    if args.json:
        d = count.to_dict()
        if cc is not None:
            d["crosscheck"] = cc.to_dict()
        print(json.dumps(d, indent=2))
        return 0
    _print(ref, shape, args, count, cc, resolved, sum(p.numel() for p in model.parameters()))
    return 0


def _g(x: float) -> str:
    return f"{x / 1e9:,.4f}"


def _print(ref: str, shape: tuple[int, ...] | None, args: argparse.Namespace, count: Any, cc: Any,
           resolved: str | None = None, params: int | None = None) -> None:  # fmt: skip
    from rich.console import Console
    from rich.table import Table

    from bench.report.escape import term as escape  # model names hold brackets: shown, never read as markup

    console = Console()
    shape_text = "x".join(map(str, shape)) if shape else "suite inputs"
    console.print(
        f"[bold]{ref}[/bold]  input {args.batch_size} x {shape_text}  (counted: {count.method}, {count.seconds:.2f} s)"
    )
    if resolved is not None:
        console.print(f"  resolved to {escape(resolved)}", soft_wrap=True)
    if params is not None:
        console.print(f"  params {params / 1e6:,.3f} M ({params:,})")
    console.print(f"  GMACs {_g(count.macs)}   GFLOPs {_g(count.flops)}   other GFLOPs {_g(count.other_flops)}")
    console.print(f"  [dim]{count.convention}[/dim]")
    total = count.macs or 1
    if args.by == "module":
        t = Table(title=f"MACs per module (depth <= {args.depth}; parents include their children)")
        t.add_column("module")
        rows = [(name or "(model)", v) for name, v in count.modules_at_depth(args.depth).items()]
    else:
        t = Table(title="MACs per operator")
        t.add_column("operator")
        rows = list(count.by_operator.items())
    t.add_column("GMACs", justify="right")
    t.add_column("share", justify="right")
    for name, v in rows:
        indent = "  " * (name.count(".") + 1) if args.by == "module" and name != "(model)" else ""
        t.add_row(indent + name, _g(v), f"{100 * v / total:.1f}%")
    console.print(t)
    if args.by == "operator" and count.other_by_operator:
        o = Table(title="other FLOPs per operator (estimates; not MACs)")
        o.add_column("operator")
        o.add_column("GFLOPs", justify="right")
        for name, v in count.other_by_operator.items():
            o.add_row(name, _g(v))
        console.print(o)
    if count.uncounted:
        console.print(f"[red]uncounted ops (no formula; MACs are a lower bound):[/red] {count.uncounted_summary()}")
    else:
        console.print("uncounted ops: none")
    if cc is not None:
        from bench.flops.crosscheck import missed_summary

        if cc.skipped:
            console.print(f"crosscheck skipped: {cc.skipped}")
        for tool, macs, diff, missed, err in (
            ("fvcore", cc.fvcore_macs, cc.fvcore_diff_pct, cc.fvcore_missed, cc.fvcore_error),
            ("FlopCounterMode", cc.fcm_macs, cc.fcm_diff_pct, cc.fcm_missed, cc.fcm_error),
        ):
            if err:
                console.print(f"  {tool}: error: {err}")
            elif macs is not None:
                console.print(
                    f"  {tool}: GMACs {_g(macs)} ({diff:+.2f}% vs ours); missed: {missed_summary(missed) or 'none'}"
                )
        if cc.note:
            console.print(f"  [dim]{cc.note}[/dim]")
