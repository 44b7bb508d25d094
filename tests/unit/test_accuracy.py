"""Accuracy: embedded tasks (deterministic, never downloaded), the training protocol, seeds and statistics,
the metric's cell logic, the micro builders, and the checkpoint/dataset errors users see."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.accuracy import data as D
from bench.accuracy import make_task, mean_ci, model_factory, train_seeds
from bench.accuracy.evaluate import EvaluationError, find_checkpoint, load_weights, open_dataset
from bench.accuracy.models import cnn1d, features_input, googlenet_micro
from bench.accuracy.train import shift_images, train_once, warmup_cosine
from bench.errors import UnknownNameError
from bench.metrics.accuracy import first_cell
from bench.spec import AccuracySpec, CellKey, CellSpec, Profile, VariantSpec, freeze

CNN = VariantSpec("cnn", "bench.accuracy.models:cnn1d", freeze({"width": 8}))
TINY = AccuracySpec(task="adding", task_args=freeze({"length": 10, "n_train": 256, "n_test": 128}), epochs=2,
                    batch_size=32, lr=3e-3, seeds=2)  # fmt: skip


@pytest.fixture(autouse=True)
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to fetch MNIST-1D (or anything) over the network fails the test."""
    import mnist1d.data

    def refuse(*a, **k):
        raise AssertionError("tried to download")

    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)
    monkeypatch.setattr(mnist1d.data.requests, "get", refuse)


# --- tasks -------------------------------------------------------------------------------------------------


def test_mnist1d_is_generated_deterministically_and_leaves_global_rngs_alone() -> None:
    np.random.seed(123)
    random.seed(123)
    before = (np.random.get_state()[1].copy(), random.getstate())
    a = D.mnist1d()  # uncached
    assert (np.random.get_state()[1] == before[0]).all() and random.getstate() == before[1]
    b = D.mnist1d()
    assert a.fingerprint() == b.fingerprint()
    assert a.x_train.shape == (4000, 40, 1) and a.x_test.shape == (1000, 40, 1)
    assert a.kind == "features" and a.num_outputs == 10 and set(a.y_train.tolist()) == set(range(10))
    assert 0.08 < a.chance < 0.13  # majority class of ten balanced ones


def test_digits_split_is_stratified_fixed_and_upsampled() -> None:
    t = make_task("digits")
    assert t.x_train.shape == (1257, 3, 32, 32) and t.x_test.shape == (540, 3, 32, 32)
    assert t.x_train[:, 0].equal(t.x_train[:, 2])  # three identical channels
    counts = torch.bincount(t.y_test, minlength=10)
    assert counts.min() >= 52 and counts.max() <= 56  # stratified: ~30% of each ~180-image class
    assert abs(float(t.x_train.mean())) < 1e-5 and abs(float(t.x_train.std()) - 1) < 1e-4
    assert D.digits().fingerprint() == t.fingerprint()


def test_adding_targets_are_the_sum_of_the_two_marked_values() -> None:
    t = make_task("adding", length=20, n_train=500, n_test=2000)
    x, y = t.x_train, t.y_train
    marks = x[..., 1]
    assert marks.sum(dim=1).eq(2).all()
    assert marks[:, :10].sum(dim=1).eq(1).all() and marks[:, 10:].sum(dim=1).eq(1).all()  # one per half
    assert torch.allclose((x[..., 0] * marks).sum(dim=1), y)
    assert t.chance == pytest.approx(2 * 0.04 - 0.04**2, abs=0.02)  # the constant 1.0 within tolerance
    assert t.name == "adding-T20" and t.objective == "regression"
    assert make_task("adding", length=20, n_train=500, n_test=2000) is t  # cached
    other = D.adding(length=21, n_train=500, n_test=2000)
    assert not torch.equal(other.x_train[:, :20, 0], x[..., 0])  # lengths draw independent streams


def test_recall_label_is_the_value_stored_under_the_queried_key() -> None:
    t = D.recall(length=30, n_pairs=3, n_keys=8, n_values=5, n_noise=4, n_train=300, n_test=300)
    x, y = t.x_train, t.y_train
    assert x.shape == (300, 30) and int(x.max()) < t.vocab_size
    for row, label in zip(x.tolist(), y.tolist(), strict=True):
        pairs = dict(zip(row[0:6:2], row[1:6:2], strict=True))
        assert len(pairs) == 3 and row[-2] == t.vocab_size - 1
        assert pairs[row[-1]] - 8 == label
    assert t.chance == pytest.approx(0.2, abs=0.06)


def test_unknown_task_names_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="adding.*digits.*mnist1d.*recall"):
        make_task("mnist")


# --- protocol and statistics -------------------------------------------------------------------------------


def test_mean_ci_uses_the_t_distribution() -> None:
    m, sd, ci = mean_ci([0.90, 0.92, 0.94])
    assert m == pytest.approx(0.92) and sd == pytest.approx(0.02)
    assert ci == pytest.approx(4.302652729911275 * 0.02 / math.sqrt(3))  # t_{0.975, 2}
    assert mean_ci([0.5]) == (0.5, 0.0, None)


def test_warmup_then_cosine() -> None:
    f = warmup_cosine(total=100, warmup=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5) and f(99) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))


def test_a_fixed_seed_gives_identical_results_and_another_seed_does_not() -> None:
    task = make_task(TINY.task, **dict(TINY.task_args))
    build = model_factory(CNN, task)
    a, b = train_once(build, task, TINY, seed=0), train_once(build, task, TINY, seed=0)
    assert a.accuracy == b.accuracy and a.loss_curve == b.loss_curve and a.test_loss == b.test_loss
    c = train_once(build, task, TINY, seed=1)
    assert c.loss_curve != a.loss_curve
    assert len(a.loss_curve) == 2 and a.steps == 2 * math.ceil(256 / 32)


def test_train_seeds_summarises_every_seed() -> None:
    task = make_task(TINY.task, **dict(TINY.task_args))
    r = train_seeds(model_factory(CNN, task), task, TINY)
    assert [x.seed for x in r.runs] == [0, 1] and r.mean == pytest.approx(sum(r.accuracies) / 2)
    assert r.budget.startswith("2 ep x 256, b32 = 16 steps, AdamW lr 0.003")


def test_shift_augmentation_moves_whole_images() -> None:
    x = torch.zeros(4, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1.0
    out = shift_images(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.sum(dim=(1, 2, 3)).eq(4).all()  # the blob moved, whole


# --- models ------------------------------------------------------------------------------------------------


def test_features_input_replaces_the_token_embedding() -> None:
    m = features_input(cnn1d(width=8), 2)
    assert isinstance(m.embed, nn.Linear) and m.embed.in_features == 2
    assert m(torch.randn(3, 40, 2)).shape == (3, 10)
    with pytest.raises(TypeError, match="no nn.Embedding"):
        features_input(nn.Linear(2, 2), 2)


def test_cnn1d_is_the_mnist1d_papers_convbase_at_width_25() -> None:
    m = cnn1d(width=25)
    convs = sum(p.numel() for p in m.backbone.parameters())
    assert convs == (25 * 25 * 5 + 25) + 2 * (25 * 25 * 3 + 25)  # three convs; the paper's first reads 1 channel
    assert m.head.in_features == 125  # 25 channels x 5 positions, as in the paper


def test_googlenet_micro_scales_every_width() -> None:
    from torchvision.models import GoogLeNet

    full = GoogLeNet(num_classes=10, aux_logits=False, init_weights=False)
    assert sum(p.numel() for p in googlenet_micro(1.0).parameters()) == sum(p.numel() for p in full.parameters())
    m = googlenet_micro(width=0.3)  # not a multiple of 1/8: block inputs follow the rounded outputs
    assert m.conv1.conv.out_channels == 19 and m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# --- the metric's cell logic -------------------------------------------------------------------------------


def _cell(**key: object) -> CellSpec:
    prof = Profile("p", batch_sizes=(1, 8), seq_lens=(64, 256), accuracy=TINY)
    base = dict(suite="s", tier="micro", family="cnn", model="cnn", device="cpu", dtype="fp32", batch_size=1,
                input_shape=(), seq_len=64, mode="infer")  # fmt: skip
    from bench.sizing import resolve_tier
    from bench.spec import Tier

    (variant,) = resolve_tier(Tier("micro", 1000, (CNN,), tolerance=100.0))
    return CellSpec(key=CellKey(**(base | key)), variant=variant, input_kind="tokens", input_args=(), profile=prof)


def test_accuracy_trains_once_per_variant() -> None:
    assert first_cell(_cell())
    assert not first_cell(_cell(batch_size=8))
    assert not first_cell(_cell(seq_len=256))
    assert first_cell(_cell(batch_size=4))  # an override the profile does not list still trains
    assert first_cell(_cell(seq_len=256), per_length=True)  # a task that takes its length from the cell
    ran_8_only = replace(_cell(batch_size=8), extra=freeze({"batch_sizes": (8,)}))
    assert first_cell(ran_8_only)  # the runner says which batch sizes the run has


def test_the_runner_gives_an_accuracy_tier_one_cell_per_variant() -> None:
    from bench import runner
    from bench.spec import Suite, Tier

    prof = Profile("p", batch_sizes=(1, 8), dtypes=("fp32", "bf16"), modes=("infer", "train"), seq_lens=(16, 64),
                   accuracy=TINY)  # fmt: skip
    tiers = (Tier("micro", 1000, (CNN,), tolerance=100.0, input_shape=()),
             Tier("big", 1000, (CNN,), tolerance=100.0, input_shape=()))  # fmt: skip
    suite = Suite("s", "toy", "tokens", tiers, (prof,), default_profile="p")
    cells = runner.expand(suite, runner.RunSettings(devices=("cpu",)))
    micro = [c.key for c in cells if c.key.tier == "micro"]
    assert [(k.batch_size, k.dtype, k.seq_len, k.mode) for k in micro] == [(1, "fp32", 16, "infer")]
    assert sum(c.key.tier == "big" for c in cells) == 2 * 2 * 2 * 2
    per_length = replace(suite, profiles=(replace(prof, accuracy=replace(TINY, length_from_cell=True)),))
    cells = runner.expand(per_length, runner.RunSettings(devices=("cpu",), batch_sizes=(8,)))
    assert [(c.key.batch_size, c.key.seq_len) for c in cells if c.key.tier == "micro"] == [(8, 16), (8, 64)]
    assert all(first_cell(c, per_length=True) for c in cells if c.key.tier == "micro")


def test_the_metric_records_flat_values_and_raw_seeds() -> None:
    from bench.worker import measure_cell

    cell = _cell()
    cell = replace(cell, profile=replace(cell.profile, metrics=("accuracy",)))
    rec = measure_cell(cell)
    assert rec["status"] == "ok", rec.get("error")
    m = rec["metrics"]
    assert m["dataset"] == "adding-T10" and m["accuracy_seeds"] == 2 and 0 <= m["accuracy_mean"] <= 1
    assert m["accuracy_ci95"] > 0 or m["accuracy_std"] == 0  # two seeds: a t interval (t = 12.7)
    assert set(m) >= {"accuracy_std", "train_budget", "train_time_s", "accuracy_chance"}
    assert len(rec["samples"]["accuracy"]) == 2 and len(rec["samples"]["loss_curve"]) == 2 * 2

    skipped = measure_cell(replace(cell, key=replace(cell.key, batch_size=8)))
    assert skipped["status"] == "ok" and skipped["metrics"] == {}


# --- user checkpoints and data: the errors -----------------------------------------------------------------


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    model = cnn1d(width=4)
    for name in ("bad.safetensors", "bad.pth"):
        (tmp_path / name).write_bytes(b"\x00not a checkpoint" * 10)
        with pytest.raises(EvaluationError, match=f"{name}: cannot read checkpoint"):
            load_weights(model, tmp_path / name)


def test_a_checkpoint_that_does_not_fit_names_the_tensor(tmp_path: Path) -> None:
    torch.save(cnn1d(width=4, num_classes=3).state_dict(), tmp_path / "m.pth")
    with pytest.raises(EvaluationError, match=r"shape mismatch.*head.weight: checkpoint \(3, 20\) vs model \(10, 20\)"):
        load_weights(cnn1d(width=4), tmp_path / "m.pth")


def test_a_missing_checkpoint_lists_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match=r"no checkpoint for 'resnet50'.*resnet50.safetensors, resnet50.pth"):
        find_checkpoint(tmp_path, ["resnet50"])


def test_an_unreadable_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="no such file"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationError, match="not a readable ImageFolder"):
        open_dataset(tmp_path / "empty")
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(EvaluationError, match="cannot read cifar10"):
        open_dataset(tmp_path)


# --- user data: links, classes, images (issue 12) ----------------------------------------------------------


def _image_folder(root: Path, sizes: dict[str, int], nested: bool = False) -> Path:
    """``root/<class>/<i>.png``: small random RGB images, ``sizes[class]`` of them (one in ``sub/`` if nested)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, n in sizes.items():
        (root / c / "sub").mkdir(parents=True)
        for i in range(n):
            where = root / c / "sub" if nested and i == 0 else root / c
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(where / f"{i}.png")
    return root


def test_the_walk_matches_torchvision_and_survives_link_loops(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    from bench.accuracy.evaluate import SafeImageFolder, dataset_warnings

    root = _image_folder(tmp_path / "val", {"cat": 3, "dog": 3}, nested=True)
    clean = ImageFolder(str(root))
    ours, name, classes = open_dataset(root)
    assert ours.samples == clean.samples and classes == ["cat", "dog"] and name == "imagefolder:val"

    (root / "cat" / "up").symlink_to("..")  # back to the dataset folder: torchvision walks it until ELOOP
    (root / "dog" / "sub" / "self").symlink_to(".")  # a loop
    (root / "dog" / "again.png").symlink_to(root / "cat" / "1.png")  # another name for a cat image
    (root / "dog" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    shared = _image_folder(tmp_path / "shared", {"extra": 2})  # a link to a folder outside the tree is followed
    (root / "dog" / "more").symlink_to(shared / "extra")
    (root / "cat" / "more").symlink_to(shared / "extra")  # ...once: the same images again are duplicates
    ds, _, _ = open_dataset(root)
    assert isinstance(ds, SafeImageFolder)
    # cat/1.png, cat/2.png, then cat/more/ (sorted before cat/sub/), then torchvision's own order again
    assert [p for p, _ in ds.samples] == [p for p, _ in clean.samples[:2]] + [
        str(root / "cat" / "more" / f) for f in ("0.png", "1.png")] + [p for p, _ in clean.samples[2:]]  # fmt: skip
    assert ds.targets == [0] * 5 + [1] * 3
    assert dict(ds.skipped) == {"links": 3, "duplicates": 1, "broken": 1}
    (skips,) = [w for w in dataset_warnings(ds) if w.startswith("skipped")]
    assert "3 directory links" in skips and "1 images reached twice" in skips and "1 broken links" in skips

    (tmp_path / "loop").mkdir()
    _image_folder(tmp_path / "loop", {"a": 1})
    (tmp_path / "loop" / "b").symlink_to(tmp_path / "loop")  # a class folder that is the dataset itself
    with pytest.raises(EvaluationError, match="class folder 'b' is a link to .*link loop"):
        open_dataset(tmp_path / "loop")


def test_one_class_is_refused_and_unbalanced_or_small_classes_warn(tmp_path: Path) -> None:
    from bench.accuracy.evaluate import MIN_IMAGES_PER_CLASS, dataset_warnings

    with pytest.raises(EvaluationError, match=r"one class folder \(cat\).*100%.*at least 2 classes"):
        open_dataset(_image_folder(tmp_path / "one", {"cat": 3}))
    ds, _, _ = open_dataset(_image_folder(tmp_path / "fine", {"a": MIN_IMAGES_PER_CLASS, "b": MIN_IMAGES_PER_CLASS}))
    assert dataset_warnings(ds) == []
    ds, _, _ = open_dataset(_image_folder(tmp_path / "skewed", {"big": 22, "small": 2}))
    small, skew = dataset_warnings(ds)
    assert small.startswith("1 of 2 classes have fewer than 10 images (small 2)")
    assert skew == "very unbalanced classes (big 22 images, the smallest 2): always predicting big scores 92% top-1"
    (tmp_path / "hollow" / "a").mkdir(parents=True)
    _image_folder(tmp_path / "hollow", {"b": 1})
    with pytest.raises(EvaluationError, match=r"no images in class folder\(s\) a"):
        open_dataset(tmp_path / "hollow")


@pytest.mark.parametrize("fault", ["bomb", "truncated", "not an image"])
def test_an_unreadable_image_is_an_evaluation_error_naming_it(tmp_path: Path, fault: str, monkeypatch) -> None:
    from PIL import Image
    from torchvision.transforms import ToTensor

    from bench.accuracy.evaluate import evaluate_model

    root = _image_folder(tmp_path / "val", {"a": 2, "b": 2})
    bad = root / "b" / "1.png"
    if fault == "bomb":  # PIL's DecompressionBombError is not an OSError; the limit is lowered, not the image raised
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    elif fault == "truncated":
        bad.write_bytes(bad.read_bytes()[:100])
    else:
        bad.write_bytes(b"GIF89a but not really")
    ds, _, _ = open_dataset(root, ToTensor())
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 10, 2))
    with pytest.raises(
        EvaluationError, match=r"cannot read image .*/(a/0|b/1)\.png \((DecompressionBomb|OSError|Unid)"
    ):
        evaluate_model(model, ds)


def test_a_checkpoint_holding_objects_is_refused_without_suggesting_weights_only_false(tmp_path: Path) -> None:
    import argparse

    state = cnn1d(width=4).state_dict()
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=0.1)}, tmp_path / "m.pth")
    with pytest.raises(EvaluationError) as info:
        load_weights(cnn1d(width=4), tmp_path / "m.pth")
    text = str(info.value)
    assert text == (f"{tmp_path / 'm.pth'}: cannot read checkpoint: it holds objects that are not plain tensors "
                    "(argparse.Namespace) and cannot be loaded safely; save only the model's state_dict (tensors), "
                    "e.g. as .safetensors")  # fmt: skip
    assert "weights_only" not in text and "safe_globals" not in text and "\n" not in text
