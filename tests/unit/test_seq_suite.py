"""seq-backbones: matched backbone sizes, exact MACs against closed forms, and scaling on the counter's MACs."""

from __future__ import annotations

import math

import pytest
import torch

from bench.build import build_model
from bench.models import seq as models
from bench.registry import INPUTS, get_suite
from bench.scaling import analyse
from bench.sizing import resolve_tier
from bench.spec import CellKey, CellSpec, Variant

flops = pytest.importorskip("bench.flops", reason="bench.flops (the MAC counter) is not in this tree")

SUITE = get_suite("seq-backbones")
#: the cost tiers' families (the "micro" accuracy tier adds a reference "cnn" row; see bench.accuracy)
FAMILIES = tuple(v.family for v in resolve_tier(SUITE.tier("100k")))
VARIANTS = [(t.name, v) for t in SUITE.tiers for v in resolve_tier(t)]
REC_VARIANTS = [p for p in VARIANTS if "cell" in p[1].args]
TRF_VARIANTS = [p for p in VARIANTS if p[1].family.startswith("transformer")]
RECURRENT = {"rnn": 1, "gru": 3, "lstm": 4}  # gates: MACs per step per sample are gates * H * (I + H)


def _ids(pairs: list[tuple[str, Variant]]) -> list[str]:
    return [f"{t}-{v.family}" for t, v in pairs]


def _meta(v: Variant) -> torch.nn.Module:
    return build_model(v, device="meta")


def _inputs(v: Variant, t: int, batch: int = 1, device: str = "meta") -> tuple[torch.Tensor, ...]:
    x = torch.zeros(batch, t, dtype=torch.long, device=device)
    return (x, x) if models.resolve_input_kind(v.builder) == "seq2seq" else (x,)


def _backbone_macs(v: Variant, t: int, batch: int = 1) -> int:
    count = flops.count_flops(_meta(v), _inputs(v, t, batch))
    assert not count.uncounted, count.uncounted_summary()
    if "backbone" in count.by_module:
        return count.by_module["backbone"]
    return sum(m for k, m in count.by_module.items() if k.startswith("backbone.") and k.count(".") == 1)


# --- matched sizes -------------------------------------------------------------------------------------------


def test_every_family_is_in_every_tier() -> None:
    assert [t.name for t in SUITE.tiers] == ["100k", "1m", "10m", "micro", "micro-s2s", "micro-tag"]
    for tier in SUITE.tiers[:3]:
        assert [v.family for v in resolve_tier(tier)] == list(FAMILIES)
    assert len(FAMILIES) == 9


@pytest.mark.parametrize(("tier", "variant"), VARIANTS, ids=_ids(VARIANTS))
def test_backbone_params_within_5_percent_of_the_tier(tier: str, variant: Variant) -> None:
    model = _meta(variant)
    backbone = models.backbone_params(model)
    assert variant.achieved_params == backbone, "the solver must count the backbone (VariantSpec.count)"
    assert abs(backbone / variant.target_params - 1) <= 0.05
    assert variant.tolerance == 0.05
    # The embedding and head are outside the budget, and present.
    assert sum(p.numel() for p in model.parameters()) > backbone


def test_transformer_heads_divide_the_width() -> None:
    for _, v in VARIANTS:
        args = v.args
        if "heads" in args:
            assert args["width"] % args["heads"] == 0
            assert 8 <= args["width"] // args["heads"] <= 96


# --- MACs against closed forms (REFERENCE.md section 2) ------------------------------------------------------


def _recurrent_closed_form(args: dict, t: int, batch: int) -> int:
    g, h, layers = RECURRENT[args["cell"]], args["width"], args["layers"]
    dirs = 2 if args.get("bidirectional") else 1
    per_step = 0
    for layer in range(layers):
        i = h if layer == 0 else dirs * h  # layer >= 2 takes the previous layer's (both directions') output
        per_step += dirs * g * h * (i + h)
    return per_step * t * batch


@pytest.mark.parametrize("t", [20, 64, 1000])
@pytest.mark.parametrize(("tier", "variant"), REC_VARIANTS, ids=_ids(REC_VARIANTS))
def test_recurrent_macs_match_the_closed_form(tier: str, variant: Variant, t: int) -> None:
    assert _backbone_macs(variant, t, batch=2) == _recurrent_closed_form(variant.args, t, batch=2)


def test_reference_regression_values() -> None:
    # REFERENCE.md section 2: I=16, H=32, T=20, B=1.
    x = torch.zeros(1, 20, 16)
    for block, expected in ((torch.nn.LSTM, 122_880), (torch.nn.GRU, 92_160), (torch.nn.RNN, 30_720)):
        assert flops.count_flops(block(16, 32, batch_first=True), (x,)).macs == expected


def _encoder_layer(n: int, d: int, r: int = 4) -> int:
    return 4 * n * d * d + 2 * n * n * d + 2 * r * n * d * d  # attention (4ND^2 + 2N^2 D) + FFN


@pytest.mark.parametrize("t", [64, 256, 1000])
@pytest.mark.parametrize(("tier", "variant"), TRF_VARIANTS, ids=_ids(TRF_VARIANTS))
def test_transformer_macs_match_the_closed_form(tier: str, variant: Variant, t: int) -> None:
    a = variant.args
    d, layers, r = a["width"], a["layers"], a.get("ffn_ratio", 4)
    if variant.family == "transformer_seq2seq":
        # decoder layer: causal self-attention (computed dense) + cross-attention (2NqD^2 + 2NkD^2 + 2NqNkD
        # with Nq = Nk = N) + FFN
        dec = (4 * t * d * d + 2 * t * t * d) + (4 * t * d * d + 2 * t * t * d) + 2 * r * t * d * d
        expected = layers * (_encoder_layer(t, d, r) + dec)
    else:
        expected = layers * _encoder_layer(t, d, r)
    assert _backbone_macs(variant, t) == expected


@pytest.mark.parametrize("t", [64, 500])
def test_gru_seq2seq_macs_match_the_closed_form(t: int) -> None:
    for tier, v in VARIANTS:
        if v.family != "gru_seq2seq":
            continue
        h, layers = v.args["width"], v.args["layers"]
        grus = 2 * layers * 3 * h * (2 * h) * t  # encoder and decoder GRUs, input = hidden = width
        attention = t * h * h + 2 * t * t * h + t * (2 * h) * h  # W_a, scores + weighted sum, W_c
        assert _backbone_macs(v, t) == grus + attention, tier


# --- scaling on the counter's MACs ---------------------------------------------------------------------------

LENS = [64, 128, 256, 512, 1024, 2048, 4096]


def _sweep_records(tier: str) -> list[dict]:
    recs = []
    for v in resolve_tier(SUITE.tier(tier)):
        for t in LENS:
            key = {"suite": SUITE.name, "tier": tier, "family": v.family, "model": v.model, "device": "cpu",
                   "dtype": "fp32", "batch_size": 1, "input_shape": [], "seq_len": t, "mode": "infer"}  # fmt: skip
            recs.append({"key": key, "status": "ok", "metrics": {"macs": _backbone_macs(v, t)}})
    return recs


def test_sweep_gives_one_exponent_per_family_attention_between_1_and_2_rising() -> None:
    out = analyse(_sweep_records("1m"), metrics=("macs",))
    fits = {f["family"]: f for f in out["fits"]}
    assert sorted(fits) == sorted(FAMILIES)
    for fam, f in fits.items():
        local = [e["exponent"] for e in f["local"]]
        if fam in ("rnn", "lstm", "gru", "bilstm", "bigru"):
            assert f["exponent"] == pytest.approx(1.0, abs=1e-9), fam
        elif fam.startswith("transformer"):
            assert 1 < f["exponent"] < 2, fam
            assert all(1 < e < 2 for e in local) and local == sorted(local), (fam, local)
            assert local[-1] > 1.5, (fam, local)  # quadratic term dominating by 4096 at width ~200
        else:  # GRU + Luong attention: linear recurrence plus a small quadratic attention term
            assert 1 < f["exponent"] < 2 and local == sorted(local), (fam, local)
    # Crossovers are reported for the declared pairs; per token, attention costs more at every length here.
    pairs = {(c["a"], c["b"]) for c in out["crossovers"]}
    assert ("transformer", "lstm") in pairs and ("transformer_seq2seq", "gru_seq2seq") in pairs


def test_attention_exponent_rises_towards_2_with_length() -> None:
    (_, v) = next(p for p in VARIANTS if p[0] == "100k" and p[1].family == "transformer")
    lens = [64 * 4**i for i in range(5)]  # 64 .. 16384
    ys = [_backbone_macs(v, t) for t in lens]
    local = [math.log(b / a) / math.log(4) for a, b in zip(ys, ys[1:], strict=False)]
    assert local == sorted(local) and local[0] > 1 and 1.9 < local[-1] < 2


# --- inputs and models ---------------------------------------------------------------------------------------


def _cell(v: Variant, t: int | None, device: str = "cpu", mode: str = "infer") -> CellSpec:
    key = CellKey(suite=SUITE.name, tier="100k", family=v.family, model=v.model, device=device, dtype="fp32",
                  batch_size=2, input_shape=(), seq_len=t, mode=mode)  # fmt: skip
    return CellSpec(key=key, variant=v, input_kind=SUITE.input_kind, input_args=SUITE.input_args,
                    profile=SUITE.profile("quick"))  # fmt: skip


def test_inputs_follow_the_builder_and_the_cell() -> None:
    by_family = {v.family: v for v in resolve_tier(SUITE.tier("100k"))}
    (x,) = INPUTS.get("seq")(_cell(by_family["lstm"], 50), 2, "cpu", torch.float32)
    assert x.shape == (2, 50) and x.dtype == torch.long and 0 <= int(x.min()) and int(x.max()) < 256
    src, tgt = INPUTS.get("seq")(_cell(by_family["gru_seq2seq"], 30), 2, "cpu", torch.float32)
    assert src.shape == tgt.shape == (2, 30) and not torch.equal(src, tgt)
    again = INPUTS.get("tokens")(_cell(by_family["lstm"], 50), 2, "cpu", torch.float32)
    assert torch.equal(again[0], x)  # seeded


def test_lengths_above_the_device_cap_are_skipped() -> None:
    from bench.worker import CellSkipped

    v = resolve_tier(SUITE.tier("100k"))[0]
    caps = dict(dict(SUITE.input_args)["max_seq_len"])
    with pytest.raises(CellSkipped, match="cap"):
        INPUTS.get("seq")(_cell(v, caps["cpu"] * 2), 1, "cpu", torch.float32)
    with pytest.raises(CellSkipped, match="cpu/train"):
        INPUTS.get("seq")(_cell(v, caps["cpu/train"] * 2, mode="train"), 1, "cpu", torch.float32)
    with pytest.raises(ValueError, match="seq_len"):
        INPUTS.get("seq")(_cell(v, None), 1, "cpu", torch.float32)


@pytest.mark.parametrize("family", FAMILIES)
def test_models_run_forward_and_backward(family: str) -> None:
    v = next(v for v in resolve_tier(SUITE.tier("100k")) if v.family == family)
    model = build_model(v).train()
    inputs = INPUTS.get("seq")(_cell(v, 16), 2, "cpu", torch.float32)
    out = model(*inputs)
    expected = (2, 16, 256) if len(inputs) == 2 else (2, 10)
    assert out.shape == expected
    out.float().mean().backward()
    assert all(p.grad is not None for p in model.backbone.parameters())


def test_bidirectional_reads_the_final_state_of_both_directions() -> None:
    torch.manual_seed(0)
    model = models.recurrent("gru", width=8, layers=1, bidirectional=True, num_classes=3).eval()
    x = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        out, h = model.backbone(model.embed(x))
        # forward direction ends at the last position, backward at the first
        assert torch.allclose(h[0], out[:, -1, :8]) and torch.allclose(h[1], out[:, 0, 8:])
        assert torch.allclose(model(x), model.head(torch.cat((h[0], h[1]), -1)))


def test_learned_positions_cover_the_longest_profile_length() -> None:
    v = next(v for v in resolve_tier(SUITE.tier("100k")) if v.family == "transformer_learned")
    assert v.args["max_len"] == max(t for p in SUITE.profiles for t in p.seq_lens)
    with pytest.raises(ValueError, match="longer than"):
        models.transformer(width=16, heads=2, pos="learned", max_len=8)(torch.zeros(1, 9, dtype=torch.long))


def test_seq_metric_counts_per_token_and_backbone() -> None:
    from bench.metrics import MetricContext
    from bench.metrics.seq import seq_metric

    for family in ("lstm", "gru_seq2seq"):
        v = next(v for v in resolve_tier(SUITE.tier("100k")) if v.family == family)
        cell = _cell(v, 64)
        model = build_model(v)
        ctx = MetricContext(cell=cell, model=model, inputs=INPUTS.get("seq")(cell, 2, "cpu", torch.float32),
                            device=torch.device("cpu"), dtype=torch.float32)  # fmt: skip
        out = seq_metric(ctx)
        assert out["tokens"] == 128
        assert out["backbone_params"] == v.achieved_params
        assert out["backbone_macs"] == _backbone_macs(v, 64, batch=2)
        assert out["backbone_macs_per_token"] == pytest.approx(out["backbone_macs"] / 128)
        assert out["macs_per_token"] > out["backbone_macs_per_token"]  # + the head
