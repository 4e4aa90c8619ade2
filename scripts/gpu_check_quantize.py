#!/usr/bin/env python
"""GPU check of the fused Triton k-quant quantizers (ggrun/kernels/quantize_k.py).

Run on a CUDA machine from the repository root (TRITON_INTERPRET must be unset):

    .venv/bin/python scripts/gpu_check_quantize.py                # checks + timings
    .venv/bin/python scripts/gpu_check_quantize.py --gguf model-f16.gguf   # + real tensors
    .venv/bin/python scripts/gpu_check_quantize.py --quick        # fewer values, shorter timings
    .venv/bin/python scripts/gpu_check_quantize.py --ptx-only     # PTX audit only (no GPU needed)

1. PTX audit: every kernel compiled as it is launched (enable_fp_fusion=False) must contain no
   ``fma``, no approximate division / square root / reciprocal and no flush-to-zero: these
   are what the CPU interpreter tests cannot see.
2. Bytes: for each type, Triton on the GPU vs the torch path on the GPU vs the torch path on
   the CPU (the latter two are bit-exact with llama.cpp) on a few million values of several
   kinds (random, edge cases, model-like, llama.cpp's golden inputs, real GGUF tensors): every
   block must be identical; mismatches are printed.  Then "extremes" (overflow, subnormal
   ranges, inf, NaN: where the torch path is not llama.cpp's) plus edge cases against the same
   Triton kernels run by Triton's CPU interpreter (IEEE numpy, in a subprocess), against
   ggrun.cpu's C quantizers when they build, and, when GGRUN_LIBGGML_BASE names llama.cpp's
   libggml-base.so, against ggml_quantize_chunk.
3. Timing of both GPU paths on a 6.7B-size workload (4096 x 11008 matrices), in GB/s of f32
   input, with the projected time for 6.74e9 weights (all one type, and the Q4_K_M mix).

Each step catches its own failure, prints it and goes on; the exit status is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

NAMES = {10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K"}
FAILED: list[str] = []
N_MODEL = 6.74e9                                   # weights of a 6.7B model
MIX = {12: 5.62e9, 14: 1.12e9}                     # about Q4_K_M's split on a llama-7B


def log(*a) -> None:
    print(*a, flush=True)


def guarded(name: str):
    """Decorator: run, print and record a failure instead of raising."""
    def wrap(fn):
        def run(*a, **k):
            try:
                return fn(*a, **k)
            except Exception as e:  # noqa: BLE001
                log(f"[FAIL] {name}: {type(e).__name__}: {e}")
                traceback.print_exc()
                FAILED.append(name)
                return None
        return run
    return wrap


def torch_path(x: torch.Tensor, t: int) -> torch.Tensor:
    """The torch quantizer (QUANTIZERS[t]), in chunks like ggrun.quants.quantizers.quantize_blocks
    (called directly, so this stays the torch path once the Triton one is wired into the dispatch)."""
    from ggrun.quants.quantizers import QUANTIZERS

    _, ts, fn = QUANTIZERS[t]
    step = max(1, ((1 << 18) if x.device.type == "cpu" else (1 << 24)) // 256)
    out = torch.empty(x.shape[0], ts, dtype=torch.uint8, device=x.device)
    for i in range(0, x.shape[0], step):
        out[i:i + step] = fn(x[i:i + step])
    return out


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------
# 1. PTX audit
# ----------------------------------------------------------------------------------------

BAD_PTX = {
    "fma": r"\bfma\.",                   # mul+add fused
    "approx div": r"\bdiv\.(full|approx)\.",
    "approx sqrt": r"\bsqrt\.approx\.",
    "approx rcp": r"\brcp\.approx\.",
    "flush-to-zero": r"\.ftz\.",
    "mul/add without .rn": r"\b(mul|add|sub)\.f32\b",   # ptxas may contract those into fma
}


def audit_ptx(name: str, ptx: str, extra: str = "") -> None:
    bad = {k: v for k, v in ((k, len(re.findall(p, ptx))) for k, p in BAD_PTX.items()) if v}
    counts = {k: len(re.findall(p, ptx)) for k, p in
              (("div.rn", r"div\.rn\.f32"), ("sqrt.rn", r"sqrt\.rn\.f32"), ("mul.rn", r"mul\.rn\.f32"),
               ("add.rn", r"add\.rn\.f32"))}
    log(f"[{'OK  ' if not bad else 'FAIL'}] PTX {name}: {counts} {'bad: ' + str(bad) if bad else ''}{extra}")
    if bad:
        FAILED.append(f"ptx {name}")


@guarded("ptx audit of the launched kernels")
def audit_launched() -> None:
    """The kernels quantize_blocks_triton actually launched (with its launch options)."""
    from ggrun.kernels.quantize_k import LAUNCHED

    if not LAUNCHED:
        log("[FAIL] no launched kernel recorded")
        FAILED.append("ptx launched")
    for (t, sb, nw, dtype), k in sorted(LAUNCHED.items(), key=lambda kv: str(kv[0])):
        regs = getattr(k, "n_regs", None)
        spills = getattr(k, "n_spills", None)
        audit_ptx(f"{NAMES.get(t, t)} sb={sb} num_warps={nw} {str(dtype).replace('torch.', '')} (launched)",
                  k.asm["ptx"], f" regs={regs} spills={spills}")


@guarded("ptx audit")
def ptx_audit() -> None:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from ggrun.kernels import quantize_k as Q

    if torch.cuda.is_available():
        cap = torch.cuda.get_device_capability()
        target = GPUTarget("cuda", cap[0] * 10 + cap[1], 32)
    else:
        target = GPUTarget("cuda", 90, 32)
    base = {"x_ptr": "*fp32", "y_ptr": "*u8", "tab_ptr": "*fp32", "N_SB": "i32"}
    kernels = [  # as quantize_blocks_triton launches them (SB, num_warps)
        ("Q2_K", Q._q2_k_kernel, {"SB": 8}, 4),
        ("Q3_K", Q._q3_k_kernel, {"SB": 8}, 4),
        ("Q4_K", Q._q45_k_kernel, {"SB": 16, "Q5": False}, 4),
        ("Q5_K", Q._q45_k_kernel, {"SB": 16, "Q5": True}, 4),
        ("Q6_K", Q._q6_k_kernel, {"SB": 8}, 4),
    ]
    for name, fn, consts, nw in kernels:
        try:
            sig = dict(base)
            if name == "Q3_K":
                del sig["tab_ptr"]
            sig.update({k: "constexpr" for k in consts})
            t0 = time.time()
            c = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts), target=target,
                               options={"enable_fp_fusion": False, "num_warps": nw})
            audit_ptx(f"{name} sm_{target.arch} (compiled ahead)", c.asm["ptx"], f" compile {time.time() - t0:.1f}s")
        except Exception as e:  # noqa: BLE001
            log(f"[FAIL] PTX {name}: {type(e).__name__}: {e}")
            FAILED.append(f"ptx {name}")


# ----------------------------------------------------------------------------------------
# 2. Bytes
# ----------------------------------------------------------------------------------------


def model_like(n_rows: int, n_cols: int, seed: int) -> torch.Tensor:
    """Weights that look like an LLM's: per-row and per-column (outlier channel) scales,
    heavy tails, rounded to f16 like an F16 GGUF read back as f32. (n_rows, n_cols)"""
    torch.manual_seed(seed)                        # for StudentT.sample
    g = torch.Generator().manual_seed(seed)
    w = torch.distributions.StudentT(torch.tensor(4.0)).sample((n_rows, n_cols)) * 0.02
    w *= torch.exp(0.3 * torch.randn(n_rows, 1, generator=g))
    col = torch.exp(0.5 * torch.randn(1, n_cols, generator=g))
    col[0, torch.randperm(n_cols, generator=g)[: max(1, n_cols // 200)]] *= 20   # outlier channels
    return (w * col).half().float()


def datasets(n_values: int, gguf: str | None, n_gguf: int):
    """(name, x (N, 256) f32 CPU, golden {type: bytes} or None) for the byte checks."""
    from ggrun.kernels.quantize_k_samples import edge_case_blocks

    nb = max(64, n_values // 256)
    g = torch.Generator().manual_seed(0)
    mixed = torch.randn(nb, 256, generator=g) * torch.exp(2 * torch.randn(nb, 1, generator=g))
    yield "random-mixed-scales", mixed, None
    yield "uniform", torch.rand(nb, 256, generator=g) * 2 - 1, None
    yield "edge-cases", edge_case_blocks(max(24, nb // 4), seed=1), None
    yield "model-like", model_like(nb // 16, 16 * 256, seed=2).reshape(-1, 256), None
    data = ROOT / "tests" / "data" / "quants"
    for which in ("random", "model"):
        try:
            x = torch.from_numpy(np.load(data / f"input_{which}.npy")).reshape(-1, 256)
            gold = {}
            for t, name in NAMES.items():
                f = data / f"expected_{name}.npz"
                if f.exists():
                    gold[t] = torch.from_numpy(np.load(f)[which]).reshape(x.shape[0], -1)
            yield f"golden-{which}", x, gold
        except Exception as e:  # noqa: BLE001
            log(f"[skip] golden-{which}: {e}")
    if gguf:
        try:
            yield from gguf_tensors(gguf, n_gguf)
        except Exception as e:  # noqa: BLE001
            log(f"[FAIL] reading {gguf}: {type(e).__name__}: {e}")
            FAILED.append("gguf")


def gguf_tensors(path: str, n_values: int):
    """Up to n_values weights of each of a few F32/F16/BF16 2-D tensors of a GGUF file."""
    from ggrun.gguf_file import GGUFFile

    f = GGUFFile(path)
    picked = 0
    for name, ti in f.tensors.items():
        if ti.ggml_type not in (0, 1, 30) or len(ti.shape) != 2 or ti.shape[-1] % 256:
            continue
        if picked and not any(k in name for k in ("attn_q", "attn_v", "ffn_down", "ffn_up", "output.")):
            continue
        rows = max(1, min(ti.shape[0], n_values // ti.shape[-1]))
        raw = torch.from_numpy(np.ascontiguousarray(ti.data[:rows]))
        if ti.ggml_type == 0:
            x = raw.view(torch.float32)
        elif ti.ggml_type == 1:
            x = raw.view(torch.float16).float()
        else:
            x = raw.view(torch.bfloat16).float()
        yield f"gguf:{name}[:{rows}]", x.reshape(-1, 256).contiguous(), None
        picked += 1
        if picked >= 6:
            break


def report(what: str, got: torch.Tensor, exp: torch.Tensor, x: torch.Tensor, show: int = 3) -> int:
    """Number of differing blocks of got vs exp (both CPU uint8), printing the first few."""
    if got.shape != exp.shape:
        log(f"    {what}: shape {tuple(got.shape)} != {tuple(exp.shape)}")
        return max(got.shape[0], exp.shape[0])
    bad = (got != exp).any(1)
    n = int(bad.sum())
    if n:
        log(f"    {what}: {n} / {bad.numel()} blocks differ")
        for i in bad.nonzero().flatten()[:show].tolist():
            cols = (got[i] != exp[i]).nonzero().flatten().tolist()
            xi = x[i]
            log(f"      block {i}: bytes {cols[:12]}{'…' if len(cols) > 12 else ''} got {got[i, cols[:6]].tolist()}"
                f" expected {exp[i, cols[:6]].tolist()}; x absmax {xi.abs().max().item():.4g}"
                f" min {xi.min().item():.4g} max {xi.max().item():.4g} zeros {(xi == 0).sum().item()}")
    return n


@guarded("bytes")
def check_bytes(types: list[int], n_values: int, gguf: str | None, n_gguf: int, cpu_cap: int) -> None:
    from ggrun.kernels.quantize_k import quantize_blocks_triton

    for name, x, gold in datasets(n_values, gguf, n_gguf):
        xg = x.cuda()
        for t in types:
            try:
                t0 = time.time()
                y = quantize_blocks_triton(xg, t)
                sync()
                dt = time.time() - t0
                if y is None:
                    log(f"[FAIL] {NAMES[t]} {name}: quantize_blocks_triton returned None")
                    FAILED.append(f"{NAMES[t]} {name}")
                    continue
                y = y.cpu()
                line = [f"{NAMES[t]:5s} {name:28s} {x.shape[0]:7d} blocks (triton {dt:6.2f}s)"]
                bad = report("triton vs torch-gpu", y, torch_path(xg, t).cpu(), x)
                line.append(f"vs torch-gpu {bad}")
                m = min(x.shape[0], cpu_cap)
                ref_c = torch_path(x[:m], t)
                bad_c = report("triton vs torch-cpu", y[:m], ref_c, x[:m])
                line.append(f"vs torch-cpu[:{m}] {bad_c}")
                if bad or bad_c:                       # whose bytes moved: torch-gpu vs torch-cpu
                    line.append(f"(torch-gpu vs torch-cpu {int((torch_path(xg[:m], t).cpu() != ref_c).any(1).sum())})")
                if name == "model-like":               # already f16 values: the f16 input path
                    b16 = report("triton f16 input vs f32 input", quantize_blocks_triton(xg.half(), t).cpu(), y, x)
                    line.append(f"f16-input vs f32-input {b16}")
                    bad += b16
                bad_g = 0
                if gold and t in gold:
                    bad_g = report("triton vs llama.cpp", y, gold[t], x)
                    line.append(f"vs llama.cpp {bad_g}")
                ok = bad == 0 and bad_c == 0 and bad_g == 0
                log(f"[{'OK  ' if ok else 'FAIL'}] " + ", ".join(line))
                if not ok:
                    FAILED.append(f"{NAMES[t]} {name}")
            except Exception as e:  # noqa: BLE001
                log(f"[FAIL] {NAMES[t]} {name}: {type(e).__name__}: {e}")
                traceback.print_exc()
                FAILED.append(f"{NAMES[t]} {name}")
        del xg
        torch.cuda.empty_cache()


def interpret_worker(src: str, dst: str) -> None:
    """(In a subprocess with TRITON_INTERPRET=1) quantize src's blocks with every type → dst."""
    from ggrun.kernels.quantize_k import quantize_blocks_triton

    np.seterr(all="ignore")
    d = torch.load(src)
    torch.save({t: quantize_blocks_triton(d["x"], t) for t in d["types"]}, dst)


def libggml_quantize(x: torch.Tensor, t: int, ts: int) -> torch.Tensor | None:
    lib = os.environ.get("GGRUN_LIBGGML_BASE")
    if not lib or not os.path.isfile(lib):
        return None
    f = ctypes.CDLL(lib).ggml_quantize_chunk
    f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                  ctypes.c_int64, ctypes.c_void_p]
    f.restype = ctypes.c_size_t
    x = x.contiguous()
    out = torch.zeros(x.shape[0], ts, dtype=torch.uint8)
    f(t, x.data_ptr(), out.data_ptr(), 0, x.shape[0], 256, None)
    return out


def c_quantize(x: torch.Tensor, t: int) -> torch.Tensor | None:
    """ggrun.cpu.quantize_rows (llama.cpp's reference quantizers in C, exact also on the
    extremes) when its library builds here, else None."""
    try:
        from ggrun import cpu

        return cpu.quantize_rows(x.contiguous(), t) if cpu.available() else None
    except Exception as e:  # noqa: BLE001
        log(f"  (ggrun.cpu unavailable: {type(e).__name__}: {e})")
        return None


@guarded("extremes")
def check_extremes(types: list[int], n_edge: int) -> None:
    from ggrun.kernels.quantize_k import quantize_blocks_triton
    from ggrun.kernels.quantize_k_samples import edge_case_blocks, extreme_blocks

    g = torch.Generator().manual_seed(5)
    x = torch.cat([extreme_blocks(), edge_case_blocks(max(24, n_edge), seed=6),
                   torch.randn(n_edge, 256, generator=g) * torch.exp(3 * torch.randn(n_edge, 1, generator=g))])
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "x.pt"), os.path.join(tmp, "y.pt")
        torch.save({"x": x, "types": types}, src)
        env = dict(os.environ, TRITON_INTERPRET="1")
        t0 = time.time()
        r = subprocess.run([sys.executable, __file__, "--interpret-worker", src, dst], env=env,
                           capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            log(f"[FAIL] interpreter subprocess (rc {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-4000:]}")
            FAILED.append("extremes interpreter")
            interp = {}
        else:
            interp = torch.load(dst)
            log(f"  interpreter: {x.shape[0]} blocks x {len(types)} types in {time.time() - t0:.0f}s")
    xg = x.cuda()
    for t in types:
        try:
            y = quantize_blocks_triton(xg, t).cpu()
            line, ok = [f"{NAMES[t]:5s} extremes+edge {x.shape[0]:6d} blocks"], True
            if t in interp:
                bad = report("triton-gpu vs triton-interpreter", y, interp[t], x)
                line.append(f"vs interpreter {bad}")
                ok &= bad == 0
            ref = libggml_quantize(x, t, y.shape[1])
            if ref is not None:
                bad = report("triton-gpu vs ggml_quantize_chunk", y, ref, x)
                line.append(f"vs llama.cpp {bad}")
                ok &= bad == 0
            ref = c_quantize(x, t)
            if ref is not None:
                bad = report("triton-gpu vs ggrun.cpu (C)", y, ref, x)
                line.append(f"vs ggrun.cpu C {bad}")
                ok &= bad == 0
            fin = torch.isfinite(x).all(1)
            info = int((y != torch_path(x, t)).any(1).sum())
            line.append(f"(info: vs torch-cpu {info} differ, the torch path's blind spot;"
                        f" {int((~fin).sum())} blocks non-finite)")
            log(f"[{'OK  ' if ok else 'FAIL'}] " + ", ".join(line))
            if not ok:
                FAILED.append(f"{NAMES[t]} extremes")
        except Exception as e:  # noqa: BLE001
            log(f"[FAIL] {NAMES[t]} extremes: {type(e).__name__}: {e}")
            traceback.print_exc()
            FAILED.append(f"{NAMES[t]} extremes")


# ----------------------------------------------------------------------------------------
# 3. Timing
# ----------------------------------------------------------------------------------------


def cuda_time(fn, reps: int) -> float:
    """Seconds per call (CUDA events, after one warm-up call)."""
    fn()
    sync()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(reps):
        fn()
    b.record()
    sync()
    return a.elapsed_time(b) / 1000 / reps


@guarded("timing")
def timing(types: list[int], reps: int, torch_reps: int, sb: int | None, num_warps: int | None) -> None:
    from ggrun.kernels.quantize_k import quantize_blocks_triton

    x = model_like(4096, 11008, seed=3).cuda().reshape(-1, 256)   # an ffn matrix of a 7B llama
    n = x.numel()
    gb = n * 4 / 1e9
    log(f"workload: {x.shape[0]} super-blocks = {n / 1e6:.1f}M weights = {gb:.2f} GB of f32 per call")
    rate = {}
    for t in types:
        try:
            t0 = time.time()
            quantize_blocks_triton(x, t, sb=sb, num_warps=num_warps)
            sync()
            first = time.time() - t0
            s = cuda_time(lambda: quantize_blocks_triton(x, t, sb=sb, num_warps=num_warps), reps)
            rate[t] = n / s
            st = cuda_time(lambda: torch_path(x, t), torch_reps) if torch_reps else float("nan")
            log(f"  {NAMES[t]}: triton {s * 1e3:8.2f} ms/call {gb / s:7.1f} GB/s"
                f" -> {N_MODEL / rate[t]:6.2f} s for 6.74e9 weights"
                f" (first call incl. compile {first:.1f}s) | torch {st * 1e3:9.1f} ms/call {gb / st:6.2f} GB/s"
                f" -> {N_MODEL * st / n:7.1f} s | speed-up {st / s:6.1f}x")
        except Exception as e:  # noqa: BLE001
            log(f"[FAIL] timing {NAMES[t]}: {type(e).__name__}: {e}")
            traceback.print_exc()
            FAILED.append(f"timing {NAMES[t]}")
    if all(t in rate for t in MIX):
        log(f"  Q4_K_M mix (~{MIX[12] / 1e9:.2f}e9 Q4_K + {MIX[14] / 1e9:.2f}e9 Q6_K weights): projected "
            f"{sum(v / rate[t] for t, v in MIX.items()):.2f} s of quantize kernels (f32 already on the GPU)")
        # the whole 6.7B mix for real: the matrix again and again, wall clock
        calls = {t: max(1, round(v / n)) for t, v in MIX.items()}
        sync()
        t0 = time.time()
        for t, k in calls.items():
            for _ in range(k):
                quantize_blocks_triton(x, t, sb=sb, num_warps=num_warps)
        sync()
        dt = time.time() - t0
        total = sum(calls.values()) * n
        log(f"  Q4_K_M mix measured: {sum(calls.values())} calls, {total / 1e9:.2f}e9 weights in {dt:.2f} s"
            f" ({total * 4 / dt / 1e9:.1f} GB/s of f32)")


@guarded("tune")
def tune(types: list[int]) -> None:
    """Time a few (super-blocks per program, num_warps) choices per type (first call compiles)."""
    from ggrun.kernels.quantize_k import quantize_blocks_triton

    x = model_like(2048, 11008, seed=4).cuda().reshape(-1, 256)
    for t in types:
        groups = 8 if t in (12, 13) else 16
        res = []
        for lanes in (64, 128, 256):
            for per_thread in (1, 2):
                sb, nw = max(1, lanes // groups), max(1, lanes // (32 * per_thread))
                try:
                    s = cuda_time(lambda: quantize_blocks_triton(x, t, sb=sb, num_warps=nw), 3)
                    res.append((s, sb, nw))
                except Exception as e:  # noqa: BLE001
                    log(f"  {NAMES[t]} sb={sb} num_warps={nw}: {type(e).__name__}: {e}")
        for s, sb, nw in sorted(res)[:6]:
            log(f"  {NAMES[t]} sb={sb:3d} num_warps={nw}: {s * 1e3:7.2f} ms ({x.numel() * 4 / s / 1e9:6.1f} GB/s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default="Q2_K,Q3_K,Q4_K,Q5_K,Q6_K")
    ap.add_argument("--values", type=float, default=4e6, help="weights per synthetic data set (default 4e6)")
    ap.add_argument("--cpu-blocks", type=int, default=16384, help="blocks also checked against the CPU torch path")
    ap.add_argument("--gguf", help="an F16/BF16/F32 GGUF file: also check some of its tensors")
    ap.add_argument("--gguf-values", type=float, default=2e6, help="weights per GGUF tensor")
    ap.add_argument("--reps", type=int, default=5, help="timed calls per type (Triton)")
    ap.add_argument("--torch-reps", type=int, default=1, help="timed calls per type (torch; 0: skip)")
    ap.add_argument("--sb", type=int, help="super-blocks per program (tuning)")
    ap.add_argument("--num-warps", type=int, help="warps per program (tuning)")
    ap.add_argument("--quick", action="store_true", help="1e6 values, 2 reps")
    ap.add_argument("--ptx-only", action="store_true", help="only the PTX audit (works without a GPU)")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--tune", action="store_true", help="also time a few sb / num_warps choices")
    ap.add_argument("--edge-blocks", type=int, default=1000,
                    help="edge-case / random blocks of the interpreter check")
    ap.add_argument("--interpret-worker", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.interpret_worker:
        interpret_worker(*a.interpret_worker)
        return 0
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        log("TRITON_INTERPRET is set: unset it, this script checks the compiled kernels")
        return 2
    if a.quick:
        a.values, a.reps, a.cpu_blocks, a.edge_blocks = 1e6, 2, 4096, 200
    name_to_t = {v: k for k, v in NAMES.items()}
    types = [name_to_t[s.strip().upper()] for s in a.types.split(",") if s.strip()]
    import triton

    log(f"torch {torch.__version__}, triton {triton.__version__}, "
        f"device {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}, "
        f"{torch.get_num_threads()} CPU threads")
    log("== 1. PTX audit")
    ptx_audit()
    if not a.ptx_only:
        if not torch.cuda.is_available():
            log("no CUDA device: only the PTX audit ran")
            return 1 if FAILED else 0
        log("== 2. bytes: Triton (GPU) vs torch (GPU) vs torch (CPU) vs llama.cpp (golden)")
        check_bytes(types, int(a.values), a.gguf, int(a.gguf_values), a.cpu_blocks)
        log("== 2b. extremes + edge cases: Triton (GPU) vs Triton (CPU interpreter) [vs llama.cpp]")
        check_extremes(types, a.edge_blocks)
        log("== 2c. PTX of the kernels launched above")
        audit_launched()
        if not a.no_timing:
            log("== 3. timing")
            timing(types, a.reps, a.torch_reps, a.sb, a.num_warps)
        if a.tune:
            log("== 4. tuning (defaults: sb=16 for Q4_K/Q5_K, 8 otherwise; num_warps=4)")
            tune(types)
    log("== " + ("all OK" if not FAILED else f"FAILED: {FAILED}"))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
