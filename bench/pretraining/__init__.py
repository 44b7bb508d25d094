"""The pretraining suite's pieces: generated data, objectives by group, equal-compute budgets, evaluation.

* ``data``: the image world with captions and the generated language with its acceptor (offline, seeded);
* ``objective``: the ``Objective`` interface and the builder the suite names; ``language``, ``vision`` and
  ``joint`` hold the objectives of each group;
* ``budget``: one real training step counted forward and backward (``bench.flops.count_train_flops``) and
  the steps a FLOP budget buys;
* ``evaluate``: linear probe, fine-tune, zero-shot, perplexity and grammar acceptance;
* ``protocol``: pretrain to the budget and evaluate, per seed; ``metric``: the ``pretrain`` metric;
* ``report``: objective x metric tables per group and probe accuracy against pretraining FLOPs.

docs/pretraining.md describes them. Importing this package imports no torch.
"""
