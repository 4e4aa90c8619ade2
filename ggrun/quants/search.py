"""ggml's scale searches (ggml-quants.c), vectorized over many groups at once.

make_qkx2_quants (Q2_K, Q4_K, Q5_K), make_qx_quants with rmse_type 1 (Q6_K) and
make_q3_quants with do_rmse (Q3_K), without an importance matrix.

Layout: a batch of B groups of n values is an (n, B) float32 tensor, row i holding
element i of every group, so that C's sequential loops ``for (i = 0; i < n; ++i)
s += …;`` become n in-place adds of contiguous (B,) rows: the same float32 operations
in the same order, hence the same bits.  Every expression keeps C's evaluation order
(``w*x[i]*l`` is ``(w*x)*l``) and no op is fused.  Branches become masks; where C
returns early for a group, the vectorized code computes on and the result is masked
back to what C returns.
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import MAGIC, f32, fdiv, first_min, nearest_int, round_small, seqsum, signed_absmax

GROUP_MAX_EPS = f32(1e-15)  # GROUP_MAX_EPS 1e-15f


def _lvl(v: torch.Tensor, lo: int, hi: int, exact: bool = True, out: torch.Tensor | None = None) -> torch.Tensor:
    """``MAX(lo, MIN(hi, nearest_int(v)))`` as float32 (exact small integers).

    ``exact=False`` rounds in float (:func:`round_small`): the same result where
    |v| < 2**22, which the callers guarantee for finite input.  ``out`` (may be v):
    where to write the levels.
    """
    if not exact:
        if out is None:
            return round_small(v).clamp_(lo, hi)
        return torch.add(v, MAGIC, out=out).sub_(MAGIC).clamp_(lo, hi)
    l = nearest_int(v).clamp_(lo, hi)
    return l.float() if out is None else out.copy_(l)


def make_qkx2_quants(
    x: torch.Tensor, w: torch.Tensor, nmax: int, rmin: float, rdelta: float, nstep: int, use_mad: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """make_qkx2_quants for groups x, weights w: (n, B).

    Returns (scale (B,), the_min (B,), L (n, B) float levels in [0, nmax]) with
    ``x ≈ scale * L - the_min``.  Instead of copying the levels at every improvement,
    the (iscale, min) pair that produced the best levels is kept and the levels are
    recomputed from it at the end (the same float ops, so the same levels).
    """
    n = x.shape[0]
    mn = first_min(x, 0)                                   # (B,) float min = x[0]; if (x[i] < min) …
    mx = x.amax(0)                                         # (B,)
    xmin = x.amin(0)
    sum_w = w[0].clone()                                   # sum_w = weights[0]
    sum_x = sum_w * x[0]                                   # sum_x = sum_w * x[0]
    for i in range(1, n):
        sum_w += w[i]
        sum_x += w[i] * x[i]
    mn = torch.where(mn > 0, torch.zeros_like(mn), mn)     # if (min > 0) min = 0
    degenerate = mx == mn                                  # C: all L = 0, return 0
    mn0 = mn
    rng = torch.where(degenerate, torch.ones_like(mx), mx - mn)

    buf = torch.empty_like(x)                              # scratch (n, B) tensors, reused
    wl = torch.empty_like(x)
    laux = torch.empty_like(x)

    def levels(iscale: torch.Tensor, m: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """MAX(0, MIN(nmax, nearest_int(iscale*(x[i] - min)))) as float, (n, B)."""
        v = torch.sub(x, m, out=out).mul_(iscale)          # iscale*(x[i] - min)
        # |v| < 2**21 for sane groups: then rounding in float is nearest_int exactly
        bound = iscale.abs() * torch.maximum((mx - m).abs(), (xmin - m).abs())
        if bool(torch.where(degenerate, 0.0, bound).amax() < 2.0**21):
            return v.add_(MAGIC).sub_(MAGIC).clamp_(0, nmax)
        return out.copy_(nearest_int(v).clamp_(0, nmax))

    def weighted_error(scale: torch.Tensor, lv: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Σ w * diff, diff = scale*L[i] + min - x[i], squared or absolute."""
        d = torch.mul(lv, scale, out=buf).add_(m).sub_(x)
        d = d.abs_() if use_mad else d.mul_(d)
        return seqsum(d.mul_(w))

    iscale = fdiv(float(nmax), rng)                        # nmax/(max - min)
    scale = fdiv(1.0, iscale)                              # 1/iscale
    best = weighted_error(scale, levels(iscale, mn, laux), mn)  # best_error
    l_iscale, l_mn = iscale, mn                            # what produced the best levels
    for step in range(nstep + 1):
        num = f32(np.float32(rmin) + np.float32(rdelta) * np.float32(step) + np.float32(nmax))
        iscale = fdiv(num, mx - mn)                        # (rmin + rdelta*is + nmax)/(max - min)
        levels(iscale, mn, laux)                           # (n, B)
        torch.mul(w, laux, out=wl)
        sum_l = seqsum(wl)                                 # Σ w*l
        sum_l2 = seqsum(torch.mul(wl, laux, out=buf))      # Σ w*l*l
        sum_xl = seqsum(torch.mul(wl, x, out=buf))         # Σ w*l*x
        D = sum_w * sum_l2 - sum_l * sum_l
        this_scale = fdiv(sum_w * sum_xl - sum_x * sum_l, D)
        this_min = fdiv(sum_l2 * sum_x - sum_l * sum_xl, D)
        pos = this_min > 0                                 # if (this_min > 0) { this_min = 0; this_scale = sum_xl/sum_l2; }
        this_min = torch.where(pos, torch.zeros_like(this_min), this_min)
        this_scale = torch.where(pos, fdiv(sum_xl, sum_l2), this_scale)
        cur = weighted_error(this_scale, laux, this_min)
        upd = (D > 0) & (cur < best)
        l_iscale = torch.where(upd, iscale, l_iscale)
        l_mn = torch.where(upd, mn, l_mn)
        best = torch.where(upd, cur, best)
        scale = torch.where(upd, this_scale, scale)
        mn = torch.where(upd, this_min, mn)
    L = levels(l_iscale, l_mn, laux)
    zero = torch.zeros_like(scale)
    L = torch.where(degenerate, torch.zeros_like(L), L)
    return torch.where(degenerate, zero, scale), torch.where(degenerate, -mn0, -mn), L


def make_qx_quants_rmse1(x: torch.Tensor, nmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """make_qx_quants(n, nmax, x, L, rmse_type=1, qw=NULL) for groups x: (n, B).

    Returns (scale (B,), L (n, B) float levels in [0, 2*nmax - 1]; 0 for an all-zero group).
    """
    amax, mx = signed_absmax(x, 0)                         # (B,) max |x|, signed value
    zero = amax < GROUP_MAX_EPS
    mx = torch.where(zero, torch.ones_like(mx), mx)
    w = x * x                                              # rmse_type 1: w = x*x
    wx = w * x
    exact = not bool(torch.isfinite(x).all())              # finite: |iscale*x| <= nmax + 1

    lv, buf = torch.empty_like(x), torch.empty_like(x)

    def stats(iscale: torch.Tensor):
        l = _lvl(torch.mul(x, iscale, out=lv), -nmax, nmax - 1, exact, out=lv)  # (n, B)
        sumlx = seqsum(torch.mul(wx, l, out=buf))          # Σ w*x*l
        return l, sumlx, seqsum(torch.mul(w, l, out=buf).mul_(l))  # Σ w*l*l

    l_iscale = fdiv(float(-nmax), mx)                      # iscale = -nmax / max
    _, sumlx, suml2 = stats(l_iscale)
    scale = torch.where(suml2 != 0, fdiv(sumlx, suml2), torch.zeros_like(sumlx))
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        num = f32(-(np.float32(nmax) + np.float32(0.1) * np.float32(step)))
        iscale = fdiv(num, mx)                             # iscale = -(nmax + 0.1f*is) / max
        _, sumlx, suml2 = stats(iscale)
        upd = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        l_iscale = torch.where(upd, iscale, l_iscale)      # the levels are recomputed from it below
        scale = torch.where(upd, fdiv(sumlx, suml2), scale)
        best = torch.where(upd, scale * sumlx, best)
    L = _lvl(torch.mul(x, l_iscale, out=lv), -nmax, nmax - 1, exact, out=lv)
    L = torch.where(zero, torch.zeros_like(L), L + nmax)
    return torch.where(zero, torch.zeros_like(scale), scale), L


def make_q3_quants_rmse(x: torch.Tensor, nmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """make_q3_quants(n, nmax, x, L, do_rmse=true) for groups x: (n, B).

    Returns (scale (B,), L (n, B) float levels in [0, 2*nmax - 1]; 0 for an all-zero group).
    The refinement visits the elements in order and updates the sums as it goes, so
    the loop over i stays sequential (vectorized over groups).  C stops after a pass
    that changed nothing; such a pass leaves the state as it was, so every later pass
    would change nothing either, and running all five passes gives the same result.
    """
    n = x.shape[0]
    amax, mx = signed_absmax(x, 0)
    zero = amax < GROUP_MAX_EPS
    mx = torch.where(zero, torch.ones_like(mx), mx)
    iscale = fdiv(float(-nmax), mx)
    L = _lvl(iscale * x, -nmax, nmax - 1)                 # (n, B) in [-nmax, nmax-1]
    w = x * x
    wx = w * x
    sumlx = seqsum(wx * L)
    suml2 = seqsum((w * L) * L)
    for _ in range(5):
        for i in range(n):
            li, wi, wxi = L[i], w[i], wx[i]
            slx = sumlx - wxi * li                         # sumlx - w*x[i]*L[i]
            sl2 = suml2 - (wi * li) * li                   # suml2 - w*L[i]*L[i]
            new_l = _lvl(fdiv(x[i] * sl2, slx), -nmax, nmax - 1)  # nearest_int(x[i]*sl2/slx)
            slx2 = slx + wxi * new_l
            sl22 = sl2 + (wi * new_l) * new_l
            acc = (slx > 0) & (new_l != li) & (sl22 > 0) & ((slx2 * slx2) * suml2 > (sumlx * sumlx) * sl22)
            L[i] = torch.where(acc, new_l, li)
            sumlx = torch.where(acc, slx2, sumlx)
            suml2 = torch.where(acc, sl22, suml2)
    scale = torch.where(suml2 > 0, fdiv(sumlx, suml2), torch.zeros_like(sumlx))
    L = torch.where(zero, torch.zeros_like(L), L + nmax)
    return torch.where(zero, torch.zeros_like(scale), scale), L
