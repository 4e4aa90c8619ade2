"""Decode attention for one new token per sequence: RoPE on q and k, k/v into the f16
cache at ``pos`` (a device scalar, so a CUDA graph can replay it), then softmax(q·Kᵀ)·V
over positions 0..pos. The first query head of each GQA group writes the cache, and every
program takes position ``pos`` from its registers, so none waits on another.

Flash-decoding: the grid is (query head, split). Split ``s`` attends to the cache positions
[s·CH, (s+1)·CH) below ``pos`` (split 0 also to the new token at ``pos``, from registers) and
leaves its partial (max, sum of exp, exp-weighted V) in f32; the last split of a head to finish
(an atomic counter per head, which it resets to 0) merges them and writes the output, so a
token is still one launch per layer. The grid is fixed by the cache capacity n_ctx (``_plan``:
one split up to SPLIT_MIN positions, splits of SPLIT_MIN positions up to SPLIT_MAX splits, longer
splits beyond), not by ``pos``: splits that start at or beyond ``pos`` have no work (the f16
kernel's run with every tile masked and store nothing; the any-type kernel's return at once), and
while only split 0 is busy it writes the output itself (no partials, no atomic). The counters are
shared per device: two of these kernels must not run concurrently on different streams.

With programmatic dependent launch (PDL "end"), the f16 kernel's programs start while the q/k/v
matvec drains: they load the position, its cos/sin and their split's first tile of cached k/v
(all written by earlier steps) before they wait for q, k and v (``early_kw``); with a tile of
128 positions (``_block_t``) the first 128 positions of a sequence need no load after the wait
but q, k and v.

Cache layout: k, v [n_kv_head, n_ctx, head_dim] f16 for one layer (a layer's slice of
[n_layer, n_kv_head, n_ctx, head_dim]).

Other cache types (-ctk/-ctv, ggrun/kv_types.py) take ``_decode_attn_kv_kernel``: q8_0 rows are
[n_kv_head, n_ctx, head_dim/32·34] bytes (ggml's block_q8_0: f16 scale, 32 int8 quants). The new
k is quantized as ggml's quantize_row_q8_0, q as well, and q·k is the integer dot of each block
times the two scales (as llama.cpp's CPU vec_dot_q8_0_q8_0, summed in another order); q8_0 v rows
are dequantized and accumulated in f32. f32 rows are attended as f16 (llama.cpp casts them).
With llama.cpp's Hadamard rotation of quantized caches (kv_types.rotation_sizes) q and k are
rotated after RoPE, v before it is stored and the output after (after the splits are merged),
by the same fast transform.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import counters, early_kw, gdc_sync, last_to_arrive, n_sm, pdl_kw
from .quantize_x import QX, q8_blocks, store_q8

SPLIT_MIN = 256     # cache positions per split, at least (n_ctx <= SPLIT_MIN: one split)
SPLIT_MAX = 64      # splits per head, at most (longer caches: longer splits)
MERGE_TILE = 16     # partials merged per step by the last split


def _plan(n_ctx: int, bt: int, split_t: int | None = None) -> tuple[int, int]:
    """→ (positions per split, a multiple of bt; number of splits) for a cache of n_ctx."""
    if split_t is None:
        split_t = max(SPLIT_MIN, triton.next_power_of_2(triton.cdiv(n_ctx, SPLIT_MAX)))
    ch = triton.cdiv(max(split_t, bt), bt) * bt
    return ch, triton.cdiv(n_ctx, ch)


def _block_t(H: int, n_ctx: int, split_t: int | None, device: torch.device) -> int:
    """The f16 kernel's default tile: 128 positions (8 warps, 2 programs per SM by registers) when
    every program of the grid fits on the GPU at once, else 64 (4 warps, 4 per SM). H200 (session 6,
    gpu_early_ab.py): 128 gains 0.6% (33B shape) and 2.5% (6.7B) per token over the first 128
    positions of a 256-position cache (one split, 56 and 32 programs); in a 4096-position cache (16
    splits) at position 2000 it loses 4% on the 33B shape (896 programs), gains 10% on the 6.7B (512)."""
    _, ns = _plan(n_ctx, 128, split_t)
    return 128 if H * ns <= 2 * n_sm(device) else 64


def _workspace(H: int, ns: int, hd: int, device: torch.device):
    """(counters, acc [H·ns·hd], (m, l) [H·ns·2]) for a split launch; placeholders for one split."""
    if ns == 1:
        z = counters(device, 1)
        return z, z, z
    return (counters(device, H), torch.empty(H * ns * hd, dtype=torch.float32, device=device),
            torch.empty(H * ns * 2, dtype=torch.float32, device=device))


@triton.jit
def _rope_pairs(HALF: tl.constexpr, NEOX: tl.constexpr):
    """→ (d, partner, sign, j) [HD]: x·cos_j + sign·x[partner]·sin_j is x rotated (cos, sin at
    table column j of the position's row)."""
    HD: tl.constexpr = 2 * HALF
    d = tl.arange(0, HD)
    if NEOX:   # rotate halves: (d, d + HALF)
        j = d % HALF
        partner = (d + HALF) % HD
        sgn = tl.where(d < HALF, -1.0, 1.0)
    else:      # llama "normal": adjacent pairs (2i, 2i + 1)
        j = d // 2
        partner = d ^ 1
        sgn = tl.where(d % 2 == 0, -1.0, 1.0)
    return d, partner, sgn, j


@triton.jit
def _rope_coefs(cos_ptr, sin_ptr, pos, stride_cos, HALF: tl.constexpr, NEOX: tl.constexpr):
    """→ (d, partner, sign, cos, sin) [HD]: x·cos + sign·x[partner]·sin is x rotated at pos."""
    d, partner, sgn, j = _rope_pairs(HALF, NEOX)
    c = tl.load(cos_ptr + pos * stride_cos + j)
    s = tl.load(sin_ptr + pos * stride_cos + j)
    return d, partner, sgn, c, s


@triton.jit
def _merge(acc, m_i, l_i, hq, sp, n_act, pacc_ptr, pml_ptr, cnt_ptr, HD: tl.constexpr, NS: tl.constexpr,
           NSB: tl.constexpr):
    """This split's (acc [HD], m_i, l_i) → (o [HD], whether this program stores o). One split
    busy: its own acc / l. Else the partial goes to the workspace, and the last split of head
    hq to arrive merges all n_act of them."""
    o = acc / l_i
    mine = n_act == 1
    if n_act > 1:
        d = tl.arange(0, HD)
        row = hq * NS + sp
        tl.store(pacc_ptr + row * HD + d, acc)
        tl.store(pml_ptr + row * 2, m_i)
        tl.store(pml_ptr + row * 2 + 1, l_i)
        mine = last_to_arrive(cnt_ptr, hq, n_act)
        if mine:                              # the last one: all partials are out
            s = tl.arange(0, NSB)
            base = hq * NS
            m_s = tl.load(pml_ptr + (base + s) * 2, mask=s < n_act, other=float("-inf"), cache_modifier=".cg")
            m_all = tl.max(m_s, 0)
            l_all = m_all * 0.0
            o_all = acc * 0.0
            for s0 in range(0, n_act, NSB):
                t = s0 + s
                tm = t < n_act
                m_t = tl.load(pml_ptr + (base + t) * 2, mask=tm, other=float("-inf"), cache_modifier=".cg")
                l_t = tl.load(pml_ptr + (base + t) * 2 + 1, mask=tm, other=0.0, cache_modifier=".cg")
                w = tl.where(tm, tl.exp(m_t - m_all), 0.0)                                    # [NSB]
                a_t = tl.load(pacc_ptr + (base + t)[:, None] * HD + d[None, :], mask=tm[:, None], other=0.0,
                              cache_modifier=".cg")
                l_all += tl.sum(w * l_t, 0)
                o_all += tl.sum(w[:, None] * a_t, 0)
            o = o_all / l_all
    return o, mine


@triton.jit
def _store_o(o, o_ptr, hq, d, xq_ptr, xd_ptr, xs_ptr, xg_ptr, HD: tl.constexpr, QO: tl.constexpr, QG: tl.constexpr):
    """Head hq's output o [HD] (d = arange(HD)) into o [H·HD]; QO: also as the next matvec's
    8-bit activation blocks (``quantize_x``'s numerics, one head = HD/32 whole blocks; QG: with the
    per-64 records, HD a multiple of 64), which saves that quantization its own launch."""
    tl.store(o_ptr + hq * HD + d, o)
    if QO:
        qi, dq, sq = q8_blocks(tl.reshape(o, (HD // 32, 2, 16)))
        store_q8(xq_ptr, xd_ptr, xs_ptr, xg_ptr, hq * HD, (hq + 1) * HD, qi, dq, sq, HD // 32, QG)


@triton.jit
def _decode_attn_kernel(q_ptr, k_ptr, v_ptr, cos_ptr, sin_ptr, pos_ptr, kc_ptr, vc_ptr, o_ptr, pacc_ptr, pml_ptr,
                        cnt_ptr, xq_ptr, xd_ptr, xs_ptr, xg_ptr, scale, stride_kch, stride_kct, stride_cos,
                        G: tl.constexpr, HALF: tl.constexpr, NEOX: tl.constexpr, BT: tl.constexpr, CH: tl.constexpr,
                        NS: tl.constexpr, NSB: tl.constexpr, QO: tl.constexpr, QG: tl.constexpr, GDC: tl.constexpr,
                        EARLY: tl.constexpr):
    # EARLY (with PDL "end", or without PDL): what no kernel of this step writes (the position, its
    # cos/sin, the split's first tile of cached k/v, all written by earlier steps) loads before the
    # PDL wait, while the q/k/v matvec drains; then the wait, then q, k, v. (Under PDL "start" a
    # kernel may launch before the previous step's last kernel has advanced the position: wait first.)
    if not EARLY:
        gdc_sync(GDC)
    hq = tl.program_id(0)                     # query head
    sp = tl.program_id(1)                     # split: cache positions [sp·CH, sp·CH + CH)
    h = hq // G                               # its KV head
    HD: tl.constexpr = 2 * HALF
    d, partner, sgn, j = _rope_pairs(HALF, NEOX)
    pos = tl.load(pos_ptr)
    n_act = tl.maximum((pos + (CH - 1)) // CH, 1)     # splits with work: those below pos, and split 0
    c = tl.load(cos_ptr + pos * stride_cos + j)
    s = tl.load(sin_ptr + pos * stride_cos + j)
    kc = kc_ptr + h * stride_kch
    vc = vc_ptr + h * stride_kch
    lo = sp * CH
    hi = tl.minimum(lo + CH, pos)             # positions before pos come from the cache
    t1 = lo + tl.arange(0, BT)                # the first tile (the loop below takes the rest)
    tm1 = t1 < hi
    kt1 = tl.load(kc + t1[:, None] * stride_kct + d[None, :], mask=tm1[:, None], other=0.0)
    vt1 = tl.load(vc + t1[:, None] * stride_kct + d[None, :], mask=tm1[:, None], other=0.0)
    if EARLY:
        gdc_sync(GDC)
    qa = tl.load(q_ptr + hq * HD + d)
    qb = tl.load(q_ptr + hq * HD + partner)
    ka = tl.load(k_ptr + h * HD + d)
    kb = tl.load(k_ptr + h * HD + partner)
    vr = tl.load(v_ptr + h * HD + d)
    q = qa * c + sgn * qb * s
    q = q.to(tl.float16).to(tl.float32)       # llama.cpp rounds Q to f16 for K·Q
    # split 0: the new token, its k/v from registers (no cross-program wait); its first query
    # head of the group writes them to the cache. The other splits start empty. (No branches
    # here, nor a return of the splits without work, whose tiles are all masked: the loads above
    # all go out at once.)
    first = sp == 0
    kn = (ka * c + sgn * kb * s).to(tl.float16)
    vn = vr.to(tl.float16)
    wr = d + (sp + hq % G) * HD < HD          # [HD]: all true in split 0 of a group's first head, else none
    tl.store(kc + pos * stride_kct + d, kn, mask=wr)
    tl.store(vc + pos * stride_kct + d, vn, mask=wr)
    m_i = tl.where(first, tl.sum(kn.to(tl.float32) * q, 0) * scale, float("-inf"))
    l_i = tl.where(first, 1.0, 0.0)
    acc = tl.where(first, vn.to(tl.float32), 0.0)
    m_i, l_i, acc = _attend_tile(kt1.to(tl.float32), vt1.to(tl.float32), tm1, q, scale, m_i, l_i, acc)
    for t0 in range(lo + BT, hi, BT):
        t = t0 + tl.arange(0, BT)
        tm = t < hi
        kt = tl.load(kc + t[:, None] * stride_kct + d[None, :], mask=tm[:, None], other=0.0).to(tl.float32)
        # V's tile loads beside K's (its addresses don't wait for the scores): one memory round trip a tile
        vt = tl.load(vc + t[:, None] * stride_kct + d[None, :], mask=tm[:, None], other=0.0).to(tl.float32)
        m_i, l_i, acc = _attend_tile(kt, vt, tm, q, scale, m_i, l_i, acc)
    if NS == 1:
        _store_o(acc / l_i, o_ptr, hq, d, xq_ptr, xd_ptr, xs_ptr, xg_ptr, HD, QO, QG)
    elif sp < n_act:
        o, mine = _merge(acc, m_i, l_i, hq, sp, n_act, pacc_ptr, pml_ptr, cnt_ptr, HD, NS, NSB)
        if mine:
            _store_o(o, o_ptr, hq, d, xq_ptr, xd_ptr, xs_ptr, xg_ptr, HD, QO, QG)


@triton.jit
def _attend_tile(kt, vt, tm, q, scale, m_i, l_i, acc):
    """Online softmax over one tile: k, v [BT, HD] f32 (zeros where tm [BT] is false), q [HD] →
    the running (max, sum of exp, exp-weighted V [HD]). A tile with no position in it (a split
    without work: m_i is -inf) leaves them as they are."""
    sc = tl.where(tm, tl.sum(kt * q[None, :], 1) * scale, float("-inf"))       # [BT]
    m_new = tl.maximum(m_i, tl.max(sc, 0))
    none = m_new == float("-inf")
    alpha = tl.where(none, 1.0, tl.exp(m_i - m_new))
    p = tl.where(none, 0.0, tl.exp(sc - m_new))
    l_i = l_i * alpha + tl.sum(p, 0)
    acc = acc * alpha + tl.sum(p[:, None] * vt, 0)
    return m_new, l_i, acc


def _qx_args(qx: QX | None, out: torch.Tensor, K: int, hd: int) -> tuple[tuple, dict]:
    """The kernels' (xq, xd, xs, xg) pointers and their QO, QG switches for ``qx``."""
    if qx is None:
        return (out, out, out, out), dict(QO=False, QG=False)
    assert qx.M == 1 and qx.K == K and hd % 32 == 0, (qx.M, qx.K, K, hd)
    qg = qx.g.shape[1] > 0
    assert not qg or hd % 64 == 0, "the per-64 records need whole 64-value pairs per head"
    return (qx.q, qx.d, qx.s, qx.g), dict(QO=True, QG=qg)


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                     pos: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, scale: float, neox: bool = False,
                     out: torch.Tensor | None = None, block_t: int | None = None,
                     split_t: int | None = None, qx: QX | None = None) -> torch.Tensor:
    """q [H*hd], k, v [Hkv*hd] f32 (before RoPE); cos, sin [n_pos, hd/2] f32; pos int32/64 [1];
    k_cache, v_cache [Hkv, n_ctx, hd] f16 (written at pos) → o [H*hd] f32. ``split_t``: cache
    positions per split (default: ``_plan``'s choice from n_ctx). ``qx`` (one row of H*hd values):
    o also as 8-bit blocks, as ``quantize_x(o)`` would give them (``_qx_args``)."""
    Hkv, n_ctx, hd = k_cache.shape
    H = q.numel() // hd
    G = H // Hkv
    assert H * hd == q.numel() and Hkv * hd == k.numel() == v.numel() and G * Hkv == H
    assert k_cache.stride() == v_cache.stride() and k_cache.stride(2) == 1 and k_cache.dtype == torch.float16
    assert cos.shape[1] * 2 == hd and cos.stride(1) == 1 and cos.stride() == sin.stride(), "rope over the whole head"
    assert q.is_contiguous() and k.is_contiguous() and v.is_contiguous() and pos.numel() == 1
    if out is None:
        out = torch.empty(H * hd, dtype=torch.float32, device=q.device)
    bt = block_t or _block_t(H, n_ctx, split_t, q.device)
    ch, ns = _plan(n_ctx, bt, split_t)
    cnt, pacc, pml = _workspace(H, ns, hd, q.device)
    xa, qo = _qx_args(qx, out, H * hd, hd)
    _decode_attn_kernel[(H, ns)](q, k, v, cos, sin, pos, k_cache, v_cache, out, pacc, pml, cnt, *xa, float(scale),
                                 k_cache.stride(0), k_cache.stride(1), cos.stride(0), G=G, HALF=hd // 2, NEOX=neox,
                                 BT=bt, CH=ch, NS=ns, NSB=min(MERGE_TILE, triton.next_power_of_2(ns)),
                                 num_warps=4 if bt <= 64 else 8, **qo, **pdl_kw(), **early_kw())
    return out


# --- other cache types -------------------------------------------------------------------

T_F32, T_F16, T_Q8 = 0, 1, 8        # ggml type ids


@triton.jit
def _fwht(x, SCALE, HD: tl.constexpr, LOG2N: tl.constexpr):
    """x [HD] f32 → every run of 2**LOG2N values times the orthonormal Hadamard matrix, as
    ggml-cpu's fwht: x·SCALE (SCALE = 1/sqrtf(n)), then butterflies u+v, u−v with stride 1, 2, ..."""
    x = x * SCALE
    sel = (tl.arange(0, 2) == 0)[None, :, None]                       # [1, 2, 1]
    for s in tl.static_range(LOG2N):     # stride h = 2**s (not a named constexpr: those can't be reassigned)
        y = tl.reshape(x, [HD // (2 << s), 2, 1 << s])                  # pairs (i + j, i + h + j)
        u = tl.sum(tl.where(sel, y, 0.0), 1)                             # [HD/2h, h]
        v = tl.sum(tl.where(sel, 0.0, y), 1)
        x = tl.reshape(tl.where(sel, (u + v)[:, None, :], (u - v)[:, None, :]), [HD])
    return x


@triton.jit
def _rne(x):
    """Round half to even of float values (exact: comparisons against f + 0.5 only)."""
    f = tl.floor(x)
    h = f + 0.5
    odd = (f - 2.0 * tl.floor(f * 0.5)) != 0.0
    return tl.where((x > h) | ((x == h) & odd), f + 1.0, f)


@triton.jit
def _quant_q8(x):
    """x [NB, 32] f32 → (q [NB, 32] integer values as f32, d [NB] f16-rounded scale as f32):
    ggml's quantize_row_q8_0 (d = amax/127, q = round-half-even(x·127/amax))."""
    amax = tl.max(tl.abs(x), 1)                                          # [NB]
    c = amax * 0.0 + 127.0
    d = tl.math.div_rn(amax, c)
    inv = tl.where(amax != 0.0, tl.math.div_rn(c, tl.where(amax != 0.0, amax, c)), 0.0)
    return _rne(x * inv[:, None]), d.to(tl.float16).to(tl.float32)


@triton.jit
def _ld_f16_bytes(p, mask):
    """Little-endian f16 at byte pointers p (uint8) → f32."""
    lo = tl.load(p, mask=mask, other=0).to(tl.uint16)
    hi = tl.load(p + 1, mask=mask, other=0).to(tl.uint16)
    return ((hi << 8) | lo).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _st_q8(row, boff, soff, q, d):
    """A q8_0 head row at byte pointer ``row``: quants q [NB, 32] at boff, f16 scales d [NB] at soff."""
    tl.store(row + boff, q.to(tl.int32).to(tl.int8).to(tl.uint8, bitcast=True))
    bits = d.to(tl.float16).to(tl.uint16, bitcast=True)
    tl.store(row + soff, (bits & 0xFF).to(tl.uint8))
    tl.store(row + soff + 1, (bits >> 8).to(tl.uint8))


@triton.jit
def _decode_attn_kv_kernel(q_ptr, k_ptr, v_ptr, cos_ptr, sin_ptr, pos_ptr, kc_ptr, vc_ptr, o_ptr, pacc_ptr, pml_ptr,
                           cnt_ptr, xq_ptr, xd_ptr, xs_ptr, xg_ptr, scale, skh, skt, svh, svt, stride_cos,
                           rot_scale_k, rot_scale_v, G: tl.constexpr, HALF: tl.constexpr, NEOX: tl.constexpr,
                           BT: tl.constexpr, KT: tl.constexpr, VT: tl.constexpr, LOG2_RK: tl.constexpr,
                           LOG2_RV: tl.constexpr, CH: tl.constexpr, NS: tl.constexpr, NSB: tl.constexpr,
                           QO: tl.constexpr, QG: tl.constexpr, GDC: tl.constexpr):
    gdc_sync(GDC)
    hq = tl.program_id(0)                     # query head
    sp = tl.program_id(1)                     # split: cache positions [sp·CH, sp·CH + CH)
    h = hq // G
    pos = tl.load(pos_ptr)
    n_act = tl.maximum((pos + (CH - 1)) // CH, 1)     # splits with work: those below pos, and split 0
    if sp >= n_act:
        return
    HD: tl.constexpr = 2 * HALF
    NB: tl.constexpr = HD // 32
    d, partner, sgn, c, s = _rope_coefs(cos_ptr, sin_ptr, pos, stride_cos, HALF, NEOX)
    q = tl.load(q_ptr + hq * HD + d) * c + sgn * tl.load(q_ptr + hq * HD + partner) * s     # [HD]
    if LOG2_RK > 0:                           # llama.cpp's rotation of a quantized K cache
        q = _fwht(q, rot_scale_k, HD, LOG2_RK)
    q2 = tl.reshape(q, [NB, 32])
    ib = tl.arange(0, NB)
    d2 = ib[:, None] * 32 + tl.arange(0, 32)[None, :]                  # [NB, 32] value index
    boff = ib[:, None] * 34 + 2 + tl.arange(0, 32)[None, :]           # q8_0: byte offset of the quants
    soff = ib * 34                                                     # q8_0: byte offset of the scales
    kc = kc_ptr + h * skh
    vc = vc_ptr + h * svh
    if KT == 8:
        qq, dq = _quant_q8(q2)                # Q in K's dot type, as llama.cpp's CPU
    else:
        qh = q2.to(tl.float16).to(tl.float32)
    # split 0: the new token, the values this program attends to from registers (no cross-program
    # wait); its first query head of the group stores the new row. The other splits start empty.
    if sp == 0:
        first = hq % G == 0
        kf = tl.load(k_ptr + h * HD + d) * c + sgn * tl.load(k_ptr + h * HD + partner) * s
        vf = tl.load(v_ptr + h * HD + d)
        if LOG2_RK > 0:
            kf = _fwht(kf, rot_scale_k, HD, LOG2_RK)
        if LOG2_RV > 0:
            vf = _fwht(vf, rot_scale_v, HD, LOG2_RV)
        k2 = tl.reshape(kf, [NB, 32])
        v2 = tl.reshape(vf, [NB, 32])
        if KT == 8:
            kq, dk = _quant_q8(k2)
            if first:
                _st_q8(kc + pos * skt, boff, soff, kq, dk)
            s_new = tl.sum(tl.sum(kq * qq, 1) * (dk * dq), 0) * scale
        else:
            if first:
                if KT == 1:
                    tl.store(kc + pos * skt + d2, k2.to(tl.float16))
                else:
                    tl.store(kc + pos * skt + d2, k2)
            s_new = tl.sum(tl.sum(k2.to(tl.float16).to(tl.float32) * qh, 1), 0) * scale
        if VT == 8:
            vq, dv = _quant_q8(v2)
            if first:
                _st_q8(vc + pos * svt, boff, soff, vq, dv)
            acc = vq * dv[:, None]                                          # [NB, 32] f32
        else:
            if first:
                if VT == 1:
                    tl.store(vc + pos * svt + d2, v2.to(tl.float16))
                else:
                    tl.store(vc + pos * svt + d2, v2)
            acc = v2.to(tl.float16).to(tl.float32)
        m_i = s_new
        l_i = s_new * 0.0 + 1.0
    else:
        m_i = tl.full([], float("-inf"), tl.float32)
        l_i = tl.full([], 0.0, tl.float32)
        acc = tl.zeros([NB, 32], tl.float32)
    lo = sp * CH
    hi = tl.minimum(lo + CH, pos)             # positions before pos come from the cache
    for t0 in range(lo, hi, BT):
        t = t0 + tl.arange(0, BT)
        tm = t < hi
        t3 = t[:, None, None]
        m3 = tm[:, None, None]
        if KT == 8:
            kt = tl.load(kc + t3 * skt + boff[None], mask=m3, other=0).to(tl.int8, bitcast=True).to(tl.float32)
            dkt = _ld_f16_bytes(kc + t[:, None] * skt + soff[None, :], tm[:, None])           # [BT, NB]
        else:
            kt = tl.load(kc + t3 * skt + d2[None], mask=m3, other=0.0).to(tl.float16).to(tl.float32)
        if VT == 8:       # V's tile loads beside K's (as in _decode_attn_kernel)
            vq_t = tl.load(vc + t3 * svt + boff[None], mask=m3, other=0).to(tl.int8, bitcast=True).to(tl.float32)
            vt = vq_t * _ld_f16_bytes(vc + t[:, None] * svt + soff[None, :], tm[:, None])[:, :, None]
        else:
            vt = tl.load(vc + t3 * svt + d2[None], mask=m3, other=0.0).to(tl.float16).to(tl.float32)
        if KT == 8:
            sc = tl.sum(tl.sum(kt * qq[None], 2) * (dkt * dq[None, :]), 1) * scale
        else:
            sc = tl.sum(tl.sum(kt * qh[None], 2), 1) * scale
        sc = tl.where(tm, sc, float("-inf"))                                                  # [BT]
        m_new = tl.maximum(m_i, tl.max(sc, 0))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(sc - m_new)
        l_i = l_i * alpha + tl.sum(p, 0)
        acc = acc * alpha + tl.sum(p[:, None, None] * vt, 0)
        m_i = m_new
    if NS == 1:
        o = tl.reshape(acc / l_i, [HD])
        if LOG2_RV > 0:                       # back from V's rotation
            o = _fwht(o, rot_scale_v, HD, LOG2_RV)
        _store_o(o, o_ptr, hq, d, xq_ptr, xd_ptr, xs_ptr, xg_ptr, HD, QO, QG)
    else:
        o, mine = _merge(tl.reshape(acc, [HD]), m_i, l_i, hq, sp, n_act, pacc_ptr, pml_ptr, cnt_ptr, HD, NS, NSB)
        if mine:
            if LOG2_RV > 0:                   # back from V's rotation, once the splits are merged
                o = _fwht(o, rot_scale_v, HD, LOG2_RV)
            _store_o(o, o_ptr, hq, d, xq_ptr, xd_ptr, xs_ptr, xg_ptr, HD, QO, QG)


def _log2(n: int) -> int:
    assert n == 0 or n & (n - 1) == 0, n
    return n.bit_length() - 1 if n else 0


def decode_attention_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                        pos: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, scale: float,
                        neox: bool = False, out: torch.Tensor | None = None, block_t: int | None = None,
                        rot: tuple[int, int] = (0, 0), split_t: int | None = None,
                        qx: QX | None = None) -> torch.Tensor:
    """``decode_attention`` for any cache types: k_cache, v_cache [Hkv, n_ctx, R] as stored
    (f16/f32: R = hd; q8_0 uint8: R = hd/32·34; the last dim contiguous). ``rot``: (n_rot_k,
    n_rot_v), llama.cpp's Hadamard rotation of quantized caches (0: none); ``split_t`` and ``qx``
    as there. → o [H*hd] f32."""
    import numpy as np

    from ..kv_types import type_of

    Hkv, n_ctx, _ = k_cache.shape
    hd = cos.shape[1] * 2
    H = q.numel() // hd
    G = H // Hkv
    assert H * hd == q.numel() and Hkv * hd == k.numel() == v.numel() and G * Hkv == H and hd % 32 == 0
    assert k_cache.stride(2) == 1 and v_cache.stride(2) == 1 and cos.stride(1) == 1 and cos.stride() == sin.stride()
    assert q.is_contiguous() and k.is_contiguous() and v.is_contiguous() and pos.numel() == 1
    tid = {"f32": T_F32, "f16": T_F16, "q8_0": T_Q8}
    kt, vt = tid[type_of(k_cache)], tid[type_of(v_cache)]
    rk, rv = rot

    def rs(n: int) -> float:
        return float(np.float32(1.0) / np.sqrt(np.float32(n))) if n else 1.0

    if out is None:
        out = torch.empty(H * hd, dtype=torch.float32, device=q.device)
    bt = block_t or 32
    ch, ns = _plan(n_ctx, bt, split_t)
    cnt, pacc, pml = _workspace(H, ns, hd, q.device)
    xa, qo = _qx_args(qx, out, H * hd, hd)
    _decode_attn_kv_kernel[(H, ns)](q, k, v, cos, sin, pos, k_cache, v_cache, out, pacc, pml, cnt, *xa, float(scale),
                                    k_cache.stride(0), k_cache.stride(1), v_cache.stride(0), v_cache.stride(1),
                                    cos.stride(0), rs(rk), rs(rv), G=G, HALF=hd // 2, NEOX=neox, BT=bt, KT=kt, VT=vt,
                                    LOG2_RK=_log2(rk), LOG2_RV=_log2(rv), CH=ch, NS=ns,
                                    NSB=min(MERGE_TILE, triton.next_power_of_2(ns)), num_warps=4, **qo, **pdl_kw())
    return out
