"""``count_train_flops`` on CUDA kernels: a training step counts on the GPU what it counts on the CPU.

On CUDA, attention's backward runs the flash / memory-efficient / cuDNN backward kernels (with torch's head-dim
padding in bf16), convolutions ``cudnn_convolution`` and its backward through ``convolution_backward``; the
pretraining suite's budgets must not depend on which device counted them.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.flops import count_train_flops

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("head_dim", [16, 20])  # 20: padded to 24 by the fused kernels in bf16
def test_attention_backward_counts_the_same_on_cuda(dtype: torch.dtype, head_dim: int) -> None:
    def step(device: str) -> int:
        q, k, v = (torch.randn(2, 4, 32, head_dim, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
        c = count_train_flops(lambda: F.scaled_dot_product_attention(q, k, v).float().sum().backward())
        assert not [op for op in c.uncounted if "attention" in op], c.uncounted
        return c.macs

    assert step("cuda") == step("cpu") == 3 * 2 * 4 * 32 * 32 * 2 * head_dim


@pytest.mark.parametrize("objective", ["mae", "simclr", "moco", "clip", "mlm", "denoise"])
def test_pretraining_step_costs_match_on_cuda(objective: str) -> None:
    from bench.pretraining import budget
    from bench.pretraining.objective import build, example_batch

    torch.manual_seed(0)
    cpu = build(objective, width=32)
    batch = example_batch(cpu, 8)
    gpu = build(objective, width=32).cuda()
    assert budget.step_cost(gpu, tuple(t.cuda() for t in batch)).step_macs == budget.step_cost(cpu, batch).step_macs
