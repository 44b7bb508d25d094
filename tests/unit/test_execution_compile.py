"""Executions applied to tiny models (issue 14): channels_last inputs, autocast, the first call and compile
seconds, dynamo's graph breaks and recompiles, a sequence model under channels_last skipped, a model that fails
to compile failed in its cell while the others finish.

Dynamo runs with an eager backend here (``picky``, as ``bench.execution.DEFAULT_BACKEND``): the same tracing, graph
breaks and guards without inductor's C++ compile, which takes 10-20 s per model on 2 cores. One test (slow)
compiles with inductor.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from bench import execution, runner
from bench.result import Status
from bench.spec import CellKey, CellSpec, Profile, Suite, Tier, VariantSpec, freeze

_HERE = __name__  # builders below are found by module name (this module is imported under it)


class TinyCnn(nn.Module):
    """Two convolutions and a head: a few layers, 3x8x8 inputs."""

    def __init__(self, graph_break: bool = False) -> None:
        super().__init__()
        self.conv1, self.conv2, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3), nn.Linear(8, 4)
        self.graph_break = graph_break

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x).relu()).relu().mean((2, 3))
        if self.graph_break:
            torch._dynamo.graph_break()
        return self.head(y)


class WontCompile(TinyCnn):
    """A model the test backend refuses (``picky``): a compiler failure, as inductor's would look."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("refuse", torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x * self.refuse)


def picky(gm: torch.fx.GraphModule, example_inputs: list) -> object:
    """dynamo's eager backend, except for graphs of a model with a ``refuse`` module (``WontCompile``)."""
    if any("refuse" in f"{n.name} {n.target}" for n in gm.graph.nodes):
        raise RuntimeError("this model cannot be compiled")
    return gm.forward


def tiny(graph_break: bool = False) -> nn.Module:
    return TinyCnn(graph_break)


def wont_compile() -> nn.Module:
    return WontCompile()


def embed() -> nn.Module:
    return nn.Sequential(nn.Embedding(16, 8), nn.Flatten(), nn.LazyLinear(4))


@pytest.fixture(autouse=True)
def dynamo_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(execution, "DEFAULT_BACKEND", picky)
    yield
    torch._dynamo.reset()  # this process's compiled code: ours only (a test process)


def _cell(execution_name: str, builder: str = f"{_HERE}:tiny", args: dict | None = None, input_kind: str = "image",
          metrics: tuple[str, ...] = ("params", "flops", "execution", "latency"), mode: str = "infer") -> CellSpec:  # fmt: skip
    from bench.spec import Variant

    v = Variant(family="f", model="m", builder=builder, model_args=freeze(args or {}), target_params=1,
                achieved_params=1, tolerance=1.0)  # fmt: skip
    key = CellKey(suite="s", tier="t", family="f", model="m", device="cpu", dtype=execution.cell_dtype(execution_name, "fp32"),
                  batch_size=2, input_shape=(3, 8, 8) if input_kind == "image" else (), mode=mode,
                  seq_len=None if input_kind == "image" else 6, execution=execution_name)  # fmt: skip
    prof = Profile(name="p", metrics=metrics, warmup_s=0.01, min_run_time_s=0.02, max_samples=20)
    return CellSpec(key=key, variant=v, input_kind=input_kind, input_args=freeze({"vocab_size": 16}), profile=prof)


def _measure(cell: CellSpec):
    from bench.worker import measure_result

    return measure_result(cell)


def test_channels_last_converts_the_model_and_its_image_inputs() -> None:
    model, x = TinyCnn(), torch.randn(2, 3, 8, 8)
    applied = execution.apply(model, (x,), "channels_last", device="cpu", dtype="fp32")
    (xin,) = applied.inputs
    assert xin.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(
        memory_format=torch.channels_last
    )
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert applied.eager_inputs == (x,)  # MACs are counted on what eager ran
    with pytest.raises(execution.NotApplicable, match="4-D"):
        execution.apply(nn.Linear(8, 4), (torch.randn(2, 8),), "channels_last", device="cpu", dtype="fp32")


def test_autocast_computes_in_the_cell_dtype_with_float32_weights() -> None:
    model = nn.Linear(8, 4)
    applied = execution.apply(model, (torch.randn(2, 8),), "autocast", device="cpu", dtype="bf16")
    out = applied.model(*applied.inputs)
    assert out.dtype == torch.bfloat16 and model.weight.dtype == torch.float32
    assert applied.eager_model is model


def test_an_eager_cell_has_a_first_call_and_no_compile_seconds() -> None:
    r = _measure(_cell("eager"))
    assert r.ok, r.error
    assert r.metrics["first_call_ms"] > 0 and r.metrics["compile_s"] is None
    assert r.metrics["graph_breaks"] is None and r.metrics["dtype_applied"] == "weights"
    assert r.to_dict()["key"].get("execution") is None


def test_a_compiled_cell_counts_compile_seconds_and_graph_breaks_and_restores_the_counters() -> None:
    from torch._dynamo.utils import counters

    before = {k: dict(v) for k, v in counters.items()}
    r = _measure(_cell("compile", args={"graph_break": True}))
    assert r.ok, r.error
    m = r.metrics
    assert m["compile_s"] > 0 and m["compile_s"] >= m["first_call_ms"] / 1e3
    assert m["graph_breaks"] == 1 and m["recompiles"] == 0
    assert m["macs"] == 2 * (8 * 27 * 64 + 8 * 72 * 36) + 2 * 32  # counted on the eager graph: conv1, conv2, head
    assert r.key.execution == "compile" and r.to_dict()["key"]["execution"] == "compile"
    assert {k: dict(v) for k, v in counters.items()} == before


def test_recompiles_are_counted() -> None:
    model, x = TinyCnn(), torch.randn(2, 3, 8, 8)
    applied = execution.apply(model, (x,), "compile", device="cpu", dtype="fp32")
    try:
        execution.measure_first_call(applied, "infer", torch.device("cpu"))
        assert applied.counts() == {"graph_breaks": 0, "recompiles": 0}
        with torch.inference_mode():
            applied.model(torch.randn(3, 3, 9, 9))  # new shapes: dynamo guards fail and it compiles again
        assert applied.counts()["recompiles"] >= 1
    finally:
        applied.close()


def test_a_sequence_model_under_channels_last_is_skipped_with_the_reason() -> None:
    import bench.models.seq  # noqa: F401 -- registers the tokens input kind

    r = _measure(_cell("channels_last", builder=f"{_HERE}:embed", input_kind="tokens"))
    assert r.status is Status.SKIPPED and "4-D" in (r.error or "") and "\n" not in r.error


def test_a_model_that_fails_to_compile_fails_its_cell_and_the_others_finish(tmp_path: Path) -> None:
    good = VariantSpec(family="good", builder=f"{_HERE}:tiny")
    bad = VariantSpec(family="bad", builder=f"{_HERE}:wont_compile")
    prof = Profile(name="p", executions=("eager", "compile"), metrics=("params", "execution", "latency"),
                   warmup_s=0.01, min_run_time_s=0.02, max_samples=20)  # fmt: skip
    tier = Tier(name="t", target_params=1, tolerance=1e6, input_shape=(3, 8, 8), variants=(bad, good))
    suite = Suite(name="s", description="s", input_kind="image", tiers=(tier,), profiles=(prof,), default_profile="p")
    res = runner.run(suite, runner.RunSettings(devices=("cpu",)), tmp_path, executor=runner.InProcessExecutor())
    status = {(r["key"]["family"], r["key"].get("execution", "eager")): r for r in res.records}
    assert {k: r["status"] for k, r in status.items()} == {("bad", "eager"): "ok", ("bad", "compile"): "failed",
                                                           ("good", "eager"): "ok", ("good", "compile"): "ok"}  # fmt: skip
    err = status[("bad", "compile")]["error"]
    assert err.startswith("execution: ") and "cannot be compiled" in err and "\n" not in err
    assert status[("bad", "compile")]["metrics"]["params"] > 0  # measured before it failed: kept


def test_a_training_cell_compiles_its_whole_step() -> None:
    r = _measure(_cell("compile", metrics=("execution", "latency"), mode="train"))
    assert r.ok, r.error
    assert r.metrics["compile_s"] > 0 and r.metrics["latency_p50_ms"] > 0


@pytest.mark.slow
def test_inductor_compiles_a_tiny_model_into_a_cold_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path: inductor (C++ on CPU; ~10-20 s on 2 cores), the same outputs as eager."""
    import os

    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setattr(execution, "DEFAULT_BACKEND", "inductor")
    before = os.environ.get(execution.CACHE_ENV)
    model, x = TinyCnn().eval(), torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        want = model(x)
    applied = execution.apply(model, (x,), "compile", device="cpu", dtype="fp32", cold_cache=True)
    cache = os.environ[execution.CACHE_ENV]
    try:
        first = execution.measure_first_call(applied, "infer", torch.device("cpu"))
        assert first["compile_s"] > 0 and applied.counts() == {"graph_breaks": 0, "recompiles": 0}
        with torch.inference_mode():
            torch.testing.assert_close(applied.model(x), want, rtol=1e-4, atol=1e-5)
        assert any(Path(cache).iterdir())  # compiled into the fresh folder
    finally:
        applied.close()
    # put back (inductor itself may then set its default folder there: it does so on any later cache look-up)
    assert os.environ.get(execution.CACHE_ENV) in (before, default_cache_dir()) and not Path(cache).exists()
