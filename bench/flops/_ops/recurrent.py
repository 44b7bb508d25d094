"""RNN/LSTM/GRU: fused sequence ops, cells and the backends' fused kernels; MACs and gate arithmetic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from bench.flops._ops.registry import Formula, _arg, macs, other, out_numel

# ---------------------------------------------------------------------------------------------
# Recurrent networks. Per token and per layer-direction the gates cost rows(W_ih) x I +
# rows(W_hh) x H(or P) -- exactly the element counts of the 2-D weights (biases are 1-D, so
# they drop out; the LSTM projection W_hr (P, H) is 2-D and counts P*H). Layers >= 2 take the
# previous layer's output, which the weights' shapes already encode.


def _weights_macs(params: Sequence[Any]) -> int:
    return sum(p.numel() for p in params if isinstance(p, Tensor) and p.dim() == 2)


def _tokens(x: Tensor) -> int:
    # (T, B, I) / (B, T, I) -> T*B; unbatched (T, I) -> T; packed data (N, I) -> N.
    return x.numel() // x.shape[-1] if x.numel() else 0


@macs("lstm.input", "gru.input", "rnn_tanh.input", "rnn_relu.input")
def _rnn_input(inputs: Sequence[Any], outputs: Any) -> int:
    # lstm.input(input, hx[], params[], ...); gru/rnn.input(input, hx, params[], ...)
    return _tokens(inputs[0]) * _weights_macs(inputs[2])


@macs("lstm.data", "gru.data", "rnn_tanh.data", "rnn_relu.data")
def _rnn_data(inputs: Sequence[Any], outputs: Any) -> int:
    # (data, batch_sizes, hx, params[], ...): the packed data has one row per real token.
    return inputs[0].shape[0] * _weights_macs(inputs[3])


@macs("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell")
def _rnn_cell(inputs: Sequence[Any], outputs: Any) -> int:
    x, w_ih, w_hh = inputs[0], inputs[2], inputs[3]
    batch = x.shape[0] if x.dim() == 2 else 1
    return batch * (w_ih.numel() + w_hh.numel())


@macs("mkldnn_rnn_layer")
def _mkldnn_rnn_layer(inputs: Sequence[Any], outputs: Any) -> int:
    # One layer, one direction: weight0 = W_ih, weight1 = W_hh.
    return _tokens(inputs[0]) * (inputs[1].numel() + inputs[2].numel())


def _fused_rnn(batch_sizes_index: int) -> Formula:
    # cuDNN / MIOpen: a flat list of every layer-direction's weights; packed input when
    # batch_sizes is non-empty (then the data has one row per real token).
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        x, batch_sizes = inputs[0], _arg(inputs, batch_sizes_index)
        tokens = x.shape[0] if batch_sizes else _tokens(x)
        return tokens * _weights_macs(inputs[1])

    return f


macs("_cudnn_rnn")(_fused_rnn(14))
macs("miopen_rnn")(_fused_rnn(12))


# RNN gate arithmetic per token and hidden unit (bias adds, gate nonlinearities, cell update),
# counted from the decomposition the meta kernels run: LSTM 4 gates x (2 bias adds + 1
# nonlinearity) + 3 products + 1 sum + 1 tanh; GRU 3 gates x 2 bias adds + 3 nonlinearities +
# 5 blend ops; vanilla RNN 2 bias adds + 1 nonlinearity.
_RNN_OTHER_PER_UNIT = {"lstm": 17, "gru": 14, "rnn_tanh": 3, "rnn_relu": 3}


def _rnn_other_for(kind: str, data: bool) -> Formula:
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        tokens = inputs[0].shape[0] if data else _tokens(inputs[0])
        # Hidden units over all layer-directions, from the final state (L*D, B, H): c_n for an
        # LSTM (its h_n is P wide with a projection), h_n otherwise.
        state = outputs[2] if kind == "lstm" else outputs[1]
        return _RNN_OTHER_PER_UNIT[kind] * tokens * state.shape[0] * state.shape[-1]

    return f


for _kind in _RNN_OTHER_PER_UNIT:
    other(f"{_kind}.input")(_rnn_other_for(_kind, data=False))
    other(f"{_kind}.data")(_rnn_other_for(_kind, data=True))


@other("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell", "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell")
def _cell_other(inputs: Sequence[Any], outputs: Any) -> int:
    return 4 * out_numel(outputs)
