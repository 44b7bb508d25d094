"""The counter on real CUDA kernels: every suite model counts on the GPU exactly what it counts on meta.

On CUDA the same modules reach other kernels than on the CPU or meta: ``nn.LSTM``/``nn.GRU`` run
``aten::_cudnn_rnn``, ``scaled_dot_product_attention`` runs the flash or memory-efficient kernels
(``_scaled_dot_product_flash_attention``/``_efficient_attention``), convolutions ``cudnn_convolution``.
A counter that knows only the CPU's ops would count those as 0 (fvcore's LSTM problem), so every model
of every suite is counted for real on the GPU (``device=None``), in fp32 and bf16 and under the three
grad modes, and must give the meta count with nothing uncounted.
"""

from __future__ import annotations

import pytest
import torch

from bench.build import build_model
from bench.flops import count_flops
from bench.registry import INPUTS, get_suite
from bench.sizing import resolve_tier
from bench.spec import CellKey, CellSpec, Variant

pytestmark = pytest.mark.cuda

SUITES = ("cv-backbones", "seq-backbones")
CASES = [(s, t.name, v) for s in SUITES for t in get_suite(s).tiers for v in resolve_tier(t)]
MODES = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}


def _cell(suite_name: str, tier_name: str, v: Variant) -> CellSpec:
    suite = get_suite(suite_name)
    tier, profile = suite.tier(tier_name), suite.profile()
    seq_len = profile.seq_lens[0] if profile.seq_lens else None
    key = CellKey(suite=suite.name, tier=tier.name, family=v.family, model=v.model, device="cuda", dtype="fp32",
                  batch_size=2, input_shape=tuple(tier.input_shape), seq_len=seq_len)  # fmt: skip
    return CellSpec(key=key, variant=v, input_kind=suite.input_kind, input_args=suite.input_args, profile=profile)


@pytest.mark.parametrize(("suite", "tier", "variant"), CASES, ids=[f"{s}/{t}/{v.family}" for s, t, v in CASES])
def test_every_suite_model_counts_on_cuda_what_it_counts_on_meta(suite: str, tier: str, variant: Variant) -> None:
    cell = _cell(suite, tier, variant)
    make_inputs = INPUTS.get(cell.input_kind)
    reference = count_flops(build_model(variant, device="meta"), make_inputs(cell, 2, "meta", torch.float32))
    assert reference.macs > 0 and reference.uncounted == {}
    for dtype in (torch.float32, torch.bfloat16):
        model = build_model(variant, device="cuda").to(dtype)
        for name, mode in MODES.items():
            with mode():
                inputs = make_inputs(cell, 2, torch.device("cuda"), dtype)
                real = count_flops(model, inputs, device=None)
            assert real.method == "real"
            assert real.uncounted == {}, f"{dtype} {name}: {real.uncounted}"
            assert real.macs == reference.macs, f"{dtype} {name}: {real.macs:,} on CUDA vs {reference.macs:,} on meta"
        del model
    torch.cuda.empty_cache()


def test_cudnn_lstm_is_counted() -> None:
    # fvcore counts an LSTM as 0; on CUDA nn.LSTM is one aten::_cudnn_rnn call.
    lstm = torch.nn.LSTM(32, 64, num_layers=2, batch_first=True).cuda()
    x = torch.randn(3, 10, 32, device="cuda")
    count = count_flops(lstm, x, device=None)
    # per step and layer: 4 gates x (input + hidden) x hidden
    expected = 3 * 10 * (4 * (32 * 64 + 64 * 64) + 4 * (64 * 64 + 64 * 64))
    assert count.macs == expected and count.uncounted == {}
    assert count.macs == count_flops(lstm, x).macs  # the meta count


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_sdpa_kernels_on_cuda_are_counted(dtype: torch.dtype) -> None:
    # fp16/bf16 pick the flash kernel, fp32 the memory-efficient one: both are 2 x B x H x L x L x D MACs.
    b, h, n, d = 2, 4, 128, 64
    q = torch.randn(b, h, n, d, device="cuda", dtype=dtype)

    class Attention(torch.nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.scaled_dot_product_attention(q, q, q)

    with torch.inference_mode():
        count = count_flops(Attention(), (q,), device=None)
    assert count.macs == 2 * b * h * n * n * d and count.uncounted == {}, count.by_operator
