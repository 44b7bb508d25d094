"""``bench.flops.count_train_flops``: a training step's MACs, forward and backward, against closed forms.

For ``y = x W^T`` (``x``: n x a, ``W``: b x a) the forward is ``n a b`` MACs; the backward computes the weight
gradient (``n a b``) always and the input gradient (``n a b``) only when ``x`` needs one. A convolution's
gradients cost its forward each; attention's backward twice its forward.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.flops import count_flops, count_train_flops


def _step(model: nn.Module, *inputs: torch.Tensor):
    return count_train_flops(lambda: model(*inputs).sum().backward(), model)


@pytest.mark.parametrize("input_grad", [False, True])
def test_linear_step_is_forward_plus_the_gradients_autograd_computes(input_grad: bool) -> None:
    n, a, b = 5, 7, 3
    x = torch.randn(n, a, requires_grad=input_grad)
    lin = nn.Linear(a, b)
    fwd = count_train_flops(lambda: lin(x), lin)
    assert fwd.macs == n * a * b
    step = _step(lin, x)
    assert step.macs == (3 if input_grad else 2) * n * a * b
    assert step.uncounted.get("aten::mm", 0) == 0


def test_mlp_closed_form() -> None:
    n, a, b, c = 4, 6, 10, 3
    mlp = nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c))
    x = torch.randn(n, a)
    # forward n(ab + bc); backward: both weight gradients n(ab + bc), the hidden layer's input gradient n bc
    assert _step(mlp, x).macs == 2 * n * a * b + 3 * n * b * c
    assert count_train_flops(lambda: mlp(x), mlp).macs == count_flops(mlp, (x,)).macs == n * (a * b + b * c)


def test_a_frozen_module_costs_its_forward_only() -> None:
    n, a, b = 3, 4, 5
    frozen, trained = nn.Linear(a, b).requires_grad_(False), nn.Linear(b, 2)
    x = torch.randn(n, a)
    step = count_train_flops(lambda: trained(frozen(x)).sum().backward())
    assert step.macs == n * a * b + 2 * n * b * 2  # frozen: forward only; trained: forward + weight gradient


@pytest.mark.parametrize("input_grad", [False, True])
def test_convolution_backward(input_grad: bool) -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(2, 3, 6, 6, requires_grad=input_grad)
    fwd = 2 * 8 * 6 * 6 * 3 * 9  # outputs x C_in x kernel
    step = _step(conv, x)
    assert step.macs == (3 if input_grad else 2) * fwd
    assert "aten::convolution_backward" in step.by_operator


def test_attention_backward_is_twice_its_forward() -> None:
    q, k, v = (torch.randn(2, 4, 8, 16, requires_grad=True) for _ in range(3))
    fwd = 2 * 4 * 8 * 8 * (16 + 16)
    step = count_train_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    assert step.macs == 3 * fwd
    assert not [op for op in step.uncounted if "attention" in op]


def test_the_callers_grad_mode_is_restored() -> None:
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        count_train_flops(lambda: lin(torch.randn(1, 2)).sum().backward(), lin)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
