"""bench.count_flops gives the same count under grad, no_grad and inference_mode, and leaves the mode as it was.

Under ``torch.inference_mode()`` the Autograd dispatch key is skipped, so composite ops (``conv2d``,
``batch_norm``, ``linear``...) reach the counter's dispatch mode whole instead of decomposed; the counter
must decompose them exactly as autograd would. Every suite model (every tier) is counted on meta under
the three modes, with its inputs made inside the mode (so they are inference tensors there).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from bench.build import build_model
from bench.flops import FlopCount, count_flops
from bench.registry import INPUTS, get_suite
from bench.sizing import resolve_tier
from bench.spec import CellKey, CellSpec, Variant

MODES = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}
SUITES = ("cv-backbones", "seq-backbones")
CASES = [(s, t.name, v) for s in SUITES for t in get_suite(s).tiers for v in resolve_tier(t)]


def _fields(c: FlopCount) -> tuple:
    return c.macs, c.flops, c.by_operator, c.uncounted, c.other_flops, c.other_by_operator, c.by_module, c.method


def _cell(suite_name: str, tier_name: str, v: Variant) -> CellSpec:
    suite = get_suite(suite_name)
    tier, profile = suite.tier(tier_name), suite.profile()
    seq_len = profile.seq_lens[0] if profile.seq_lens else None
    key = CellKey(suite=suite.name, tier=tier.name, family=v.family, model=v.model, device="cpu", dtype="fp32",
                  batch_size=1, input_shape=tuple(tier.input_shape), seq_len=seq_len)  # fmt: skip
    return CellSpec(key=key, variant=v, input_kind=suite.input_kind, input_args=suite.input_args, profile=profile)


@pytest.mark.parametrize(("suite", "tier", "variant"), CASES, ids=[f"{s}/{t}/{v.family}" for s, t, v in CASES])
def test_every_suite_model_counts_the_same_in_every_grad_mode(suite: str, tier: str, variant: Variant) -> None:
    model = build_model(variant, device="meta")
    cell = _cell(suite, tier, variant)
    counts = {}
    for name, mode in MODES.items():
        with mode():
            inputs = INPUTS.get(cell.input_kind)(cell, 1, "meta", torch.float32)
            counts[name] = count_flops(model, inputs)
    assert counts["grad"].macs > 0 and counts["grad"].uncounted == {}
    assert _fields(counts["inference_mode"]) == _fields(counts["grad"])
    assert _fields(counts["no_grad"]) == _fields(counts["grad"])


def test_resnet18_under_inference_mode() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        count = count_flops(model, x)
    # was 512,000 (the fc layer only) with aten::conv2d x20, batch_norm x20, adaptive_avg_pool2d uncounted
    assert count.macs == 1_814_073_344 and count.uncounted == {}
    assert "aten::convolution" in count.by_operator and "aten::conv2d" not in count.by_operator


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear")  # composite on the input alone
        x = self.bn(self.conv(x)).relu()
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.mark.parametrize("built_inside", [False, True], ids=["model-built-outside", "model-built-inside"])
def test_real_tensors_count_the_same_in_every_grad_mode(built_inside: bool) -> None:
    # device=None runs the given (real) tensors: with a model built inside inference_mode every tensor is an
    # inference tensor, and autograd is skipped even after the mode is left.
    reference = _fields(count_flops(_Net().eval(), torch.randn(2, 3, 10, 10), device=None))
    for mode in MODES.values():
        with mode():
            model = _Net().eval() if built_inside else None
            x = torch.randn(2, 3, 10, 10)
        model = model or _Net().eval()
        with mode():
            assert _fields(count_flops(model, x, device=None)) == reference
        assert _fields(count_flops(model, x, device=None)) == reference


class _Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("boom")


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("raises", [False, True])
def test_the_callers_grad_and_inference_mode_are_left_as_they_were(mode: str, raises: bool) -> None:
    model = _Raises() if raises else _Net()
    with MODES[mode]():
        before = (torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        with pytest.raises(ValueError, match="boom") if raises else contextlib.nullcontext():
            count_flops(model, torch.randn(1, 3, 8, 8) if not raises else torch.randn(1, 3))
        assert (torch.is_grad_enabled(), torch.is_inference_mode_enabled()) == before
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage")
def test_jagged_attention_counts_the_same_in_every_grad_mode() -> None:
    # Jagged tensors answer size/stride queries in Python: those reach the mode in every grad mode and must
    # not be decomposed (their composite kernels ask the tensor again: a RecursionError under inference_mode).
    heads, dim, lengths = 4, 16, [30, 30, 30, 33]

    def attention(q: torch.Tensor) -> torch.Tensor:
        return nn.functional.scaled_dot_product_attention(q, q, q)

    counts = []
    for mode in MODES.values():
        with mode():
            offsets = torch.tensor([0, 30, 60, 90, 123])
            njt = torch.nested.nested_tensor_from_jagged(torch.randn(123, heads * dim), offsets)
            q = njt.view(4, -1, heads, dim).transpose(1, 2)
            counts.append(_fields(count_flops(_Fn(attention), (q,), device=None))[:4])
    assert counts[0] == counts[1] == counts[2]
    assert counts[0][0] == heads * 2 * dim * sum(n * n for n in lengths)


class _Fn(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)
