#!/usr/bin/env python3
"""ggrun on one CUDA GPU: kernel checks, per-matrix matvec sweeps, whole decode steps.

Run on the device (one call builds, checks and times everything):

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu.py [--quick] [--models 6.7b,33b] [--out DIR]

Prints a llama-bench-like table last; writes gpu_results.json (and the log) under --out.
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

import torch  # noqa: E402

from ggrun.kernels import layout  # noqa: E402
from ggrun.kernels.layout import Q4_0, Q4_K, Q5_K, Q6_K, Q8_0, TYPE_NAMES  # noqa: E402

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
    from ggrun.kernels.attention import decode_attention
    from ggrun.kernels.dequant import dequantize
    from ggrun.kernels.matvec import matvec_q
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import dequantize_ref, qx_dequant, random_blocks

    g = torch.Generator(device="cuda").manual_seed(1)
    bad = []
    for t in (Q4_K, Q5_K, Q6_K, Q8_0, Q4_0):
        for (N, K) in ((333, 768), (1031, 2816)):
            raw = random_blocks(N, K, t, device="cuda", generator=g)
            p = layout.pack(raw, t)
            assert torch.equal(layout.unpack(p), raw)
            W = dequantize_ref(raw, t).float()
            e_dq = (dequantize(p, dtype=torch.float32) - W).abs().max().item() / W.abs().max().item()
            ids = torch.randint(0, N, (7,), device="cuda", generator=g)
            e_rows = (dequantize(p, ids=ids, dtype=torch.float32) - W[ids]).abs().max().item() / W.abs().max().item()
            for M in (1, 3, 8):
                x = torch.randn(M, K, device="cuda", generator=g)
                qx = quantize_x(x)
                ref = qx_dequant(qx) @ W.T
                for split in (None, 1, 3):
                    y = torch.full((M, N), float("nan"), device="cuda")
                    matvec_q(p, qx, out=y, split=split)
                    e = rel(y, ref)
                    e_f = rel(y, x @ W.T)
                    y0 = torch.randn(M, N, device="cuda", generator=g)
                    y1 = y0.clone()
                    matvec_q(p, qx, out=y1, acc=True, split=split)
                    e_acc = rel(y1 - y0, ref)
                    ok = e < 1e-5 and e_acc < 1e-4 and e_f < 3e-2 and e_dq < 1e-6 and e_rows < 1e-6
                    if not ok:
                        bad.append((TYPE_NAMES[t], N, K, M, split, e, e_acc, e_f, e_dq, e_rows))
            log(f"{TYPE_NAMES[t]} {N}x{K}: matvec rel err vs q8-x ref {e:.1e}, vs f32-x ref {e_f:.1e}; dequant {e_dq:.1e}")
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


MV_SHAPES = {
    "deepseek-coder-6.7b": [("attn_q/o", 4096, 4096, Q4_K), ("qkv fused", 12288, 4096, Q4_K),
                            ("attn_v", 4096, 4096, Q6_K), ("gate+up fused", 22016, 4096, Q4_K),
                            ("ffn_down", 4096, 11008, Q4_K), ("ffn_down", 4096, 11008, Q6_K),
                            ("output", 32256, 4096, Q6_K)],
    "deepseek-coder-33b": [("attn_q/o", 7168, 7168, Q4_K), ("qk fused", 8192, 7168, Q4_K),
                           ("attn_k/v", 1024, 7168, Q4_K), ("attn_v", 1024, 7168, Q6_K),
                           ("gate+up fused", 38400, 7168, Q4_K), ("ffn_down", 7168, 19200, Q4_K),
                           ("ffn_down", 7168, 19200, Q6_K), ("output", 32256, 7168, Q6_K)],
}
CFGS = {Q4_K: [(8, 4, 4), (4, 4, 4), (8, 2, 4), (8, 8, 4), (16, 2, 4), (16, 4, 8), (32, 2, 8), (8, 4, 8)],
        Q6_K: [(8, 2, 4), (4, 2, 4), (8, 4, 4), (16, 2, 8), (16, 1, 4), (32, 1, 8), (8, 4, 8)]}


@section
def sweep_matvec(models, quick=False):
    from ggrun.kernels.matvec import DEFAULT_CFG, matvec_q
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import random_blocks

    rows = []
    for model in models:
        for label, N, K, t in MV_SHAPES[model]:
            raw = random_blocks(N, K, t, device="cuda")
            nbytes = raw.numel()
            R = max(2, -(-320_000_000 // nbytes))
            packs = [layout.pack(raw.roll(i, 0) if i else raw, t) for i in range(R)]
            del raw
            x = torch.randn(1, K, device="cuda")
            qx = quantize_x(x)
            y = torch.empty(1, N, device="cuda")
            res = []
            for cfg in (CFGS[t][:2] if quick else CFGS[t]):
                for split in (None, 1):
                    try:
                        ms = graph_time([lambda i=i: matvec_q(packs[i % R], qx, out=y, cfg=cfg, split=split)
                                         for i in range(2 * R)])
                        res.append((nbytes / ms / 1e6, cfg, split, ms))
                    except Exception as e:  # a config may not compile
                        log(f"  {label} {cfg} split={split}: {e!r}"[:200])
            default = [r for r in res if r[1] == DEFAULT_CFG[t] and r[2] is None]
            best = max(res)
            row = dict(model=model, matrix=label, type=TYPE_NAMES[t], N=N, K=K, mb=nbytes / 1e6,
                       default_gbs=default[0][0] if default else None, best_gbs=best[0], best_cfg=best[1],
                       best_split=best[2], best_us=best[3] * 1e3)
            rows.append(row)
            log(f"{model:20s} {label:14s} {TYPE_NAMES[t]} {N:6d}x{K:<6d} {nbytes / 1e6:7.1f} MB  default "
                f"{row['default_gbs'] or 0:6.0f} GB/s  best {best[0]:6.0f} GB/s ({best[0] / 1e3 / COPY_TBS:4.0%}) "
                f"cfg={best[1]} split={best[2]} {best[3] * 1e3:7.1f} us")
            del packs
            torch.cuda.empty_cache()
    RESULTS["matvec"] = rows


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
        kc = torch.randn(Hkv, 2048, hd, device="cuda").half()
        vc = torch.randn_like(kc)
        cos = torch.rand(2048, hd // 2, device="cuda")
        sin = torch.rand(2048, hd // 2, device="cuda")
        q, k, v = (torch.randn(n * hd, device="cuda") for n in (H, Hkv, Hkv))
        o = torch.empty(H * hd, device="cuda")
        att = {}
        for pos in (64, 1024):
            P = torch.tensor([pos], device="cuda", dtype=torch.int32)
            att[pos] = graph_time([lambda: decode_attention(q, k, v, cos, sin, P, kc, vc, 0.1, out=o)] * 20) * 1e3
        per_tok = cfg.n_layer * (2 * t_norm + t_plain + t_swi + att[64]) / 1e3
        row = dict(model=model, quant_rmsnorm_us=t_norm, quant_plain_us=t_plain, quant_swiglu_us=t_swi,
                   attn_pos64_us=att[64], attn_pos1024_us=att[1024], small_kernels_ms_per_token=per_tok)
        out.append(row)
        log(f"{model}: quantize+rmsnorm {t_norm:.1f} us, quantize {t_plain:.1f} us, swiglu+quantize {t_swi:.1f} us, "
            f"attention pos64 {att[64]:.1f} us / pos1024 {att[1024]:.1f} us → {per_tok:.2f} ms per token")
    RESULTS["breakdown"] = out


@section
def decode_model(shape: str, check: bool, n_gen: int = 128, reps: int = 3, pp: int = 512):
    from ggrun.backends.cuda import CUDABackend, GraphDecoder
    from ggrun.kernels.testing import synthetic_config, synthetic_llama

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    cfg = synthetic_config(shape)
    t0 = time.time()
    w = synthetic_llama(cfg, "Q4_K_M", device="cuda", seed=3)
    torch.cuda.synchronize()
    wbytes = w.n_bytes
    log(f"{shape}: built {wbytes / 1e9:.3f} GB of Q4_K_M weights in {time.time() - t0:.1f} s "
        f"(llama.cpp file {ANCHORS[shape][1] / 1e9:.3f} GB); allocated {torch.cuda.memory_allocated() / 1e9:.2f} GB")
    dec = GraphDecoder(cfg, w, n_ctx=1024, device="cuda")
    log(f"after GraphDecoder: allocated {torch.cuda.memory_allocated() / 1e9:.2f} GB")
    t0 = time.time()
    dec.capture()
    torch.cuda.synchronize()
    log(f"captured in {time.time() - t0:.1f} s")
    res = dict(model=shape, weight_gb=wbytes / 1e9)
    if check:
        # same weights through the eager model.py path with CUDABackend (cuBLAS/SDPA/torch RoPE)
        from ggrun.model import KVCache, LlamaModel, SeqChunk
        be = CUDABackend("cuda")
        w2 = synthetic_llama(cfg, "Q4_K_M", device="cuda", seed=3)
        lm = LlamaModel(cfg, w2, be, max_pos=64)
        cache = KVCache(cfg, 64, device="cuda")
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
        log(f"graph decode vs eager model.py+CUDABackend: max logits rel err {max(errs):.2e}, top-1 {agree}/6")
        del lm, w2, cache, be
        torch.cuda.empty_cache()
    # tg: n_gen tokens from an empty context, graph replays, no host sync inside
    tps = []
    for _ in range(reps + 1):
        dec.reset(100, 0)
        ms = events_ms(lambda: dec.decode(n_gen), 1)[0]
        tps.append(n_gen / ms * 1e3)
    tps = tps[1:]
    dec.graph = None
    dec.reset(100, 0)
    eager = events_ms(lambda: dec.decode(8), 2)[-1] / 8
    limit = RESULTS.get("copy_tbs", COPY_TBS) * 1e12 / wbytes
    res.update(tg=statistics.mean(tps), tg_sd=statistics.stdev(tps) if len(tps) > 1 else 0.0, eager_ms=eager,
               limit=limit, anchor=ANCHORS[shape][0], peak_gb=torch.cuda.max_memory_allocated() / 1e9)
    log(f"{shape}: tg{n_gen} {res['tg']:.1f} ± {res['tg_sd']:.1f} t/s (graph); eager step {eager:.2f} ms; "
        f"limit {limit:.0f} t/s; llama.cpp {ANCHORS[shape][0]}; {res['tg'] * wbytes / 1e9:.0f} GB/s; "
        f"peak {res['peak_gb']:.1f} GB")
    del dec
    torch.cuda.empty_cache()
    # pp: prefill through model.py as it is today, with the CUDA backend (eager, dequant+cuBLAS)
    try:
        from ggrun.model import KVCache, LlamaModel, SeqChunk
        be = CUDABackend("cuda")
        lm = LlamaModel(cfg, w, be, max_pos=pp)
        cache = KVCache(cfg, pp, device="cuda")
        toks = torch.randint(0, cfg.n_vocab, (pp,))
        lm.forward(toks[:16], [SeqChunk(0, 0, 16)], cache)
        ms = events_ms(lambda: lm.forward(toks, [SeqChunk(0, 0, pp)], cache), 2)[-1]
        res["pp"] = pp / ms * 1e3
        log(f"{shape}: pp{pp} {res['pp']:.0f} t/s (model.py eager + CUDABackend: dequant→cuBLAS, SDPA)")
    except Exception as e:
        traceback.print_exc()
        RESULTS["errors"].append(f"pp {shape}: {e!r}"[:300])
    RESULTS.setdefault("decode", []).append(res)


def table():
    log("\n| model | size | backend | test | t/s | GB/s | % of limit | llama.cpp t/s | ratio |")
    log("|---|---|---|---|---|---|---|---|---|")
    for r in RESULTS.get("decode", []):
        log(f"| {r['model']} Q4_K_M (synthetic) | {r['weight_gb']:.2f} GB | CUDA ggrun | tg128 | "
            f"{r['tg']:.1f} ± {r['tg_sd']:.1f} | {r['tg'] * r['weight_gb']:.0f} | {r['tg'] / r['limit']:.0%} | "
            f"{r['anchor']} | {r['tg'] / r['anchor']:.2f}x |")
        if "pp" in r:
            log(f"| {r['model']} Q4_K_M (synthetic) | {r['weight_gb']:.2f} GB | CUDA ggrun | pp512 | {r['pp']:.0f} | | | | |")
    if RESULTS["errors"]:
        log("ERRORS:\n  " + "\n  ".join(RESULTS["errors"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", default="6.7b,33b")
    ap.add_argument("--skip", default="", help="comma list of: check,check_attention,sweep,prefill,breakdown,decode")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args()
    models = [f"deepseek-coder-{m}" for m in a.models.split(",") if m]
    skip = set(a.skip.split(","))
    device_info()
    copy_bandwidth()
    if "check" not in skip:
        check_kernels()
    if "check_attention" not in skip:
        check_attention()
    if "sweep" not in skip:
        sweep_matvec(models, a.quick)
    if "prefill" not in skip:
        prefill_matmul(models[:1] if a.quick else models)
    if "breakdown" not in skip:
        step_breakdown(models)
    if "decode" not in skip:
        for i, m in enumerate(models):
            decode_model(m, check=(i == 0))
    table()
    with open(os.path.join(a.out, "gpu_results.json"), "w") as f:
        json.dump(RESULTS, f, indent=1, default=str)


if __name__ == "__main__":
    main()
