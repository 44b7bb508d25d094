"""pretraining: self-supervised objectives compared at matched backbone size and matched pretraining FLOPs.

Families are **objectives**, tiers are their **groups** (a tier is a parameter budget shared by every family
in it, which is what "same backbone size" means here):

* ``language``: ``mlm`` (BERT), ``clm`` (GPT), ``denoise`` (BART), ``mass`` (MASS), ``random-init``;
  nn.Transformer encoders / encoder-decoders on a generated language (``bench.pretraining.language``);
* ``vision``: ``mae``, ``rotnet``, ``simclr``, ``moco``, ``supervised`` (a disjoint labelled task),
  ``random-init``; a timm ViT on a generated image world (``bench.pretraining.vision``);
* ``joint``: ``clip``, ``align-noisy`` (30% of captions corrupted), ``random-init``
  (``bench.pretraining.joint``).

Every objective of a group gets the same pretraining **FLOP budget** (its step counted forward and backward
by ``bench.flops.count_train_flops``), then the same downstream evaluation: a linear probe at checkpoints
along the budget (accuracy vs FLOPs) and at the end, a short fine-tune, and zero-shot (joint) or perplexity
and grammar acceptance (clm); seeds give mean ± 95% CI. One cell per objective (``pretrain`` metric,
``bench.pretraining.metric``). docs/pretraining.md describes the data, the objectives and the protocol.
"""

from __future__ import annotations

from bench.pretraining import metric as _metric  # noqa: F401 -- registers the pretrain metric and input kind
from bench.registry import register_suite
from bench.spec import AccuracySpec, Knob, Profile, Suite, Tier, VariantSpec, freeze

_BUILD = "bench.pretraining.objective:build"
#: widths divisible by the 4 attention heads
WIDTH = Knob("width", tuple(range(16, 513, 4)))


def _spec(family: str, objective: str | None = None, **args: object) -> VariantSpec:
    return VariantSpec(family, _BUILD, freeze({"objective": objective or family, **args}), WIDTH, name=family,
                       count="backbone")  # fmt: skip


GROUPS = {
    "language": (_spec("mlm"), _spec("clm"), _spec("denoise"), _spec("mass"),
                 _spec("random-init", "random-init-language")),
    "vision": (_spec("mae"), _spec("rotnet"), _spec("simclr"), _spec("moco"), _spec("supervised"),
               _spec("random-init")),
    "joint": (_spec("clip"), _spec("align-noisy"), _spec("random-init", "random-init-joint")),
}  # fmt: skip
_SHAPES = {"language": (40,), "vision": (3, 32, 32), "joint": (3, 32, 32)}
_DESCRIPTIONS = {
    "language": "~0.2M backbone params: 4 encoder layers, or 2 + 2 encoder-decoder layers (width solved)",
    "vision": "~0.2M backbone params: ViT, 32x32 images, patch 4, depth 4",
    "joint": "~0.2M backbone params: ViT depth 3 + text encoder of 2 layers",
}
TIERS = tuple(Tier(g, 200_000, v, tolerance=0.10, input_shape=_SHAPES[g], description=_DESCRIPTIONS[g])
              for g, v in GROUPS.items())  # fmt: skip

# --- the plans: pretraining budget (task_args) + downstream fine-tune protocol (the AccuracySpec fields) -----
_PLAN = {"batch_size": 64, "lr": 1e-3, "weight_decay": 0.05, "warmup": 0.05, "checkpoints": (0.25, 0.5, 1.0),
         "data_seed": 0}  # fmt: skip
DEFAULT = AccuracySpec(
    task="pretraining",
    task_args=freeze({**_PLAN, "budgets": {"language": 6e11, "vision": 8e11, "joint": 8e11},
                      "labelled_train": 500, "labelled_test": 500, "pool_factor": 10.0, "samples": 200,
                      "heldout_docs": 500}),
    tiers=tuple(GROUPS), epochs=4.0, batch_size=32, lr=1e-3, weight_decay=0.05, warmup=0.1, seeds=3,
)  # fmt: skip
# Why these budgets: at the first ones (3e11 / 4e11: 35-230 steps) every probe sat on the random-init floor
# (docs/pretraining.md, "Reading the results"); these 2x take 7.5 min on 2 quiet cores (the description's
# estimate predates that run), so ~3x more fits the 30-minute target: the next step. The fine-tune: 4 epochs
# of 500 in batches of 32 (64 steps); 3 epochs of 64 (24 steps) left every objective at chance.
QUICK = AccuracySpec(
    task="pretraining",
    task_args=freeze({**_PLAN, "budgets": {"language": 2e10, "vision": 3e10, "joint": 2.5e10},
                      "checkpoints": (0.5, 1.0), "labelled_train": 150, "labelled_test": 150, "pool_factor": 10.0,
                      "samples": 50, "heldout_docs": 100}),
    tiers=tuple(GROUPS), epochs=1.0, batch_size=64, lr=1e-3, weight_decay=0.05, warmup=0.1, seeds=1,
)  # fmt: skip
_METRICS = ("params", "pretrain")
PROFILES = (
    Profile("quick", metrics=_METRICS, timeout_s=300.0, accuracy=QUICK,
            description="CI-sized: every objective, ~5-10 pretraining steps per group, 1 seed, 150 + 150 labelled"),
    Profile("default", metrics=_METRICS, timeout_s=900.0, accuracy=DEFAULT,
            description="every objective, budgets of ~140-220 one-view steps (language 6e11, vision and joint "
                        "8e11 FLOPs), 3 seeds, 500 + 500 labelled (estimated 25-30 min on 2 cores)"),
)  # fmt: skip


@register_suite("pretraining")
def pretraining() -> Suite:
    """Pretraining objectives at ~0.2M backbone parameters and equal pretraining FLOPs, per group."""
    return Suite(name="pretraining", description=__doc__.splitlines()[0], input_kind="pretraining", tiers=TIERS,
                 profiles=PROFILES, default_profile="default")  # fmt: skip
