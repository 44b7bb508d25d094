"""How fast is ``count_flops`` on meta, and does it match the closed forms and fvcore?

Three models that are slow or impossible to count for real on a small CPU:

* ``vit_base_patch16_224`` at 224, batch 1 (timm, ``pretrained=False``, eval);
* ``nn.LSTM(1024, 1024, num_layers=2)`` at T=4096, batch 1;
* a 6-layer ``nn.TransformerEncoder`` (d=512, 8 heads, FFN 2048, batch_first, eval) at T=16384.

Ours is timed on meta: the first count of each model (the very first in the process also pays
torch's one-off lazy initialisation of meta kernels) and the median of 3 more. fvcore runs the model for
real (``torch.jit.trace``), so the LSTM and Transformer are also counted at a capped length that a
2-core CPU runs in seconds (fvcore at the full length would take minutes, and the Transformer's
attention at 16k tokens gigabytes); those rows say so. Closed forms are REFERENCE.md section 2.

    python benchmarks/flops_speed.py [--threads 2] [--lstm-cap 256] [--transformer-cap 1024]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Runnable from a source checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.flops import count_flops  # noqa: E402


def vit_closed_form(depth: int = 12, d: int = 768, n: int = 197, classes: int = 1000) -> int:
    return depth * (12 * n * d * d + 2 * n * n * d) + 196 * 768 * d + classes * d


def lstm_closed_form(i: int, h: int, t: int, layers: int) -> int:
    return sum(4 * h * ((i if layer == 0 else h) + h) for layer in range(layers)) * t


def encoder_closed_form(n: int, d: int = 512, f: int = 2048, layers: int = 6) -> int:
    return layers * (4 * n * d * d + 2 * n * n * d + 2 * n * d * f)


def encoder(d: int = 512, heads: int = 8, f: int = 2048, layers: int = 6) -> nn.Module:
    layer = nn.TransformerEncoderLayer(d, heads, f, batch_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).eval()


def time_ours(model: nn.Module, x: Any, warm_runs: int = 3) -> tuple[float, float, int, str]:
    t0 = time.perf_counter()
    count = count_flops(model, x)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(warm_runs):
        t0 = time.perf_counter()
        count_flops(model, x)
        warm.append(time.perf_counter() - t0)
    return cold, statistics.median(warm), count.macs, count.method


def time_fvcore(model: nn.Module, x: torch.Tensor) -> tuple[float, int, str]:
    from fvcore.nn import FlopCountAnalysis

    t0 = time.perf_counter()
    a = FlopCountAnalysis(model, (x,))
    a.unsupported_ops_warnings(False)
    a.uncalled_modules_warnings(False)
    a.tracer_warnings("none")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total = int(a.total())
    missed = ", ".join(k for k in a.unsupported_ops() if k in {"aten::lstm", "aten::scaled_dot_product_attention",
                                                                  "aten::_native_multi_head_attention"})  # fmt: skip
    return time.perf_counter() - t0, total, missed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lstm-cap", type=int, default=256, help="sequence length fvcore runs the LSTM at")
    ap.add_argument("--transformer-cap", type=int, default=1024, help="sequence length fvcore runs the Transformer at")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    torch.manual_seed(0)

    import timm

    vit = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
    lstm = nn.LSTM(1024, 1024, num_layers=2).eval()
    enc = encoder()
    rows: list[tuple[str, nn.Module, Callable[[], torch.Tensor], Callable[[], torch.Tensor], int, bool]] = [
        # name, model, meta input, real input (for fvcore), closed form, fvcore at this size
        ("vit_base_patch16_224 b1 224", vit, lambda: torch.empty(1, 3, 224, 224, device="meta"),
         lambda: torch.randn(1, 3, 224, 224), vit_closed_form(), True),
        ("LSTM(1024,1024,L=2) T=4096", lstm, lambda: torch.empty(4096, 1, 1024, device="meta"),
         lambda: torch.randn(4096, 1, 1024), lstm_closed_form(1024, 1024, 4096, 2), False),
        (f"  same, T={args.lstm_cap} (fvcore cap)", lstm, lambda: torch.empty(args.lstm_cap, 1, 1024, device="meta"),
         lambda: torch.randn(args.lstm_cap, 1, 1024), lstm_closed_form(1024, 1024, args.lstm_cap, 2), True),
        ("TransformerEncoder 6x512 T=16384", enc, lambda: torch.empty(1, 16384, 512, device="meta"),
         lambda: torch.randn(1, 16384, 512), encoder_closed_form(16384), False),
        (f"  same, T={args.transformer_cap} (fvcore cap)", enc,
         lambda: torch.empty(1, args.transformer_cap, 512, device="meta"),
         lambda: torch.randn(1, args.transformer_cap, 512), encoder_closed_form(args.transformer_cap), True),
    ]  # fmt: skip
    header = (f"{'model':36s} {'ours 1st ms':>11s} {'ours ms':>9s} {'ours GMACs':>12s} {'closed GMACs':>12s} "
              f"{'ours/closed':>11s} {'fvcore s':>9s} {'fvcore GMACs':>12s}  fvcore missed")  # fmt: skip
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ours counted on meta (method shown if not)")
    print(header)
    print("-" * len(header))
    for name, model, meta_x, real_x, closed, run_fvcore in rows:
        cold, warm, macs, method = time_ours(model, meta_x())
        fv_s, fv_macs, fv_missed = ("-", "-", "")
        if run_fvcore:
            s, m, fv_missed = time_fvcore(model, real_x())
            fv_s, fv_macs = f"{s:.2f}", f"{m / 1e9:.4f}"
        else:
            fv_missed = "not run at this length (minutes / GBs for real); see the capped row"
        note = "" if method == "meta" else f"  [{method}]"
        print(f"{name:36s} {cold * 1e3:11.1f} {warm * 1e3:9.1f} {macs / 1e9:12.4f} {closed / 1e9:12.4f} {macs / closed:11.6f} "
              f"{fv_s:>9s} {fv_macs:>12s}  {fv_missed}{note}")  # fmt: skip
    print("\nfvcore counts MACs too (it calls them flops). It has no formula for aten::lstm (LSTM = 0) and none for")
    print("the fused attention ops that timm's ViT and nn.TransformerEncoder in eval use, hence its lower totals.")


if __name__ == "__main__":
    main()
