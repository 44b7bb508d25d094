"""The unit of work latency and memory both measure: one inference call or one training step.

Kept in one place so that ``latency`` and ``memory`` time and size exactly the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch  # annotations only: torch is imported where it is used (the catalogue reads this module)

#: learning rate of the training step's optimizer; the value does not change the cost of a step.
TRAIN_LR = 1e-4


def as_inputs(example_inputs: Any) -> tuple[Any, ...]:
    """A tensor becomes a one-element tuple; a list or tuple becomes a tuple of positional inputs."""
    if isinstance(example_inputs, tuple):
        return example_inputs
    if isinstance(example_inputs, list):
        return tuple(example_inputs)
    return (example_inputs,)


def scalar_loss(output: Any) -> torch.Tensor:
    """Sum of the means of every floating-point tensor in ``output`` (tensors, tuples, lists, dicts).

    A stand-in loss: it touches every output, so backward runs through the whole graph, and its own
    cost (one reduction per output) is negligible next to the model's.
    """
    import torch

    terms = [t.float().mean() for t in _float_tensors(output)]
    if not terms:
        raise ValueError(f"model output ({type(output).__name__}) holds no floating-point tensor to build a loss from")
    return torch.stack(terms).sum() if len(terms) > 1 else terms[0]


def _float_tensors(x: Any) -> list[torch.Tensor]:
    import torch

    if isinstance(x, torch.Tensor):
        return [x] if x.is_floating_point() else []
    if isinstance(x, Mapping):
        return [t for v in x.values() for t in _float_tensors(v)]
    if isinstance(x, Sequence) and not isinstance(x, str | bytes):
        return [t for v in x for t in _float_tensors(v)]
    return []


def make_step(model: torch.nn.Module, inputs: Any, mode: str) -> Callable[[], Any]:
    """A zero-argument callable doing one unit of work on ``model``.

    ``mode="infer"``: ``model.eval()``, then each call is ``model(*inputs)`` under
    ``torch.inference_mode()`` (no autograd bookkeeping at all, cheaper than ``no_grad``).

    ``mode="train"``: ``model.train()``, then each call is a whole training step: forward, a scalar
    loss (:func:`scalar_loss`), backward, an ``AdamW`` step and ``zero_grad(set_to_none=True)``, with
    autograd on even when the caller is under ``torch.no_grad()`` or ``torch.inference_mode()``.
    The optimizer lives in the returned closure, so its state is created on the first call (as in
    real training) and freed with the closure. Training steps change the model's parameters.
    """
    import torch

    args = as_inputs(inputs)
    if mode == "infer":
        model.eval()

        def infer_step() -> Any:
            with torch.inference_mode():
                return model(*args)

        return infer_step
    if mode == "train":
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("mode='train' needs a model with trainable parameters")
        model.train()
        opt = torch.optim.AdamW(params, lr=TRAIN_LR)

        def train_step() -> torch.Tensor:
            # A training step needs autograd whatever mode the caller is in (no_grad, inference_mode).
            with torch.inference_mode(False), torch.enable_grad():
                loss = scalar_loss(model(*args))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.detach()

        return train_step
    raise ValueError(f"unknown mode {mode!r}; valid: 'infer', 'train'")


def resolve_device(model: torch.nn.Module, inputs: tuple[Any, ...], device: str | torch.device | None) -> torch.device:
    """``device`` if given; else where the model's first parameter/buffer lives, else the first input tensor, else CPU."""
    import torch

    if device is not None:
        return torch.device(device)
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    for x in inputs:
        if isinstance(x, torch.Tensor):
            return x.device
    return torch.device("cpu")


def to_device(inputs: tuple[Any, ...], device: torch.device) -> tuple[Any, ...]:
    """Move the tensors among positional inputs to ``device`` (a no-op for those already there)."""
    import torch

    return tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in inputs)


def prepare(
    model: torch.nn.Module, example_inputs: Any, device: str | torch.device | None
) -> tuple[torch.device, tuple[Any, ...]]:
    """Resolve the device, move the model and the inputs there, and return ``(device, inputs)``."""
    import torch

    inputs = as_inputs(example_inputs)
    dev = resolve_device(model, inputs, device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {str(dev)!r}; valid: 'cpu', 'cuda'")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    model.to(dev)
    return dev, to_device(inputs, dev)


@contextmanager
def preserved_state(device: torch.device) -> Iterator[None]:
    """Leave the process-wide state a measurement touches as the caller had it, also when the block raises.

    A step with dropout draws from torch's global RNG (on ``device`` too, for CUDA), and a thread count
    set for the block must not outlive it. Grad and inference mode are only ever entered as context
    managers, so they restore themselves. The model itself is the measurement's to change, as documented:
    it is moved to ``device`` and left in the mode measured (``eval`` or ``train``), and training steps
    change its parameters.
    """
    import torch

    threads = torch.get_num_threads()
    rng_devices = [device.index] if device.type == "cuda" and device.index is not None else []
    try:
        with torch.random.fork_rng(devices=rng_devices):
            yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
