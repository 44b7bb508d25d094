"""MAC formulas of matmul-like work: mm/addmm/bmm/matmul, linear, einsum, distances, bilinear, outer products."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.flops._ops.registry import _bias_out, _first_tensor, _tensor_numel, macs, numel, other, out_numel

# ---------------------------------------------------------------------------------------------
# GEMM family. MACs = (output elements) x (reduction length).


@macs("mm", "_int_mm", "_scaled_mm")
def _mm(inputs: Sequence[Any], outputs: Any) -> int:
    a, b = inputs[0], inputs[1]
    return a.shape[0] * a.shape[1] * b.shape[1]


@macs("addmm", "_addmm_activation")
def _addmm(inputs: Sequence[Any], outputs: Any) -> int:
    a, b = inputs[1], inputs[2]
    return a.shape[0] * a.shape[1] * b.shape[1]


@macs("bmm")
def _bmm(inputs: Sequence[Any], outputs: Any) -> int:
    a, b = inputs[0], inputs[1]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


@macs("baddbmm", "addbmm")
def _baddbmm(inputs: Sequence[Any], outputs: Any) -> int:
    a, b = inputs[1], inputs[2]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


@macs("mv", "dot", "vdot")
def _mv(inputs: Sequence[Any], outputs: Any) -> int:
    return inputs[0].numel()


@macs("addmv")
def _addmv(inputs: Sequence[Any], outputs: Any) -> int:
    return inputs[1].numel()


@macs("matmul")
def _matmul(inputs: Sequence[Any], outputs: Any) -> int:
    # Broadcasting batched matmul: every output element is one dot product of length K.
    a = inputs[0]
    if a.is_nested:
        # Nested (e.g. the math path of SDPA on jagged tensors): per component, its output
        # elements times its own reduction length (sequence i: h*L_i*L_i*E for Q K^T).
        out = _first_tensor(outputs)
        ks = [int(s[-1]) for s in a._nested_tensor_size().tolist()]
        outs = [numel(s) for s in out._nested_tensor_size().tolist()]
        return sum(o * k for o, k in zip(outs, ks, strict=True))
    return max(out_numel(outputs), 1) * a.shape[-1]


@macs("linear", "mkldnn_linear")
def _linear(inputs: Sequence[Any], outputs: Any) -> int:
    w = inputs[1]
    return out_numel(outputs) * w.shape[-1]


@macs("einsum")
def _einsum(inputs: Sequence[Any], outputs: Any) -> int:
    equation, operands = inputs[0], list(inputs[1])
    return einsum_macs(equation, [tuple(t.shape) for t in operands])


def einsum_macs(equation: str, shapes: Sequence[Sequence[int]]) -> int:
    """MACs of an einsum evaluated left to right, one pairwise contraction at a time.

    Each pairwise step costs the product of the sizes of every index of the two operands; a single
    operand (a sum or a trace) costs no MACs.
    """
    equation = equation.replace(" ", "")
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    # Expand "..." into private letters so that broadcast dimensions are counted.
    spare = iter(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation)
    ell: list[str] = []
    sizes: dict[str, int] = {}
    letters_of: list[str] = []
    for term, shape in zip(terms, shapes, strict=False):
        if "..." in term:
            n = len(shape) - (len(term) - 3)
            while len(ell) < n:
                ell.append(next(spare))
            term = term.replace("...", "".join(ell[len(ell) - n :]))
        for c, s in zip(term, shape, strict=False):
            sizes[c] = max(sizes.get(c, 1), int(s))
        letters_of.append(term)
    out = rhs.replace("...", "".join(ell)) if "->" in equation else ""
    if len(letters_of) < 2:
        return 0
    total, cur = 0, set(letters_of[0])
    for i, term in enumerate(letters_of[1:], start=1):
        joint = cur | set(term)
        total += numel([sizes[c] for c in joint])
        later = set("".join(letters_of[i + 1 :])) | set(out)
        cur = {c for c in joint if c in later}
    return total


@macs("_cdist_forward")
def _cdist(inputs: Sequence[Any], outputs: Any) -> int:
    # (B, P, M) x (B, R, M) -> (B, P, R): one M-long reduction per output element.
    return out_numel(outputs) * inputs[0].shape[-1]


@macs("_euclidean_dist")
def _euclidean_dist(inputs: Sequence[Any], outputs: Any) -> int:
    # torch.cdist's default path for p=2 with more than 25 rows: ||x||^2 + ||y||^2 - 2 x.y, with
    # the cross term x.y one GEMM (B, P, M) x (B, M, R). Counted like _cdist_forward: B*P*R*M
    # (the kernel pads the GEMM by two columns to fold the norms in; those are other FLOPs).
    return out_numel(outputs) * inputs[0].shape[-1]


@macs("_pdist_forward")
def _pdist(inputs: Sequence[Any], outputs: Any) -> int:
    return out_numel(outputs) * inputs[0].shape[-1]


@macs("_trilinear")
def _trilinear(inputs: Sequence[Any], outputs: Any) -> int:
    """``_trilinear(i1, i2, i3, expand1, expand2, expand3, sumdim, unroll_dim)``: sum over ``sumdim`` of
    the product of three operands unsqueezed at their ``expand`` dims (``nn.Bilinear``: x1^T A x2).

    One MAC per point of the joint index space (output dims x summed dims): for ``nn.Bilinear``
    that is batch x out x in1 x in2.
    """
    sizes: list[int] = []
    for t, expand in zip(inputs[:3], inputs[3:6], strict=True):
        shape = list(t.shape)
        for d in sorted(int(e) for e in expand):
            shape.insert(d, 1)
        sizes = [max(a, b) for a, b in zip(sizes, shape, strict=True)] if sizes else shape
    return numel(sizes)


@macs("addr")
def _addr(inputs: Sequence[Any], outputs: Any) -> int:
    # beta * input + alpha * outer(vec1, vec2): one product per output element.
    return inputs[1].numel() * inputs[2].numel()


# Bias adds are other FLOPs, not MACs.
other("addmm", "baddbmm", "addbmm", "addmv", "addr")(_bias_out(0))  # the bias (or `input`) add
other("linear")(_bias_out(2))


@other("_euclidean_dist")
def _euclidean_dist_other(inputs: Sequence[Any], outputs: Any) -> int:
    # Squared norms (one per input element) and, per output, adding them in and the square root.
    return _tensor_numel(inputs[0]) + _tensor_numel(inputs[1]) + 2 * out_numel(outputs)
