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

Every fault (missing checkpoint, unreadable file, shape mismatch, unreadable dataset) is an
:class:`EvaluationError` naming the file and what is wrong; the metric turns it into that cell's error and
the run goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import UsageError

log = logging.getLogger(__name__)

#: checkpoint file suffixes looked for, in this order
SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt", ".bin")
#: torchvision's folder names for the CIFAR archives, by dataset
CIFAR_FOLDERS: dict[str, str] = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


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
        raise EvaluationError(f"{path}: cannot read checkpoint ({type(e).__name__}: {_short(e)})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvaluationError(f"{path}: not a state dict (expected a mapping of parameter names to tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


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
        ds = datasets.ImageFolder(str(root), transform=transform)
    except Exception as e:  # noqa: BLE001 -- FileNotFoundError for an empty tree, others for odd files
        raise EvaluationError(f"--data {root}: not a readable ImageFolder tree ({_short(e)})") from None
    return ds, f"imagefolder:{root.name}", list(ds.classes)


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
    except (OSError, ValueError) as e:  # an unreadable or truncated image file
        raise EvaluationError(f"cannot read the dataset: {type(e).__name__}: {_short(e)}") from None
    n = len(dataset)
    return EvalResult(top1=top1 / n, top5=top5 / n, n=n, logits=torch.cat(kept) if keep_logits else None)


def evaluate_checkpoint(variant: Any, data: str | Path, weights: str | Path, *, names: list[str] | None = None,
                        device: torch.device | str = "cpu", limit: int | None = None,
                        keep_logits: bool = False) -> tuple[EvalResult, dict[str, Any]]:  # fmt: skip
    """Build ``variant`` for ``data``'s classes, load its checkpoint from ``weights``, evaluate it.

    Returns the result and what was used (``dataset``, ``weights`` file, ``num_classes``).
    """
    from bench.build import build_model

    names = names or _checkpoint_names(variant)
    path = find_checkpoint(weights, names)
    _, dataset_name, classes = open_dataset(data)  # fail on the data before building anything
    model = build_model(variant, num_classes=len(classes))
    load_weights(model, path)
    dataset, _, _ = open_dataset(data, model_transform(model))
    result = evaluate_model(model, dataset, device=device, limit=limit, keep_logits=keep_logits)
    return result, {"dataset": dataset_name, "weights": str(path), "num_classes": len(classes)}


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
