"""cv-backbones: every family in every tier, sized within tolerance, buildable, and returning logits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch

from bench.build import build_model, count_params
from bench.registry import get_suite, list_suites
from bench.sizing import resolve_suite
from bench.spec import Suite, Variant

FAMILIES = {"vgg", "inception", "resnet", "densenet", "efficientnet", "convnext", "vit", "deit", "swin", "cait", "t2t"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def suite() -> Suite:
    return get_suite("cv-backbones")


@pytest.fixture(scope="module")
def resolved(suite: Suite) -> dict[str, tuple[Variant, ...]]:
    return resolve_suite(suite)


def _variants(tier: str) -> list[Variant]:
    return list(resolve_suite(get_suite("cv-backbones"))[tier])


def test_registered() -> None:
    assert "cv-backbones" in list_suites()


def test_tiers_and_inputs(suite: Suite) -> None:
    assert suite.name == "cv-backbones" and suite.input_kind == "image"
    assert {t.name: t.target_params for t in suite.tiers} == {"tiny": 5_500_000, "small": 25_000_000,
                                                               "micro": 500_000}  # fmt: skip
    for t in suite.tiers:
        # micro: the accuracy tier (bench.accuracy), 32x32 inputs, trained on digits
        assert t.input_shape == ((3, 32, 32) if t.name == "micro" else (3, 224, 224)) and t.tolerance == 0.10


def test_every_tier_has_every_family_once(resolved: dict[str, tuple[Variant, ...]]) -> None:
    for variants in resolved.values():
        families = [v.family for v in variants]
        assert sorted(families) == sorted(FAMILIES)


def test_every_variant_within_tolerance(resolved: dict[str, tuple[Variant, ...]]) -> None:
    off = [f"{t}/{v.model}: {v.param_error:+.1%}" for t, vs in resolved.items() for v in vs
           if abs(v.param_error) > v.tolerance]  # fmt: skip
    assert not off, off


def test_achieved_params_are_real_counts(resolved: dict[str, tuple[Variant, ...]]) -> None:
    for variants in resolved.values():
        for v in variants:
            assert v.achieved_params == count_params(v.builder, v.model_args)


def test_model_names_unique_and_readable(resolved: dict[str, tuple[Variant, ...]]) -> None:
    for variants in resolved.values():
        names = [v.model for v in variants]
        assert len(set(names)) == len(names)
        for v in variants:
            assert (v.knob is None) == ("[" not in v.model)
            if v.knob is not None:
                assert f"[{v.knob}={v.knob_value:g}" in v.model or f"[{v.knob}={v.knob_value}" in v.model
    small = {v.family: v for v in resolved["small"]}
    assert small["convnext"].model == f"convnext_tiny[dims={small['convnext'].knob_value}]"
    assert small["convnext"].args["dims"] == tuple(small["convnext"].knob_value * m for m in (1, 2, 4, 8))


def test_canonical_variants_are_canonical_timm_models(resolved: dict[str, tuple[Variant, ...]]) -> None:
    for variants in resolved.values():
        for v in variants:
            if v.knob is None:
                assert v.builder == f"timm:{v.model}" and timm.is_model(v.model)
                assert v.args == {}
    canonical = {v.model: v.achieved_params for vs in resolved.values() for v in vs if v.knob is None}
    # REFERENCE.md §4 (timm results CSVs)
    assert canonical["resnet50"] == pytest.approx(25.56e6, rel=1e-3)
    assert canonical["efficientnet_b0"] == pytest.approx(5.29e6, rel=1e-3)
    assert {"resnet10t", "convnext_femto", "vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224",
            "inception_v3"} <= set(canonical)  # fmt: skip


def test_knob_variants_keep_their_layout(resolved: dict[str, tuple[Variant, ...]]) -> None:
    for variants in resolved.values():
        v = {x.family: x for x in variants}
        if "embed_dim" in v["vit"].args:
            d, h = v["vit"].args["embed_dim"], v["vit"].args["num_heads"]
            assert d % h == 0 and 32 <= d // h <= 96  # heads divide the width; ViT-like head dims
            assert v["deit"].args["embed_dim"] % v["deit"].args["num_heads"] == 0
        heads = v["swin"].args.get("num_heads", (3, 6, 12, 24))  # the micro tier declares (2, 4, 8)
        assert all(v["swin"].args["embed_dim"] * 2**i % h == 0 for i, h in enumerate(heads))


def test_building_on_meta_is_fast(resolved: dict[str, tuple[Variant, ...]]) -> None:
    t = time.perf_counter()
    for variants in resolved.values():
        for v in variants:
            build_model(v, device="meta")
    assert time.perf_counter() - t < 10.0


def test_deit_is_distilled_and_vgg_is_timm_vgg(resolved: dict[str, tuple[Variant, ...]]) -> None:
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vgg import VGG

    for variants in resolved.values():
        v = {x.family: x for x in variants}
        assert isinstance(build_model(v["deit"], device="meta"), VisionTransformerDistilled)
        assert isinstance(build_model(v["vgg"], device="meta"), VGG)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tiny_forward_returns_logits(family: str) -> None:
    (v,) = [x for x in _variants("tiny") if x.family == family]
    torch.manual_seed(0)
    model = build_model(v)
    with torch.inference_mode():
        y = model(torch.randn(1, 3, 224, 224))
    assert isinstance(y, torch.Tensor) and y.shape == (1, 1000) and torch.isfinite(y).all()


def test_train_mode_forward_returns_a_tensor() -> None:
    # DeiT's distilled head and GoogLeNet's auxiliary heads return tuples in training unless configured not to.
    for v in _variants("tiny"):
        if v.family in ("deit", "inception"):
            y = build_model(v).train()(torch.randn(2, 3, 224, 224))
            assert isinstance(y, torch.Tensor) and y.shape == (2, 1000)


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_small_forward_returns_logits(family: str) -> None:
    (v,) = [x for x in _variants("small") if x.family == family]
    with torch.inference_mode():
        y = build_model(v)(torch.randn(1, 3, 224, 224))
    assert isinstance(y, torch.Tensor) and y.shape == (1, 1000)


def test_worker_process_can_rebuild_suite_builders(resolved: dict[str, tuple[Variant, ...]]) -> None:
    # A worker starts with nothing imported: "bench.suites.cv_backbones:vgg" must resolve from a source tree.
    v = next(x for x in resolved["tiny"] if x.family == "vgg")
    code = ("from bench.build import count_params; import sys; "
            f"print(count_params({v.builder!r}, {v.model_args!r}))")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == v.achieved_params


def test_profiles_fit_their_budgets(suite: Suite) -> None:
    assert suite.profile().name == "default"
    quick, default, full = (suite.profile(n) for n in ("quick", "default", "full"))
    assert quick.tiers == ("tiny",) and quick.batch_sizes == (1,) and quick.dtypes == ("fp32",)
    assert default.tiers is None and default.batch_sizes == (1, 8) and default.dtypes == ("fp32",)
    assert set(default.metrics) >= {"params", "flops", "memory", "latency"}
    assert full.batch_sizes == (1, 8, 32) and set(full.dtypes) == {"fp32", "bf16"}
    # ~5 s per cell for process start, build and FLOP counting, plus the measuring windows (2-core CPU).
    per_cell = 5.0

    def estimate(p: object, cells: int) -> float:
        return cells * (per_cell + p.warmup_s + p.min_run_time_s)  # type: ignore[attr-defined]

    assert estimate(quick, 11) < 0.6 * 120
    assert estimate(default, 44) < 0.6 * 15 * 60
