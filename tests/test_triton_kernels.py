"""Triton kernels (ggrun.kernels, ggrun.backends.cuda) against the dequantize-then-torch
reference, on the CPU through Triton's interpreter (TRITON_INTERPRET=1, small shapes).

On the GPU the same checks run at full size in benchmarks/gpu.py.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported anywhere

import pytest  # noqa: E402
import torch  # noqa: E402

triton = pytest.importorskip("triton")

from ggrun.kernels import layout  # noqa: E402
from ggrun.kernels.layout import Q2_K, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0  # noqa: E402

if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET is off and there is no GPU", allow_module_level=True)

DEV = "cuda" if os.environ.get("TRITON_INTERPRET") != "1" else "cpu"
TYPES = [Q4_K, Q5_K, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K]
IDS = [layout.TYPE_NAMES[t] for t in TYPES]


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.fixture
def gen():
    return torch.Generator(device=DEV).manual_seed(1234)


def _weights(t, n_out, n_in, gen):
    from ggrun.kernels.testing import dequantize_ref, random_blocks

    raw = random_blocks(n_out, n_in, t, device=DEV, generator=gen)
    return raw, layout.pack(raw, t), dequantize_ref(raw, t).float()


@pytest.mark.parametrize("t", TYPES, ids=IDS)
def test_pack_is_lossless(t, gen):
    from ggrun.kernels.testing import random_blocks

    raw = random_blocks(3, 512, t, device=DEV, generator=gen)
    p = layout.pack(raw, t)
    p.check()
    assert p.n_bytes == (p.n_groups * p.il if p.il else 3) * raw.shape[1]     # interleaved: whole row groups
    assert torch.equal(layout.unpack(p), raw)


def test_interleaved_layout(gen):
    """Q4_K's row interleave: word i of block b of row r lies at w[r // 32, (b·9 + i // 4)·128 +
    (r % 32)·4 + i % 4]; the rows past n_out are zeros; 64 rows take exactly the file's bytes."""
    from ggrun.kernels.testing import random_blocks

    assert layout.INTERLEAVE.get(Q4_K) == 32
    raw = random_blocks(37, 512, Q4_K, device=DEV, generator=gen)
    p = layout.pack(raw, Q4_K)
    words = raw.view(torch.int32)                                      # [37, 2 blocks · 36 words]
    for r, b, i in ((0, 0, 0), (5, 1, 3), (31, 1, 35), (32, 0, 4), (36, 1, 17)):
        assert p.w[r // 32, (b * 9 + i // 4) * 128 + (r % 32) * 4 + i % 4] == words[r, b * 36 + i]
    assert not p.w[1].view(-1, 32, 4)[:, 5:].any()                      # rows 37..63: zero blocks
    assert layout.pack(random_blocks(64, 512, Q4_K, device=DEV, generator=gen), Q4_K).n_bytes == 64 * 288
    layout.set_interleave(Q4_K, 0)
    try:
        rm = layout.pack(raw, Q4_K)
    finally:
        layout.set_interleave(Q4_K, 32)
    assert rm.il == 0 and torch.equal(rm.w, words)
    # Q6_K: the d plane woven too (one f16 per block and row)
    raw6 = random_blocks(37, 512, Q6_K, device=DEV, generator=gen)
    p6 = layout.pack(raw6, Q6_K)
    d = raw6.reshape(37, 2, 210)[:, :, 208:].contiguous().view(torch.float16)     # [37, 2, 1]
    for r, b in ((0, 0), (31, 1), (36, 1)):
        assert p6.d[r // 32, b * 32 + r % 32] == d[r, b, 0]
    assert torch.equal(layout.unpack(p6), raw6)


@pytest.mark.parametrize("t", TYPES, ids=IDS)
def test_dequantize_rows(t, gen):
    from ggrun.kernels.dequant import dequantize

    _, p, W = _weights(t, 7, 768, gen)
    assert torch.allclose(dequantize(p, dtype=torch.float32), W, rtol=1e-6, atol=1e-7)
    ids = torch.tensor([6, 0, 6, 3])
    assert torch.allclose(dequantize(p, ids=ids, dtype=torch.float32), W[ids], rtol=1e-6, atol=1e-7)
    assert torch.allclose(dequantize(p).float(), W, rtol=1e-3, atol=1e-6)  # f16 output


@pytest.mark.parametrize("t", TYPES, ids=IDS)
@pytest.mark.parametrize("M", [1, 3])
def test_matvec(t, M, gen):
    from ggrun.kernels.matvec import matvec_q
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import qx_dequant

    N, K = 37, 768            # odd rows; 3 k-quant blocks / 24 legacy blocks (Q3_K: rows of 81 words)
    _, p, W = _weights(t, N, K, gen)
    x = torch.randn(M, K, device=DEV, generator=gen)
    qx = quantize_x(x)
    y = matvec_q(p, qx)
    assert y.shape == (M, N)
    assert rel(y, qx_dequant(qx) @ W.T) < 1e-5        # same arithmetic up to f32 rounding
    assert rel(y, x @ W.T) < 3e-2                      # 8-bit activations, as llama.cpp
    # split-K (partials then summed) and the residual-accumulating form, several configs
    y0 = torch.randn(M, N, device=DEV, generator=gen)
    y1 = y0.clone()
    matvec_q(p, qx, out=y1, acc=True, split=2, cfg=(16, 1, 4))
    assert rel(y1 - y0, qx_dequant(qx) @ W.T) < 1e-4


@pytest.mark.parametrize("t", TYPES, ids=IDS)
def test_matvec_configs(t, gen):
    """Batch 1 and 2 through the tiles the H200 sweep picks from: one row per program, prefetch
    on and off, a ragged last step, split-K with atomics (plain and accumulating)."""
    from ggrun.kernels.matvec import matvec_q
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import qx_dequant

    N, K = 5, 768                                      # 3 k-quant blocks / 24 legacy blocks
    _, p, W = _weights(t, N, K, gen)
    for M, cases in ((1, (((2, 2, 1, 1), 1), ((4, 1, 2, 0), 2), ((8, 2, 1, 1), 3))), (2, (((8, 2, 1, 1), 2),))):
        x = torch.randn(M, K, device=DEV, generator=gen)
        qx = quantize_x(x)
        ref = qx_dequant(qx) @ W.T
        for cfg, split in cases:
            y = torch.full((M, N), float("nan"), device=DEV)
            matvec_q(p, qx, out=y, cfg=cfg, split=split)
            assert rel(y, ref) < 1e-5, (M, cfg, split)
            y0 = torch.randn(M, N, device=DEV, generator=gen)
            y1 = y0.clone()
            matvec_q(p, qx, out=y1, acc=True, cfg=cfg, split=split)
            assert rel(y1 - y0, ref) < 1e-4, (M, cfg, split)


@pytest.mark.parametrize("t,K", [(Q5_0, 800), (Q5_1, 800), (Q3_K, 1024), (Q4_1, 800)],
                         ids=["Q5_0-125w", "Q5_1-125w", "Q3_K-108w", "Q4_1-100w"])
def test_matvec_row_alignment(t, K, gen):
    """The other row alignment than test_matvec's K = 768 gives (rows of 16-byte units or only
    words: RS 4 or 1), batch 1 and 2, prefetch, split-K; dequantize too."""
    from ggrun.kernels.dequant import dequantize
    from ggrun.kernels.matvec import matvec_q
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import qx_dequant

    _, p, W = _weights(t, 6, K, gen)
    assert torch.equal(dequantize(p, dtype=torch.float32), W)
    for M, cfg, split in ((1, (4, 2, 1, 1), 2), (2, (8, 4, 1, 0), 1)):
        qx = quantize_x(torch.randn(M, K, device=DEV, generator=gen))
        assert rel(matvec_q(p, qx, cfg=cfg, split=split), qx_dequant(qx) @ W.T) < 1e-5, (M, cfg, split)


@pytest.mark.parametrize("t", [Q4_1, Q2_K, Q3_K], ids=["Q4_1", "Q2_K", "Q3_K"])
def test_stacked_parts(t, gen):
    """layout.concat (fused QKV / gate-up): the stacked matrix and its row-slice parts (views
    into one w and one d plane, read as int32 words for d/m types) give each part's product."""
    from ggrun.kernels.dequant import dequantize
    from ggrun.kernels.matvec import matvec_q
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import qx_dequant

    ws = [_weights(t, n, 512, gen) for n in (3, 5)]
    fused, parts = layout.concat([w[1] for w in ws])
    fused.check()
    assert torch.equal(layout.unpack(fused), torch.cat([w[0] for w in ws]))
    qx = quantize_x(torch.randn(1, 512, device=DEV, generator=gen))
    X = qx_dequant(qx)
    assert rel(matvec_q(fused, qx), X @ torch.cat([w[2] for w in ws]).T) < 1e-5
    for part, (_, _, W) in zip(parts, ws):
        part.check()
        assert rel(matvec_q(part, qx), X @ W.T) < 1e-5
        assert torch.equal(dequantize(part, ids=torch.tensor([2, 0]), dtype=torch.float32), W[[2, 0]])


def test_matvec_tuned_table(gen):
    from ggrun.kernels import matvec as mv
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import qx_dequant

    _, p, W = _weights(Q6_K, 9, 512, gen)
    qx = quantize_x(torch.randn(1, 512, device=DEV, generator=gen))
    mv.set_tuned(Q6_K, 9, 512, (2, 1, 1, 1), split=2)
    try:
        assert rel(mv.matvec_q(p, qx), qx_dequant(qx) @ W.T) < 1e-5
    finally:
        mv.TUNED.clear()


@pytest.mark.parametrize("t", [Q4_K, Q6_K], ids=["Q4_K", "Q6_K"])
@pytest.mark.parametrize("M", [1, 3, 8])
def test_matvec_interleaved(t, M, gen):
    """The row-interleaved Q4_K/Q6_K kernels against the row-major general kernels and the
    reference: a ragged last row group, a K range not a multiple of the lanes, lanes per warp 1-4,
    split-K (atomics), accumulate."""
    from ggrun.kernels import matvec as mv
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import qx_dequant

    raw, p, W = _weights(t, 45, 5 * 256, gen)
    layout.set_interleave(t, 0)
    try:
        rm = layout.pack(raw, t)
    finally:
        layout.set_interleave(t, 32)
    assert p.il == 32 and rm.il == 0
    qx = quantize_x(torch.randn(M, 5 * 256, device=DEV, generator=gen))
    ref = qx_dequant(qx) @ W.T
    y0 = mv.matvec_q(rm, qx, cfg=(8, 2, 4, 0), split=1)
    for cfg, split in (((32, 1, 1, 0), 1), ((32, 2, 1, 0), 2), ((32, 4, 2, 0), 1), ((32, 8, 2, 0), 3), (None, None)):
        y = mv.matvec_q(p, qx, cfg=cfg, split=split)
        assert rel(y, ref) < 1e-5 and rel(y, y0) < 1e-5, (cfg, split)
        base = torch.randn(M, 45, device=DEV, generator=gen)
        acc = base.clone()
        mv.matvec_q(p, qx, out=acc, acc=True, cfg=cfg, split=split)
        assert rel(acc - base, ref) < 1e-4, (cfg, split)


@pytest.mark.parametrize("t", [Q4_K, Q8_0, Q3_K], ids=["Q4_K-il", "Q8_0", "Q3_K-ext"])
def test_matvec_split_k_sums_in_order(t, gen):
    """Split-K: the last K-slice of a row tile sums the slices' parts in slice order (no atomic
    float adds): the same bits every run, the arrival counters back at zero, y = out + W·x with
    ``acc`` and y overwritten (not zeroed first) without."""
    from ggrun.kernels._common import _COUNTERS
    from ggrun.kernels.matvec import matvec_q
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import qx_dequant

    _, p, W = _weights(t, 40, 6 * 256, gen)
    for M in (1, 2):
        qx = quantize_x(torch.randn(M, 6 * 256, device=DEV, generator=gen))
        ref = qx_dequant(qx) @ W.T
        cfg = (32, 2, 2, 0) if p.il else (8, 2, 2, 0)
        y1 = torch.full((M, 40), float("nan"), device=DEV)
        matvec_q(p, qx, out=y1, cfg=cfg, split=3)
        y2 = matvec_q(p, qx, cfg=cfg, split=3)
        assert rel(y1, ref) < 1e-5 and torch.equal(y1, y2), M
        base = torch.randn(M, 40, device=DEV, generator=gen)
        acc = base.clone()
        matvec_q(p, qx, out=acc, acc=True, cfg=cfg, split=3)
        assert rel(acc - base, ref) < 1e-4, M
    assert all(int(c.abs().sum()) == 0 for c in _COUNTERS.values())


def test_matvec_swiglu_epilogue(gen):
    """The stacked [gate; up] Q4_K product with ``swiglu``: y as without it, and the quantized
    silu(gate)·up bit for bit what quantize_x gives from y (per-64 records with F = 128; without
    them with F = 96)."""
    from ggrun.kernels.matvec import matvec_q
    from ggrun.kernels.quantize_x import empty_qx, quantize_x

    for F in (128, 96):
        (_, pg, _), (_, pu, _) = _weights(Q4_K, F, 512, gen), _weights(Q4_K, F, 512, gen)
        stack, _ = layout.concat([pg, pu])
        qx = quantize_x(torch.randn(1, 512, device=DEV, generator=gen))
        y0 = matvec_q(stack, qx, cfg=(32, 4, 2, 0), split=1)
        ref = quantize_x(y0[:, :F], up=y0[:, F:])
        for cfg in ((32, 4, 2, 0), (32, 2, 1, 1)):
            sq = empty_qx(1, F, DEV)
            y = matvec_q(stack, qx, cfg=cfg, split=3, swiglu=sq)       # (the split is dropped)
            assert torch.equal(y, matvec_q(stack, qx, cfg=cfg, split=1)), (F, cfg)
            yr = quantize_x(y[:, :F], up=y[:, F:])
            for a, b in ((sq.q, yr.q), (sq.d, yr.d), (sq.s, yr.s), (sq.g, yr.g)):
                assert torch.equal(a, b), (F, cfg)
            assert rel(sq.d, ref.d) < 1e-5


@pytest.mark.parametrize("M", [1, 3])
def test_matvec_pair_q6k_q4k(M, gen):
    """One launch for an interleaved Q6_K and Q4_K matrix (attn_v beside q+k): each output as its
    own launch gives it, bit for bit, both argument orders, into column ranges of one buffer."""
    from ggrun.kernels.matvec import matvec_q, matvec_q_pair, pairable
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import qx_dequant

    _, p4, W4 = _weights(Q4_K, 70, 3 * 256, gen)
    _, p6, W6 = _weights(Q6_K, 40, 3 * 256, gen)
    _, p4b, _ = _weights(Q4_K, 8, 2 * 256, gen)
    assert pairable(p4, p6) and pairable(p6, p4) and not pairable(p4, p4) and not pairable(p6, p4b)
    qx = quantize_x(torch.randn(M, 3 * 256, device=DEV, generator=gen))
    cfg = (32, 2, 2, 1)
    y4, y6 = matvec_q(p4, qx, cfg=cfg, split=1), matvec_q(p6, qx, cfg=cfg, split=1)
    assert rel(y4, qx_dequant(qx) @ W4.T) < 1e-5 and rel(y6, qx_dequant(qx) @ W6.T) < 1e-5
    for order in ((p4, p6), (p6, p4)):
        buf = torch.full((M, 110), float("nan"), device=DEV)
        ya, yb = (buf[:, :70], buf[:, 70:]) if order[0] is p4 else (buf[:, :40], buf[:, 40:])
        matvec_q_pair(*order, qx, ya, yb, cfg=cfg)
        got4, got6 = (ya, yb) if order[0] is p4 else (yb, ya)
        assert torch.equal(got4, y4) and torch.equal(got6, y6)


def test_matvec_batch8_q4k(gen):
    from ggrun.kernels.matvec import matvec

    _, p, W = _weights(Q4_K, 19, 256, gen)
    x = torch.randn(8, 256, device=DEV, generator=gen)
    assert rel(matvec(p, x, cfg=(8, 2, 4), split=1), x @ W.T) < 3e-2


def test_quantize_x_modes(gen):
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import qx_dequant

    x = torch.randn(2, 320, device=DEV, generator=gen) * 4     # 320: a partial last chunk
    qx = quantize_x(x)
    # q8_1: d = amax/127 per 32, q = round(x/d), |q| <= 127, sums over 16
    xb = x.view(2, 10, 32)
    d = xb.abs().amax(-1) / 127
    assert torch.allclose(qx.d, d)
    q = torch.round(xb / d[..., None])
    assert torch.equal(qx.q.view(2, 10, 32).float(), q)
    assert torch.equal(qx.s, q.view(2, 20, 16).sum(-1))
    # per 64 values (the Q4_K batch-1 kernel's record): d_a, d_b, d_a·Σq_a, d_b·Σq_b
    d2, s2 = d.view(2, 5, 2), q.view(2, 5, 2, 32).sum(-1)
    assert torch.equal(qx.g, torch.cat([d2, d2 * s2], -1))
    nw = torch.rand(320, device=DEV, generator=gen) + 0.5
    xn = x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * nw
    qn = quantize_x(x, norm_w=nw, eps=1e-5)
    assert rel(qx_dequant(qn), xn) < 1e-2
    from ggrun.kernels._common import set_early

    set_early(False)           # the norm weights loaded after the PDL wait: the same bits
    try:
        qn2 = quantize_x(x, norm_w=nw, eps=1e-5)
    finally:
        set_early(True)
    assert all(torch.equal(a, b) for a, b in ((qn.q, qn2.q), (qn.d, qn2.d), (qn.s, qn2.s), (qn.g, qn2.g)))
    u = torch.randn(2, 320, device=DEV, generator=gen)
    assert rel(qx_dequant(quantize_x(x, up=u)), torch.nn.functional.silu(x) * u) < 1e-2


@pytest.mark.parametrize("H,Hkv,pos,neox", [(4, 2, 5, False), (2, 2, 0, True), (6, 2, 17, False)])
def test_decode_attention(H, Hkv, pos, neox, gen):
    from ggrun.kernels.attention import decode_attention
    from ggrun.model import apply_rope

    hd, n_ctx = 32, 24
    cos = torch.rand(n_ctx, hd // 2, device=DEV, generator=gen) * 2 - 1
    sin = (1 - cos * cos).sqrt()
    kc = torch.randn(Hkv, n_ctx, hd, device=DEV, generator=gen).half()
    vc = torch.randn(Hkv, n_ctx, hd, device=DEV, generator=gen).half()
    q = torch.randn(H * hd, device=DEV, generator=gen)
    k = torch.randn(Hkv * hd, device=DEV, generator=gen)
    v = torch.randn(Hkv * hd, device=DEV, generator=gen)
    kc2, vc2 = kc.clone(), vc.clone()
    o = decode_attention(q, k, v, cos, sin, torch.tensor([pos], device=DEV), kc2, vc2, 0.2, neox=neox, block_t=8)
    c, s = cos[pos:pos + 1], sin[pos:pos + 1]
    qr = apply_rope(q.view(1, H, hd), c, s, hd, neox)[0].half().float()
    kc[:, pos] = apply_rope(k.view(1, Hkv, hd), c, s, hd, neox)[0].half()
    vc[:, pos] = v.view(Hkv, hd).half()
    assert torch.allclose(kc2.float(), kc.float(), atol=1e-3) and torch.equal(vc2, vc)
    G = H // Hkv
    Kf = kc[:, :pos + 1].float().repeat_interleave(G, 0)
    Vf = vc[:, :pos + 1].float().repeat_interleave(G, 0)
    p = (torch.einsum("hd,htd->ht", qr.view(H, hd), Kf) * 0.2).softmax(-1)
    ref = torch.einsum("ht,htd->hd", p, Vf).reshape(-1)
    assert rel(o, ref) < 1e-4


@pytest.mark.parametrize("n_ctx,split_t,neox", [(64, 16, False), (600, None, True)])
def test_decode_attention_splits(n_ctx, split_t, neox, gen):
    """Flash-decoding: cache positions in splits of ``split_t`` (64 → 4 splits of 16; 600 with
    the default plan → 3 splits of 256), one decode step after another (the per-head arrival
    counters must come back to zero), at pos 0, at and around every split boundary and at the
    last position: the cache rows written and the output against a torch reference."""
    from ggrun.kernels.attention import _plan, decode_attention
    from ggrun.model import apply_rope

    H, Hkv, hd = 4, 2, 32
    ch, ns = _plan(n_ctx, 8, split_t)
    assert ns >= 3
    cos = torch.rand(n_ctx, hd // 2, device=DEV, generator=gen) * 2 - 1
    sin = (1 - cos * cos).sqrt()
    kc = torch.randn(Hkv, n_ctx, hd, device=DEV, generator=gen).half()
    vc = torch.randn(Hkv, n_ctx, hd, device=DEV, generator=gen).half()
    kc2, vc2 = kc.clone(), vc.clone()
    out = torch.empty(H * hd, device=DEV)
    G = H // Hkv
    positions = sorted({0, 1, ch - 1, ch, ch + 1, 2 * ch, 2 * ch + 1, (ns - 1) * ch, n_ctx - 2, n_ctx - 1})
    for pos in positions:
        q = torch.randn(H * hd, device=DEV, generator=gen)
        k = torch.randn(Hkv * hd, device=DEV, generator=gen)
        v = torch.randn(Hkv * hd, device=DEV, generator=gen)
        o = decode_attention(q, k, v, cos, sin, torch.tensor([pos], dtype=torch.int32, device=DEV), kc2, vc2, 0.2, neox=neox,
                             out=out, block_t=8, split_t=split_t)
        c, s = cos[pos:pos + 1], sin[pos:pos + 1]
        qr = apply_rope(q.view(1, H, hd), c, s, hd, neox)[0].half().float()
        kc[:, pos] = apply_rope(k.view(1, Hkv, hd), c, s, hd, neox)[0].half()
        vc[:, pos] = v.view(Hkv, hd).half()
        assert torch.allclose(kc2.float(), kc.float(), atol=1e-3) and torch.equal(vc2, vc), pos
        Kf = kc[:, :pos + 1].float().repeat_interleave(G, 0)
        Vf = vc[:, :pos + 1].float().repeat_interleave(G, 0)
        p = (torch.einsum("hd,htd->ht", qr.view(H, hd), Kf) * 0.2).softmax(-1)
        ref = torch.einsum("ht,htd->hd", p, Vf).reshape(-1)
        assert rel(o, ref) < 1e-4, pos
        kc.copy_(kc2)          # the kernel's rows (within f16 rounding of the reference's) from here on
    from ggrun.kernels._common import _COUNTERS

    assert all(int(c.abs().sum()) == 0 for c in _COUNTERS.values())


@pytest.mark.parametrize("split_t", [None, 128])
def test_decode_attention_tile_sizes_and_early_loads(split_t, gen):
    """The f16 kernel's tile (8 positions per step and 128, the 8-warp launch) gives the same
    output within float rounding, at positions in the first tile, at its end and past it (one
    split of the 300-position cache; and splits of 128, where the later splits' first tiles are
    loaded before the PDL wait); with its early loads off (``set_early``) the same bits."""
    from ggrun.kernels._common import set_early
    from ggrun.kernels.attention import decode_attention

    H, Hkv, hd, n_ctx = 4, 2, 32, 300
    cos = torch.rand(n_ctx, hd // 2, device=DEV, generator=gen) * 2 - 1
    sin = (1 - cos * cos).sqrt()
    kc = torch.randn(Hkv, n_ctx, hd, device=DEV, generator=gen).half()
    vc = torch.randn(Hkv, n_ctx, hd, device=DEV, generator=gen).half()
    for pos in (3, 127, 128, 200, 299):
        q, k, v = (torch.randn(n * hd, device=DEV, generator=gen) for n in (H, Hkv, Hkv))
        P = torch.tensor([pos], dtype=torch.int32, device=DEV)
        outs = {}
        for bt, early in ((8, True), (128, True), (128, False)):
            set_early(early)
            try:
                outs[bt, early] = decode_attention(q, k, v, cos, sin, P, kc.clone(), vc.clone(), 0.2, block_t=bt,
                                                   split_t=split_t)
            finally:
                set_early(True)
        assert rel(outs[128, True], outs[8, True]) < 1e-5, pos
        assert torch.equal(outs[128, True], outs[128, False]), pos


def test_argmax_next(gen):
    """One launch: tok = argmax(logits), the first of equal maxima also across the kernel's steps
    (as torch.argmax), and pos + 1."""
    from ggrun.kernels.greedy import argmax_next

    tok = torch.zeros(1, dtype=torch.int64, device=DEV)
    pos = torch.tensor([41], dtype=torch.int32, device=DEV)
    for V, block in ((1000, 256), (1000, None), (32256, None)):
        x = torch.randn(V, device=DEV, generator=gen)
        argmax_next(x, tok, pos, block=block)
        assert int(tok) == int(x.argmax())
        x[700] = x[300] = x.max() + 1           # a tie in two steps of 256: the first wins
        x[310] = x[300]                         # and within one step
        argmax_next(x, tok, pos, block=block)
        assert int(tok) == int(x.argmax()) == 300
    assert int(pos) == 47


@pytest.mark.parametrize("kv", ["f16", "q8_0"])
@pytest.mark.parametrize("split_t", [None, 16])
def test_decode_attention_quantized_output(kv, split_t, gen):
    """``qx=``: the attention kernels also write their output as 8-bit activation blocks, bit for
    bit quantize_x(o) (one split and four; the f16 and the any-type kernel)."""
    from ggrun.kernels.attention import decode_attention, decode_attention_kv
    from ggrun.kernels.quantize_x import empty_qx, quantize_x
    from ggrun.kv_types import quantize_q8_0

    H, Hkv, hd, n_ctx, pos = 4, 2, 64, 64, 40
    cos = torch.rand(n_ctx, hd // 2, device=DEV, generator=gen) * 2 - 1
    sin = (1 - cos * cos).sqrt()
    q, k, v = (torch.randn(n * hd, device=DEV, generator=gen) for n in (H, Hkv, Hkv))
    P = torch.tensor([pos], dtype=torch.int32, device=DEV)
    if kv == "f16":
        kc = torch.randn(Hkv, n_ctx, hd, device=DEV, generator=gen).half()
        vc = torch.randn_like(kc)
        attend = decode_attention
    else:
        kc, vc = (quantize_q8_0(torch.randn(Hkv, n_ctx, hd, device=DEV, generator=gen)) for _ in range(2))
        attend = decode_attention_kv
    qx = empty_qx(1, H * hd, DEV)
    o = attend(q, k, v, cos, sin, P, kc.clone(), vc.clone(), 0.125, block_t=8, split_t=split_t, qx=qx)
    o2 = attend(q, k, v, cos, sin, P, kc.clone(), vc.clone(), 0.125, block_t=8, split_t=split_t)
    assert torch.equal(o, o2)
    ref = quantize_x(o.view(1, -1))
    for a, b in ((qx.q, ref.q), (qx.d, ref.d), (qx.s, ref.s), (qx.g, ref.g)):
        assert torch.equal(a, b)


def test_graph_decoder_fused_launches_same_bits():
    """GraphDecoder's fused launches (the attention kernel quantizes its output, a layer's Q6_K
    attn_v runs in the q+k launch, the gate/up launch quantizes silu(gate)·up, the greedy step is
    one launch) give the logits
    of the unfused sequence bit for bit; the tiny Q4_K_M model has one layer of each attn_v type."""
    from ggrun.backends.cuda import GraphDecoder, _swiglu_fusable, prepare_stacks
    from ggrun.kernels.matvec import pairable
    from ggrun.kernels.testing import synthetic_config, synthetic_llama

    cfg = synthetic_config("tiny", n_layer=2, n_embd=256, n_ff=256, n_head=4, n_head_kv=2, n_vocab=40)
    w = synthetic_llama(cfg, "Q4_K_M", device=DEV)
    prepare_stacks(w, DEV)
    out = {}
    for fuse in (False, True):
        dec = GraphDecoder(cfg, w, n_ctx=16, device=DEV, fuse=fuse)
        dec.reset(3, 0)
        seq = []
        for _ in range(3):
            dec.step()
            seq.append(dec.logits.clone())
        out[fuse] = torch.stack(seq)
        assert int(dec.tok) == int(seq[-1].argmax()) and int(dec.pos) == 3      # argmax_next's step, or torch's
    assert [len(L["qkv"]) for L in dec.layers] == [1, 2] and pairable(*[p for _, p in dec.layers[1]["qkv"]])
    assert dec.fuse_o and all(_swiglu_fusable(L["gu"][0][1], cfg.n_ff) for L in dec.layers)
    assert torch.equal(out[False], out[True])


@pytest.mark.parametrize("mix", ["Q4_K_M", "Q2_K"])
def test_backend_and_graph_decoder_match_model(mix):
    """CUDABackend under model.py (prefill: dequant → matmul; decode: matvec) and the
    GraphDecoder's fused step give the same logits on a tiny random model (Q4_K_M; Q2_K:
    llama-quantize's Q2_K mix, Q2_K with Q3_K attn_v/attn_output/ffn_down and a Q6_K output)."""
    from ggrun.backends.cuda import CUDABackend, GraphDecoder
    from ggrun.kernels.testing import synthetic_config, synthetic_llama
    from ggrun.model import KVCache, LlamaModel, SeqChunk

    cfg = synthetic_config("tiny", n_layer=1, n_embd=256, n_ff=256, n_head=4, n_head_kv=2, n_vocab=40)
    w = synthetic_llama(cfg, mix, device=DEV)
    be = CUDABackend(DEV)
    lm = LlamaModel(cfg, w, be, max_pos=16)
    dec = GraphDecoder(cfg, w, n_ctx=16, device=DEV)
    toks = [3, 17, 5, 9, 1, 2, 33, 8, 11, 4]
    # prefill 9 tokens through the backend's dequant path (M > 8), then decode one
    cache = KVCache(cfg, 16, device=DEV)
    lm.forward(torch.tensor(toks[:9]), [SeqChunk(0, 0, 9)], cache)
    ref = lm.forward(torch.tensor(toks[9:]), [SeqChunk(0, 9, 1)], cache)
    # the decoder on its own cache: the same 10 tokens one at a time
    for i, t in enumerate(toks):
        dec.reset(t, i)
        dec.step()
    assert rel(dec.logits, ref) < 2e-2
    assert dec.tok.item() == dec.logits.argmax().item() and int(dec.pos.item()) == 10
    # the decoder on model.py's KVCache after model.py's prefill (how the engine would use it)
    cache2 = KVCache(cfg, 16, device=DEV)
    lm.forward(torch.tensor(toks[:9]), [SeqChunk(0, 0, 9)], cache2)
    dec2 = GraphDecoder(cfg, w, n_ctx=16, device=DEV, cache=cache2, slot=0)
    dec2.reset(toks[9], 9)
    dec2.step()
    assert rel(dec2.logits, ref) < 2e-2
    assert torch.equal(cache2.k[:, 0, :10], cache.k[:, 0, :10]) or rel(cache2.k[:, 0, :10].float(), cache.k[:, 0, :10].float()) < 1e-3


def test_bad_pdl_mode_warns_in_one_line():
    """GGRUN_PDL with a value other than off/start/end: one warning line naming them, then "end"."""
    import subprocess
    import sys

    code = "from ggrun.kernels._common import pdl_mode; print(pdl_mode())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "GGRUN_PDL": "on"})
    assert r.returncode == 0 and r.stdout.strip() == "end"
    assert r.stderr.strip() == "ggrun: warning: GGRUN_PDL='on' is not one of off, start, end: using end"
