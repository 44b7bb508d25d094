"""A deliberately slower variant, for the A/B check of ``benchmarks/compare_aa_ab.py``.

Put this folder on ``PYTHONPATH`` and set ``AIGC_BENCH_SLOWDOWN=FAMILY:FRACTION`` (e.g. ``resnet:0.10``):
every forward of that timm family's model class then takes ``1 + FRACTION`` times as long, by
spinning on the clock after the real forward. The model, its parameters, MACs and memory are
unchanged; only its latency is, as with a code change that makes the model slower. Every process
(the run and its spawned cell workers) reads the variable at start-up; nothing happens without it.

Benchmark-only: never imported by the package.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time

_SPEC = os.environ.get("AIGC_BENCH_SLOWDOWN", "")
#: timm module and class per family this hook can slow down
_TARGETS = {"resnet": ("timm.models.resnet", "ResNet"), "vit": ("timm.models.vision_transformer", "VisionTransformer")}


def _slow(cls: type, fraction: float) -> None:
    forward = cls.forward

    def slower(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = forward(self, *args, **kwargs)
        until = t0 + (time.perf_counter() - t0) * (1.0 + fraction)
        while time.perf_counter() < until:  # spin: a sleep would give the CPU away and be coarser
            pass
        return out

    cls.forward = slower


class _Patcher(importlib.abc.MetaPathFinder):
    """Patches the target class right after its module is imported (timm is imported lazily by the workers)."""

    def __init__(self, module: str, cls: str, fraction: float) -> None:
        self.module, self.cls, self.fraction = module, cls, fraction

    def find_spec(self, fullname, path, target=None):
        if fullname != self.module:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def patched_exec(module):
            exec_module(module)
            _slow(getattr(module, self.cls), self.fraction)

        spec.loader.exec_module = patched_exec
        return spec


if _SPEC:
    _family, _fraction = _SPEC.split(":")
    sys.meta_path.insert(0, _Patcher(*_TARGETS[_family], float(_fraction)))
