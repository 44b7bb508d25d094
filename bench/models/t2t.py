"""T2T-ViT (Yuan et al. 2021, "Tokens-to-Token ViT: Training Vision Transformers from Scratch on ImageNet").

Written here from the paper's description, out of ``torch.nn`` and timm blocks:

* **Tokens-to-token module** (paper section 3.1): the image is cut into overlapping patches by a *soft split*
  (``nn.Unfold``: a k x k window with stride s < k, each window's pixels concatenated into one token); then,
  repeatedly, a small Transformer layer runs over the tokens, they are folded back into their 2-D grid
  (*re-structurization*) and soft-split again, so each new token aggregates its overlapping neighbours. A
  linear map takes the last split's tokens to the backbone's width. ``splits`` lists the (kernel, stride,
  padding) of every soft split; one T2T Transformer layer sits between consecutive splits. The published
  T2T-ViT uses ((7, 4, 2), (3, 2, 1), (3, 2, 1)): 224 -> 56 -> 28 -> 14 tokens a side.
* **T2T Transformer layer** (the ``_t`` models, "T2T-ViT_t"): one head of width ``token_dim`` (64) whose
  query/key/value read the wider split tokens; as the token width changes inside the layer, the value
  stream is the residual path (``x = v + proj(attention)``), then an MLP of ratio 1 with its own residual.
* **Backbone** (section 3.2): a class token, a fixed sinusoidal position table (Vaswani et al.; a buffer,
  not a parameter), ``depth`` pre-norm ViT blocks (``timm.models.vision_transformer.Block``, no qkv bias,
  MLP ratio 3: the "deep-narrow" layout), a final LayerNorm and a linear classifier on the class token.

T2T-ViT_t-14 (``t2t_vit(384, depth=14, num_heads=6)``) has 21.47M parameters as published. Its published
4.3 G MACs (mmpretrain's table) count the linear layers only; counted with attention's two matrix products,
as ``bench.flops`` counts every model, it is 6.1 G (the paper's own figure for T2T-ViT_t-14).

One deliberate difference from the authors' code: attention is scaled by ``1/sqrt(token_dim)`` (standard
scaled dot-product attention), where their code scales by the split tokens' width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: the published soft splits (kernel, stride, padding): 224 -> 56 -> 28 -> 14 tokens a side
SPLITS_224: tuple[tuple[int, int, int], ...] = ((7, 4, 2), (3, 2, 1), (3, 2, 1))


def _split_side(side: int, kernel: int, stride: int, padding: int) -> int:
    return (side + 2 * padding - kernel) // stride + 1


class TokenTransformer(nn.Module):
    """A T2T Transformer layer: one attention head of width ``dim`` over tokens of width ``dim_in``, then an MLP.

    The value projection is the residual stream (the input's width ``dim_in`` differs from ``dim``).
    """

    def __init__(self, dim_in: int, dim: int, mlp_ratio: float = 1.0) -> None:
        super().__init__()
        from timm.layers import Mlp

        self.norm1 = nn.LayerNorm(dim_in)
        self.qkv = nn.Linear(dim_in, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).unsqueeze(1).chunk(3, dim=-1)  # (B, 1 head, N, dim) each
        x = v.squeeze(1) + self.proj(F.scaled_dot_product_attention(q, k, v).squeeze(1))
        return x + self.mlp(self.norm2(x))


class TokensToToken(nn.Module):
    """Soft split -> (T2T layer -> re-structurize -> soft split) x (len(splits) - 1) -> linear to ``embed_dim``."""

    def __init__(self, img_size: int, in_chans: int, splits: Sequence[Sequence[int]], token_dim: int,
                 embed_dim: int) -> None:  # fmt: skip
        super().__init__()
        if not splits:
            raise ValueError("T2T-ViT needs at least one soft split")
        self.splits = nn.ModuleList(nn.Unfold(k, stride=s, padding=p) for k, s, p in splits)
        widths = [in_chans * splits[0][0] ** 2] + [token_dim * k**2 for k, _, _ in splits[1:]]
        self.layers = nn.ModuleList(TokenTransformer(w, token_dim) for w in widths[:-1])
        self.project = nn.Linear(widths[-1], embed_dim)
        self.sides = []  # the token grid's side after each split
        side = img_size
        for k, s, p in splits:
            side = _split_side(side, k, s, p)
            if side < 1:
                shown = tuple(map(tuple, splits))
                raise ValueError(f"T2T-ViT: soft splits {shown} leave no tokens of a {img_size}px image")
            self.sides.append(side)
        self.num_tokens = self.sides[-1] ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.splits[0](x).transpose(1, 2)  # (B, tokens, C * k * k)
        for layer, split, side in zip(self.layers, self.splits[1:], self.sides, strict=False):
            x = layer(x)
            grid = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], side, side)  # re-structurization
            x = split(grid).transpose(1, 2)
        return self.project(x)


class T2TViT(nn.Module):
    """Tokens-to-token module -> class token + fixed sinusoidal positions -> ViT blocks -> norm -> linear head."""

    def __init__(self, img_size: int = 224, in_chans: int = 3, num_classes: int = 1000, embed_dim: int = 384,
                 depth: int = 14, num_heads: int = 6, mlp_ratio: float = 3.0, token_dim: int = 64,
                 splits: Sequence[Sequence[int]] = SPLITS_224, qkv_bias: bool = False) -> None:  # fmt: skip
        super().__init__()
        from timm.models.vision_transformer import Block

        from bench.models.seq import sinusoid

        splits = tuple(tuple(int(v) for v in s) for s in splits)  # a stored record holds lists
        self.tokens_to_token = TokensToToken(img_size, in_chans, splits, token_dim, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # Fixed, as in the paper: a buffer, so it is neither trained nor counted as a parameter.
        pos = sinusoid(self.tokens_to_token.num_tokens + 1, embed_dim, device=self.cls_token.device)
        self.register_buffer("pos_embed", pos.unsqueeze(0), persistent=False)
        self.blocks = nn.Sequential(*(Block(embed_dim, num_heads, mlp_ratio, qkv_bias=qkv_bias) for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        self.num_features = embed_dim
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokens_to_token(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed.to(x.dtype)
        return self.norm(self.blocks(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)[:, 0])


def _init_weights(m: nn.Module) -> None:
    # ViT's initialisation (the authors' code does the same): truncated normal linear weights, zero biases.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def t2t_vit(embed_dim: int = 384, depth: int = 14, num_heads: int = 6, mlp_ratio: float = 3.0, token_dim: int = 64,
            img_size: int = 224, splits: Sequence[Sequence[int]] = SPLITS_224,
            num_classes: int = 1000) -> nn.Module:  # fmt: skip
    """A T2T-ViT with a Transformer T2T module; the defaults are T2T-ViT_t-14 (21.5M parameters)."""
    return T2TViT(img_size=img_size, num_classes=num_classes, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                  mlp_ratio=mlp_ratio, token_dim=token_dim, splits=splits)  # fmt: skip
