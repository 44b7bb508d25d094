"""seq-backbones: recurrent nets against Transformers at matched backbone size, swept over sequence length.

Nine families from stock ``torch.nn`` blocks (models in ``bench.models.seq``): RNN (tanh), LSTM, GRU,
bidirectional LSTM and GRU, and a Transformer encoder with fixed sinusoidal or learned positions -- all
classifying token sequences -- plus, for sequence to sequence, a GRU encoder-decoder with Luong attention
against an ``nn.Transformer`` encoder-decoder. Every family has two layers (two plus two for the
encoder-decoders) and the same embedding and head around its backbone; the knob is the width.

Tiers budget the **backbone** (``VariantSpec.count="backbone"``): embeddings, positional tables and output
layers are left out, because they scale with vocabulary, maximum length and class count rather than with
the architecture being compared. Sequence length is an axis of ordinary cells (``Profile.seq_lens``);
``bench.scaling`` fits each family's exponents and the lengths where a Transformer overtakes its
recurrent counterpart (``CROSSOVERS`` below).

Accuracy (docs/accuracy.md) trains three micro tiers at the 0.1M backbone budget: ``micro`` (classifiers on
MNIST-1D and the adding problem), ``micro-s2s`` (the encoder-decoders on sequence reversal, profile
``seq2seq``) and ``micro-tag`` (uni- and bidirectional taggers on next-signal tagging, profile ``lookahead``).
"""

from __future__ import annotations

from dataclasses import replace

from bench.models import seq as _models  # noqa: F401 -- registers the tokens / seq2seq / seq input kinds
from bench.registry import register_suite
from bench.spec import AccuracySpec, Knob, Profile, Suite, Tier, VariantSpec, freeze

_M = "bench.models.seq"
VOCAB = 256
NUM_CLASSES = 10

#: widths on a grid fine enough for ±5% at 0.1M (params grow as width², so steps are relative)
_GRID = tuple(range(8, 128, 2)) + tuple(range(128, 512, 4)) + tuple(range(512, 4097, 8))
WIDTH = Knob("width", _GRID)
ATTN_WIDTH = Knob("width", _GRID, derive=f"{_M}:attention_width")  # + heads, head dim ~32 (64 from 512)

# --- accuracy (bench.accuracy; docs/accuracy.md): what the micro tier trains ----------------------------------
#: MNIST-1D read as one float per step (the token embedding becomes a linear map), the same protocol for all
MNIST1D = AccuracySpec(task="mnist1d", epochs=10, batch_size=64, lr=3e-3, weight_decay=0.05, warmup=0.05, seeds=3)
#: the adding problem at the cell's length: 4000 sequences x 5 epochs in batches of 32 = 625 steps per seed
ADDING = AccuracySpec(task="adding", task_args=freeze({"n_train": 4000, "n_test": 1000}), epochs=5, batch_size=32,
                      lr=3e-3, weight_decay=0.05, warmup=0.05, seeds=3, length_from_cell=True)  # fmt: skip
#: sequence reversal at the cell's length (bench.accuracy.seq_tasks), the encoder-decoders of the micro-s2s tier:
#: 8000 pairs x 10 epochs in batches of 64 = 1250 steps per seed; scored on greedy decoding
REVERSE = AccuracySpec(task="reverse", tiers=("micro-s2s",), epochs=10, batch_size=64, lr=3e-3, weight_decay=0.05,
                       warmup=0.05, seeds=3, length_from_cell=True)  # fmt: skip
#: next-signal tagging at the cell's length, the taggers of the micro-tag tier: 4000 x 10 epochs / 64 = 630 steps
LOOKAHEAD = AccuracySpec(task="lookahead", tiers=("micro-tag",), epochs=10, batch_size=64, lr=3e-3, weight_decay=0.05,
                         warmup=0.05, seeds=3, length_from_cell=True)  # fmt: skip

# --- profiles ----------------------------------------------------------------------------------------------

_METRICS = ("params", "flops", "seq", "memory", "latency")
_WITH_ACCURACY = (*_METRICS, "accuracy")  # accuracy last: a failure keeps the costs measured before it
PROFILES = (
    Profile(
        "quick",
        tiers=("100k", "micro"),
        families=("lstm", "gru", "transformer", "gru_seq2seq", "transformer_seq2seq"),
        seq_lens=(64, 256),
        modes=("infer",),
        metrics=_WITH_ACCURACY,
        warmup_s=0.1,
        min_run_time_s=0.2,
        timeout_s=120.0,
        description="smoke run: the 0.1M tier, five families, lengths 64 and 256, inference only (10 cells); "
        "micro tier: MNIST-1D, 3 epochs, 1 seed",
        accuracy=replace(MNIST1D, epochs=3, seeds=1),
    ),
    Profile(
        "default",
        tiers=("1m", "micro"),
        seq_lens=(64, 256, 1024, 4096),
        modes=("infer", "train"),
        metrics=_WITH_ACCURACY,
        warmup_s=0.3,
        min_run_time_s=0.5,
        timeout_s=600.0,
        description="the 1M tier, lengths 64-4096 (x4), inference and a training step (72 cells; training "
        "stops at 1024 on CPU, see input_args); micro tier: MNIST-1D accuracy, 10 epochs x 3 seeds",
        accuracy=MNIST1D,
    ),
    Profile(
        "full",
        tiers=("100k", "1m", "10m", "micro"),
        seq_lens=tuple(64 * 2**i for i in range(9)),
        batch_sizes=(1, 8),
        modes=("infer", "train"),
        metrics=_WITH_ACCURACY,
        warmup_s=1.0,
        min_run_time_s=3.0,
        timeout_s=1800.0,
        description="every tier, lengths 64-16384 (x2), batch 1 and 8; beyond the CPU caps only on CUDA; "
        "micro tier: MNIST-1D accuracy, 30 epochs x 5 seeds",
        accuracy=replace(MNIST1D, epochs=30, seeds=5),
    ),
    Profile(
        "long-range",
        tiers=("micro",),
        seq_lens=(16, 32, 64, 128),
        modes=("infer",),
        metrics=("params", "accuracy"),
        timeout_s=3600.0,
        description="accuracy against length: the adding problem at T = 16-128 on the micro tier, 3 seeds "
        "(one cell per family and length)",
        accuracy=ADDING,
    ),
    # Accuracy-only profiles of the per-position tasks (docs/accuracy.md): one cell per family, 3 seeds each.
    Profile(
        "seq2seq",
        tiers=("micro-s2s",),
        seq_lens=(12,),
        metrics=("params", "accuracy"),
        timeout_s=1800.0,
        description="accuracy of the encoder-decoders on sequence reversal (T = 12, 10 symbols): exact match "
        "and token accuracy of greedy decoding, 3 seeds",
        accuracy=REVERSE,
    ),
    Profile(
        "lookahead",
        tiers=("micro-tag",),
        seq_lens=(32,),
        metrics=("params", "accuracy"),
        timeout_s=1800.0,
        description="accuracy of uni- and bidirectional taggers on next-signal tagging (T = 32): each label is "
        "a token that comes later, 3 seeds",
        accuracy=LOOKAHEAD,
    ),
    # Executions (docs/executions.md): eager against torch.compile on the 1M tier at a few lengths (channels_last
    # does not apply to token inputs; a cell asked for it is skipped with the reason).
    Profile(
        "executions",
        tiers=("1m",),
        seq_lens=(64, 256, 1024),
        executions=("eager", "compile"),
        cuda_executions=("compile-max",),
        metrics=("params", "flops", "seq", "execution", "memory", "latency"),
        warmup_s=0.3,
        min_run_time_s=0.5,
        timeout_s=900.0,
        description="the 1M tier, lengths 64/256/1024, batch 1, inference, eager and compile (54 cells on CPU; "
        "on CUDA also compile-max)",
    ),
)
#: the learned positional table must cover the longest sequence any profile runs
MAX_LEN = max(t for p in PROFILES for t in p.seq_lens)


def _spec(family: str, builder: str, name: str, knob: Knob = WIDTH, **args: object) -> VariantSpec:
    return VariantSpec(family, f"{_M}:{builder}", freeze(args), knob, name=name, count="backbone")


_S2S = {"layers": 2, "vocab_size": VOCAB}  # encoder-decoders: two layers each side
_CLS = {**_S2S, "num_classes": NUM_CLASSES}
#: one line per family, the same in every tier (the knob lands each on the tier's target)
FAMILIES = (
    _spec("rnn", "recurrent", "rnn_tanh", cell="rnn", **_CLS),
    _spec("lstm", "recurrent", "lstm", cell="lstm", **_CLS),
    _spec("gru", "recurrent", "gru", cell="gru", **_CLS),
    _spec("bilstm", "recurrent", "bilstm", cell="lstm", bidirectional=True, **_CLS),
    _spec("bigru", "recurrent", "bigru", cell="gru", bidirectional=True, **_CLS),
    _spec("transformer", "transformer", "transformer_sin", ATTN_WIDTH, pos="sinusoidal", **_CLS),
    _spec("transformer_learned", "transformer", "transformer_lpe", ATTN_WIDTH, pos="learned", max_len=MAX_LEN, **_CLS),
    _spec("gru_seq2seq", "gru_seq2seq", "gru_luong_s2s", **_S2S),
    _spec("transformer_seq2seq", "transformer_seq2seq", "transformer_s2s", ATTN_WIDTH, **_S2S),
)


def _tier(name: str, target: int, description: str) -> Tier:
    # input_shape is empty: a sample is a (seq_len,) vector of token ids, and seq_len is the cell's own axis.
    return Tier(name, target, FAMILIES, tolerance=0.05, input_shape=(), description=description)


TIERS = (
    _tier("100k", 100_000, "~0.1M backbone params: per-step overheads dominate"),
    _tier("1m", 1_000_000, "~1M backbone params"),
    _tier("10m", 10_000_000, "~10M backbone params: arithmetic dominates"),
)

# --- accuracy: the micro tier ------------------------------------------------------------------------------
# The 100k tier's sizes (same solver, same budget on the backbone) for the families the accuracy tables
# compare, plus the MNIST-1D paper's 1-D CNN as a reference row ("cnn": three strided convolutions, width
# solved like the others). Only this tier trains; see MNIST1D and ADDING above.
_CNN = VariantSpec("cnn", "bench.accuracy.models:cnn1d", freeze({"vocab_size": VOCAB, "num_classes": NUM_CLASSES}),
                   WIDTH, name="cnn1d", count="backbone")  # fmt: skip
_ACCURACY_FAMILIES = ("rnn", "lstm", "gru", "transformer")
MICRO = Tier("micro", 100_000, (*(f for f in FAMILIES if f.family in _ACCURACY_FAMILIES), _CNN), tolerance=0.05,
             input_shape=(), description="~0.1M backbone params: trained on MNIST-1D and the adding problem")  # fmt: skip

# --- accuracy of the per-position tasks: the same budget, solver and protocol -------------------------------------
# micro-s2s: the two encoder-decoders at 0.1M backbone parameters (REVERSE). micro-tag: the classifiers' backbones
# with a per-position readout (bench.models.taggers), unidirectional against bidirectional (LOOKAHEAD).
_TAG = "bench.models.taggers"
_TAGGERS = (
    VariantSpec("rnn", f"{_TAG}:recurrent_tagger", freeze({"cell": "rnn", **_CLS}), WIDTH, name="rnn_tagger",
                count="backbone"),
    VariantSpec("lstm", f"{_TAG}:recurrent_tagger", freeze({"cell": "lstm", **_CLS}), WIDTH, name="lstm_tagger",
                count="backbone"),
    VariantSpec("gru", f"{_TAG}:recurrent_tagger", freeze({"cell": "gru", **_CLS}), WIDTH, name="gru_tagger",
                count="backbone"),
    VariantSpec("bilstm", f"{_TAG}:recurrent_tagger", freeze({"cell": "lstm", "bidirectional": True, **_CLS}), WIDTH,
                name="bilstm_tagger", count="backbone"),
    VariantSpec("bigru", f"{_TAG}:recurrent_tagger", freeze({"cell": "gru", "bidirectional": True, **_CLS}), WIDTH,
                name="bigru_tagger", count="backbone"),
    VariantSpec("transformer", f"{_TAG}:transformer_tagger", freeze({"pos": "sinusoidal", **_CLS}), ATTN_WIDTH,
                name="transformer_sin_tagger", count="backbone"),
)  # fmt: skip
MICRO_S2S = Tier(
    "micro-s2s",
    100_000,
    tuple(f for f in FAMILIES if f.family.endswith("seq2seq")),
    tolerance=0.05,
    input_shape=(),
    description="~0.1M backbone params, encoder-decoders: trained on sequence reversal",
)
MICRO_TAG = Tier(
    "micro-tag",
    100_000,
    _TAGGERS,
    tolerance=0.05,
    input_shape=(),
    description="~0.1M backbone params, per-position readout: trained on next-signal tagging",
)

#: (A, B): report the length where A's cost passes B's
CROSSOVERS = (("transformer", "lstm"), ("transformer_learned", "lstm"), ("transformer", "gru"),
              ("transformer_seq2seq", "gru_seq2seq"))  # fmt: skip


@register_suite("seq-backbones")
def seq_backbones() -> Suite:
    """Recurrent nets and Transformers at ~0.1M, ~1M and ~10M backbone parameters, over sequence length."""
    return Suite(
        name="seq-backbones",
        description=__doc__.splitlines()[0],
        input_kind="seq",
        tiers=(*TIERS, MICRO, MICRO_S2S, MICRO_TAG),
        profiles=PROFILES,
        default_profile="default",
        # max_seq_len: per-device (or device/mode) length caps; longer cells are recorded as skipped.
        # On 2 CPU cores a GRU/RNN training step at 4096 takes ~10-20 s (its backward runs step by step).
        input_args=freeze({"vocab_size": VOCAB, "max_seq_len": {"cpu": 4096, "cpu/train": 1024}}),
        reference_family="lstm",
        crossovers=CROSSOVERS,
    )
