"""Pure statistics of distributions over neurons: skewness, Gini, top-fraction share, shared histograms.

Tensors in, tensors out (no models, hooks or I/O). Every function reduces over the last axis and
broadcasts over the leading ones, e.g. `gini(medians)` for medians [step, split, neuron] gives
[step, split]. Degenerate inputs (constant, or all-zero for the share statistics) give NaN.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor


def _check_nonnegative(name: str, x: Tensor) -> None:
    if (x < 0).any():
        raise ValueError(f"{name} needs non-negative values (got minimum {x.min().item():.3g}); "
                         "pass magnitudes, e.g. x.abs()")


def skewness(x: Float[Tensor, "... n"]) -> Float[Tensor, "..."]:
    """Sample skewness g1 = m3 / m2^1.5 (central moments, population normalisation).

    Positive when the distribution has a long right tail; 0 for symmetric data; NaN for constant data.
    """
    x = x.double()
    centred = x - x.mean(-1, keepdim=True)
    m2 = centred.pow(2).mean(-1)
    m3 = centred.pow(3).mean(-1)
    # m2 below ~1e-30 of the squared scale is rounding noise of a constant vector: call it constant
    scale = x.abs().amax(-1).pow(2)
    constant = m2 <= 1e-24 * scale
    return torch.where(constant, torch.nan, m3 / m2.clamp_min(1e-300).pow(1.5))


def gini(x: Float[Tensor, "... n"]) -> Float[Tensor, "..."]:
    """Gini coefficient of non-negative values: 0 when all are equal, 1 - 1/n when one holds everything.

    G = sum_i (2i - n - 1) x_(i) / (n sum x) over the values sorted ascending (i = 1..n); NaN if all are 0.
    """
    _check_nonnegative("gini", x)
    x = x.double().sort(-1).values
    n = x.shape[-1]
    rank_weight = 2 * torch.arange(1, n + 1, dtype=x.dtype, device=x.device) - n - 1  # [n]
    total = x.sum(-1)
    return torch.where(total > 0, (x * rank_weight).sum(-1) / (n * total.clamp_min(1e-300)), torch.nan)


def top_count(n: int, fraction: float) -> int:
    """How many of n items make up the top `fraction`: ceil(fraction * n), at least 1."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} must be in (0, 1]")
    return max(1, math.ceil(fraction * n - 1e-9))


def top_fraction_share(x: Float[Tensor, "... n"], fraction: float = 0.01) -> Float[Tensor, "..."]:
    """Share of the total held by the largest ceil(fraction * n) values (non-negative x); NaN if all are 0."""
    _check_nonnegative("top_fraction_share", x)
    x = x.double()
    k = top_count(x.shape[-1], fraction)
    total = x.sum(-1)
    top = x.topk(k, dim=-1).values.sum(-1)
    return torch.where(total > 0, top / total.clamp_min(1e-300), torch.nan)


def shared_edges(
    values: Float[Tensor, "..."], n_bins: int = 40, lower: float | None = 0.0
) -> Float[Tensor, " n_edges"]:
    """n_bins + 1 equal-width bin edges covering every value of `values` (all steps at once).

    The lower edge is `lower` (0 for magnitudes) or the minimum when lower is None; an empty range
    (all values equal, or a range too narrow for n_bins distinct float64 edges) is widened to width 1
    so the edges stay increasing.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r} must be a positive integer")
    values = values.double().flatten()
    finite = values[values.isfinite()]
    if finite.numel() == 0:
        raise ValueError("shared_edges needs at least one finite value")
    lo = float(finite.min()) if lower is None else min(lower, float(finite.min()))
    hi = float(finite.max())
    edges = torch.linspace(lo, hi, n_bins + 1, dtype=torch.float64)
    if not (edges.diff() > 0).all():
        edges = torch.linspace(lo, lo + 1.0, n_bins + 1, dtype=torch.float64)
    return edges


def histogram(values: Float[Tensor, "... n"], edges: Float[Tensor, " n_edges"]) -> Int[Tensor, "... n_bins"]:
    """Counts of the last axis in the bins [e_i, e_{i+1}) (the last bin closed); values outside are dropped.

    Batched over the leading axes; with edges from `shared_edges` every value lands in a bin, so
    counts sum to n.
    """
    if edges.ndim != 1 or edges.numel() < 2 or not (edges.diff() > 0).all():
        raise ValueError(f"edges must be a 1-D increasing tensor of at least 2 values, got shape {tuple(edges.shape)}")
    values = values.double()
    edges = edges.double().to(values.device)
    n_bins = edges.numel() - 1
    index = torch.bucketize(values, edges, right=True) - 1  # value == e_i goes to bin i
    index = torch.where(values == edges[-1], n_bins - 1, index)  # close the last bin
    inside = (index >= 0) & (index < n_bins)
    flat = index.clamp(0, n_bins - 1).reshape(-1, values.shape[-1])
    counts = torch.zeros(flat.shape[0], n_bins, dtype=torch.long, device=values.device)
    counts.scatter_add_(1, flat, inside.reshape(flat.shape).long())
    return counts.reshape(*values.shape[:-1], n_bins)


def median(x: Float[Tensor, "... n"]) -> Float[Tensor, "..."]:
    """Median over the last axis, the mean of the two middle values when n is even (unlike torch.median)."""
    n = x.shape[-1]
    if n == 0:
        raise ValueError("median of an empty axis is undefined; pass at least one value")
    x = x.contiguous()  # selection along a strided axis is ~2x slower
    low = x.kthvalue((n + 1) // 2, -1).values  # kthvalue is 1-based and O(n), a full sort is O(n log n)
    high = low if n % 2 else x.kthvalue(n // 2 + 1, -1).values
    return (low + high) / 2
