"""bench.scaling: exponents, local exponents and crossovers against synthetic curves with known answers."""

from __future__ import annotations

import math

import pytest

from bench import registry
from bench.scaling import analyse, crossings, crossover, fit_power_law, local_exponents
from bench.spec import Suite, Tier, VariantSpec

LENS = [64, 128, 256, 512, 1024, 2048, 4096]


@pytest.mark.parametrize("k", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
def test_fit_recovers_exponent_and_coefficient(k: float) -> None:
    ys = [3.5 * t**k for t in LENS]
    fit = fit_power_law(LENS, ys)
    assert fit["exponent"] == pytest.approx(k, abs=1e-12)
    assert fit["coef"] == pytest.approx(3.5, rel=1e-9)
    assert fit["r2"] == pytest.approx(1.0)


def test_fit_r2_drops_with_noise_and_stays_near_exponent() -> None:
    noise = [1.1, 0.9, 1.05, 0.95, 1.1, 0.92, 1.0]
    fit = fit_power_law(LENS, [t**1.0 * e for t, e in zip(LENS, noise, strict=True)])
    assert 0.95 < fit["exponent"] < 1.05
    assert 0.99 < fit["r2"] < 1.0


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        fit_power_law([64], [1.0])
    with pytest.raises(ValueError):
        fit_power_law([64, 64], [1.0, 2.0])
    with pytest.raises(ValueError):
        fit_power_law([64, 128], [0.0, 1.0])


def test_local_exponents_of_linear_plus_quadratic_rise_from_1_towards_2() -> None:
    # a*T + b*T^2 with the two terms equal at T = 1024: attention's shape (projections + N^2 D).
    ys = [1024 * t + t * t for t in LENS]
    loc = [e["exponent"] for e in local_exponents(LENS, ys)]
    assert all(1 < e < 2 for e in loc)
    assert loc == sorted(loc)
    # The local exponent between T1 and T2 is the slope of the chord: check one exactly.
    assert loc[0] == pytest.approx(math.log(ys[1] / ys[0]) / math.log(2))
    assert [(e["from"], e["to"]) for e in local_exponents(LENS, ys)] == list(zip(LENS, LENS[1:], strict=False))


def test_crossover_of_two_power_laws_is_exact_in_log_space() -> None:
    # a = T^2 / 1000, b = T: equal at T = 1000; both straight lines in log-log, so interpolation is exact.
    a = [t * t / 1000 for t in LENS]
    b = [float(t) for t in LENS]
    assert crossover(LENS, a, b) == pytest.approx(1000.0, rel=1e-9)
    assert crossings(LENS, a, b) == [{"seq_len": pytest.approx(1000.0), "direction": "up"}]
    # Seen from the other side it is a crossing downwards, not a "passes".
    assert crossover(LENS, b, a) is None
    assert crossings(LENS, b, a)[0]["direction"] == "down"


def test_no_crossover_in_range() -> None:
    assert crossover(LENS, [2.0 * t for t in LENS], [float(t) for t in LENS]) is None
    assert crossover(LENS, [0.5 * t for t in LENS], [float(t) for t in LENS]) is None


def test_touching_at_a_grid_point() -> None:
    b = [10.0] * len(LENS)
    a = [5.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0]  # equal at 256, above after
    assert crossover(LENS, a, b) == 256.0
    touch = [5.0, 8.0, 10.0, 8.0, 7.0, 6.0, 5.0]  # meets b at 256 and goes back down: no crossing
    assert crossings(LENS, touch, b) == []


def _records(family: str, fn, mode: str = "infer", metric: str = "macs", status: str = "ok") -> list[dict]:
    key = {"suite": "toy", "tier": "t", "family": family, "model": family, "device": "cpu", "dtype": "fp32",
           "batch_size": 1, "input_shape": [], "mode": mode}  # fmt: skip
    return [{"key": {**key, "seq_len": t}, "status": status, "metrics": {metric: fn(t)}} for t in LENS]


def test_analyse_fits_every_series_and_reports_declared_crossovers() -> None:
    recs = _records("attn", lambda t: 1024 * t + t * t) + _records("rnn", lambda t: 1500.0 * t)
    recs += _records("rnn", lambda t: 7.0, status="failed")  # failed cells are ignored
    out = analyse(recs, metrics=("macs", "latency_p50_ms"), pairs=[("attn", "rnn")])
    assert out["metrics"] == ["macs"]  # no record has latency
    fits = {f["family"]: f for f in out["fits"]}
    assert set(fits) == {"attn", "rnn"}
    assert fits["rnn"]["exponent"] == pytest.approx(1.0)
    assert 1 < fits["attn"]["exponent"] < 2
    assert fits["attn"]["n"] == len(LENS) and fits["attn"]["seq_lens"] == LENS
    (c,) = out["crossovers"]
    # 1024 T + T^2 = 1500 T  <=>  T = 476; the log-log interpolation between 256 and 512 lands close.
    assert c["relation"] == "crosses" and 256 < c["seq_len"] < 512
    assert c["seq_len"] == pytest.approx(476, rel=0.03)
    assert {k: c[k] for k in ("tier", "device", "mode", "metric", "a", "b")} == {
        "tier": "t", "device": "cpu", "mode": "infer", "metric": "macs", "a": "attn", "b": "rnn"}  # fmt: skip


def test_analyse_keeps_modes_apart_and_skips_single_points() -> None:
    recs = _records("rnn", lambda t: float(t)) + _records("rnn", lambda t: 3.0 * t * t, mode="train")
    recs += [{"key": {**recs[0]["key"], "family": "lonely"}, "status": "ok", "metrics": {"macs": 1.0}}]
    out = analyse(recs, metrics=("macs",), pairs=[])
    by_mode = {f["mode"]: f["exponent"] for f in out["fits"]}
    assert by_mode == {"infer": pytest.approx(1.0), "train": pytest.approx(2.0)}
    assert out["crossovers"] == []


def _register_toy_suite(monkeypatch: pytest.MonkeyPatch, **fields: object) -> None:
    """Register suite "toy" (families attn and rnn) for this test only."""
    variants = tuple(VariantSpec(family=f, builder="torch.nn:Linear") for f in ("attn", "rnn"))
    tier = Tier(name="t", target_params=1, variants=variants, input_shape=())
    suite = Suite(name="toy", description="toy", input_kind="tokens", tiers=(tier,), profiles=(), **fields)
    registry.SUITES.names()  # load the built-in suites first
    monkeypatch.setitem(registry.SUITES._items, "toy", lambda: suite)
    monkeypatch.setitem(registry._suite_cache, "toy", suite)


def test_analyse_uses_the_suites_declared_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    recs = _records("attn", lambda t: t * t / 1000) + _records("rnn", lambda t: float(t))
    assert analyse(recs, metrics=("macs",))["crossovers"] == []  # an unknown suite declares no pairs
    _register_toy_suite(monkeypatch, crossovers=(("attn", "rnn"),))
    (c,) = analyse(recs, metrics=("macs",))["crossovers"]
    assert c["seq_len"] == pytest.approx(1000.0)


def test_the_built_in_sequence_suite_declares_its_crossovers() -> None:
    from bench.registry import get_suite

    assert ("transformer", "lstm") in get_suite("seq-backbones").crossovers
    assert get_suite("cv-backbones").crossovers == ()


def test_analyse_without_seq_len_is_empty() -> None:
    recs = _records("rnn", float)
    for r in recs:
        r["key"]["seq_len"] = None
    assert analyse(recs, pairs=[])["fits"] == []
