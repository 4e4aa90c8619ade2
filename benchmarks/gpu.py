#!/usr/bin/env python3
"""ggrun on one CUDA GPU: kernel checks, per-matrix matvec sweeps, whole decode steps.

Run on the device (one call builds, checks and times everything, ≈ 160 s on an H200):

    git apply .gpu_patches/offload.diff   # only for the -ngl section, until the lead merges it
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu.py [--quick] [--models 33b,6.7b] [--skip ...] [--out DIR]

Sections, in order: checks of every kernel (every GPU type) against the torch reference;
`ggrun bench --synthetic` with the shipped tiles (fresh process): Q4_K_M per model, then the
6.7B's tg128 in llama-quantize's mixes (--mixes) beside their limits (copy BW / weight bytes);
the matvec sweep (the committed kernel, frozen in benchmarks/matvec_v1.py, beside the new one
over CFGS; winners go into matvec.TUNED); the mixes' matvec shapes swept (sweep_types, off by
default); tg128 through GraphDecoder with v1 and with the new kernel on the same weights
(logits compared); the 33B at -ngl 31. Prints tables last; writes gpu_results.json under --out.
Weights are random but valid GGUF blocks with the DeepSeek Coder shapes and llama.cpp's
Q4_K_M mix, built in GPU memory. Anchors (llama.cpp CUDA, same H200, fa on):
6.7B tg128 265.7 t/s, 33B tg128 70.9 t/s; copy bandwidth 4.227 TB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # matvec_v1

import torch  # noqa: E402

from ggrun.kernels import layout  # noqa: E402
from ggrun.kernels.layout import (Q2_K, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0,  # noqa: E402
                                  TYPE_NAMES)

ANCHORS = {"deepseek-coder-6.7b": (265.7, 4_082_886_624), "deepseek-coder-33b": (70.9, 19_940_529_888)}
COPY_TBS = 4.227
RESULTS: dict = {"errors": []}


def log(*a):
    print(*a, flush=True)


def section(fn):
    def run(*a, **kw):
        log(f"\n=== {fn.__name__} ===")
        t0 = time.time()
        try:
            return fn(*a, **kw)
        except Exception as e:  # keep going: one failure must not lose the other figures
            traceback.print_exc()
            RESULTS["errors"].append(f"{fn.__name__}: {e!r}"[:400])
        finally:
            log(f"--- {fn.__name__}: {time.time() - t0:.1f} s")
    return run


def events_ms(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return out


def graph_time(calls, reps: int = 7) -> float:
    """Median ms of one call among ``calls`` (a list of closures), replayed in one CUDA graph."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for c in calls[:2]:
            c()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for c in calls:
            c()
    g.replay()
    torch.cuda.synchronize()
    return statistics.median(events_ms(g.replay, reps)) / len(calls)


@section
def device_info():
    import triton

    p = torch.cuda.get_device_properties(0)
    RESULTS["device"] = dict(name=p.name, sms=p.multi_processor_count, mem_gib=round(p.total_memory / 2**30, 1),
                             torch=torch.__version__, triton=triton.__version__,
                             date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    log(RESULTS["device"])


@section
def copy_bandwidth():
    n = 2 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
    b = torch.empty_like(a)
    b.copy_(a)
    ms = statistics.median(events_ms(lambda: b.copy_(a), 10))
    tbs = 2 * n / ms / 1e9
    RESULTS["copy_tbs"] = tbs
    log(f"copy: {tbs:.3f} TB/s (read + write, 2 GiB, median of 10)")
    del a, b


def rel(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@section
def check_kernels():
    from ggrun.kernels.dequant import dequantize
    from ggrun.kernels.matvec import matvec_q
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import dequantize_ref, qx_dequant, random_blocks

    g = torch.Generator(device="cuda").manual_seed(1)
    bad = []
    # (M, cfg, split): the defaults, a one-row tile with prefetch, a wide tile without, split-K (parts summed by the last slice)
    full = [(1, None, None), (1, (1, 8, 2, 1), 1), (1, (2, 4, 4, 1), 3), (3, None, 3), (8, None, 1)]
    for t in (Q4_K, Q5_K, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K):
        cases = full if t in (Q4_K, Q6_K, Q2_K, Q3_K, Q5_0) else [(1, None, None), (3, None, 3)]
        # K: rows of 16-byte units and (Q5_0/Q5_1/Q3_K: 5 and 27 words per block) rows of odd words
        k2 = 2816 if layout.LAYOUTS[t][0] == 256 else 2848
        for (N, K) in ((333, 768), (1031, k2), (129, 4096)):
            raw = random_blocks(N, K, t, device="cuda", generator=g)
            p = layout.pack(raw, t)
            assert torch.equal(layout.unpack(p), raw)
            W = dequantize_ref(raw, t).float()
            e_dq = (dequantize(p, dtype=torch.float32) - W).abs().max().item() / W.abs().max().item()
            ids = torch.randint(0, N, (7,), device="cuda", generator=g)
            e_rows = (dequantize(p, ids=ids, dtype=torch.float32) - W[ids]).abs().max().item() / W.abs().max().item()
            worst = 0.0
            for M, cfg, split in cases:
                x = torch.randn(M, K, device="cuda", generator=g)
                qx = quantize_x(x)
                ref = qx_dequant(qx) @ W.T
                y = torch.full((M, N), float("nan"), device="cuda")
                matvec_q(p, qx, out=y, cfg=cfg, split=split)
                e = rel(y, ref)
                e_f = rel(y, x @ W.T)
                y0 = torch.randn(M, N, device="cuda", generator=g)
                y1 = y0.clone()
                matvec_q(p, qx, out=y1, acc=True, cfg=cfg, split=split)
                e_acc = rel(y1 - y0, ref)
                worst = max(worst, e)
                ok = e < 1e-5 and e_acc < 1e-4 and e_f < 3e-2 and e_dq < 1e-6 and e_rows < 1e-6
                if not ok:
                    bad.append((TYPE_NAMES[t], N, K, M, cfg, split, e, e_acc, e_f, e_dq, e_rows))
            log(f"{TYPE_NAMES[t]} {N}x{K}: matvec worst rel err vs q8-x ref {worst:.1e} over {len(cases)} cases; "
                f"dequant {e_dq:.1e}")
    # fused norm / swiglu quantization
    x = torch.randn(2, 4096, device="cuda", generator=g) * 3
    nw = torch.rand(4096, device="cuda", generator=g) + 0.5
    qx = quantize_x(x, norm_w=nw, eps=1e-6)
    xn = x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * nw
    e_n = rel(qx_dequant(qx), xn)
    u = torch.randn(2, 4096, device="cuda", generator=g)
    e_s = rel(qx_dequant(quantize_x(x, up=u)), torch.nn.functional.silu(x) * u)
    log(f"quantize_x: rmsnorm rel err {e_n:.1e}, swiglu {e_s:.1e} (8-bit blocks: ~5e-3 expected)")
    if e_n > 1.5e-2 or e_s > 1.5e-2:
        bad.append(("quantize_x", e_n, e_s))
    RESULTS["check_failures"] = [str(b) for b in bad]
    log("CHECKS:", "all passed" if not bad else f"{len(bad)} FAILED: {bad[:6]}")


@section
def check_attention():
    from ggrun.kernels.attention import decode_attention
    from ggrun.model import apply_rope

    g = torch.Generator(device="cuda").manual_seed(2)
    bad = []
    for H, Hkv, pos in ((56, 8, 37), (32, 32, 200), (4, 2, 0), (56, 8, 1000)):
        hd, n_ctx = 128, 1024
        cos = torch.rand(n_ctx, hd // 2, device="cuda", generator=g) * 2 - 1
        sin = (1 - cos * cos).sqrt()
        kc = torch.randn(Hkv, n_ctx, hd, device="cuda", generator=g).half()
        vc = torch.randn_like(kc)
        q = torch.randn(H * hd, device="cuda", generator=g)
        k = torch.randn(Hkv * hd, device="cuda", generator=g)
        v = torch.randn(Hkv * hd, device="cuda", generator=g)
        P = torch.tensor([pos], device="cuda", dtype=torch.int32)
        kc2, vc2 = kc.clone(), vc.clone()
        o = decode_attention(q, k, v, cos, sin, P, kc2, vc2, 0.088)
        qr = apply_rope(q.view(1, H, hd), cos[pos:pos + 1], sin[pos:pos + 1], hd, False)[0].half().float()
        kr = apply_rope(k.view(1, Hkv, hd), cos[pos:pos + 1], sin[pos:pos + 1], hd, False)[0]
        kc[:, pos], vc[:, pos] = kr.half(), v.view(Hkv, hd).half()
        G = H // Hkv
        Kf = kc[:, :pos + 1].float().repeat_interleave(G, 0)
        Vf = vc[:, :pos + 1].float().repeat_interleave(G, 0)
        s = torch.einsum("hd,htd->ht", qr.view(H, hd), Kf) * 0.088
        ref = torch.einsum("ht,htd->hd", s.softmax(-1), Vf).reshape(-1)
        e_o, e_k = rel(o, ref), (kc2.float() - kc.float()).abs().max().item()
        log(f"decode_attention H={H} Hkv={Hkv} pos={pos}: rel err {e_o:.1e}, cache max diff {e_k:.1e}")
        if e_o > 1e-4 or e_k > 1e-2:
            bad.append(("attention", H, Hkv, pos, e_o, e_k))
    RESULTS["check_attention_failures"] = [str(b) for b in bad]
    log("ATTENTION CHECKS:", "all passed" if not bad else f"{len(bad)} FAILED: {bad}")


# every matrix shape a decode token of these models runs (q/k/v and gate/up stacked as GraphDecoder does)
MV_SHAPES = {
    "deepseek-coder-6.7b": [("wo", 4096, 4096, Q4_K), ("qkv stacked", 12288, 4096, Q4_K),
                            ("qk stacked", 8192, 4096, Q4_K), ("attn_v", 4096, 4096, Q6_K),
                            ("gate+up stacked", 22016, 4096, Q4_K), ("ffn_down", 4096, 11008, Q4_K),
                            ("ffn_down", 4096, 11008, Q6_K), ("output", 32256, 4096, Q6_K)],
    "deepseek-coder-33b": [("wo", 7168, 7168, Q4_K), ("qkv stacked", 9216, 7168, Q4_K),
                           ("qk stacked", 8192, 7168, Q4_K), ("attn_v", 1024, 7168, Q6_K),
                           ("gate+up stacked", 38400, 7168, Q4_K), ("ffn_down", 7168, 19200, Q4_K),
                           ("ffn_down", 7168, 19200, Q6_K), ("output", 32256, 7168, Q6_K)],
}
# (BN rows, BB blocks per step, warps, prefetch)
CFGS = {Q4_K: [(8, 8, 4, 1), (8, 4, 4, 0), (4, 8, 4, 0), (16, 4, 4, 0), (16, 4, 8, 0), (16, 8, 8, 1), (8, 4, 4, 1),
               (8, 8, 4, 0), (8, 4, 8, 0), (4, 8, 2, 1), (8, 4, 2, 0), (2, 8, 2, 1), (2, 16, 4, 1), (16, 2, 4, 0)],
        Q6_K: [(8, 4, 4, 1), (2, 4, 2, 1), (2, 8, 4, 1), (4, 8, 8, 1), (16, 4, 8, 1), (16, 2, 4, 1), (8, 4, 8, 1),
               (8, 8, 8, 1), (4, 4, 2, 1), (2, 8, 2, 1), (1, 4, 1, 1), (8, 2, 2, 1), (4, 2, 2, 0), (16, 4, 4, 1)]}


def rotating_packs(N: int, K: int, t: int, raw=None, row_major: bool = False):
    """R ≥ 2 copies of one random [N, K] matrix of type t (≥ 320 MB in all, so a graph that
    rotates over them reads from DRAM, not L2), batch-1 activations and an output:
    (packs, bytes of one copy, qx, y). ``raw``: the matrix's GGUF bytes (else random ones);
    ``row_major``: packed row-major even where ``layout.INTERLEAVE`` weaves the type."""
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import random_blocks

    if raw is None:
        raw = random_blocks(N, K, t, device="cuda")
    nbytes = raw.numel()
    R = max(2, -(-320_000_000 // nbytes))
    il = layout.INTERLEAVE.get(t, 0)
    if row_major:
        layout.set_interleave(t, 0)
    try:
        packs = [layout.pack(raw.roll(i, 0) if i else raw, t) for i in range(R)]
    finally:
        layout.set_interleave(t, il)
    del raw
    return packs, nbytes, quantize_x(torch.randn(1, K, device="cuda")), torch.empty(1, N, device="cuda")


def record_best(model: str, label: str, t: int, N: int, K: int, nbytes: int, res: list, ref: str, ms_ref: float,
                new: str = "new") -> dict:
    """A shape's fastest timed tile among ``res`` [(GB/s, cfg, split, ms)] into matvec.TUNED, and its
    row beside the reference kernel ``ref`` (ms_ref per call), logged with the next three."""
    from ggrun.kernels import matvec as mv

    ranked = sorted(res, reverse=True)
    best = ranked[0]
    mv.set_tuned(t, N, K, best[1], best[2])
    row = dict(model=model, matrix=label, type=TYPE_NAMES[t], N=N, K=K, mb=nbytes / 1e6, ref=ref,
               ref_gbs=nbytes / ms_ref / 1e6, ref_us=ms_ref * 1e3, best_gbs=best[0], best_us=best[3] * 1e3,
               cfg=best[1], split=best[2], all=[(round(r[0]), r[1], r[2]) for r in ranked])
    log(f"{model:20s} {label:15s} {TYPE_NAMES[t]} {N:6d}x{K:<6d} {nbytes / 1e6:6.1f} MB  {ref} "
        f"{row['ref_gbs']:5.0f} GB/s {ms_ref * 1e3:6.1f} us | {new} {best[0]:5.0f} GB/s "
        f"({best[0] / 1e3 / COPY_TBS:4.0%}) {best[3] * 1e3:6.1f} us cfg={best[1]} split={best[2]}; next: "
        + ", ".join(f"{g:.0f}{c}/{sp}" for g, c, sp, _ in ranked[1:4]))
    return row


@section
def sweep_matvec(models, quick=False):
    """Per matrix: the committed kernel (benchmarks/matvec_v1.py, its default tile) and the new one
    over CFGS × splits, GB/s of weight bytes; the best tile of each shape goes into matvec.TUNED."""
    import matvec_v1
    from ggrun.kernels import matvec as mv
    from ggrun.kernels.testing import random_blocks

    rows = []
    for model in models:
        for label, N, K, t in MV_SHAPES[model]:
            raw = random_blocks(N, K, t, device="cuda")
            packs, nbytes, qx, y = rotating_packs(N, K, t, raw=raw, row_major=True)     # session 1's kernel
            R = len(packs)
            ms_v1 = graph_time([lambda i=i: matvec_v1.matvec_q(packs[i % R], qx, out=y) for i in range(2 * R)])
            packs = rotating_packs(N, K, t, raw=raw)[0]
            del raw
            res = []
            splits = (1, 2, 4) if N <= 2048 else (1,)
            for cfg in (CFGS[t][:3] if quick else CFGS[t]):
                for split in splits:
                    try:
                        ms = graph_time([lambda i=i: mv.matvec_q(packs[i % R], qx, out=y, cfg=cfg, split=split)
                                         for i in range(2 * R)])
                        res.append((nbytes / ms / 1e6, cfg, split, ms))
                    except Exception as e:  # a config may not compile
                        log(f"  {label} {cfg} split={split}: {e!r}"[:200])
            rows.append(record_best(model, label, t, N, K, nbytes, res, "v1", ms_v1))
            del packs
            torch.cuda.empty_cache()
    RESULTS["matvec"] = rows
    RESULTS["tuned"] = {f"{TYPE_NAMES[k[0]]} {k[1]}x{k[2]}": v for k, v in mv.TUNED.items()}
    save()


# tiles for the other types' sweeps: Q5_K as Q4_K, Q3_K as Q6_K (same kernel shapes)
_BLK32_CFGS = [(8, 32, 4, 1), (8, 16, 4, 1), (4, 32, 4, 1), (16, 16, 4, 1), (8, 32, 8, 1), (2, 64, 4, 1),
               (4, 16, 2, 1), (8, 64, 8, 1), (8, 32, 4, 0), (16, 32, 8, 1), (4, 64, 4, 1), (2, 32, 2, 1)]
CFGS.update({Q5_K: CFGS[Q4_K], Q3_K: CFGS[Q6_K],
             Q2_K: [(8, 8, 4, 1), (8, 4, 4, 1), (4, 8, 4, 1), (16, 4, 4, 1), (8, 8, 4, 0), (2, 16, 4, 1),
                    (16, 8, 8, 1), (8, 4, 2, 1), (4, 4, 2, 1), (8, 16, 8, 1), (2, 8, 2, 1), (16, 4, 8, 0)],
             Q8_0: [(8, 16, 4, 1), (8, 8, 4, 1), (4, 16, 4, 1), (16, 8, 4, 1), (8, 16, 8, 1), (2, 32, 4, 1),
                    (4, 8, 2, 1), (8, 32, 8, 1), (8, 16, 4, 0), (16, 16, 8, 1), (2, 16, 2, 1), (1, 32, 2, 1)],
             **{t: _BLK32_CFGS for t in (Q4_0, Q4_1, Q5_0, Q5_1)}})
# Q4_K and Q6_K lie row-interleaved (layout.INTERLEAVE): their kernels' tiles are (32 rows, KS lanes of
# blocks per step, warps, PF: Q4_K's prefetch; Q6_K's kernel has none)
IL_CFGS = [(32, ks, w, pf) for ks, w in ((1, 1), (2, 1), (2, 2), (4, 1), (4, 2), (4, 4), (8, 2), (8, 4), (8, 8),
                                        (16, 4), (16, 8)) for pf in (0, 1)]
CFGS.update({Q4_K: IL_CFGS, Q6_K: [c for c in IL_CFGS if not c[3]]})
MIXES = "Q8_0,Q6_K,Q5_K_M,Q4_0,Q3_K_M,Q2_K"


def mix_shapes(model: str, mix: str) -> list[tuple[int, int, int]]:
    """The distinct (type, N, K) matvecs of a decode token of ``model`` in ``mix``, with q/k/v and
    gate/up stacked where their types agree (as GraphDecoder stacks them)."""
    from ggrun.kernels.testing import mix_types, synthetic_config

    cfg = synthetic_config(model)
    ty = mix_types(mix, cfg.n_layer, cfg)
    D, Fd, nq, nk = cfg.n_embd, cfg.n_ff, cfg.n_head * cfg.head_dim, cfg.n_head_kv * cfg.head_dim
    out = {(ty["output"], cfg.n_vocab, D)}
    for i in range(cfg.n_layer):
        for grp, K in (([(ty["attn_q"][i], nq), (ty["attn_k"][i], nk), (ty["attn_v"][i], nk)], D),
                       ([(ty["ffn_gate"][i], Fd), (ty["ffn_up"][i], Fd)], D), ([(ty["attn_output"][i], D)], nq),
                       ([(ty["ffn_down"][i], D)], Fd)):
            a = 0
            while a < len(grp):                      # runs of one type are stacked into one matrix
                b, n = a, 0
                while b < len(grp) and grp[b][0] == grp[a][0]:
                    n, b = n + grp[b][1], b + 1
                out.add((grp[a][0], n, K))
                a = b
    return sorted(out)


@section
def sweep_types(model: str, mixes: list[str], quick=False):
    """The mixes' matvec shapes (``mix_shapes``) over CFGS × splits, GB/s of weight bytes, beside
    the tile matvec_q picks by default; the best per shape goes into matvec.TUNED (for the H200
    table: ``RESULTS['tuned']``)."""
    from ggrun.kernels import matvec as mv

    shapes = sorted({s for m in mixes for s in mix_shapes(model, m)})
    rows = []
    for t, N, K in shapes:
        if any(k[:3] == (t, N, K) for k in mv.TUNED):   # swept already (sweep_matvec)
            continue
        packs, nbytes, qx, y = rotating_packs(N, K, t)
        R = len(packs)
        ms_def = graph_time([lambda i=i: mv.matvec_q(packs[i % R], qx, out=y) for i in range(2 * R)])
        res = []
        for cfg in (CFGS[t][:3] if quick else CFGS[t]):
            for split in ((1, 2, 4) if N <= 2048 else (1,)):
                try:
                    ms = graph_time([lambda i=i: mv.matvec_q(packs[i % R], qx, out=y, cfg=cfg, split=split)
                                     for i in range(2 * R)])
                    res.append((nbytes / ms / 1e6, cfg, split, ms))
                except Exception as e:  # a config may not compile
                    log(f"  {TYPE_NAMES[t]} {N}x{K} {cfg} split={split}: {e!r}"[:200])
        rows.append(record_best(model, "", t, N, K, nbytes, res, "default", ms_def, new="best"))
        del packs
        torch.cuda.empty_cache()
    RESULTS.setdefault("matvec_types", []).extend(rows)
    RESULTS["tuned"] = {f"{TYPE_NAMES[k[0]]} {k[1]}x{k[2]}": v for k, v in mv.TUNED.items()}
    save()


@section
def prefill_matmul(models):
    from ggrun.kernels.dequant import dequantize
    from ggrun.kernels.testing import random_blocks

    out = []
    for model in models:
        for label, N, K, t in MV_SHAPES[model]:
            p = layout.pack(random_blocks(N, K, t, device="cuda"), t)
            x = torch.randn(512, K, device="cuda").half()
            buf = torch.empty(N, K, dtype=torch.float16, device="cuda")
            ms_dq = graph_time([lambda: dequantize(p, out=buf)] * 4)
            ms_mm = graph_time([lambda: x @ buf.T] * 4)
            tf = 2 * 512 * N * K / (ms_dq + ms_mm) / 1e9
            out.append(dict(model=model, matrix=label, type=TYPE_NAMES[t], dequant_us=ms_dq * 1e3, gemm_us=ms_mm * 1e3,
                            tflops=tf))
            log(f"{model:20s} {label:14s} {TYPE_NAMES[t]} M=512: dequant {ms_dq * 1e3:7.1f} us "
                f"({N * K * 2 / ms_dq / 1e6:5.0f} GB/s written) + gemm {ms_mm * 1e3:7.1f} us = {tf:5.0f} TFLOP/s")
            del p, buf
    RESULTS["prefill_matmul"] = out


@section
def step_breakdown(models):
    """The small kernels of one decode token, each timed alone in a graph (µs per call)."""
    from ggrun.kernels.attention import decode_attention
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import synthetic_config

    out = []
    for model in models:
        cfg = synthetic_config(model)
        D, Fd, H, Hkv, hd = cfg.n_embd, cfg.n_ff, cfg.n_head, cfg.n_head_kv, cfg.head_dim
        x = torch.randn(1, D, device="cuda")
        nw = torch.rand(D, device="cuda") + 0.5
        gu = torch.randn(1, 2 * Fd, device="cuda")
        t_norm = graph_time([lambda: quantize_x(x, norm_w=nw, eps=1e-6)] * 20) * 1e3
        t_plain = graph_time([lambda: quantize_x(x)] * 20) * 1e3
        t_swi = graph_time([lambda: quantize_x(gu[:, :Fd], up=gu[:, Fd:])] * 20) * 1e3
        kc = torch.randn(Hkv, 8192, hd, device="cuda").half()
        vc = torch.randn_like(kc)
        cos = torch.rand(8192, hd // 2, device="cuda")
        sin = torch.rand(8192, hd // 2, device="cuda")
        q, k, v = (torch.randn(n * hd, device="cuda") for n in (H, Hkv, Hkv))
        o = torch.empty(H * hd, device="cuda")
        att = {}
        for pos in (64, 1024, 4096):
            P = torch.tensor([pos], device="cuda", dtype=torch.int32)
            att[pos] = graph_time([lambda: decode_attention(q, k, v, cos, sin, P, kc, vc, 0.1, out=o)] * 20) * 1e3
        per_tok = cfg.n_layer * (2 * t_norm + t_plain + t_swi + att[64]) / 1e3
        row = dict(model=model, quant_rmsnorm_us=t_norm, quant_plain_us=t_plain, quant_swiglu_us=t_swi,
                   attn_pos64_us=att[64], attn_pos1024_us=att[1024], attn_pos4096_us=att[4096],
                   small_kernels_ms_per_token=per_tok)
        out.append(row)
        log(f"{model}: quantize+rmsnorm {t_norm:.1f} us, quantize {t_plain:.1f} us, swiglu+quantize {t_swi:.1f} us, "
            f"attention pos64 {att[64]:.1f} us / pos1024 {att[1024]:.1f} us / pos4096 {att[4096]:.1f} us "
            f"→ {per_tok:.2f} ms per token")
    RESULTS["breakdown"] = out


def _tg(dec, n_gen: int, reps: int) -> list[float]:
    tps = []
    for _ in range(reps + 1):
        dec.reset(100, 0)
        ms = events_ms(lambda: dec.decode(n_gen), 1)[0]
        tps.append(n_gen / ms * 1e3)
    return tps[1:]


@section
def decode_model(shape: str, check: bool, n_gen: int = 128, reps: int = 3):
    """tg128 through GraphDecoder with the committed matvec (v1) and the new one (tuned tiles),
    same weights, same run; logits of the two compared, and the new one against model.py."""
    import matvec_v1
    from ggrun.backends import cuda as cuda_mod
    from ggrun.backends.cuda import CUDABackend, GraphDecoder
    from ggrun.kernels.testing import synthetic_config, synthetic_llama

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    cfg = synthetic_config(shape)
    t0 = time.time()
    w = synthetic_llama(cfg, "Q4_K_M", device="cuda", seed=3)
    torch.cuda.synchronize()
    wbytes = w.n_bytes
    log(f"{shape}: built {wbytes / 1e9:.3f} GB of Q4_K_M weights in {time.time() - t0:.1f} s; "
        f"allocated {torch.cuda.memory_allocated() / 1e9:.2f} GB")
    res = dict(model=shape, weight_gb=wbytes / 1e9)
    decs = {}
    new_mv = cuda_mod.matvec_q
    for name, fn in (("v1", matvec_v1.matvec_q), ("new", new_mv)):
        cuda_mod.matvec_q = fn
        try:
            dec = GraphDecoder(cfg, w, n_ctx=1024, device="cuda")
            dec.capture()
        finally:
            cuda_mod.matvec_q = new_mv
        tps = _tg(dec, n_gen, reps)
        res[f"tg_{name}"], res[f"tg_{name}_sd"] = statistics.mean(tps), statistics.stdev(tps) if len(tps) > 1 else 0.0
        log(f"{shape} [{name}]: tg{n_gen} {res[f'tg_{name}']:.1f} ± {res[f'tg_{name}_sd']:.1f} t/s "
            f"({res[f'tg_{name}'] * wbytes / 1e9:.0f} GB/s)")
        decs[name] = dec
    # the two decoders token by token from the same start: logits and greedy tokens
    errs, agree = [], 0
    decs["v1"].reset(100, 0)
    decs["new"].reset(100, 0)
    for _ in range(16):
        decs["v1"].graph.replay()
        decs["new"].graph.replay()
        errs.append(rel(decs["new"].logits, decs["v1"].logits))
        agree += int(decs["new"].tok.item() == decs["v1"].tok.item())
        decs["v1"].tok.copy_(decs["new"].tok)
    res["new_vs_v1_rel_err"], res["new_vs_v1_top1"] = max(errs), f"{agree}/16"
    log(f"new vs v1 decoder: max logits rel err {max(errs):.2e}, top-1 {agree}/16")
    if check:
        from ggrun.model import KVCache, LlamaModel, SeqChunk
        be = CUDABackend("cuda")
        w2 = synthetic_llama(cfg, "Q4_K_M", device="cuda", seed=3)
        lm = LlamaModel(cfg, w2, be, max_pos=64)
        cache = KVCache(cfg, 64, device="cuda")
        dec = decs["new"]
        dec.reset(100, 0)
        tok, errs, agree = 100, [], 0
        for p in range(6):
            dec.graph.replay()
            ref = lm.forward(torch.tensor([tok]), [SeqChunk(0, p, 1)], cache)
            errs.append(rel(dec.logits, ref))
            agree += int(dec.tok.item() == ref.argmax().item())
            tok = dec.tok.item()
        res["check_logits_rel_err"] = max(errs)
        res["check_top1_agree"] = f"{agree}/6"
        log(f"graph decode (new) vs eager model.py+CUDABackend: max logits rel err {max(errs):.2e}, top-1 {agree}/6")
        del lm, w2, cache, be
    limit = RESULTS.get("copy_tbs", COPY_TBS) * 1e12 / wbytes
    res.update(tg=res["tg_new"], tg_sd=res["tg_new_sd"], limit=limit, anchor=ANCHORS[shape][0],
               peak_gb=torch.cuda.max_memory_allocated() / 1e9)
    log(f"{shape}: limit {limit:.0f} t/s; llama.cpp {ANCHORS[shape][0]}; peak {res['peak_gb']:.1f} GB "
        f"(two decoders' buffers and KV on one copy of the weights)")
    del decs, dec, w
    torch.cuda.empty_cache()
    RESULTS.setdefault("decode", []).append(res)
    save()


@section
def bench_synthetic_run(spec: str, ngl: int, n_prompt, n_gen, reps: int, n_threads=None):
    import io

    from ggrun.bench_synthetic import bench_synthetic

    buf = io.StringIO()
    rows = bench_synthetic(spec, n_prompt=n_prompt, n_gen=n_gen, n_gpu_layers=ngl, repetitions=reps, file=buf,
                           n_threads=n_threads)
    log(buf.getvalue())
    entry = dict(spec=spec, ngl=ngl, table=buf.getvalue(), rows=rows)
    tg = [r for r in rows if r["test"].startswith("tg")]
    if tg and ngl >= 99:   # the mixes table: tg beside its limit (copy bandwidth / weight bytes)
        r = tg[-1]
        entry["mix_row"] = dict(model=spec.split(":")[0], mix=spec.split(":")[1], gib=r["model_size"] / 2**30,
                                tg=r["avg_ts"], tg_sd=r["stdev_ts"], gbs=r["gbs"],
                                limit=r["copy_tbs"] * 1e12 / r["model_size"])
    RESULTS.setdefault("bench_synthetic", []).append(entry)
    save()


def save():
    with open(os.path.join(OUT_DIR[0], "gpu_results.json"), "w") as f:
        json.dump(RESULTS, f, indent=1, default=str)


OUT_DIR = ["."]


def table():
    log("\n| model | size | test | v1 t/s | new t/s | GB/s | % of limit | llama.cpp t/s | ratio |")
    log("|---|---|---|---|---|---|---|---|---|")
    for r in RESULTS.get("decode", []):
        log(f"| {r['model']} Q4_K_M (synthetic) | {r['weight_gb']:.2f} GB | tg128 | {r['tg_v1']:.1f} | "
            f"{r['tg']:.1f} ± {r['tg_sd']:.1f} | {r['tg'] * r['weight_gb']:.0f} | {r['tg'] / r['limit']:.0%} | "
            f"{r['anchor']} | {r['tg'] / r['anchor']:.2f}x |")
    for b in RESULTS.get("bench_synthetic", []):
        log(b["table"])
    mixes = [b for b in RESULTS.get("bench_synthetic", []) if b.get("mix_row")]
    if mixes:
        log("\n| model | mix | weights | tg128 t/s | GB/s | limit t/s | % of limit |")
        log("|---|---|---|---|---|---|---|")
        for b in mixes:
            r = b["mix_row"]
            log(f"| {r['model']} | {r['mix']} | {r['gib']:.2f} GiB | {r['tg']:.1f} ± {r['tg_sd']:.1f} | "
                f"{r['gbs']:.0f} | {r['limit']:.0f} | {r['tg'] / r['limit']:.0%} |")
    if RESULTS["errors"]:
        log("ERRORS:\n  " + "\n  ".join(RESULTS["errors"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", default="33b,6.7b")
    ap.add_argument("--skip", default="check_attention,prefill,breakdown,sweep_types",
                    help="comma list of: check,check_attention,bench,mixes,sweep,sweep_types,prefill,breakdown,"
                         "decode,offload")
    ap.add_argument("--mixes", default=MIXES, help="the mixes' tg128 (6.7B shape; section 'mixes')")
    ap.add_argument("--mix-model", default="6.7b", help="the shape of the mixes section and of sweep_types")
    ap.add_argument("--ngl", type=int, default=31, help="the partial-offload run (33B shape)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args()
    OUT_DIR[0] = a.out
    models = [f"deepseek-coder-{m}" for m in a.models.split(",") if m]
    skip = set(a.skip.split(","))
    device_info()
    copy_bandwidth()
    if "check" not in skip:
        check_kernels()
    if "check_attention" not in skip:
        check_attention()
    big = [m for m in models if m.endswith("33b")]
    if "bench" not in skip:                       # first, in a fresh process: the shipped tiles (matvec.H200)
        for m in models:
            bench_synthetic_run(f"{m}:Q4_K_M", 99, [512, 2048], [128], 3)
    mix_model = f"deepseek-coder-{a.mix_model}"
    mixes = [m for m in a.mixes.split(",") if m]
    if "mixes" not in skip:                       # shipped tiles too (before any sweep sets TUNED)
        for mix in mixes:
            bench_synthetic_run(f"{mix_model}:{mix}", 99, [], [128], 3)
    if "sweep" not in skip:
        sweep_matvec(models, a.quick)
    if "sweep_types" not in skip:
        sweep_types(mix_model, mixes, a.quick)
    if "prefill" not in skip:
        prefill_matmul(models[:1] if a.quick else models)
    if "breakdown" not in skip:
        step_breakdown(models)
    if "decode" not in skip:
        for m in models:
            decode_model(m, check=m.endswith("6.7b"))
    if "offload" not in skip and big:
        bench_synthetic_run(f"{big[0]}:Q4_K_M", a.ngl, [], [16], 1, n_threads=os.cpu_count())
    table()
    save()


if __name__ == "__main__":
    main()
