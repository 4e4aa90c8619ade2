#!/usr/bin/env python3
"""ggrun quantize beside llama-quantize, in one run: F16 → Q4_K_M (or any mix) on the same file.

    python benchmarks/quantize.py --llama-quantize PATH [--like deepseek-coder-6.7b] [--type Q4_K_M]
                                  [--device cuda] [--threads N] [--work DIR] [--out DIR]
    python benchmarks/quantize.py --source FILE.gguf ...          # an existing model instead of a synth one

With --like, `ggrun synth --type F16` writes the input first (its speed is reported too). Then
llama-quantize (N threads) and `ggrun quantize` (on --device) make the same mix from it; the
times, the speed ratio, and whether the two outputs are byte-identical (else how many blocks
differ) are printed and written to OUT/quantize_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def log(*a):
    print(*a, flush=True)


def compare(a: Path, b: Path) -> dict:
    """Byte-identical? Else the number of differing blocks per tensor type."""
    import numpy as np

    from ggrun.gguf_file import GGUFFile
    from ggrun.quants import type_size

    if a.stat().st_size == b.stat().st_size:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            same = True
            while True:
                x, y = fa.read(1 << 26), fb.read(1 << 26)
                if x != y:
                    same = False
                    break
                if not x:
                    break
        if same:
            return {"identical": True}
    fa, fb = GGUFFile(a), GGUFFile(b)
    out: dict = {"identical": False, "sizes": [a.stat().st_size, b.stat().st_size], "types_equal":
                 {n: t.ggml_type for n, t in fa.tensors.items()} == {n: t.ggml_type for n, t in fb.tensors.items()},
                 "blocks": {}}
    for n, t in fa.tensors.items():
        u = fb.tensors.get(n)
        if u is None or u.ggml_type != t.ggml_type:
            continue
        ts = type_size(t.ggml_type)
        x = np.asarray(t.data).reshape(-1, ts)
        y = np.asarray(u.data).reshape(-1, ts)
        d = int((x != y).any(axis=1).sum())
        e = out["blocks"].setdefault(t.type_name, [0, 0])
        e[0] += d
        e[1] += x.shape[0]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-quantize", default=None, help="the llama-quantize binary (omit: ggrun only)")
    ap.add_argument("--like", default="deepseek-coder-6.7b")
    ap.add_argument("--source", default=None, help="quantize this file instead of a synth one")
    ap.add_argument("--type", default="Q4_K_M")
    ap.add_argument("--allow-requantize", action="store_true", help="the source is quantized (both tools get the flag)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--check-cpu", action="store_true",
                    help="also quantize on the CPU (C quantizers, --threads) and compare the bytes")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--work", default="/tmp/ggrun-qbench")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"host": platform.node(), "cpus": os.cpu_count(), "type": args.type, "device": args.device}
    import torch

    if args.device.startswith("cuda"):
        res["gpu"] = torch.cuda.get_device_name(0)
    if args.source:
        src = Path(args.source)
    else:
        from ggrun.synth import synth

        src = work / f"{args.like}-f16.gguf"
        t0 = time.perf_counter()
        r = synth(args.like, str(src), "F16")
        dt = time.perf_counter() - t0
        res["synth"] = {"model": args.like, "bytes": r.file_size, "seconds": dt, "GBps": r.file_size / dt / 1e9}
        log(f"ggrun synth {args.like} F16: {r.file_size / 1e9:.2f} GB in {dt:.1f} s ({r.file_size / dt / 1e9:.2f} GB/s)")
    res["source_bytes"] = src.stat().st_size
    # warm the page cache once so that both tools read from memory
    t0 = time.perf_counter()
    with open(src, "rb") as f:
        while f.read(1 << 26):
            pass
    log(f"read {src.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s (page cache warm-up)")

    ours = work / f"ggrun-{args.type}.gguf"
    torch.set_num_threads(args.threads)
    from ggrun.quantize import quantize_file

    t0 = time.perf_counter()
    quantize_file(str(src), str(ours), args.type, device=args.device, allow_requantize=args.allow_requantize)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_ours = time.perf_counter() - t0
    res["ggrun"] = {"seconds": t_ours, "bytes": ours.stat().st_size}
    log(f"ggrun quantize --device {args.device}: {t_ours:.1f} s")
    if args.check_cpu and not args.device.startswith("cpu"):
        ref = work / f"ggrun-cpu-{args.type}.gguf"
        t0 = time.perf_counter()
        quantize_file(str(src), str(ref), args.type, device="cpu", allow_requantize=args.allow_requantize)
        t_cpu = time.perf_counter() - t0
        res["ggrun_cpu"] = {"seconds": t_cpu, "threads": args.threads, "compare": compare(ours, ref)}
        log(f"ggrun quantize --device cpu ({args.threads} threads): {t_cpu:.1f} s; "
            f"{args.device} vs cpu: {json.dumps(res['ggrun_cpu']['compare'])}")
        ref.unlink()
    if args.llama_quantize:
        ref = work / f"llama-{args.type}.gguf"
        t0 = time.perf_counter()
        p = subprocess.run([args.llama_quantize] + (["--allow-requantize"] if args.allow_requantize else []) +
                           [str(src), str(ref), args.type, str(args.threads)],
                           capture_output=True, text=True)
        t_ref = time.perf_counter() - t0
        if p.returncode != 0:
            log(p.stdout[-2000:], p.stderr[-2000:])
            raise SystemExit("llama-quantize failed")
        res["llama_quantize"] = {"seconds": t_ref, "threads": args.threads, "bytes": ref.stat().st_size}
        res["speedup"] = t_ref / t_ours
        log(f"llama-quantize ({args.threads} threads): {t_ref:.1f} s  →  ggrun is {t_ref / t_ours:.2f}× as fast")
        t0 = time.perf_counter()
        res["compare"] = compare(ours, ref)
        log(f"outputs: {json.dumps(res['compare'])} ({time.perf_counter() - t0:.1f} s)")
        ref.unlink()
    ours.unlink()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "quantize_bench.json").write_text(json.dumps(res, indent=1))
    log(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
