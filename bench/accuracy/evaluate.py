"""Top-1/top-5 of users' checkpoints (``--weights DIR``) on users' datasets (``--data PATH``), nothing downloaded.

* **Data**: an ImageFolder tree (``PATH/<class>/<image>``; labels are the sorted folder names, as
  ``torchvision.datasets.ImageFolder`` assigns them), or a CIFAR-10/100 folder as torchvision keeps it
  (``PATH`` holding ``cifar-10-batches-py`` or ``cifar-100-python``, or that folder itself), opened with
  ``download=False`` and its test split.
* **Weights**: ``DIR/<model>.safetensors`` or ``DIR/<model>.pth`` (also ``.pt``, ``.bin``), ``<model>`` being
  the cell's model name or the builder's (``resnet50`` for ``timm:resnet50``). ``.pth`` files are read with
  ``torch.load(weights_only=True)``: no pickled code runs. A ``{"state_dict": ...}`` / ``{"model": ...}``
  wrapper and DataParallel's ``module.`` prefixes are unwrapped. Loading is strict.
* **Preprocessing**: the model's own, ``timm.data.resolve_data_config(model=model, use_test_size=True)`` and
  ``timm.data.create_transform(**config)`` (resize, centre crop, normalisation of its pretrained config).

Every fault (missing checkpoint, unreadable file, shape mismatch, unreadable dataset or image, a decompression
bomb) is an :class:`EvaluationError` naming the file and what is wrong; the metric turns it into that cell's error
and the run goes on. A checkpoint that holds pickled objects besides tensors is refused as unsafe; the error never
suggests loading it with ``weights_only=False``.

An ImageFolder is walked as ``torchvision.datasets.ImageFolder`` walks it (same classes, labels and sample order),
with three differences: a directory link that loops, leads back into the dataset folder or above it, or reaches a
folder already walked is not followed (links to folders outside the tree are: class folders are often links to a
shared copy); an image reached twice through links counts once, by its real path; a broken link is skipped. The
counts of each are reported as warnings. A dataset of fewer than 2 classes is refused (every prediction of a
one-class model is right); very unbalanced classes, or a class of fewer than :data:`MIN_IMAGES_PER_CLASS` images,
give loud warnings (logged, and kept in the cell's notes).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.datasets import ImageFolder

from bench.errors import UsageError

log = logging.getLogger(__name__)

#: checkpoint file suffixes looked for, in this order
SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt", ".bin")
#: torchvision's folder names for the CIFAR archives, by dataset
CIFAR_FOLDERS: dict[str, str] = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
#: a class with fewer test images than this gives a warning: its accuracy moves by 10 points per image
MIN_IMAGES_PER_CLASS = 10
#: largest / smallest class above this gives a warning: top-1 mostly measures the largest classes
MAX_CLASS_RATIO = 10.0


class EvaluationError(UsageError):
    """A checkpoint or dataset that cannot be used: the message names the file and the fault."""


@dataclass(frozen=True)
class EvalResult:
    """Top-1 and top-5 accuracy over ``n`` samples (logits kept only when asked for)."""

    top1: float
    top5: float
    n: int
    logits: torch.Tensor | None = None


# --- checkpoints ---------------------------------------------------------------------------------------------


def find_checkpoint(weights_dir: str | Path, names: list[str]) -> Path:
    """The first ``DIR/<name><suffix>`` that exists, trying names in order, then suffixes in ``SUFFIXES`` order."""
    folder = Path(weights_dir)
    if not folder.is_dir():
        raise EvaluationError(f"--weights {folder}: no such folder")
    tried = []
    for name in dict.fromkeys(names):  # de-duplicated, order kept
        for suffix in SUFFIXES:
            path = folder / f"{name}{suffix}"
            tried.append(path.name)
            if path.is_file():
                return path
    raise EvaluationError(f"no checkpoint for {names[0]!r} in {folder} (looked for {', '.join(tried)})")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint's tensors (safetensors, or a ``torch.save`` file read with ``weights_only=True``)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EvaluationError(f"{path}: no such checkpoint") from None
    except Exception as e:  # noqa: BLE001 -- every library raises its own type for a corrupt file
        raise EvaluationError(_checkpoint_error(path, e)) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvaluationError(f"{path}: not a state dict (expected a mapping of parameter names to tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _checkpoint_error(path: Path, e: BaseException) -> str:
    """The one-line error for a checkpoint that cannot be read.

    torch's refusal of pickled objects advises retrying with ``weights_only=False`` (arbitrary code execution) or
    allow-listing the class; a benchmark must never suggest either for a file it was handed, so that advice is
    dropped and only the offending object's name is kept.
    """
    text = str(e)
    if (isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in text) or "weights_only" in text:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (f"{path}: cannot read checkpoint: it holds objects that are not plain tensors{what} and cannot be "
                "loaded safely; save only the model's state_dict (tensors), e.g. as .safetensors")  # fmt: skip
    return f"{path}: cannot read checkpoint ({type(e).__name__}: {_short(e)})"


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load ``path`` into ``model`` strictly; a missing, unexpected or mis-shaped tensor is an ``EvaluationError``."""
    state = load_state_dict(path)
    own = model.state_dict()
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in state.items() if k in own and own[k].shape != v.shape]  # fmt: skip
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if shapes or missing or unexpected:
        parts = []
        if shapes:
            parts.append(f"shape mismatch in {len(shapes)} tensor(s): {'; '.join(shapes[:3])}")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise EvaluationError(f"{path} does not fit {type(model).__name__}: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)
    return model


# --- datasets ----------------------------------------------------------------------------------------------


def open_dataset(path: str | Path, transform: Any = None) -> tuple[Any, str, list[str]]:
    """The dataset at ``path`` (CIFAR test split or ImageFolder), its name for results, and its class names."""
    from torchvision import datasets

    root = Path(path)
    if not root.exists():
        raise EvaluationError(f"--data {root}: no such file or folder")
    for name, folder in CIFAR_FOLDERS.items():
        parent = root.parent if root.name == folder else root
        if (parent / folder).is_dir():
            cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
            try:
                ds = cls(str(parent), train=False, transform=transform, download=False)
            except Exception as e:  # noqa: BLE001 -- torchvision raises RuntimeError or unpickling errors
                raise EvaluationError(f"--data {root}: cannot read {name} ({type(e).__name__}: {_short(e)})") from None
            return ds, name, list(ds.classes)
    if not root.is_dir():
        raise EvaluationError(f"--data {root}: expected an ImageFolder tree or a CIFAR-10/100 folder, got a file")
    try:
        ds = SafeImageFolder(str(root), transform=transform)
    except EvaluationError:
        raise
    except Exception as e:  # noqa: BLE001 -- FileNotFoundError for an empty tree, others for odd files
        raise EvaluationError(f"--data {root}: not a readable ImageFolder tree ({_short(e)})") from None
    if len(ds.classes) < 2:
        raise EvaluationError(f"--data {root}: one class folder ({ds.classes[0]}): a one-class model is always right, "
                              "so top-1 would be 100% whatever the weights; give at least 2 classes")  # fmt: skip
    return ds, f"imagefolder:{root.name}", list(ds.classes)


class SafeImageFolder(ImageFolder):
    """``torchvision.datasets.ImageFolder`` with a walk that survives links and image errors that name the file.

    Same classes, labels and sample order as torchvision's on a tree without links. See the module docstring for
    the links; ``skipped`` counts what the walk left out: ``links`` (loops or back into the tree), ``duplicates``
    (an image reached twice) and ``broken`` (dangling links).
    """

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes, class_to_idx = super().find_classes(directory)
        top = os.path.realpath(directory)
        for name in classes:  # a class folder that is a link to the dataset or above it would walk the whole tree
            real = os.path.realpath(os.path.join(directory, name))
            if _within(top, real):
                raise EvaluationError(f"--data {directory}: class folder {name!r} is a link to {real}, which holds "
                                      "the dataset itself (a link loop); remove it")  # fmt: skip
        return classes, class_to_idx

    def make_dataset(self, directory: str | Path, class_to_idx: dict[str, int], extensions: Any = None,
                     is_valid_file: Any = None, allow_empty: bool = False) -> list[tuple[str, int]]:  # fmt: skip
        from torchvision.datasets.folder import has_file_allowed_extension

        def valid(path: str) -> bool:
            return is_valid_file(path) if is_valid_file is not None else has_file_allowed_extension(path, extensions)

        samples, self.skipped = _walk_classes(str(directory), class_to_idx, valid)
        present = {i for _, i in samples}
        empty = sorted(c for c, i in class_to_idx.items() if i not in present)
        if empty and not allow_empty:
            raise EvaluationError(f"--data {directory}: no images in class folder(s) {', '.join(empty)} (an image "
                                  "reached through several links counts once)")  # fmt: skip
        return samples

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        try:
            return super().__getitem__(index)
        except Exception as e:  # noqa: BLE001 -- PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
            raise EvaluationError(f"--data: cannot read image {self.samples[index][0]} "
                                  f"({type(e).__name__}: {_short(e)})") from None  # fmt: skip


def _within(path: str, folder: str) -> bool:
    """Whether real path ``path`` is ``folder`` or inside it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk_classes(root: str, class_to_idx: dict[str, int], valid: Any) -> tuple[list[tuple[str, int]], Counter]:
    """(path, class index) of every image, in torchvision's order, each real file once; and what was skipped."""
    top = os.path.realpath(root)
    skipped: Counter = Counter()
    visited: set[str] = set()
    seen: set[str] = set()
    samples: list[tuple[str, int]] = []
    for name in sorted(class_to_idx):
        start = os.path.join(root, name)
        if not os.path.isdir(start) or os.path.realpath(start) in visited:
            continue  # another class folder's alias: its images are that class's (and this class is empty)
        visited.add(os.path.realpath(start))
        files: dict[str, list[str]] = {}  # folder (as reached) -> file names
        stack = [start]
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as e:
                raise EvaluationError(f"--data {root}: cannot read folder {folder} ({e.strerror or e})") from None
            for entry in entries:
                link = entry.is_symlink()
                real = os.path.realpath(entry.path) if link else ""
                if entry.is_dir():  # follows a link
                    real = real or os.path.realpath(entry.path)
                    # A link that loops, or leads back into the dataset or above it, would count images twice or
                    # under another class; a link to a folder outside the tree (a shared copy) is followed.
                    if real in visited or (link and (_within(real, top) or _within(top, real))):
                        skipped["links"] += 1
                        continue
                    visited.add(real)
                    stack.append(entry.path)
                elif entry.is_file():
                    if link and _within(real, top):  # another name for an image the walk counts in its own place
                        skipped["duplicates"] += 1
                        continue
                    files.setdefault(folder, []).append(entry.name)
                elif link:
                    skipped["broken"] += 1
        for folder in sorted(files):  # torchvision: sorted(os.walk(...)), then sorted file names
            for fname in sorted(files[folder]):
                path = os.path.join(folder, fname)
                if not valid(path):
                    continue
                real = os.path.realpath(path)
                if real in seen:
                    skipped["duplicates"] += 1
                    continue
                seen.add(real)
                samples.append((path, class_to_idx[name]))
    return samples, skipped


def dataset_warnings(dataset: Any) -> list[str]:
    """Loud warnings about an ImageFolder's balance and walk (empty for CIFAR, which is balanced)."""
    targets, classes = getattr(dataset, "targets", None), getattr(dataset, "classes", None)
    if not isinstance(dataset, SafeImageFolder) or not targets or not classes:
        return []
    counts = Counter(targets)
    out = []
    small = sorted((classes[i], n) for i, n in counts.items() if n < MIN_IMAGES_PER_CLASS)
    if small:
        shown = ", ".join(f"{c} {n}" for c, n in small[:5]) + (f" and {len(small) - 5} more" if len(small) > 5 else "")
        out.append(f"{len(small)} of {len(classes)} classes have fewer than {MIN_IMAGES_PER_CLASS} images ({shown}): "
                   "their accuracy moves by 10 points or more per image")  # fmt: skip
    (top_i, most), least = counts.most_common(1)[0], min(counts.values())
    if most / least > MAX_CLASS_RATIO:
        out.append(f"very unbalanced classes ({classes[top_i]} {most} images, the smallest {least}): always "
                   f"predicting {classes[top_i]} scores {most / len(targets):.0%} top-1")  # fmt: skip
    skipped = getattr(dataset, "skipped", {})
    what = {"links": "directory links that loop or lead back into the dataset (not followed)",
            "duplicates": "images reached twice through links (counted once)", "broken": "broken links"}  # fmt: skip
    parts = [f"{skipped[k]} {text}" for k, text in what.items() if skipped.get(k)]
    if parts:
        out.append("skipped " + "; ".join(parts))
    return out


def model_transform(model: nn.Module) -> Any:
    """The model's own evaluation preprocessing (timm's data config for it; ImageNet defaults otherwise).

    At the model's *test* input size where its config has one (``resnet10t``: trained at 176, tested at 224),
    as timm's own ``validate.py`` evaluates.
    """
    from timm.data import create_transform, resolve_data_config

    return create_transform(**resolve_data_config(model=model, use_test_size=True))


# --- evaluation -------------------------------------------------------------------------------------------


def evaluate_model(model: nn.Module, dataset: Any, *, batch_size: int = 64, device: torch.device | str = "cpu",
                   limit: int | None = None, keep_logits: bool = False) -> EvalResult:  # fmt: skip
    """Top-1/top-5 of ``model`` over ``dataset`` (its first ``limit`` samples), in order, in eval mode."""
    from torch.utils.data import DataLoader, Subset

    if limit is not None:
        dataset = Subset(dataset, range(min(limit, len(dataset))))
    if len(dataset) == 0:
        raise EvaluationError("the dataset is empty")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    model.eval().to(device)
    top1 = top5 = 0
    kept = []
    try:
        with torch.no_grad():
            for x, y in loader:
                out = model(x.to(device)).float()
                k = min(5, out.shape[-1])
                pred = out.topk(k, dim=-1).indices.cpu()
                top1 += int((pred[:, 0] == y).sum())
                top5 += int((pred == y[:, None]).any(dim=-1).sum())
                if keep_logits:
                    kept.append(out.cpu())
    except EvaluationError:
        raise
    except (OSError, ValueError) as e:  # an unreadable or truncated image file
        raise EvaluationError(f"cannot read the dataset: {type(e).__name__}: {_short(e)}") from None
    n = len(dataset)
    return EvalResult(top1=top1 / n, top5=top5 / n, n=n, logits=torch.cat(kept) if keep_logits else None)


def evaluate_checkpoint(variant: Any, data: str | Path, weights: str | Path, *, names: list[str] | None = None,
                        device: torch.device | str = "cpu", limit: int | None = None,
                        keep_logits: bool = False) -> tuple[EvalResult, dict[str, Any]]:  # fmt: skip
    """Build ``variant`` for ``data``'s classes, load its checkpoint from ``weights``, evaluate it.

    Returns the result and what was used (``dataset``, ``weights`` file, ``num_classes``, and the dataset's
    ``warnings``, see :func:`dataset_warnings`).
    """
    from bench.build import build_model

    names = names or _checkpoint_names(variant)
    path = find_checkpoint(weights, names)
    plain, dataset_name, classes = open_dataset(data)  # fail on the data before building anything
    warnings = dataset_warnings(plain)
    for w in warnings:  # loud: the worker's stderr, and the cell's notes (evaluate_cell)
        log.warning("--data %s: %s", data, w)
    model = build_model(variant, num_classes=len(classes))
    load_weights(model, path)
    dataset, _, _ = open_dataset(data, model_transform(model))
    result = evaluate_model(model, dataset, device=device, limit=limit, keep_logits=keep_logits)
    return result, {"dataset": dataset_name, "weights": str(path), "num_classes": len(classes), "warnings": warnings}


def evaluate_cell(cell: Any, data: str, weights: str | None, *, device: torch.device | str = "cpu",
                  notes: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The ``accuracy`` metric's values for a cell evaluated on ``--data`` with ``--weights``."""
    from bench.spec import _thaw

    if not weights:
        raise EvaluationError("--data needs --weights: a randomly initialised model's accuracy is chance")
    extra = {k: _thaw(v) for k, v in cell.extra}
    limit = extra.get("data_limit")
    result, used = evaluate_checkpoint(cell.variant, data, weights, device=device, limit=limit)
    if notes is not None and limit:
        notes.append(f"accuracy: evaluated on the first {result.n} samples of {used['dataset']} only")
    if notes is not None:
        notes.extend(f"accuracy: {used['dataset']}: {w}" for w in used["warnings"])
    return {
        "dataset": used["dataset"],
        "accuracy_top1": result.top1,
        "accuracy_top5": result.top5,
        "accuracy_mean": result.top1,
        "accuracy_seeds": 1,
        "eval_samples": result.n,
        "train_budget": f"checkpoint {Path(used['weights']).name}",
    }


def _checkpoint_names(variant: Any) -> list[str]:
    builder_name = variant.builder.partition(":")[2]
    model = getattr(variant, "model", None) or builder_name
    return [model, builder_name]


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("..." if len(text) > 300 else "")
