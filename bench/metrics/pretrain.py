"""The ``pretrain`` metric (the pretraining suite's): declared in ``bench.pretraining.metric``, loaded here with
the built-in metrics so that its columns are in the catalogue whichever suites a process has loaded."""

from bench.pretraining.metric import pretrain_metric

__all__ = ["pretrain_metric"]
