"""End to end: a user's checkpoint (``--weights``) on a user's ImageFolder (``--data``) gives the logits of the
model it was saved from, through the Python API, a worker cell and the CLI; bad files fail their cell only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import bench
from bench.accuracy.evaluate import EvaluationError, evaluate_checkpoint, model_transform
from bench.spec import CellKey, CellSpec, Profile, VariantSpec, freeze

MODEL = "resnet10t"  # the cv suite's tiny ResNet: a real timm model that is quick at 224 px
CLASSES = ("cat", "dog", "emu")


@pytest.fixture(autouse=True)
def one_thread() -> None:
    # Evaluation is a handful of images: one thread is as fast and immune to a busy machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes of two random 48x40 RGB images each, as PNG files."""
    root = tmp_path_factory.mktemp("data") / "val"
    rng = np.random.default_rng(0)
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def _saved_model(folder: Path, suffix: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(MODEL, pretrained=False, num_classes=len(CLASSES)).eval()
    folder.mkdir(exist_ok=True)
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(model.state_dict(), str(folder / f"{MODEL}{suffix}"))
    else:
        torch.save({"state_dict": model.state_dict()}, folder / f"{MODEL}{suffix}")
    return model


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_reloaded_checkpoint_gives_identical_logits(tmp_path: Path, image_folder: Path, suffix: str) -> None:
    model = _saved_model(tmp_path / "w", suffix)
    result, used = evaluate_checkpoint(VariantSpec("resnet", f"timm:{MODEL}"), image_folder, tmp_path / "w",
                                       keep_logits=True)  # fmt: skip
    assert used["dataset"] == "imagefolder:val" and used["weights"].endswith(suffix) and result.n == 6

    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(image_folder), transform=model_transform(model))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    assert x.shape[-2:] == (224, 224)  # the model's own preprocessing: resized and centre-cropped
    with torch.no_grad():
        expected = model(x)
    assert torch.equal(result.logits, expected)
    labels = torch.tensor([ds[i][1] for i in range(len(ds))])
    assert result.top1 == pytest.approx(float((expected.argmax(1) == labels).float().mean()))
    assert result.top5 == 1.0  # three classes: the label is always in the top five


def test_corrupt_or_mismatched_checkpoints_are_clear_errors(tmp_path: Path, image_folder: Path) -> None:
    spec = VariantSpec("resnet", f"timm:{MODEL}")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / f"{MODEL}.safetensors").write_bytes(b"garbage" * 100)
    with pytest.raises(EvaluationError, match=rf"{MODEL}.safetensors: cannot read checkpoint"):
        evaluate_checkpoint(spec, image_folder, tmp_path / "bad")
    torch.save(timm.create_model(MODEL, num_classes=1000).state_dict(), tmp_path / f"{MODEL}.pth")
    mismatch = r"shape mismatch.*fc.weight: checkpoint \(1000, 512\) vs model \(3, 512\)"
    with pytest.raises(EvaluationError, match=mismatch):
        evaluate_checkpoint(spec, image_folder, tmp_path)


def test_a_decompression_bomb_is_the_documented_evaluation_error(
    tmp_path: Path, image_folder: Path, monkeypatch
) -> None:
    _saved_model(tmp_path / "w", ".safetensors")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # each 48x40 image is now over twice PIL's limit: a "bomb"
    with pytest.raises(EvaluationError, match=r"cannot read image .*cat/0\.png \(DecompressionBombError: "):
        evaluate_checkpoint(VariantSpec("resnet", f"timm:{MODEL}"), image_folder, tmp_path / "w")


def _cell(extra: dict, tier: str = "tiny") -> CellSpec:
    from bench.sizing import resolve_tier
    from bench.spec import Tier

    (variant,) = resolve_tier(Tier(tier, 5_000_000, (VariantSpec("resnet", f"timm:{MODEL}"),), tolerance=10.0))
    key = CellKey(suite="s", tier=tier, family="resnet", model=variant.model, device="cpu", dtype="fp32",
                  batch_size=1, input_shape=(3, 224, 224))  # fmt: skip
    return CellSpec(key=key, variant=variant, input_kind="image", input_args=(),
                    profile=Profile("p", metrics=("params", "accuracy")), threads=1, extra=freeze(extra))  # fmt: skip


def test_a_cell_evaluates_the_checkpoint_and_a_bad_one_fails_only_its_cell(tmp_path: Path, image_folder: Path) -> None:
    from bench.worker import measure_cell

    _saved_model(tmp_path / "w", ".safetensors")
    rec = measure_cell(_cell({"data": str(image_folder), "weights": str(tmp_path / "w")}))
    assert rec["status"] == "ok", rec["error"]
    m = rec["metrics"]
    assert m["dataset"] == "imagefolder:val" and m["eval_samples"] == 6 and 0 <= m["accuracy_top1"] <= 1
    assert m["accuracy_top5"] == 1.0 and m["train_budget"] == f"checkpoint {MODEL}.safetensors"
    # two images per class: the cell says how little its accuracy means
    assert any("3 of 3 classes have fewer than 10 images" in n for n in rec["notes"]), rec["notes"]

    rec = measure_cell(_cell({"data": str(image_folder), "weights": str(tmp_path / "nowhere")}))
    assert rec["status"] == "failed" and "--weights" in rec["error"] and "no such folder" in rec["error"]
    assert rec["metrics"]["params"] > 0  # what was measured before the failure is kept


def _cli_has_data_option() -> bool:
    from bench.commands import run

    return "--data" in Path(run.__file__).read_text()


@pytest.mark.slow
@pytest.mark.skipif(not _cli_has_data_option(), reason="aigc-bench run has no --data/--weights options yet")
def test_cli_run_with_data_and_weights(tmp_path: Path, image_folder: Path) -> None:
    from bench.store import load_results

    _saved_model(tmp_path / "w", ".pth")
    env = {**os.environ, "PYTHONPATH": str(Path(bench.__file__).resolve().parent.parent), "COLUMNS": "200"}
    args = [sys.executable, "-m", "bench.cli", "run", "cv-backbones", "--profile", "quick", "--device", "cpu",
            "--tier", "tiny", "--family", "resnet,vit", "--threads", "1", "--out", str(tmp_path / "res"),
            "--no-report", "--data", str(image_folder), "--weights", str(tmp_path / "w")]  # fmt: skip
    r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 3, r.stdout + r.stderr  # the vit cell has no checkpoint: that cell fails, the run goes on
    df = load_results(tmp_path / "res").set_index("family")
    assert df.loc["resnet", "status"] == "ok" and df.loc["resnet", "eval_samples"] == 6
    assert df.loc["vit", "status"] == "failed" and "no checkpoint for" in df.loc["vit", "error"]
