"""Issue 17 in the accuracy protocol: DeiT's hard-label distillation (loss, determinism, the budget, untrusted
teacher checkpoints) and the per-position sequence tasks (reversal by greedy decoding, next-signal tagging)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.accuracy import make_task, model_factory
from bench.accuracy.data import Task
from bench.accuracy.distill import distill_seeds, distill_values, has_distillation_token, load_teacher
from bench.accuracy.seq_tasks import decoder_input, greedy_decode
from bench.accuracy.train import evaluate_scores, fit, hard_distillation_loss
from bench.errors import UsageError
from bench.models.taggers import recurrent_tagger, transformer_tagger
from bench.spec import AccuracySpec, VariantSpec, freeze

# --- tasks -------------------------------------------------------------------------------------------------


def test_reverse_is_the_source_reversed_and_deterministic() -> None:
    t = make_task("reverse", length=6, n_symbols=5, n_train=64, n_test=16)
    assert t.objective == "seq2seq" and t.vocab_size == 6 and t.x_train.shape == (64, 6)
    assert torch.equal(t.y_train, t.x_train.flip(1)) and int(t.x_train.max()) < 5
    from bench.accuracy.seq_tasks import reverse

    assert reverse(length=6, n_symbols=5, n_train=64, n_test=16).fingerprint() == t.fingerprint()
    assert reverse(length=6, n_symbols=5, n_train=64, n_test=16, seed=1).fingerprint() != t.fingerprint()
    assert t.chance == pytest.approx(5.0**-6)


def test_lookahead_labels_are_the_next_signal_after_each_position() -> None:
    t = make_task("lookahead", length=12, n_signals=3, n_noise=5, n_train=200, n_test=50)
    assert t.objective == "tagging" and t.num_outputs == 4 and t.vocab_size == 8
    for x, y in zip(t.x_test, t.y_test, strict=True):
        for i in range(12):
            later = [int(v) for v in x[i + 1 :] if v < 3]
            assert int(y[i]) == (later[0] if later else 3)
    bound = t.params["unidirectional_bound"]
    assert t.chance - 0.05 <= bound < 0.9  # a causal model cannot know the future: its best guess is far from 100%


def test_decoder_input_is_the_target_shifted_right_after_bos() -> None:
    t = make_task("reverse", length=4, n_symbols=3, n_train=8, n_test=4)
    y = torch.tensor([[2, 1, 0, 2]])
    assert decoder_input(y, t).tolist() == [[3, 2, 1, 0]]


class _Oracle(nn.Module):
    """A 'model' that knows the answer: the logits at target position i are one-hot on src[L - 1 - i]."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        steps = tgt.shape[1]
        idx = (src.shape[1] - 1 - torch.arange(steps)).clamp(min=0)
        return F.one_hot(src[:, idx], self.vocab).float() * 10 + self.dummy


def test_greedy_decoding_scores_exact_match_and_token_accuracy() -> None:
    t = make_task("reverse", length=5, n_symbols=4, n_train=16, n_test=32)
    oracle = _Oracle(t.vocab_size)
    assert torch.equal(greedy_decode(oracle, t.x_test, t), t.y_test)
    scores = evaluate_scores(oracle, t)
    assert scores["exact_match"] == 1.0 and scores["token_accuracy"] == 1.0 and scores["accuracy"] == 1.0


def _tiny(task: str, family: str) -> VariantSpec:
    builders = {"gru_seq2seq": ("bench.models.seq:gru_seq2seq", {"width": 16, "layers": 1}),
                "transformer_seq2seq": ("bench.models.seq:transformer_seq2seq", {"width": 16, "heads": 2, "layers": 1}),
                "lstm": ("bench.models.taggers:recurrent_tagger", {"cell": "lstm", "width": 16, "layers": 1}),
                "bilstm": ("bench.models.taggers:recurrent_tagger", {"cell": "lstm", "width": 16, "layers": 1,
                                                                     "bidirectional": True})}  # fmt: skip
    builder, args = builders[family]
    return VariantSpec(family, builder, freeze(args))


SPEC = AccuracySpec(task="x", epochs=3, batch_size=32, lr=1e-2, seeds=1)


@pytest.mark.parametrize(("task_name", "family"), [pytest.param("reverse", "gru_seq2seq", marks=pytest.mark.slow),
                                                   ("reverse", "transformer_seq2seq"), ("lookahead", "lstm"),
                                                   ("lookahead", "bilstm")])  # fmt: skip
def test_per_position_training_is_deterministic_and_lowers_the_loss(task_name: str, family: str) -> None:
    args = {"length": 6, "n_train": 256, "n_test": 64}
    task = make_task(task_name, **args)
    build = model_factory(_tiny(task_name, family), task)
    a, _ = fit(build, task, SPEC, seed=0)
    b, _ = fit(build, task, SPEC, seed=0)
    same = ("accuracy", "test_loss", "loss_curve", "token_accuracy", "exact_match")
    assert all(getattr(a, f) == getattr(b, f) for f in same)  # bit-identical (timings aside)
    assert a.loss_curve[-1] < a.loss_curve[0]
    assert a.token_accuracy is not None and a.exact_match is not None and 0 <= a.exact_match <= a.token_accuracy <= 1


def test_a_unidirectional_tagger_cannot_see_the_future_and_a_bidirectional_one_can() -> None:
    torch.manual_seed(0)
    x = torch.randint(0, 10, (1, 8))
    y = x.clone()
    y[0, 6] = (y[0, 6] + 1) % 10  # change one later token
    for model, sees in ((recurrent_tagger("gru", 8, 1, False, 10, 3), False),
                        (recurrent_tagger("gru", 8, 1, True, 10, 3), True),
                        (transformer_tagger(8, 2, 1, vocab_size=10, num_classes=3), True)):  # fmt: skip
        out_x, out_y = model.eval()(x), model(y)
        assert out_x.shape == (1, 8, 3)
        assert torch.allclose(out_x[0, :6], out_y[0, :6]) != sees


# --- distillation ------------------------------------------------------------------------------------------


def test_hard_distillation_loss_is_half_label_half_teacher_argmax() -> None:
    torch.manual_seed(0)
    cls, dist, teacher, y = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 4), torch.randint(0, 4, (5,))
    expected = 0.5 * F.cross_entropy(cls, y) + 0.5 * F.cross_entropy(dist, teacher.argmax(-1))
    assert hard_distillation_loss((cls, dist), y, teacher) == pytest.approx(float(expected))
    with pytest.raises(TypeError, match="distillation head"):
        hard_distillation_loss(cls, y, teacher)


def _image_task(n: int = 96) -> Task:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 3, 16, 16, generator=g) * 0.3 + y[:, None, None, None].float()  # brightness tells the class
    return Task(name="toy-images", kind="image", objective="classification", x_train=x[: n // 2], y_train=y[: n // 2],
                x_test=x[n // 2 :], y_test=y[n // 2 :], num_outputs=3, chance=1 / 3, description="toy")  # fmt: skip


DEIT = VariantSpec("deit", "timm:deit_tiny_distilled_patch16_224",
                   freeze({"img_size": 16, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}))  # fmt: skip
TEACHER = VariantSpec("cnn", "timm:resnet18", freeze({"channels": (8, 8, 8, 8), "stem_width": 8}))
DISTILL_SPEC = AccuracySpec(task="toy", epochs=2, batch_size=16, lr=3e-3, seeds=2)


@pytest.mark.slow
def test_distillation_trains_the_same_seeds_and_counts_the_teacher() -> None:
    task = _image_task()
    build, build_teacher = model_factory(DEIT, task), model_factory(TEACHER, task)
    assert has_distillation_token(build()) and not has_distillation_token(build_teacher())
    result = distill_seeds(build, build_teacher, task, DISTILL_SPEC, teacher_name="resnet18")
    again = distill_seeds(build, build_teacher, task, DISTILL_SPEC, teacher_name="resnet18")
    assert [r.accuracy for r in result.runs] == [r.accuracy for r in again.runs]
    assert [r.loss_curve for r in result.runs] == [r.loss_curve for r in again.runs]
    assert len(result.runs) == 2 and len(result.teacher_accuracies) == 2
    # the student's own training plus one teacher forward per sample it sees; the teacher's training apart
    from bench.accuracy.train import forward_flops, total_steps

    samples = total_steps(task, DISTILL_SPEC) * DISTILL_SPEC.batch_size
    s, t = forward_flops(build, task), forward_flops(build_teacher, task)
    assert result.train_flops == pytest.approx((3 * s + t) * samples)
    assert result.teacher_train_flops == pytest.approx(3 * t * samples)
    values, samples_ = distill_values(result)
    assert values["teacher"] == "resnet18" and 0 <= values["distill_accuracy_mean"] <= 1
    assert len(samples_["distill_accuracy"]) == 2 and all(math.isfinite(v) for v in samples_["teacher_accuracy"])
    # the student is evaluated as DeiT is at test time: one tensor (the two heads averaged)
    _, student = fit(build, task, DISTILL_SPEC, 0, teacher=build_teacher().eval())
    assert isinstance(student.eval()(task.x_test[:2]), torch.Tensor)


def test_a_teacher_checkpoint_loads_and_bad_ones_are_one_line_errors(tmp_path: Path) -> None:
    task = _image_task()
    build_teacher = model_factory(TEACHER, task)
    good = tmp_path / "teacher.pth"
    torch.save(build_teacher().state_dict(), good)
    assert isinstance(load_teacher(good, build_teacher, "resnet18"), nn.Module)
    torch.save({"state_dict": build_teacher().state_dict()}, tmp_path / "wrapped.pth")
    load_teacher(tmp_path / "wrapped.pth", build_teacher, "resnet18")

    (tmp_path / "garbage.pth").write_bytes(b"\x00not a checkpoint" * 10)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    torch.save(Path("x"), tmp_path / "code.pth")  # a pickled object: weights_only refuses it
    cases = {"missing.pth": "no such file", "garbage.pth": "not a weights-only torch checkpoint",
             "other.pth": "does not fit the teacher resnet18",
             "code.pth": "not a weights-only torch checkpoint"}  # fmt: skip
    for name, message in cases.items():
        with pytest.raises(UsageError, match=message) as e:
            load_teacher(tmp_path / name, build_teacher, "resnet18")
        assert "\n" not in str(e.value) and e.value.exit_code == 2


def test_run_teacher_is_checked_before_anything_runs(tmp_path: Path) -> None:
    from bench.cli import main

    (tmp_path / "garbage.pth").write_bytes(b"junk")
    assert main(["run", "cv-backbones", "--profile", "accuracy", "--teacher", str(tmp_path / "garbage.pth"),
                 "--out", str(tmp_path / "out")]) == 2  # fmt: skip
    assert main(["run", "cv-backbones", "--profile", "quick", "--family", "deit", "--tier", "tiny", "--teacher",
                 str(tmp_path / "nope.pth"), "--out", str(tmp_path / "out")]) == 2  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_the_suite_profiles_teach_deit_with_vgg() -> None:
    from bench.registry import get_suite

    suite = get_suite("cv-backbones")
    for name in ("quick", "default", "full", "accuracy", "accuracy-long"):
        assert suite.profile(name).accuracy.teacher == "vgg"
    long, short = suite.profile("accuracy-long").accuracy, suite.profile("accuracy").accuracy
    assert long.epochs == 20 * short.epochs and long.seeds == short.seeds and long.lr == short.lr


# --- the suites' cells -------------------------------------------------------------------------------------


def _suite_cell(suite: str, profile: str, tier: str, family: str, **spec_changes: object):  # noqa: ANN202
    from dataclasses import replace

    from bench import runner
    from bench.registry import get_suite

    settings = runner.RunSettings(profile=profile, devices=("cpu",), tiers=(tier,), families=(family,))
    (cell,) = runner.expand(get_suite(suite), settings)
    prof = cell.profile
    return replace(cell, profile=replace(prof, metrics=("accuracy",), accuracy=replace(prof.accuracy, **spec_changes)))


@pytest.mark.slow
def test_a_deit_cell_reports_without_and_with_its_teacher_side_by_side() -> None:
    from bench.worker import measure_cell

    rec = measure_cell(_suite_cell("cv-backbones", "accuracy", "micro", "deit", epochs=0.05, seeds=1))
    assert rec["status"] == "ok", rec.get("error")
    m = rec["metrics"]
    assert m["teacher"].startswith("vgg11_bn_gap[") and 0 <= m["teacher_accuracy_mean"] <= 1
    assert 0 <= m["accuracy_mean"] <= 1 and 0 <= m["distill_accuracy_mean"] <= 1
    assert m["distill_train_flops"] > m["train_flops"] and m["teacher_train_flops"] > 0
    assert len(rec["samples"]["distill_accuracy"]) == len(rec["samples"]["teacher_accuracy"]) == 1
    vit = measure_cell(_suite_cell("cv-backbones", "accuracy", "micro", "vit", epochs=0.05, seeds=1))
    assert "distill_accuracy_mean" not in vit["metrics"]  # no distillation token: trained once, as before


@pytest.mark.slow
def test_seq_suite_trains_encoder_decoders_on_reversal_and_taggers_on_lookahead() -> None:
    from bench.worker import measure_cell

    small = {"n_train": 128, "n_test": 32}
    rec = measure_cell(_suite_cell("seq-backbones", "seq2seq", "micro-s2s", "gru_seq2seq", epochs=1, seeds=1,
                                   task_args=freeze(small)))  # fmt: skip
    assert rec["status"] == "ok", rec.get("error")
    m = rec["metrics"]
    assert m["dataset"] == "reverse-T12" and m["accuracy_mean"] == m["exact_match_mean"]
    assert 0 <= m["exact_match_mean"] <= m["token_accuracy_mean"] <= 1
    rec = measure_cell(_suite_cell("seq-backbones", "lookahead", "micro-tag", "bigru", epochs=1, seeds=1,
                                   task_args=freeze(small)))  # fmt: skip
    assert rec["status"] == "ok", rec.get("error")
    m = rec["metrics"]
    assert m["dataset"] == "lookahead-T32" and m["accuracy_mean"] == m["token_accuracy_mean"]


def test_seq_suite_new_tiers_hold_the_families_at_the_micro_budget() -> None:
    from bench.registry import get_suite
    from bench.sizing import resolve_tier

    suite = get_suite("seq-backbones")
    s2s = {v.family for v in resolve_tier(suite.tier("micro-s2s"))}
    tag = {v.family: v for v in resolve_tier(suite.tier("micro-tag"))}
    assert s2s == {"gru_seq2seq", "transformer_seq2seq"}
    assert set(tag) == {"rnn", "lstm", "gru", "bilstm", "bigru", "transformer"}
    micro = {v.family: v for v in resolve_tier(suite.tier("micro"))}
    for family in ("rnn", "lstm", "gru", "transformer"):  # the same backbone as the micro classifiers
        assert tag[family].knob_value == micro[family].knob_value
    assert suite.profile("seq2seq").accuracy.tiers == ("micro-s2s",)
    assert suite.profile("lookahead").accuracy.tiers == ("micro-tag",)
    assert suite.profile("full").tiers == ("100k", "1m", "10m", "micro")  # the full run's cells are unchanged


def test_the_main_table_shows_the_student_with_its_teacher_beside_accuracy() -> None:
    import report_data as rd

    from bench.report.tables import build_tables, frame_from_records

    records = rd.cv_records()
    plain = build_tables(frame_from_records(records))[0]
    assert "distill_accuracy" not in [c.key for c in plain.columns]  # runs without distillation: unchanged
    for r in records:
        if r["key"]["family"] == "vit" and r["status"] == "ok":
            r["metrics"].update(distill_accuracy_mean=0.5, distill_accuracy_std=0.02, teacher="vgg11_bn_gap[width=15]",
                                teacher_accuracy_mean=0.995)  # fmt: skip
    t = build_tables(frame_from_records(records))[0]
    keys = [c.key for c in t.columns]
    assert keys.index("distill_accuracy") == keys.index("accuracy") + 1
    assert {c.key: c.header for c in t.columns}["distill_accuracy"] == "with teacher"
    cell = t.cell("tiny · b1", "vit", "distill_accuracy")
    assert cell.text == "50.0 ± 2.0" and not cell.best and cell.notes
    assert any("vgg11_bn_gap[width=15]" in n and "99.5" in n for n in t.notes)
    assert t.cell("tiny · b1", "resnet", "distill_accuracy").text in ("", "–")
