"""bench.flops: exact MACs against closed forms (REFERENCE.md section 2), on meta and on real CPU tensors.

Every case runs twice where it matters: on meta (the product path: composite ops decompose into
mm/bmm/addmm, fused RNNs are answered whole) and with ``device=None`` on real CPU tensors, which
exercises the fused kernels' formulas (mkldnn_rnn_layer, _scaled_dot_product_flash_attention_for_cpu,
_native_multi_head_attention, _transformer_encoder_layer_fwd).
"""

from __future__ import annotations

import dataclasses
import json
import resource
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from bench.flops import CONVENTION, FlopCount, count_flops
from bench.flops import _ops as ops
from bench.flops.crosscheck import crosscheck

DEVICES = ["meta", None]
aten = torch.ops.aten


def close(actual: int, expected: int, rel: float = 0.005) -> bool:
    return abs(actual - expected) <= rel * max(abs(expected), 1)


def counted(model: nn.Module, inputs, device: str | None = "meta") -> FlopCount:
    count = count_flops(model, inputs, device=device)
    assert count.uncounted == {}, count.uncounted
    assert count.method == ("meta" if device == "meta" else "real"), count.method
    return count


# --- recurrent networks ----------------------------------------------------------------------------------


GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def rnn_closed_form(kind: str, i: int, h: int, tokens: int, layers: int = 1, bidir: bool = False, proj: int = 0) -> int:
    """REFERENCE.md: g*H*(I + H) per step per layer-direction (LSTM projection: W_hh is (4H, P), plus P*H)."""
    g, d = GATES[kind], 2 if bidir else 1
    out = proj or h
    total = 0
    for layer in range(layers):
        inp = i if layer == 0 else d * out
        total += d * (g * h * (inp + out) + (proj * h if proj else 0))
    return total * tokens


def make_rnn(kind: str, i: int, h: int, **kw) -> nn.Module:
    if kind == "rnn_relu":
        return nn.RNN(i, h, nonlinearity="relu", **kw)
    return {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind](i, h, **kw)


@pytest.mark.parametrize("device", DEVICES)
def test_reference_regression_values(device) -> None:
    x = torch.randn(20, 1, 16)
    assert counted(nn.LSTM(16, 32), x, device).macs == 122_880
    assert counted(nn.GRU(16, 32), x, device).macs == 92_160
    assert counted(nn.RNN(16, 32), x, device).macs == 30_720
    q = torch.randn(1, 4, 64, 32)
    assert counted(SDPA(), (q, q, q), device).macs == 1_048_576


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["rnn", "rnn_relu", "gru", "lstm"])
@pytest.mark.parametrize(("layers", "bidir", "batch_first"), [(1, False, False), (2, True, True), (3, False, True)])
def test_rnn_closed_forms(kind, layers, bidir, batch_first, device) -> None:
    i, h, t, b = 12, 20, 7, 3
    model = make_rnn(kind, i, h, num_layers=layers, bidirectional=bidir, batch_first=batch_first)
    x = torch.randn(b, t, i) if batch_first else torch.randn(t, b, i)
    expected = rnn_closed_form(kind.split("_")[0], i, h, t * b, layers, bidir)
    assert counted(model, x, device).macs == expected


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_projection_and_unbatched(device) -> None:
    model = nn.LSTM(16, 32, num_layers=2, bidirectional=True, proj_size=8)
    assert counted(model, torch.randn(20, 3, 16), device).macs == rnn_closed_form("lstm", 16, 32, 60, 2, True, 8)
    assert counted(model, torch.randn(20, 16), device).macs == rnn_closed_form("lstm", 16, 32, 20, 2, True, 8)


class Packed(nn.Module):
    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        return self.rnn(packed)[0].data


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_packed_sequences_count_real_tokens_only(kind, device) -> None:
    lengths = torch.tensor([9, 3, 6])
    model = Packed(make_rnn(kind, 8, 16, batch_first=True, num_layers=2, bidirectional=True))
    count = counted(model, (torch.randn(3, 9, 8), lengths), device)
    assert count.macs == rnn_closed_form(kind, 8, 16, int(lengths.sum()), 2, True)


class CellLoop(nn.Module):
    """A cell stepped over time in Python, as hand-written recurrent models do."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = None
        for step in x.unbind(0):
            state = self.cell(step, state)
        return state[0] if isinstance(state, tuple) else state


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("cell", "kind"), [(nn.RNNCell, "rnn"), (nn.GRUCell, "gru"), (nn.LSTMCell, "lstm")])
def test_cells(cell, kind, device) -> None:
    i, h = 10, 24
    assert counted(cell(i, h), torch.randn(5, i), device).macs == rnn_closed_form(kind, i, h, 5)
    assert counted(cell(i, h), torch.randn(i), device).macs == rnn_closed_form(kind, i, h, 1)  # unbatched
    assert counted(CellLoop(cell(i, h)), torch.randn(6, 2, i), device).macs == rnn_closed_form(kind, i, h, 12)


def test_long_lstm_counts_in_well_under_a_second_on_meta() -> None:
    # On meta aten::lstm would decompose into ~12 Python meta kernels per step (~15 s at T=4096);
    # the fused call is answered whole.
    count_flops(nn.LSTM(8, 8), torch.randn(2, 1, 8))  # warm torch's lazy meta init
    model = nn.LSTM(1024, 1024, num_layers=2)
    t0 = time.perf_counter()
    count = count_flops(model, torch.empty(4096, 1, 1024, device="meta"))
    assert time.perf_counter() - t0 < 2.0
    assert count.macs == rnn_closed_form("lstm", 1024, 1024, 4096, 2) == 68_719_476_736
    assert count.by_operator == {"aten::lstm": count.macs}


def test_fused_recurrent_kernel_formulas() -> None:
    """Kernels this CPU never dispatches to (cuDNN, MIOpen, fused CUDA cells): formulas from shapes."""
    i, h, t, b = 16, 32, 5, 2
    m = torch.device("meta")
    x = torch.empty(t, b, i, device=m)
    weights = [torch.empty(4 * h, i, device=m), torch.empty(4 * h, h, device=m), torch.empty(4 * h, device=m)]
    cudnn = ops.MAC_FORMULAS[aten._cudnn_rnn]
    assert (
        cudnn([x, weights, 4, None, None, None, 2, h, 0, 1, False, 0.0, False, False, []], None)
        == 4 * h * (i + h) * t * b
    )
    packed = torch.empty(7, i, device=m)  # 7 real tokens
    assert (
        cudnn([packed, weights, 4, None, None, None, 2, h, 0, 1, False, 0.0, False, False, [2, 2, 2, 1]], None)
        == 4 * h * (i + h) * 7
    )
    mkl = ops.MAC_FORMULAS[aten.mkldnn_rnn_layer]
    assert mkl([x, weights[0], weights[1], None, None], None) == 4 * h * (i + h) * t * b
    # The fused CUDA cells take precomputed gates: the GEMMs were counted before them.
    mac, other, known = ops.classify(aten._thnn_fused_lstm_cell.default)
    assert known and mac is None and other is not None


# --- attention -------------------------------------------------------------------------------------------


class SDPA(nn.Module):
    def __init__(self, **kw) -> None:
        super().__init__()
        self.kw = kw

    def forward(self, q, k, v, mask=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **self.kw)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("kw", "kv_heads", "s", "ev", "mask"),
    [
        ({}, 8, 64, 32, None),
        ({"is_causal": True}, 8, 64, 32, None),  # the full square, like fvcore and FlopCounterMode
        ({}, 8, 64, 32, "bool"),
        ({}, 8, 64, 32, "float"),
        ({}, 8, 48, 16, None),  # cross-length, value width != key width
        ({"enable_gqa": True}, 2, 48, 32, None),  # grouped-query: every query head does the full product
    ],
)
def test_sdpa(kw, kv_heads, s, ev, mask, device) -> None:
    b, h, length, e = 2, 8, 64, 32
    q = torch.randn(b, h, length, e)
    k, v = torch.randn(b, kv_heads, s, e), torch.randn(b, kv_heads, s, ev)
    m = {None: None, "bool": torch.ones(length, s, dtype=torch.bool).tril(), "float": torch.zeros(length, s)}[mask]
    args = (q, k, v) if m is None else (q, k, v, m)
    assert counted(SDPA(**kw), args, device).macs == b * h * length * s * (e + ev)


def test_low_level_attention_kernel_formulas() -> None:
    m = torch.device("meta")
    b, h, length, s, e = 2, 4, 10, 12, 8
    q, k, v = (torch.empty(b, h, n, e, device=m) for n in (length, s, s))
    for op in (aten._scaled_dot_product_efficient_attention, aten._scaled_dot_product_flash_attention,
               aten._scaled_dot_product_cudnn_attention, aten._scaled_dot_product_flash_attention_for_cpu):  # fmt: skip
        assert ops.MAC_FORMULAS[op]([q, k, v], None) == b * h * length * s * 2 * e
    q2, k2, v2 = (t.transpose(1, 2) for t in (q, k, v))  # (B, L, H, E) layout of the raw kernels
    for op in (aten._flash_attention_forward, aten._efficient_attention_forward):
        assert ops.MAC_FORMULAS[op]([q2, k2, v2], None) == b * h * length * s * 2 * e


def test_varlen_flash_attention_counts_each_sequence_square() -> None:
    h, e = 2, 4
    q = k = v = torch.empty(8, h, e)  # two packed sequences of 5 and 3 tokens
    offsets = torch.tensor([0, 5, 8], dtype=torch.int32)
    macs = ops.MAC_FORMULAS[aten._flash_attention_forward]([q, k, v, offsets, offsets, 5, 5], None)
    assert macs == h * 2 * e * (5 * 5 + 3 * 3)


def mha_closed_form(b: int, nq: int, nk: int, d: int) -> int:
    """REFERENCE.md: self 4ND^2 + 2N^2D; cross 2NqD^2 + 2NkD^2 + 2NqNkD."""
    return b * (2 * nq * d * d + 2 * nk * d * d + 2 * nq * nk * d)


class MHA(nn.Module):
    def __init__(self, d: int, heads: int, **kw) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.kw = kw

    def forward(self, q, kv):
        return self.attn(q, kv, kv, **self.kw)[0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention(train, cross, need_weights, device) -> None:
    b, n, nk, d = 2, 10, 7, 64
    model = MHA(d, 4, need_weights=need_weights).train(train)
    x = torch.randn(b, n, d)
    kv = torch.randn(b, nk, d) if cross else x
    count = counted(model, (x, kv), device)
    assert count.macs == mha_closed_form(b, n, nk if cross else n, d)


@pytest.mark.parametrize("device", DEVICES)
def test_multihead_attention_with_other_key_and_value_widths(device) -> None:
    b, n, nk, d, kdim, vdim = 2, 6, 9, 32, 16, 24
    attn = nn.MultiheadAttention(d, 4, kdim=kdim, vdim=vdim, batch_first=True)

    class Cross(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = attn

        def forward(self, q, k, v):
            return self.attn(q, k, v)[0]

    x, k, v = torch.randn(b, n, d), torch.randn(b, nk, kdim), torch.randn(b, nk, vdim)
    expected = b * (2 * n * d * d + nk * kdim * d + nk * vdim * d + 2 * n * nk * d)
    assert counted(Cross(), (x, k, v), device).macs == expected


def test_eval_fast_path_hits_the_fused_kernel() -> None:
    """On real CPU tensors in eval the whole attention is one aten::_native_multi_head_attention."""
    x = torch.randn(2, 10, 64)
    count = counted(MHA(64, 4).eval(), (x, x), device=None)
    assert count.by_operator == {"aten::_native_multi_head_attention": mha_closed_form(2, 10, 10, 64)}


def encoder_layer_closed_form(b: int, n: int, d: int, f: int) -> int:
    return b * (4 * n * d * d + 2 * n * n * d + 2 * n * d * f)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(("norm_first", "activation"), [(False, "relu"), (True, "gelu")])
def test_transformer_encoder(train, norm_first, activation, device) -> None:
    b, n, d, f, layers = 2, 12, 64, 256, 3
    layer = nn.TransformerEncoderLayer(d, 4, f, batch_first=True, norm_first=norm_first, activation=activation)
    x = torch.randn(b, n, d)
    assert counted(layer.train(train), x, device).macs == encoder_layer_closed_form(b, n, d, f)
    enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).train(train)
    count = counted(enc, x, device)
    assert count.macs == layers * encoder_layer_closed_form(b, n, d, f)
    if device is None and not train and not norm_first:
        assert list(count.by_operator) == ["aten::_transformer_encoder_layer_fwd"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("train", [True, False])
def test_transformer_decoder(train, device) -> None:
    b, n, m, d, f, layers = 2, 9, 13, 64, 128, 2
    per_layer = mha_closed_form(b, n, n, d) + mha_closed_form(b, n, m, d) + b * 2 * n * d * f
    layer = nn.TransformerDecoderLayer(d, 4, f, batch_first=True)
    x, mem = torch.randn(b, n, d), torch.randn(b, m, d)
    assert counted(layer.train(train), (x, mem), device).macs == per_layer
    dec = nn.TransformerDecoder(layer, layers).train(train)
    assert counted(dec, (x, mem), device).macs == layers * per_layer


def test_fused_encoder_layer_formula_on_nested_tensors() -> None:
    """The eval fast path with a padding mask runs on nested tensors: padded tokens do no work."""
    d, f = 16, 32
    src = torch.nested.nested_tensor([torch.randn(5, d), torch.randn(3, d)])
    inputs = [src, d, 2] + [None] * 11 + [torch.empty(f, d)]
    assert ops.MAC_FORMULAS[aten._transformer_encoder_layer_fwd](inputs, None) == sum(
        4 * n * d * d + 2 * n * n * d + 2 * n * d * f for n in (5, 3)
    )


def test_long_transformer_on_meta_is_fast_and_exact() -> None:
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True), 6, enable_nested_tensor=False
    )
    t0 = time.perf_counter()
    count = count_flops(enc.eval(), torch.empty(1, 16384, 512, device="meta"))
    assert time.perf_counter() - t0 < 5.0
    assert count.macs == 6 * encoder_layer_closed_form(1, 16384, 512, 2048)


# --- convolution, GEMM, einsum, embeddings ---------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("conv", "shape"),
    [
        (lambda: nn.Conv1d(4, 8, 3, dilation=2), (2, 4, 20)),
        (lambda: nn.Conv2d(8, 16, 3, groups=4, stride=2, padding=1), (2, 8, 15, 15)),
        (lambda: nn.Conv2d(8, 8, 5, groups=8, padding=2), (1, 8, 9, 9)),  # depthwise
        (lambda: nn.Conv3d(4, 6, (2, 3, 3)), (1, 4, 5, 8, 8)),
        (lambda: nn.ConvTranspose1d(4, 6, 3, stride=3, dilation=2), (1, 4, 9)),
        (lambda: nn.ConvTranspose2d(8, 4, 4, stride=2, groups=2, output_padding=1), (2, 8, 7, 7)),
        (lambda: nn.ConvTranspose3d(2, 4, 3, stride=2), (1, 2, 3, 4, 4)),
    ],
)
def test_convolutions(conv, shape, device) -> None:
    model, x = conv(), torch.randn(shape)
    kernel = model.weight[0, 0].numel()
    if isinstance(model, nn.modules.conv._ConvTransposeNd):
        # Each input element is scattered through C_out/groups x kernel weights.
        expected = x.numel() * model.out_channels // model.groups * kernel
    else:
        # Each output element reduces C_in/groups x kernel inputs.
        expected = model(x).numel() * model.in_channels // model.groups * kernel
    count = counted(model, x, device)
    assert count.macs == expected
    assert count.other_flops >= model(x).numel()  # the bias add, never in MACs


class Gemms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 24)  # on a 3-D input
        self.emb = nn.Embedding(50, 16)
        self.w = nn.Parameter(torch.randn(24, 8))

    def forward(self, x, tokens):
        y = self.lin(x)  # (2, 5, 16) -> (2, 5, 24): 2*5*16*24
        y = y @ self.w  # broadcast matmul: 2*5*24*8
        z = torch.bmm(y, y.transpose(1, 2))  # 2*5*8*5
        z = torch.baddbmm(z, y, y.transpose(1, 2))  # 2*5*8*5
        e = self.emb(tokens)  # a gather: 0 MACs
        s = torch.einsum("bnd,bmd->bnm", e, e)  # 2*5*5*16
        t = torch.einsum("bij,bjk,bkl->bil", z, z, z)  # two pairwise products: 2*(2*5*5*5)
        return torch.addmm(torch.zeros(5), s[0], t[1]).sum() + torch.mm(y[0], y[0].T).sum()  # 5*5*5 + 5*8*5


@pytest.mark.parametrize("device", DEVICES)
def test_gemm_family_einsum_and_embedding(device) -> None:
    expected = 2 * 5 * 16 * 24 + 2 * 5 * 24 * 8 + 2 * (2 * 5 * 8 * 5) + 2 * 5 * 5 * 16 + 2 * (2 * 5 * 5 * 5) + 125 + 200
    count = counted(Gemms(), (torch.randn(2, 5, 16), torch.randint(0, 50, (2, 5))), device)
    assert count.macs == expected


def test_embedding_alone_is_zero_macs_and_not_uncounted() -> None:
    count = count_flops(nn.Embedding(1000, 64), torch.randint(0, 1000, (4, 32)))
    assert count.macs == 0 and count.uncounted == {}


def test_einsum_formula_with_ellipsis_and_chains() -> None:
    assert ops.einsum_macs("...ij,...jk->...ik", [(3, 4, 5, 6), (3, 4, 6, 7)]) == 3 * 4 * 5 * 6 * 7
    assert ops.einsum_macs("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]) == 2 * 3 * 4 + 2 * 4 * 5
    assert ops.einsum_macs("ii->", [(4, 4)]) == 0


# --- other FLOPs: separate, documented, never in MACs ----------------------------------------------------


def test_other_flops_conventions() -> None:
    x = torch.randn(4, 8, 6, 6)
    relu = count_flops(nn.ReLU(), x)
    assert relu.macs == 0 and relu.other_flops == x.numel() and relu.uncounted == {}
    assert count_flops(nn.LayerNorm(6), x).other_flops == 5 * x.numel()
    assert count_flops(nn.LayerNorm(6, elementwise_affine=False), x).other_flops == 4 * x.numel()
    assert count_flops(nn.BatchNorm2d(8).eval(), x).other_flops == 2 * x.numel()  # fvcore's eval cost
    assert count_flops(nn.BatchNorm2d(8).train(), x).other_flops == 5 * x.numel() + 1  # + num_batches_tracked += 1
    assert count_flops(nn.Softmax(-1), x).other_flops == 5 * x.numel()
    assert count_flops(nn.MaxPool2d(2), x).other_flops == 4 * 8 * 3 * 3 * 4
    lin = count_flops(nn.Linear(6, 3), x)
    assert lin.macs == x.numel() // 6 * 6 * 3 and lin.other_flops == x.numel() // 6 * 3  # bias adds
    assert count_flops(nn.Hardswish(), x).other_flops == x.numel()  # elementwise without a pointwise tag
    assert "other_flops" in CONVENTION


# --- bookkeeping: uncounted ops, by_module, results ------------------------------------------------------


@torch.library.custom_op("benchtest::mystery", mutates_args=())
def _mystery(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@_mystery.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class Mystery(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        return torch.ops.benchtest.mystery(torch.ops.benchtest.mystery(self.lin(x)))


@pytest.mark.parametrize("device", DEVICES)
def test_op_without_formula_is_reported_not_counted_as_zero(device) -> None:
    count = count_flops(Mystery(), torch.randn(2, 8), device=device)
    assert count.uncounted == {"benchtest::mystery": 2}
    assert count.uncounted_summary() == "benchtest::mystery x2"
    assert count.macs == 2 * 8 * 8


def test_removed_formula_shows_up_as_uncounted(monkeypatch) -> None:
    monkeypatch.delitem(ops.MAC_FORMULAS, aten.bmm)
    count = count_flops(SDPA(), (torch.randn(1, 2, 4, 8),) * 3)
    assert count.uncounted == {"aten::bmm": 2}
    assert count.macs == 0


def test_failing_formula_is_reported(monkeypatch) -> None:
    def broken(inputs, outputs):
        raise IndexError("unexpected shapes")

    monkeypatch.setitem(ops.MAC_FORMULAS, aten.addmm, broken)
    count = count_flops(nn.Linear(4, 4), torch.randn(2, 4))
    assert count.uncounted == {"aten::addmm (formula failed)": 1}


def test_by_module_is_hierarchical_and_sums() -> None:
    model = nn.Sequential(
        nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)),
        nn.Linear(4, 2),
    )
    count = counted(model, torch.randn(3, 8))
    assert count.by_module == {"": count.macs, "0": 3 * (8 * 16 + 16 * 4), "0.0": 3 * 8 * 16, "0.1": 0,
                               "0.2": 3 * 16 * 4, "1": 3 * 4 * 2}  # fmt: skip
    assert count.modules_at_depth(1) == {"": count.macs, "0": 3 * (8 * 16 + 16 * 4), "1": 3 * 4 * 2}
    assert count.by_operator == {"aten::addmm": count.macs}


def test_by_module_leaves_sum_to_total_on_a_cnn() -> None:
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    count = counted(model, torch.randn(1, 3, 64, 64))
    names = set(count.by_module)
    leaves = [n for n in names if n and not any(o.startswith(n + ".") for o in names)]
    assert sum(count.by_module[n] for n in leaves) == count.macs
    assert count.by_module["layer1"] == count.by_module["layer1.0"] + count.by_module["layer1.1"]


def test_result_value_object() -> None:
    count = count_flops(nn.Linear(4, 5), torch.randn(3, 4))
    assert count.flops == 2 * count.macs == 120
    with pytest.raises(dataclasses.FrozenInstanceError):
        count.macs = 0  # type: ignore[misc]
    d = json.loads(json.dumps(count.to_dict()))
    assert d["macs"] == 60 and d["flops"] == 120 and d["method"] == "meta" and d["convention"] == CONVENTION
    assert set(d) >= {"other_flops", "by_module", "by_operator", "uncounted", "seconds"}


# --- meta: fast, no real memory, model untouched, fallbacks ----------------------------------------------


def test_meta_counting_allocates_nothing_at_a_huge_batch() -> None:
    import timm

    model = timm.create_model("resnet18", pretrained=False).eval()
    x = torch.empty(4096, 3, 224, 224, device="meta")  # 2.4 GB of input alone if it were real
    count_flops(model, torch.empty(1, 3, 224, 224, device="meta"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    count = count_flops(model, x)
    assert time.perf_counter() - t0 < 5.0
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 < 200e6  # ru_maxrss is in KiB
    assert count.macs == 4096 * count_flops(model, torch.empty(1, 3, 224, 224)).macs


def test_model_and_inputs_are_not_disturbed() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 8, 8)
    count_flops(model, x)
    assert model.training and all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # BN statistics too


class NeedsValues(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x):
        if x.sum().item() > -1e9:  # data-dependent: impossible on meta
            x = self.lin(x)
        return x


def test_fallback_to_real_tensors_says_so() -> None:
    count = count_flops(NeedsValues(), torch.randn(3, 6))
    assert count.method.startswith("fallback:real tensors") and "meta" in count.method
    assert count.macs == 3 * 6 * 6
    with pytest.raises(RuntimeError, match="meta"):
        count_flops(NeedsValues(), torch.randn(3, 6), fallback=False)
    with pytest.raises(RuntimeError, match="inputs are meta tensors"):
        count_flops(NeedsValues(), torch.empty(3, 6, device="meta"))
    assert count_flops(NeedsValues(), torch.randn(3, 6), device=None).method == "real"


class Kw(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x, *, scale: float = 1.0, extra=None):
        return self.lin(x) * scale + (0 if extra is None else self.lin(extra))


def test_keyword_and_nested_inputs() -> None:
    assert count_flops(Kw(), {"x": torch.randn(2, 4), "extra": torch.randn(2, 4)}).macs == 4 * 16
    assert count_flops(Kw(), {"x": torch.randn(3, 4), "scale": 2.0}).macs == 3 * 16


def test_factory_without_device_inside_forward_is_retried_with_meta_default() -> None:
    class Arange(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(5, 5)

        def forward(self, x):
            return self.lin(x + torch.arange(5.0))  # a CPU tensor unless the default device is meta

    count = count_flops(Arange(), torch.randn(4, 5))
    assert count.method == "meta" and count.macs == 100


# --- crosscheck ------------------------------------------------------------------------------------------


def test_crosscheck_finds_what_the_others_miss() -> None:
    model = nn.LSTM(8, 16, batch_first=True).eval()
    cc = crosscheck(model, torch.randn(4, 10, 8), batch_size=4)
    assert cc.ours_macs == rnn_closed_form("lstm", 8, 16, 40)
    assert cc.ran_batch == 1 and "scaled x4" in cc.note
    assert cc.fvcore_macs == 0 and cc.fvcore_missed == {"aten::lstm": 1}
    assert cc.fcm_macs == 0 and cc.fcm_missed == {"aten::mkldnn_rnn_layer": 1}
    assert cc.ours_real_macs == cc.ours_macs
    assert cc.flagged and cc.fvcore_diff_pct == -100.0


def test_crosscheck_agrees_on_plain_gemms_and_scales() -> None:
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    cc = crosscheck(model, torch.randn(6, 32), batch_size=6)
    assert cc.fvcore_macs == cc.fcm_macs == cc.ours_macs == 6 * (32 * 64 + 64 * 8)
    assert not cc.flagged and cc.fvcore_missed == {} and cc.fcm_missed == {}


def test_crosscheck_errors_are_strings_and_caps_skip(monkeypatch) -> None:
    import fvcore.nn

    def boom(*a, **k):
        raise RuntimeError("tracer exploded")

    monkeypatch.setattr(fvcore.nn, "FlopCountAnalysis", boom)
    cc = crosscheck(nn.Linear(4, 4), torch.randn(2, 4), batch_size=2)
    assert cc.fvcore_error == "RuntimeError: tracer exploded" and cc.fvcore_macs is None
    assert cc.fcm_macs == 2 * 16 and cc.fcm_error is None
    skipped = crosscheck(nn.Linear(4, 4), torch.randn(2, 4), batch_size=2, max_macs=1)
    assert skipped.skipped and "cap" in skipped.skipped and skipped.fcm_macs is None


# --- the metric ------------------------------------------------------------------------------------------


def _ctx(model: nn.Module, x: torch.Tensor, mode: str = "infer"):
    from bench.metrics import MetricContext
    from bench.spec import CellKey, CellSpec, Profile, Variant

    key = CellKey(suite="t", tier="t", family="f", model="m", device="cpu", dtype="fp32", batch_size=x.shape[0],
                  input_shape=tuple(x.shape[1:]), mode=mode)  # fmt: skip
    variant = Variant(
        family="f", model="m", builder="x:y", model_args=(), target_params=1, achieved_params=1, tolerance=0.1
    )
    cell = CellSpec(key=key, variant=variant, input_kind="image", input_args=(), profile=Profile(name="p"))
    phases: list[str] = []
    ctx = MetricContext(cell=cell, model=model, inputs=(x,), device=torch.device("cpu"), dtype=torch.float32,
                        report_phase=phases.append)  # fmt: skip
    return ctx, phases


def test_flops_metric_registered_and_flat() -> None:
    from bench.registry import METRICS

    metric = METRICS.get("flops")
    model = nn.GRU(8, 16, batch_first=True).eval()
    ctx, phases = _ctx(model, torch.randn(2, 5, 8))
    out = metric(ctx)
    assert phases == ["flops"]
    assert out["macs"] == rnn_closed_form("gru", 8, 16, 10) and out["flops"] == 2 * out["macs"]
    assert out["flop_method"] == "meta" and out["uncounted_ops"] == ""
    assert out["fvcore_macs"] == 0 and out["fvcore_missed"] == "aten::gru x1" and out["fvcore_diff_pct"] == -100.0
    assert out["fcm_macs"] == out["macs"] and out["fcm_diff_pct"] == 0.0  # GRU decomposes to addmm on CPU
    assert out["macs_flagged"] is True
    assert out["flop_convention"] == CONVENTION
    assert all(isinstance(v, int | float | str | bool | type(None)) for v in out.values())
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_flops_metric_train_cells_skip_the_crosscheck() -> None:
    from bench.metrics.flops import flops_metric

    ctx, _ = _ctx(nn.Linear(8, 4).train(), torch.randn(3, 8), mode="train")
    out = flops_metric(ctx)
    assert out["macs"] == 3 * 32 and out["fvcore_macs"] is None and out["macs_flagged"] is False
    assert "skipped" in out["crosscheck_note"] and any("forward pass only" in n for n in ctx.notes)


# --- the CLI ---------------------------------------------------------------------------------------------


def test_cli_flops_timm(capsys) -> None:
    from bench.cli import main

    assert main(["flops", "timm:resnet18", "--input-shape", "3,64,64", "--batch-size", "2", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "GMACs" in out and "layer1" in out and "FLOPs = 2 x MACs" in out and "uncounted ops: none" in out
    assert main(["flops", "timm:resnet18", "--input-shape", "3,64,64", "--by", "operator"]) == 0
    assert "aten::convolution" in capsys.readouterr().out
    assert main(["flops", "timm:resnet18", "--input-shape", "3x64x64", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    import timm

    expected = count_flops(timm.create_model("resnet18", pretrained=False).eval(), torch.empty(1, 3, 64, 64))
    assert d["macs"] == expected.macs and d["flops"] == 2 * expected.macs and d["method"] == "meta"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["flops", "timm:resnet5"], "did you mean resnet50"),
        (["flops", "timm:resnet18", "--input-shape", "3,a,4"], "--input-shape"),
        (["flops", "timm:resnet18", "--batch-size", "0"], "--batch-size"),
        (["flops", "resnet18"], "timm:<name> or SUITE/TIER/FAMILY"),
        (["flops", "timm:resnet18", "--input-shape", "5,64,64"], "cannot run timm:resnet18 on input (5, 64, 64)"),
    ],
)
def test_cli_flops_bad_input_is_one_line_exit_2(argv, expected, capsys) -> None:
    from bench.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err
    assert len(err) < 600  # close matches only, never timm's ~1300 names


@pytest.mark.slow
def test_cli_flops_suite_variant(capsys) -> None:
    from bench.cli import main
    from bench.registry import list_suites

    if "cv-backbones" not in list_suites():
        pytest.skip("cv-backbones suite not available")
    assert main(["flops", "cv-backbones/tiny/resnet", "--depth", "0"]) == 0
    assert "GMACs" in capsys.readouterr().out
    assert main(["flops", "cv-backbones/tiny/nope"]) == 2
    assert "valid choices" in capsys.readouterr().err
