"""seq-backbones on CUDA: the lengths beyond the CPU cap run (forward and a training step) at 16384."""

from __future__ import annotations

import pytest
import torch

from bench.build import build_model
from bench.registry import INPUTS, get_suite
from bench.sizing import resolve_tier
from bench.spec import CellKey, CellSpec

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("family", ["lstm", "transformer", "transformer_learned", "gru_seq2seq", "transformer_seq2seq"])
def test_16k_tokens_on_cuda(family: str) -> None:
    suite = get_suite("seq-backbones")
    v = next(v for v in resolve_tier(suite.tier("100k")) if v.family == family)
    t = max(t for p in suite.profiles for t in p.seq_lens)
    key = CellKey(suite=suite.name, tier="100k", family=family, model=v.model, device="cuda", dtype="fp32",
                  batch_size=1, input_shape=(), seq_len=t, mode="train")  # fmt: skip
    cell = CellSpec(key=key, variant=v, input_kind=suite.input_kind, input_args=suite.input_args,
                    profile=suite.profile("full"))  # fmt: skip
    inputs = INPUTS.get(suite.input_kind)(cell, 1, torch.device("cuda"), torch.float32)  # no cap on CUDA
    model = build_model(v).cuda().train()
    out = model(*inputs)
    out.float().mean().backward()
    torch.cuda.synchronize()
    assert torch.isfinite(out).all()
