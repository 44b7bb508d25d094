"""cv-backbones: eleven image-classification families at two matched parameter budgets, 224x224 RGB.

Families: a plain VGG-style CNN, Inception, ResNet, DenseNet, EfficientNet, ConvNeXt, ViT, DeiT (distilled,
with its distillation token), Swin, CaiT (class-attention layers on top of a deep ViT) and T2T-ViT
(tokens-to-token soft splits before a deep-narrow ViT). Every model comes from timm (or torchvision for
GoogLeNet; T2T-ViT is ``bench.models.t2t``, built from torch.nn and timm blocks), randomly initialised, with
1000 classes; its forward takes one ``(B, 3, 224, 224)`` tensor and returns logits.

CaiT keeps cait_xxs24's layout (24 self-attention layers with talking heads and LayerScale, then 2
class-attention layers) and solves its width, heads keeping CaiT's head dim of 48. T2T-ViT keeps
T2T-ViT_t-14's (a Transformer T2T module of token width 64 over three soft splits, 14 blocks of MLP ratio 3)
and solves its width, heads keeping its head dim of 64.

A tier uses a family's canonical timm config where it lands within ±10% of the tier's target; otherwise one
architectural knob (width, growth rate, embedding dim, compound-scaling coefficient) is solved by
``bench.sizing`` over a grid, keeping the rest of the canonical layout (depths, head counts, strides).

Inception has no width argument in timm or torchvision. The small tier uses timm's ``inception_v3``
(23.8M, canonical); the tiny tier uses torchvision's GoogLeNet (Inception v1, 6.6M without auxiliary heads)
with the widths of its 3x3/5x5 reduction convolutions scaled by ``bottleneck``, set through GoogLeNet's own
``blocks`` argument: the branch outputs, so the block interfaces and the 1024-wide classifier torchvision
hard-codes, stay as published.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

from torch import nn

from bench.registry import register_suite
from bench.spec import AccuracySpec, Knob, Profile, Suite, Tier, VariantSpec, freeze

_HERE = __name__  # "bench.suites.cv_backbones": how workers find the builders below


# --- builders: each returns a model whose forward maps (B, 3, H, W) to (B, num_classes) logits -------------


def vgg(width: int = 64, depth: str = "vgg11", num_classes: int = 1000) -> nn.Module:
    """timm's VGG with BatchNorm, ``width`` channels in the first stage (64 canonical), and a GAP + linear head.

    Named ``vgg11_bn_gap`` in the suite: the conv stack is VGG-11's, the head is not.

    timm's VGG always builds a 4096-wide 7x7 ConvMlp pre-logits head (~120M params at 512 channels, 20x the
    tiny tier). It is built one channel wide (``mlp_ratio``) and replaced by the global-pool + linear
    classifier the other CNN families use, so the budget goes to the conv stack.
    """
    from timm.layers import ClassifierHead
    from timm.models.vgg import VGG, cfgs

    cfg = [c if c == "M" else c * width // 64 for c in cfgs[depth]]
    model = VGG(cfg, num_classes=num_classes, norm_layer=nn.BatchNorm2d, mlp_ratio=1 / 4096)
    model.pre_logits = nn.Identity()
    model.head = ClassifierHead(model.num_features, num_classes)
    model.head_hidden_size = model.num_features
    return model


def googlenet(bottleneck: float = 1.0, num_classes: int = 1000) -> nn.Module:
    """torchvision's GoogLeNet without auxiliary heads, reduction widths scaled by ``bottleneck``."""
    from torchvision.models.googlenet import BasicConv2d, GoogLeNet, InceptionAux

    blocks = [BasicConv2d, partial(_inception_block, bottleneck=bottleneck), InceptionAux]
    # init_weights=False: PyTorch's default init (None would warn); weights are random either way.
    return GoogLeNet(num_classes=num_classes, aux_logits=False, init_weights=False, blocks=blocks)


def _inception_block(
    in_ch: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int, *, bottleneck: float
) -> nn.Module:
    from torchvision.models.googlenet import Inception

    return Inception(in_ch, c1, max(1, round(c3r * bottleneck)), c3, max(1, round(c5r * bottleneck)), c5, pool)


def efficientnet(channel_multiplier: float = 1.0, depth_multiplier: float = 1.0, num_classes: int = 1000) -> nn.Module:
    """timm's EfficientNet (B0 layout) at any width/depth multiplier.

    ``timm.create_model("efficientnet_b0", channel_multiplier=...)`` fails on a duplicate argument, so this
    calls timm's generator behind the registered names.
    """
    from timm.models.efficientnet import _gen_efficientnet

    return _gen_efficientnet(
        "efficientnet_b0",
        channel_multiplier=channel_multiplier,
        depth_multiplier=depth_multiplier,
        pretrained=False,
        num_classes=num_classes,
    )


# --- knob derivations: knob value -> model arguments --------------------------------------------------------


def convnext_dims(width: int) -> dict[str, Any]:
    """ConvNeXt stage widths (w, 2w, 4w, 8w), as in every canonical ConvNeXt."""
    return {"dims": (width, 2 * width, 4 * width, 8 * width)}


def vit_width(dim: int) -> dict[str, Any]:
    """ViT embedding width with the head count whose head dim is nearest 64 (ViT/DeiT's), among dim's divisors."""
    heads = min((h for h in range(1, dim + 1) if dim % h == 0), key=lambda h: (abs(dim / h - 64), h))
    return {"embed_dim": dim, "num_heads": heads}


def cait_width(dim: int) -> dict[str, Any]:
    """CaiT embedding width with the head count whose head dim is nearest 48 (every canonical CaiT's)."""
    heads = min((h for h in range(1, dim + 1) if dim % h == 0), key=lambda h: (abs(dim / h - 48), h))
    return {"embed_dim": dim, "num_heads": heads}


def efficientnet_compound(phi: float) -> dict[str, Any]:
    """EfficientNet compound scaling (Tan & Le 2019, eq. 3): depth 1.2**phi, width 1.1**phi (B4 is phi ~3.5)."""
    return {"channel_multiplier": round(1.1**phi, 3), "depth_multiplier": round(1.2**phi, 3)}


# --- the suite ---------------------------------------------------------------------------------------------

_VGG = Knob("width", tuple(range(16, 257, 4)))
_GROWTH = Knob("growth_rate", tuple(range(8, 97)))
_VIT = Knob("embed_dim", tuple(range(96, 1025, 12)), derive=f"{_HERE}:vit_width")
# Swin keeps its (3, 6, 12, 24) heads, so the embedding width steps by 3 (head dim = embed_dim / 3).
_SWIN = Knob("embed_dim", tuple(range(24, 193, 3)))
_CONVNEXT = Knob("dims", tuple(range(16, 257, 8)), derive=f"{_HERE}:convnext_dims")
_CAIT = Knob("embed_dim", tuple(range(96, 1025, 12)), derive=f"{_HERE}:cait_width")
_T2T = "bench.models.t2t:t2t_vit"
_PHI = Knob("phi", tuple(i / 10 for i in range(71)), derive=f"{_HERE}:efficientnet_compound")
_BOTTLENECK = Knob("bottleneck", tuple(i / 16 for i in range(4, 17)))

TINY = Tier(
    name="tiny",
    target_params=5_500_000,
    description="~5.5M params: DeiT-Ti / EfficientNet-B0 class",
    variants=(
        VariantSpec("vgg", f"{_HERE}:vgg", name="vgg11_bn_gap", knob=_VGG),
        VariantSpec("inception", f"{_HERE}:googlenet", knob=_BOTTLENECK),
        VariantSpec("resnet", "timm:resnet10t"),
        VariantSpec("densenet", "timm:densenet121", knob=_GROWTH),
        VariantSpec("efficientnet", "timm:efficientnet_b0"),
        VariantSpec("convnext", "timm:convnext_femto"),
        VariantSpec("vit", "timm:vit_tiny_patch16_224"),
        VariantSpec("deit", "timm:deit_tiny_distilled_patch16_224"),
        VariantSpec("swin", "timm:swin_tiny_patch4_window7_224", name="swin_p4w7", knob=_SWIN),
        VariantSpec("cait", "timm:cait_xxs24_224", knob=_CAIT),
        VariantSpec("t2t", _T2T, name="t2t_vit_t_14", knob=_VIT),
    ),
)

SMALL = Tier(
    name="small",
    target_params=25_000_000,
    description="~25M params: ResNet-50 / Inception-v3 class",
    variants=(
        VariantSpec("vgg", f"{_HERE}:vgg", name="vgg11_bn_gap", knob=_VGG),
        VariantSpec("inception", "timm:inception_v3"),
        VariantSpec("resnet", "timm:resnet50"),
        VariantSpec("densenet", "timm:densenet201", knob=_GROWTH),
        VariantSpec("efficientnet", f"{_HERE}:efficientnet", knob=_PHI),
        VariantSpec("convnext", "timm:convnext_tiny", knob=_CONVNEXT),
        VariantSpec("vit", "timm:vit_small_patch16_224", name="vit_p16", knob=_VIT),
        VariantSpec("deit", "timm:deit_small_distilled_patch16_224", name="deit_distilled_p16", knob=_VIT),
        VariantSpec("swin", "timm:swin_tiny_patch4_window7_224", name="swin_p4w7", knob=_SWIN),
        VariantSpec("cait", "timm:cait_xxs24_224", knob=_CAIT),
        VariantSpec("t2t", _T2T, name="t2t_vit_t_14", knob=_VIT),
    ),
)

# --- accuracy: the micro tier (bench.accuracy; docs/accuracy.md) ---------------------------------------------
# ~0.5M-parameter variants at 32x32 with 10 classes: the only tier the accuracy metric trains (on scikit-learn's
# digits). One knob per family lands it on the target; the layouts are canonical except where 32x32 needs
# otherwise: ViT/DeiT take 4-pixel patches (8x8 tokens), 6 blocks and 32-wide heads; Swin takes 2-pixel
# patches, 4x4 windows and its first three stages (16, 8 and 4 tokens a side); ResNet is resnet18's layout.
_A = "bench.accuracy.models"
_N10 = freeze({"num_classes": 10})
_VIT32 = freeze({"img_size": 32, "num_classes": 10, "patch_size": 4, "depth": 6})
_SWIN32 = freeze({"img_size": 32, "num_classes": 10, "patch_size": 2, "window_size": 4, "depths": (2, 2, 6),
                  "num_heads": (2, 4, 8)})  # fmt: skip
# T2T-ViT at 32x32: two soft splits (3x3, stride 2): 32 -> 16 -> 8 tokens a side (the micro ViT's 8x8 grid),
# one T2T layer of token width 32 between them, and 6 blocks like the micro ViT. CaiT: 6 + 2 class-attention layers.
_T2T32 = freeze({"img_size": 32, "num_classes": 10, "depth": 6, "splits": ((3, 2, 1), (3, 2, 1)), "token_dim": 32})
_MICRO_VIT = Knob("embed_dim", tuple(range(32, 257, 4)), derive=f"{_A}:vit_micro_width")
_GOOGLENET_W = Knob("width", tuple(i / 100 for i in range(5, 101)))
_EFFNET_W = Knob("channel_multiplier", tuple(i / 100 for i in range(10, 101)))
_CONVNEXT_W = Knob("width", tuple(range(8, 65)), derive=f"{_HERE}:convnext_dims")
_SWIN_W = Knob("embed_dim", tuple(range(8, 129, 2)))

MICRO = Tier(
    name="micro",
    target_params=500_000,
    input_shape=(3, 32, 32),
    description="~0.5M params at 32x32, 10 classes: trained on digits by the accuracy metric",
    variants=(
        VariantSpec("vgg", f"{_HERE}:vgg", _N10, Knob("width", tuple(range(4, 65))), name="vgg11_bn_gap"),
        VariantSpec("inception", f"{_A}:googlenet_micro", _N10, _GOOGLENET_W, name="googlenet"),
        VariantSpec("resnet", "timm:resnet18", _N10, Knob("width", tuple(range(4, 65)), derive=f"{_A}:resnet_widths")),
        VariantSpec("densenet", "timm:densenet121", _N10, Knob("growth_rate", tuple(range(4, 33)))),
        VariantSpec("efficientnet", f"{_HERE}:efficientnet", _N10, _EFFNET_W, name="efficientnet_b0"),
        VariantSpec("convnext", "timm:convnext_atto", _N10, _CONVNEXT_W),
        VariantSpec("vit", "timm:vit_tiny_patch16_224", _VIT32, _MICRO_VIT, name="vit_p4d6"),
        VariantSpec("deit", "timm:deit_tiny_distilled_patch16_224", _VIT32, _MICRO_VIT, name="deit_distilled_p4d6"),
        VariantSpec("swin", "timm:swin_tiny_patch4_window7_224", _SWIN32, _SWIN_W, name="swin_p2w4"),
        VariantSpec("cait", "timm:cait_xxs24_224", _VIT32, _MICRO_VIT, name="cait_p4d6"),
        VariantSpec("t2t", _T2T, _T2T32, _MICRO_VIT, name="t2t_vit_t_d6"),
    ),
)
#: the same protocol for every family (bench.accuracy.train); 5 epochs of 1257 images = 100 steps per seed. DeiT is
#: also trained with the best CNN on digits, VGG, as its teacher (bench.accuracy.distill; docs/accuracy.md).
DIGITS = AccuracySpec(task="digits", epochs=5, batch_size=64, lr=3e-3, weight_decay=0.05, warmup=0.05,
                      augment="shift:2", seeds=3, teacher="vgg")  # fmt: skip
#: 20x the budget (100 epochs = 2000 steps per seed): does the ViTs' gap close with training (under-training)
#: or stay (data hunger)? About 3 h on 2 CPU cores for the 11 families (docs/accuracy.md has the estimate).
DIGITS_LONG = replace(DIGITS, epochs=100)
_ACCURACY_ONLY = ("params", "flops", "accuracy")
_WITH_ACCURACY = ("params", "flops", "memory", "latency", "accuracy")  # accuracy last: a failure keeps the costs

# Windows sized for a 2-core CPU, where a cell also spends ~5 s on process start, build and FLOP counting, and
# one forward takes 10-120 ms at batch 1 and 40-1700 ms at batch 8 (VGG is the slowest).
PROFILES = (
    Profile(
        "quick",
        # The micro tier is left out by default: with it the run passed 2 minutes on 2 cores (18 cells,
        # ~2.5 s of process start each). `--tier micro` gives a one-seed, one-epoch accuracy smoke run.
        tiers=("tiny",),
        batch_sizes=(1,),
        warmup_s=0.3,
        min_run_time_s=0.5,
        timeout_s=120.0,
        description="smoke run: tiny tier, batch 1, fp32 (11 cells, about a minute on 2 CPU cores); "
        "with --tier micro: 1 epoch of digits, 1 seed",
        metrics=_WITH_ACCURACY,
        accuracy=replace(DIGITS, epochs=1, seeds=1),
    ),
    Profile(
        "default",
        batch_sizes=(1, 8),
        warmup_s=0.5,
        min_run_time_s=2.0,
        timeout_s=300.0,
        description="both tiers, batch 1 and 8, fp32, plus micro (55 cells, about 17 minutes on 2 CPU cores); "
        "micro tier: digits accuracy, 5 epochs x 3 seeds (DeiT also with a VGG teacher)",
        metrics=_WITH_ACCURACY,
        accuracy=DIGITS,
    ),
    Profile(
        "full",
        batch_sizes=(1, 8, 32),
        dtypes=("fp32", "bf16"),
        warmup_s=1.0,
        min_run_time_s=5.0,
        max_samples=5000,
        timeout_s=600.0,
        description="both tiers, batch 1/8/32, fp32 and bf16 (143 cells); micro tier: digits accuracy, "
        "20 epochs x 5 seeds",
        metrics=_WITH_ACCURACY,
        accuracy=replace(DIGITS, epochs=20, seeds=5),
    ),
    # Accuracy alone (no timing: safe on a busy machine): the micro tier's cells, one per family.
    Profile(
        "accuracy",
        tiers=("micro",),
        metrics=_ACCURACY_ONLY,
        timeout_s=300.0,
        description="the micro tier's digits accuracy alone, 5 epochs x 3 seeds, DeiT also with its VGG teacher "
        "(11 cells, about 10 minutes on 2 CPU cores)",
        accuracy=DIGITS,
    ),
    Profile(
        "accuracy-long",
        tiers=("micro",),
        metrics=_ACCURACY_ONLY,
        timeout_s=300.0,
        description="the micro tier's digits accuracy at 20x the budget: 100 epochs x 3 seeds (about 3 hours on "
        "2 CPU cores; --family vit,deit,vgg about 70 minutes)",
        accuracy=DIGITS_LONG,
    ),
    # Executions (docs/executions.md): the tiny tier eager, compiled, in channels_last and under bf16 autocast
    # (on CUDA also compile-max and reduce-overhead). A compile on 2 CPU cores takes ~20-200 s per cell (a cold
    # inductor cache each time), reported as progress only when it ends: hence the long stall timeout.
    Profile(
        "executions",
        tiers=("tiny",),
        batch_sizes=(1, 8),
        executions=("eager", "compile", "channels_last", "autocast"),
        cuda_executions=("compile-max", "reduce-overhead"),
        metrics=("params", "flops", "execution", "memory", "latency"),
        warmup_s=0.5,
        min_run_time_s=2.0,
        timeout_s=900.0,
        description="tiny tier, batch 1 and 8, eager / compile / channels_last / bf16 autocast (88 cells on CPU; "
        "on CUDA also compile-max and reduce-overhead): compile seconds, first call and steady latency",
    ),
)


@register_suite("cv-backbones")
def cv_backbones() -> Suite:
    """Eleven image backbones at ~5.5M and ~25M parameters, 224x224 RGB, 1000 classes."""
    return Suite(
        name="cv-backbones",
        description="Eleven image-classification backbones at matched parameter budgets (5.5M, 25M), 224x224 RGB",
        input_kind="image",
        tiers=(TINY, SMALL, MICRO),
        profiles=PROFILES,
        default_profile="default",
        input_args=freeze({}),
        reference_family="resnet",
    )
