"""The matched-size solver and model building, against closed forms of a synthetic builder."""

from __future__ import annotations

import logging
import sys
import time
import types
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pytest
import torch
from torch import nn

from bench.build import build_model, count_params, load_callable, resolve_builder
from bench.errors import UnknownNameError, UsageError
from bench.sizing import count_macs, knob_args, resolve_suite, resolve_tier, solve
from bench.spec import Knob, Suite, Tier, VariantSpec, freeze

HERE = __name__  # builders below are found by "<this module>:<function>", as a suite's would be
STACK = f"{HERE}:linear_stack"
BUILDS: list[dict[str, Any]] = []  # every call of linear_stack, to count how many configurations the solver built


def linear_stack(width: int, depth: int = 2, in_features: int = 8, out_features: int = 4) -> nn.Module:
    """in -> width -> (depth - 1) x (width -> width) -> out, all with bias."""
    BUILDS.append({"width": width, "depth": depth, "in_features": in_features})
    dims = [in_features] + [width] * depth + [out_features]
    return nn.Sequential(*(nn.Linear(a, b) for a, b in pairwise(dims)))


def stack_params(width: int, depth: int = 2, in_features: int = 8, out_features: int = 4) -> int:
    """Closed form of linear_stack's parameter count."""
    return (in_features + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * out_features


def stack_macs(width: int, depth: int = 2, in_features: int = 8, out_features: int = 4) -> int:
    """Closed form of linear_stack's MACs for one sample."""
    return in_features * width + (depth - 1) * width * width + width * out_features


def double_depth(base: int) -> dict[str, Any]:
    """A derive function: the knob's value sets the width, and the depth follows from it."""
    return {"width": base, "depth": 1 + base // 16}


WIDTHS = Knob("width", tuple(range(4, 257, 4)))


def _closest(values: tuple[int, ...], f: Any, target: int) -> int:
    """Oracle: brute force over the whole grid, ties to the smaller value."""
    return min(values, key=lambda v: (abs(f(v) - target), v))


# --- build --------------------------------------------------------------------------------------------------


def test_count_params_matches_closed_form() -> None:
    for w, d in [(4, 1), (16, 2), (100, 5)]:
        assert count_params(STACK, {"width": w, "depth": d}) == stack_params(w, d)


def test_count_params_builds_on_meta_and_caches() -> None:
    BUILDS.clear()
    args = {"width": 4096, "depth": 8, "in_features": 11}  # 117M parameters: instant on meta
    t = time.perf_counter()
    assert count_params(STACK, args) == stack_params(4096, 8, 11)
    assert count_params(STACK, freeze(args)) == stack_params(4096, 8, 11)  # frozen pairs work too
    assert time.perf_counter() - t < 1.0
    assert len(BUILDS) == 1  # the second call came from the cache


def test_count_params_of_a_submodule() -> None:
    assert count_params(STACK, {"width": 5, "depth": 3}, submodule="1") == 5 * 5 + 5  # the first width->width
    with pytest.raises(UnknownNameError, match="submodule"):
        count_params(STACK, {"width": 5}, submodule="head")


def test_build_model_uses_args_overrides_and_device() -> None:
    spec = VariantSpec(family="mlp", builder=STACK, model_args=freeze({"width": 6}))
    model = build_model(spec, out_features=3)
    assert not model.training  # built for inference
    assert model(torch.zeros(2, 8)).shape == (2, 3)
    meta = build_model(spec, device="meta")
    assert next(meta.parameters()).device.type == "meta"


def test_build_timm_model() -> None:
    spec = VariantSpec(family="resnet", builder="timm:resnet18", model_args=freeze({"num_classes": 10}))
    assert build_model(spec, device="meta").fc.out_features == 10
    assert count_params("timm:resnet18") == 11_689_512  # REFERENCE.md §4: 11.69M


def test_unknown_timm_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="resnet50") as e:
        resolve_builder("timm:resnet5O")
    assert "timm.list_models('resnet5O*')" in str(e.value) and len(str(e.value)) < 300


@pytest.mark.parametrize("builder", ["resnet50", "timm:", ":f", "no_such_module_xyz:f"])
def test_bad_builder_strings(builder: str) -> None:
    with pytest.raises(UsageError, match="bad builder"):
        resolve_builder(builder)


def not_a_model(**kwargs: Any) -> None:
    """A builder that forgets to return its model."""


def test_builder_must_return_a_module() -> None:
    with pytest.raises(UsageError, match="returned NoneType"):
        count_params(f"{HERE}:not_a_model")


def test_missing_builder_function() -> None:
    with pytest.raises(UnknownNameError, match="linear_stack"):
        load_callable(f"{HERE}:linear_stak", "builder")


# --- solve: params ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [1, 500, 20_000, 34_567, 50_000, 66_000, 10**9])
def test_solve_hits_the_closest_grid_value(target: int) -> None:
    value, achieved = solve(STACK, {"depth": 2}, WIDTHS, target)
    assert value == _closest(WIDTHS.values, stack_params, target)
    assert achieved == stack_params(value)


def test_solve_bisects() -> None:
    BUILDS.clear()
    knob = Knob("width", tuple(range(1, 1025)))
    value, _ = solve(STACK, {"in_features": 13}, knob, stack_params(700, 2, 13) + 5)
    assert value == 700
    assert len(BUILDS) <= 14  # log2(1024) bisection steps plus neighbours, not 1024 builds


def test_solve_on_a_plateau_grid() -> None:
    # Counts that repeat (non-strictly monotone, like rounded channel counts) still bisect correctly.
    knob = Knob("width", tuple(w // 3 * 3 for w in range(3, 300)))
    target = stack_params(150) + 1
    value, achieved = solve(STACK, {}, knob, target)
    assert value == 150 and achieved == stack_params(150)


def test_solve_with_derive() -> None:
    knob = Knob("base", tuple(range(8, 129, 8)), derive=f"{HERE}:double_depth")
    assert knob_args({"in_features": 8}, knob, 32) == {"in_features": 8, "width": 32, "depth": 3}

    def params(b: int) -> int:
        return stack_params(**double_depth(b))

    value, achieved = solve(STACK, {}, knob, 40_000)
    assert value == _closest(knob.values, params, 40_000)
    assert achieved == params(value)


@pytest.mark.parametrize("values", [(), (8, 4, 16)])
def test_solve_rejects_empty_or_unsorted_grids(values: tuple[int, ...]) -> None:
    with pytest.raises(UsageError):
        solve(STACK, {}, Knob("width", values), 1000)


def test_solve_rejects_unknown_measure() -> None:
    with pytest.raises(UsageError, match="measure"):
        solve(STACK, {}, WIDTHS, 1000, measure="flops")
    with pytest.raises(UsageError, match="input_shape"):
        solve(STACK, {}, WIDTHS, 1000, measure="macs")


# --- solve: MACs --------------------------------------------------------------------------------------------


@dataclass
class _Counts:
    macs: int


def _fake_count_flops(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> _Counts:
    """Stand-in for bench.flops.count_flops: MACs of Linear layers for the inputs' batch."""
    batch = inputs[0].shape[0]
    return _Counts(sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear)) * batch)


@pytest.fixture
def fake_flops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bench.flops", types.SimpleNamespace(count_flops=_fake_count_flops))
    count_macs.cache_clear()
    yield
    count_macs.cache_clear()


@pytest.mark.parametrize("target", [3_000, 25_000, 60_000])
def test_solve_on_macs(fake_flops: None, target: int) -> None:
    value, achieved = solve(STACK, {"depth": 2}, WIDTHS, target, measure="macs", input_shape=(8,))
    assert value == _closest(WIDTHS.values, stack_macs, target)
    assert achieved == stack_macs(value)


def test_solve_on_macs_with_the_project_counter() -> None:
    try:
        from bench.flops import count_flops  # noqa: F401
    except ImportError:
        pytest.skip("bench.flops.count_flops is not written yet")

    count_macs.cache_clear()
    value, achieved = solve(STACK, {"depth": 3}, WIDTHS, 40_000, measure="macs", input_shape=(8,))
    assert value == _closest(WIDTHS.values, lambda w: stack_macs(w, 3), 40_000)
    assert achieved == stack_macs(value, 3)


# --- resolve ------------------------------------------------------------------------------------------------


def _tier(*variants: VariantSpec, target: int = 20_000) -> Tier:
    return Tier(name="t", target_params=target, variants=variants, input_shape=(8,))


def test_resolve_tier_records_canonical_and_solved_variants() -> None:
    tier = _tier(
        VariantSpec("canon", STACK, model_args=freeze({"width": 100})),
        VariantSpec("knobbed", STACK, model_args=freeze({"depth": 3}), knob=WIDTHS, name="mlp3"),
        VariantSpec("derived", STACK, knob=Knob("base", tuple(range(8, 129, 8)), derive=f"{HERE}:double_depth")),
    )
    canon, knobbed, derived = resolve_tier(tier)
    assert (canon.model, canon.knob, canon.achieved_params) == ("linear_stack", None, stack_params(100))
    assert canon.target_params == 20_000 and canon.tolerance == 0.10
    assert knobbed.knob == "width" and knobbed.args == {"depth": 3, "width": knobbed.knob_value}
    assert knobbed.knob_value == _closest(WIDTHS.values, lambda w: stack_params(w, 3), 20_000)
    assert knobbed.model == f"mlp3[width={knobbed.knob_value}]"
    assert abs(knobbed.param_error) < 0.05
    # derived integer arguments appear in the display name; the knob's own name is not a model argument
    assert derived.model == f"linear_stack[base={derived.knob_value},depth={derived.args['depth']}]"
    assert "base" not in derived.args
    assert resolve_tier(tier) is resolve_tier(tier)  # cached


@pytest.mark.skipif(not hasattr(VariantSpec, "count"), reason="VariantSpec has no count field")
def test_resolve_sizes_the_counted_submodule() -> None:
    # Budget on the hidden layers only ("1" is the width x width layer): its params, not the whole model's.
    spec = VariantSpec("mlp", STACK, model_args=freeze({"depth": 2}), knob=WIDTHS, count="1")  # type: ignore[call-arg]
    (v,) = resolve_tier(_tier(spec, target=10_000))
    assert v.knob_value == _closest(WIDTHS.values, lambda w: w * w + w, 10_000) == 100
    assert v.achieved_params == 100 * 100 + 100


def test_resolve_out_of_tolerance_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    tier = _tier(VariantSpec("canon", STACK, model_args=freeze({"width": 10})))
    with caplog.at_level(logging.WARNING, logger="bench.sizing"):
        (v,) = resolve_tier(tier)
    assert v.param_error == pytest.approx(stack_params(10) / 20_000 - 1)
    assert abs(v.param_error) > v.tolerance
    assert "tolerance" in caplog.text


def test_resolve_tells_families_on_one_builder_apart() -> None:
    tier = _tier(VariantSpec("a", STACK, model_args=freeze({"width": 10})),
                 VariantSpec("b", STACK, model_args=freeze({"width": 12})),
                 VariantSpec("c", STACK, model_args=freeze({"width": 14}), name="other"))  # fmt: skip
    assert [v.model for v in resolve_tier(tier)] == ["linear_stack@a", "linear_stack@b", "other"]


def test_resolve_rejects_duplicate_model_names_in_a_family() -> None:
    tier = _tier(VariantSpec("a", STACK, model_args=freeze({"width": 10})),
                 VariantSpec("a", STACK, model_args=freeze({"width": 12})))  # fmt: skip
    with pytest.raises(UsageError, match="both named"):
        resolve_tier(tier)


def test_resolve_suite_covers_every_tier() -> None:
    tiers = (_tier(VariantSpec("a", STACK, knob=WIDTHS)),
             Tier(name="u", target_params=60_000, variants=(VariantSpec("a", STACK, knob=WIDTHS),)))  # fmt: skip
    suite = Suite(name="s", description="", input_kind="image", tiers=tiers, profiles=())
    resolved = resolve_suite(suite)
    assert list(resolved) == ["t", "u"]
    assert resolved["t"][0].knob_value < resolved["u"][0].knob_value


def test_macs_targeting_recovers_vit_small() -> None:
    # REFERENCE.md §2: ViT-S/16 at 224 is 4.5989 GMACs (closed form); the solver must land on embed_dim 384.
    try:
        from bench.flops import count_flops  # noqa: F401
    except ImportError:
        pytest.skip("bench.flops.count_flops is not written yet")
    knob = Knob("embed_dim", tuple(range(96, 769, 12)), derive="bench.suites.cv_backbones:vit_width")
    value, macs = solve(
        "timm:vit_small_patch16_224", {}, knob, 4_598_900_000, measure="macs", input_shape=(3, 224, 224)
    )
    assert value == 384
    assert macs == pytest.approx(4.5989e9, rel=1e-4)
