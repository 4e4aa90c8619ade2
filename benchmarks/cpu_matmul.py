"""Benchmark of the ggrun CPU matmul kernels on SmolLM2-135M shapes (random valid blocks).

    python benchmarks/cpu_matmul.py [--threads N] [--steps S] [--memmap] [--m 64]

Prints: ms per decode step (all 211 matvecs: 30 layers x q,k,v,o,gate,up,down in Q4_1 + the
49152x576 Q8_0 output), achieved weight bandwidth, the same with fused q/k/v and gate/up calls,
prompt throughput at M tokens per call, the per-call overheads, and a Q4_K 4096x4096 line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import ggrun.cpu as cpu  # noqa: E402

Q4_0, Q4_1, Q8_0, Q4_K, Q6_K = 2, 3, 8, 12, 14
F16_FIELDS = {2: [0], 3: [0, 2], 6: [0], 7: [0, 2], 8: [0], 10: [80, 82], 11: [108], 12: [0, 2], 13: [0, 2], 14: [208]}

rng = np.random.default_rng(0)


def rand_blocks(t: int, n: int, k: int, tmpdir: str | None = None) -> np.ndarray:
    blck, bb = cpu.TYPE_SIZES[t]
    w = rng.integers(0, 256, size=(n, k // blck, bb), dtype=np.uint8)
    for o in F16_FIELDS[t]:
        v = (rng.uniform(0.002, 0.02, size=(n, k // blck)) * rng.choice([-1, 1], size=(n, k // blck))).astype(np.float16)
        w[:, :, o:o + 2] = v.view(np.uint8).reshape(n, k // blck, 2)
    w = w.reshape(n, -1)
    if tmpdir is None:
        return w
    fd, path = tempfile.mkstemp(dir=tmpdir, suffix=".bin")
    with os.fdopen(fd, "wb") as f:
        f.write(w.tobytes())
    return np.memmap(path, dtype=np.uint8, mode="r", shape=w.shape)


def smollm2_weights(tmpdir=None):
    layers = []
    for _ in range(30):
        layers.append({
            "q": rand_blocks(Q4_1, 576, 576, tmpdir), "k": rand_blocks(Q4_1, 192, 576, tmpdir),
            "v": rand_blocks(Q4_1, 192, 576, tmpdir), "o": rand_blocks(Q4_1, 576, 576, tmpdir),
            "gate": rand_blocks(Q4_1, 1536, 576, tmpdir), "up": rand_blocks(Q4_1, 1536, 576, tmpdir),
            "down": rand_blocks(Q4_1, 576, 1536, tmpdir),
        })
    out = rand_blocks(Q8_0, 49152, 576, tmpdir)
    return layers, out


def timeit(fn, reps: int, warm: int = 2) -> list[float]:
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def fmt(ts):
    return f"median {statistics.median(ts) * 1e3:7.3f} ms  (min {min(ts) * 1e3:7.3f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--m", type=int, default=64)
    ap.add_argument("--memmap", action="store_true", help="weights in files mapped with np.memmap (page cache)")
    ap.add_argument("--skip-prompt", action="store_true")
    args = ap.parse_args()

    if not cpu.available():
        print("CPU kernels unavailable:", cpu.unavailable_reason())
        sys.exit(1)
    if args.threads:
        cpu.set_num_threads(args.threads)
    torch.set_num_threads(1)
    nt = cpu.get_num_threads()
    print(f"ggrun.cpu: {cpu.isa()} build, Q4_1 kernel {cpu.kernel_impl(Q4_1)}, Q8_0 kernel {cpu.kernel_impl(Q8_0)}, "
          f"{nt} threads, lib {cpu.library_path()}")

    tmp = tempfile.TemporaryDirectory(prefix="ggrun-bench-") if args.memmap else None
    layers, out_w = smollm2_weights(tmp.name if tmp else None)
    names = ["q", "k", "v", "o", "gate", "up", "down"]
    total_bytes = sum(L[n].nbytes for L in layers for n in names) + out_w.nbytes
    print(f"weights: {total_bytes / 1e6:.1f} MB per decode step ({'memmap' if args.memmap else 'anonymous memory'})")

    # ---- per-call overheads
    ncalls = 20000
    print(f"ctypes call, 11 int args (no work): {cpu.call_overhead_ns(ncalls) / 1e3:.2f} us")
    tiny = rand_blocks(Q4_1, 4, 32)
    xt = torch.randn(1, 32)
    yt = torch.empty(1, 4)
    tplan = cpu.FusedMatmul([(tiny, Q4_1)])
    for label, fn in (("FusedMatmul call, out= given", lambda: tplan(xt, out=yt)),
                      ("matmul(), out= given", lambda: cpu.matmul(tiny, Q4_1, xt, out=yt)),
                      ("matmul(), output allocated", lambda: cpu.matmul(tiny, Q4_1, xt))):
        ts = timeit(lambda: [fn() for _ in range(2000)], 7)
        print(f"{label:32s} on a 4x32 Q4_1 weight ({nt} threads): {min(ts) / 2000 * 1e6:.2f} us per call (min)")

    # ---- decode: 211 matvecs
    x576 = torch.randn(1, 576)
    x1536 = torch.randn(1, 1536)
    outs = {n: torch.empty(1, layers[0][n].shape[0]) for n in names}
    y_out = torch.empty(1, out_w.shape[0])

    def step():
        for L in layers:
            for n in names:
                cpu.matmul(L[n], Q4_1, x1536 if n == "down" else x576, out=outs[n])
        cpu.matmul(out_w, Q8_0, x576, out=y_out)

    for _ in range(5):  # warm up (page faults, huge page collapsing, clocks) before any timing
        step()
    ts = timeit(step, args.steps)
    med = statistics.median(ts)
    print(f"decode step, 211 matmul() calls:            {fmt(ts)}  {total_bytes / med / 1e9:5.1f} GB/s")

    qkv = [cpu.FusedMatmul([(L["q"], Q4_1), (L["k"], Q4_1), (L["v"], Q4_1)]) for L in layers]
    gu = [cpu.FusedMatmul([(L["gate"], Q4_1), (L["up"], Q4_1)]) for L in layers]
    o_p = [cpu.FusedMatmul([(L["o"], Q4_1)]) for L in layers]
    d_p = [cpu.FusedMatmul([(L["down"], Q4_1)]) for L in layers]
    out_p = cpu.FusedMatmul([(out_w, Q8_0)])
    y_qkv, y_gu, y_o, y_d = torch.empty(1, 960), torch.empty(1, 3072), torch.empty(1, 576), torch.empty(1, 576)

    def step_fused():
        for i in range(30):
            qkv[i](x576, out=y_qkv)
            o_p[i](x576, out=y_o)
            gu[i](x576, out=y_gu)
            d_p[i](x1536, out=y_d)
        out_p(x576, out=y_out)

    ts = timeit(step_fused, args.steps)
    med = statistics.median(ts)
    print(f"decode step, 121 FusedMatmul calls:         {fmt(ts)}  {total_bytes / med / 1e9:5.1f} GB/s")

    def layers_only():
        for i in range(30):
            qkv[i](x576, out=y_qkv)
            o_p[i](x576, out=y_o)
            gu[i](x576, out=y_gu)
            d_p[i](x1536, out=y_d)

    lbytes = total_bytes - out_w.nbytes
    ts = timeit(layers_only, args.steps)
    print(f"  of which the 30 layers (Q4_1, 120 calls): {fmt(ts)}  {lbytes / statistics.median(ts) / 1e9:5.1f} GB/s")
    ts = timeit(lambda: out_p(x576, out=y_out), args.steps)
    print(f"  the Q8_0 49152x576 output alone:          {fmt(ts)}  {out_w.nbytes / statistics.median(ts) / 1e9:5.1f} GB/s")
    ts1 = timeit(step_fused, max(5, args.steps // 3))
    cpu.set_num_threads(1)
    ts1 = timeit(step_fused, max(5, args.steps // 3))
    cpu.set_num_threads(nt)
    print(f"decode step, fused, 1 thread:               {fmt(ts1)}  {total_bytes / statistics.median(ts1) / 1e9:5.1f} GB/s")

    # ---- prompt: M tokens per call
    if not args.skip_prompt:
        m = args.m
        xm576 = torch.randn(m, 576)
        xm1536 = torch.randn(m, 1536)
        yq, yg, yo, yd = torch.empty(m, 960), torch.empty(m, 3072), torch.empty(m, 576), torch.empty(m, 576)
        yout = torch.empty(m, out_w.shape[0])

        def prompt_layers():
            for i in range(30):
                qkv[i](xm576, out=yq)
                o_p[i](xm576, out=yo)
                gu[i](xm576, out=yg)
                d_p[i](xm1536, out=yd)

        ts = timeit(prompt_layers, max(3, args.steps // 5), warm=1)
        tl = statistics.median(ts)
        ts2 = timeit(lambda: out_p(xm576, out=yout), max(3, args.steps // 5), warm=1)
        to = statistics.median(ts2)
        ts3 = timeit(lambda: out_p(xm576[-1:], out=y_out), max(3, args.steps // 5), warm=1)
        t1 = statistics.median(ts3)
        print(f"prompt M={m}: 30 layers (120 calls) {tl * 1e3:.1f} ms = {m / tl:.0f} tokens/s "
              f"({30 * 3538944 * m / tl / 1e9:.0f} GMAC/s); + output for the last row (as llama.cpp) "
              f"{(tl + t1) * 1e3:.1f} ms = {m / (tl + t1):.0f} tokens/s; + output for all {m} rows "
              f"{(tl + to) * 1e3:.1f} ms = {m / (tl + to):.0f} tokens/s")

    # ---- Q4_K 4096x4096
    wk = rand_blocks(Q4_K, 4096, 4096, tmp.name if tmp else None)
    wk2 = [rand_blocks(Q4_K, 4096, 4096) for _ in range(3)]  # rotate through 4 matrices: > L3
    allk = [wk] + wk2
    x4k = torch.randn(1, 4096)
    y4k = torch.empty(1, 4096)
    idx = [0]

    def q4k_once():
        cpu.matmul(allk[idx[0] % 4], Q4_K, x4k, out=y4k)
        idx[0] += 1

    ts = timeit(q4k_once, 40)
    print(f"Q4_K 4096x4096 M=1:  {fmt(ts)}  {wk.nbytes / statistics.median(ts) / 1e9:5.1f} GB/s")
    if not args.skip_prompt:
        x4m = torch.randn(args.m, 4096)
        y4m = torch.empty(args.m, 4096)
        ts = timeit(lambda: cpu.matmul(wk, Q4_K, x4m, out=y4m), 5, warm=1)
        print(f"Q4_K 4096x4096 M={args.m}: {fmt(ts)}  {4096 * 4096 * args.m / statistics.median(ts) / 1e9:.0f} GMAC/s")
    for t, name in ((Q6_K, "Q6_K"), (Q8_0, "Q8_0"), (Q4_0, "Q4_0")):
        ws = [rand_blocks(t, 4096, 4096) for _ in range(3)]
        j = [0]

        def once(ws=ws, t=t, j=j):
            cpu.matmul(ws[j[0] % 3], t, x4k, out=y4k)
            j[0] += 1

        ts = timeit(once, 30)
        print(f"{name} 4096x4096 M=1:  {fmt(ts)}  {ws[0].nbytes / statistics.median(ts) / 1e9:5.1f} GB/s")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
