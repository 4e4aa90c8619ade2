"""Pure-torch reference of the CPU matmul kernels (the fallback when the C kernels are
unavailable, and the test oracle).

Same numerics as ``ggrun.cpu.matmul`` and llama.cpp's CPU backend on x86:

1. each row of x is converted to the weight type's vec_dot_type
   (Q8_0: Q4_0/Q5_0/Q8_0, Q8_1: Q4_1/Q5_1, Q8_K: Q2_K..Q6_K, f16: F16, bf16: BF16, f32: F32)
   with llama.cpp's rounding: x86 SIMD quantize_row_q8_0/q8_1 (d = amax/127, id = 127/amax,
   round half to even, d -> fp16; Q8_1 s = fp16(d*sum)), quantize_row_q8_K_ref
   (iscale = -127/max of largest magnitude, nearest_int, min 127, d = 1/iscale, bsums);
2. per block, the integer dot product of the weight quants with the activation quants (exact:
   small integers summed in float32 stay exact; the K-quant sub-scale sums are done in float64);
3. scales applied like ggml_vec_dot_*: (d_w*d_x)*isum per block (+ m_w*s_x for Q4_1/Q5_1),
   K-quants (d_x*d_w)*sum(sc*isum) - (d_x*dmin_w)*sum(min*bsum).

Only the float summation order differs from the C kernels / llama.cpp.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

__all__ = ["matmul", "matmul_multi", "quantize_q8_0", "quantize_q8_1", "quantize_q8_K", "round_f16",
           "round_bf16", "unpack", "VEC_DOT_TYPE"]

# ggml type -> vec_dot_type
VEC_DOT_TYPE = {0: 0, 1: 1, 30: 30, 2: 8, 6: 8, 8: 8, 3: 9, 7: 9, 10: 15, 11: 15, 12: 15, 13: 15, 14: 15}
_SIZES = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
          10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210)}

_CHUNK_ELEMS = 1 << 24  # bound on the (M, N, blocks) intermediate


# --------------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------------


def round_f16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).to(torch.float32)


def round_bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(torch.float32)


def quantize_q8_0(x: torch.Tensor):
    """x float32 (M, K) -> (q float32 (M, K/32, 32) integer-valued, d float32 (M, K/32) fp16-rounded,
    s float32 (M, K/32) = fp16(d*sum(q)) [the Q8_1 field], sum(q))."""
    m, k = x.shape
    xb = x.reshape(m, k // 32, 32)
    amax = xb.abs().amax(-1)
    d = amax / 127.0
    nz = amax != 0
    # note: `c / t` in torch is t.reciprocal() * c (two roundings); use a true division
    inv = torch.where(nz, torch.full_like(amax, 127.0) / torch.where(nz, amax, torch.ones_like(amax)), torch.zeros_like(amax))
    q = torch.round(xb * inv.unsqueeze(-1))  # half to even, like _mm256_round_ps(_MM_ROUND_NEAREST)
    qsum = q.sum(-1)
    s = round_f16(d * qsum)
    return q, round_f16(d), s, qsum


def quantize_q8_1(x: torch.Tensor):
    q, d, s, _ = quantize_q8_0(x)
    return q, d, s


def quantize_q8_K(x: torch.Tensor):
    """x float32 (M, K) -> (q float32 (M, K/256, 256), d float32 (M, K/256), bsums float32 (M, K/256, 16))."""
    m, k = x.shape
    xb = x.reshape(m, k // 256, 256)
    ax = xb.abs()
    idx = torch.argmax(ax, dim=-1, keepdim=True)  # first occurrence of the largest magnitude
    mx = torch.gather(xb, -1, idx).squeeze(-1)
    amax = ax.amax(-1)
    nz = amax != 0
    iscale = torch.full_like(mx, -127.0) / torch.where(nz, mx, torch.ones_like(mx))
    q = torch.round(iscale.unsqueeze(-1) * xb).clamp(max=127.0)
    q = torch.where(nz.unsqueeze(-1), q, torch.zeros_like(q))
    d = torch.where(nz, torch.ones_like(iscale) / iscale, torch.zeros_like(iscale))
    bsums = q.reshape(m, k // 256, 16, 16).sum(-1)
    return q, d, bsums


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------


def _as_u8(w) -> torch.Tensor:
    if isinstance(w, np.ndarray):
        w = np.ascontiguousarray(w)
        if not w.flags.writeable:  # e.g. a read-only memmap: only read here
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return torch.from_numpy(w)
        return torch.from_numpy(w)
    return w.contiguous()


def _f16(blk: torch.Tensor, off: int) -> torch.Tensor:
    return blk[..., off:off + 2].contiguous().view(torch.float16).squeeze(-1).to(torch.float32)


def _nib(b: torch.Tensor) -> torch.Tensor:
    """(..., 16) bytes -> (..., 32): low nibbles then high nibbles."""
    b = b.to(torch.int32)
    return torch.cat([b & 15, b >> 4], dim=-1)


def _bits32(b: torch.Tensor) -> torch.Tensor:
    """(..., 4) bytes (little-endian u32) -> (..., 32) bits, bit j = element j."""
    b = b.to(torch.int32)
    shifts = torch.arange(8, dtype=torch.int32)
    return ((b.unsqueeze(-1) >> shifts) & 1).reshape(*b.shape[:-1], 32)


def _q4k_scales(sc: torch.Tensor):
    """(..., 12) bytes -> scales (..., 8), mins (..., 8) (6-bit, get_scale_min_k4)."""
    q = sc.to(torch.int32)
    sc_lo = q[..., 0:4] & 63
    mn_lo = q[..., 4:8] & 63
    sc_hi = (q[..., 8:12] & 15) | ((q[..., 0:4] >> 6) << 4)
    mn_hi = (q[..., 8:12] >> 4) | ((q[..., 4:8] >> 6) << 4)
    return torch.cat([sc_lo, sc_hi], -1), torch.cat([mn_lo, mn_hi], -1)


def _q3k_scales(sc: torch.Tensor) -> torch.Tensor:
    """(..., 12) bytes -> 16 signed scales (6-bit - 32)."""
    q = sc.to(torch.int32)
    out = []
    for j in range(16):
        low = (q[..., j] & 15) if j < 8 else (q[..., j - 8] >> 4)
        high = (q[..., 8 + (j % 4)] >> (2 * (j // 4))) & 3
        out.append((low | (high << 4)) - 32)
    return torch.stack(out, -1)


def unpack(w, ggml_type: int) -> dict:
    """Raw blocks (N, row_bytes) -> quants and scales (float32 tensors).

    Legacy types: q (N, nb, 32) signed values, d (N, nb), m (N, nb) or None.
    K-quants: q (N, nsb, 256) signed values, sc (N, nsb, 16) integer scale per 16 elements,
              mn (N, nsb, 16) integer min per 16 elements (zeros if none), d (N, nsb), dmin (N, nsb).
    Float types: w (N, K) float32.
    """
    t = int(ggml_type)
    u8 = _as_u8(w)
    n = u8.shape[0]
    blck, bb = _SIZES[t]
    if t == 0:
        return {"w": u8.view(torch.float32).reshape(n, -1).clone()}
    if t == 1:
        return {"w": u8.view(torch.float16).reshape(n, -1).to(torch.float32)}
    if t == 30:
        return {"w": u8.view(torch.bfloat16).reshape(n, -1).to(torch.float32)}
    blk = u8.reshape(n, -1, bb)
    f = torch.float32
    if t == 2:  # Q4_0
        return {"q": (_nib(blk[..., 2:18]) - 8).to(f), "d": _f16(blk, 0), "m": None}
    if t == 3:  # Q4_1
        return {"q": _nib(blk[..., 4:20]).to(f), "d": _f16(blk, 0), "m": _f16(blk, 2)}
    if t == 6:  # Q5_0
        q = _nib(blk[..., 6:22]) | (_bits32(blk[..., 2:6]) << 4)
        return {"q": (q - 16).to(f), "d": _f16(blk, 0), "m": None}
    if t == 7:  # Q5_1
        q = _nib(blk[..., 8:24]) | (_bits32(blk[..., 4:8]) << 4)
        return {"q": q.to(f), "d": _f16(blk, 0), "m": _f16(blk, 2)}
    if t == 8:  # Q8_0
        return {"q": blk[..., 2:34].contiguous().view(torch.int8).to(f), "d": _f16(blk, 0), "m": None}
    nsb = blk.shape[1]
    if t == 10:  # Q2_K
        qs = blk[..., 16:80].to(torch.int32).reshape(n, nsb, 2, 1, 32)
        sh = torch.tensor([0, 2, 4, 6], dtype=torch.int32).reshape(1, 1, 1, 4, 1)
        q = ((qs >> sh) & 3).reshape(n, nsb, 256)
        sc = blk[..., 0:16].to(torch.int32)
        return {"q": q.to(f), "sc": (sc & 15).to(f), "mn": (sc >> 4).to(f), "d": _f16(blk, 80), "dmin": _f16(blk, 82)}
    if t == 11:  # Q3_K
        hm = blk[..., 0:32].to(torch.int32).reshape(n, nsb, 1, 1, 32)
        qs = blk[..., 32:96].to(torch.int32).reshape(n, nsb, 2, 1, 32)
        j = torch.arange(4, dtype=torch.int32).reshape(1, 1, 1, 4, 1)
        k = torch.arange(2, dtype=torch.int32).reshape(1, 1, 2, 1, 1)
        low = (qs >> (2 * j)) & 3
        hbit = (hm >> (4 * k + j)) & 1
        q = (low - 4 * (1 - hbit)).reshape(n, nsb, 256)
        sc = _q3k_scales(blk[..., 96:108])
        return {"q": q.to(f), "sc": sc.to(f), "mn": torch.zeros_like(sc, dtype=f), "d": _f16(blk, 108),
                "dmin": torch.zeros(n, nsb)}
    if t in (12, 13):  # Q4_K, Q5_K
        qs = blk[..., 16:144] if t == 12 else blk[..., 48:176]
        qs = qs.to(torch.int32).reshape(n, nsb, 4, 1, 32)
        sh = torch.tensor([0, 4], dtype=torch.int32).reshape(1, 1, 1, 2, 1)
        q = (qs >> sh) & 15  # (n, nsb, 4, 2, 32): element 64*j + 32*h + l
        if t == 13:
            qh = blk[..., 16:48].to(torch.int32).reshape(n, nsb, 1, 1, 32)
            j = torch.arange(4, dtype=torch.int32).reshape(1, 1, 4, 1, 1)
            h = torch.arange(2, dtype=torch.int32).reshape(1, 1, 1, 2, 1)
            q = q | (((qh >> (2 * j + h)) & 1) << 4)
        sc, mn = _q4k_scales(blk[..., 4:16])
        sc16 = sc.repeat_interleave(2, dim=-1)
        mn16 = mn.repeat_interleave(2, dim=-1)
        return {"q": q.reshape(n, nsb, 256).to(f), "sc": sc16.to(f), "mn": mn16.to(f), "d": _f16(blk, 0),
                "dmin": _f16(blk, 2)}
    if t == 14:  # Q6_K
        ql = blk[..., 0:128].to(torch.int32).reshape(n, nsb, 2, 2, 32)   # [half][first/second 32][l]
        qh = blk[..., 128:192].to(torch.int32).reshape(n, nsb, 2, 1, 32)
        lo = torch.stack([ql & 15, ql >> 4], dim=3)  # (n, nsb, 2, 2(nib), 2(32-part), 32)
        # element 128*h + 32*(2*nib + part) + l uses qh bits 2*(2*nib + part)
        sh = (2 * (2 * torch.arange(2).reshape(2, 1) + torch.arange(2).reshape(1, 2))).to(torch.int32)
        hi = (qh.unsqueeze(3) >> sh.reshape(1, 1, 1, 2, 2, 1)) & 3
        q = (lo | (hi << 4)) - 32
        sc = blk[..., 192:208].contiguous().view(torch.int8).to(f)
        return {"q": q.reshape(n, nsb, 256).to(f), "sc": sc, "mn": torch.zeros_like(sc), "d": _f16(blk, 208),
                "dmin": torch.zeros(n, nsb)}
    raise ValueError(f"unsupported ggml type {t}")


# --------------------------------------------------------------------------------------------
# matmul
# --------------------------------------------------------------------------------------------


def _legacy(u: dict, x: torch.Tensor, with_s: bool) -> torch.Tensor:
    qx, dx, sx, _ = quantize_q8_0(x)
    qw, dw, mw = u["q"], u["d"], u["m"]
    m, nb = dx.shape
    n = qw.shape[0]
    step = max(1, _CHUNK_ELEMS // max(1, m * nb))
    out = torch.empty(m, n, dtype=torch.float32)
    qxt = qx.permute(1, 0, 2)  # (nb, M, 32)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        isum = torch.bmm(qxt, qw[n0:n1].permute(1, 2, 0)).permute(1, 2, 0)  # (M, n, nb), exact integers
        y = ((dw[n0:n1].unsqueeze(0) * dx.unsqueeze(1)) * isum).sum(-1)
        if with_s:
            y = y + (mw[n0:n1].unsqueeze(0) * sx.unsqueeze(1)).sum(-1)
        out[:, n0:n1] = y
    return out


def _kquant(u: dict, x: torch.Tensor) -> torch.Tensor:
    qx, dx, bs = quantize_q8_K(x)
    qw, sc, mn, dw, dmin = u["q"], u["sc"], u["mn"], u["d"], u["dmin"]
    m, nsb = dx.shape
    n = qw.shape[0]
    step = max(1, _CHUNK_ELEMS // max(1, m * nsb * 16))
    out = torch.empty(m, n, dtype=torch.float32)
    qxt = qx.reshape(m, nsb * 16, 16).permute(1, 0, 2)  # (nsb*16, M, 16)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        nn = n1 - n0
        qwt = qw[n0:n1].reshape(nn, nsb * 16, 16).permute(1, 2, 0)  # (nsb*16, 16, nn)
        isub = torch.bmm(qxt, qwt).permute(1, 2, 0).reshape(m, nn, nsb, 16)  # exact per-16 sums
        sumi = (isub.double() * sc[n0:n1].double().unsqueeze(0)).sum(-1).float()  # exact integers
        summs = (mn[n0:n1].unsqueeze(0) * bs.unsqueeze(1)).sum(-1)  # exact (small)
        d = dx.unsqueeze(1) * dw[n0:n1].unsqueeze(0)
        dm = -dx.unsqueeze(1) * dmin[n0:n1].unsqueeze(0)
        out[:, n0:n1] = (d * sumi).sum(-1) + (dm * summs).sum(-1)
    return out


def matmul(w, ggml_type: int, x: torch.Tensor, out: torch.Tensor | None = None,
           n_threads: int | None = None) -> torch.Tensor:
    """Same contract as :func:`ggrun.cpu.matmul`: w raw blocks (N, row_bytes) uint8, x float32 (M, K) or
    (K,) -> y float32 (M, N) (or (N,)). ``n_threads`` is accepted and ignored."""
    t = int(ggml_type)
    if t not in _SIZES:
        raise ValueError(f"unsupported ggml type {t}")
    one = x.dim() == 1
    x2 = x.reshape(1, -1) if one else x
    x2 = x2.to(torch.float32).contiguous()
    u = unpack(w, t)
    if t in (0, 1, 30):
        xr = x2 if t == 0 else round_f16(x2) if t == 1 else round_bf16(x2)
        y = xr @ u["w"].T
    elif t in (2, 6, 8):
        y = _legacy(u, x2, False)
    elif t in (3, 7):
        y = _legacy(u, x2, True)
    else:
        y = _kquant(u, x2)
    if one:
        y = y.reshape(-1)
    if out is not None:
        out.copy_(y)
        return out
    return y


def matmul_multi(weights, x: torch.Tensor, out: torch.Tensor | None = None,
                 n_threads: int | None = None) -> list[torch.Tensor]:
    """Same contract as :func:`ggrun.cpu.matmul_multi`."""
    ys = [matmul(w, t, x) for w, t in weights]
    y = torch.cat(ys, dim=-1)
    if out is not None:
        out.copy_(y)
        y = out
    return list(y.split([v.shape[-1] for v in ys], dim=-1))
