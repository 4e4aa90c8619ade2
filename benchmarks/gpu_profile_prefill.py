#!/usr/bin/env python3
"""Where a prefill forward's time goes on the GPU (torch.profiler): one pp512 / pp2048 forward of a
synthetic model through LlamaModel + CUDABackend, CPU-side and GPU-side op tables.

    python3 benchmarks/gpu_profile_prefill.py [--shape deepseek-coder-6.7b] [--n 512,2048]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="deepseek-coder-6.7b")
    ap.add_argument("--n", default="512,2048")
    a = ap.parse_args()
    from ggrun.bench_synthetic import build, time_pp

    cfg, w, lm, nbytes = build(a.shape, "Q4_K_M", 99)
    for n in [int(v) for v in a.n.split(",")]:
        time_pp(lm, cfg, n)
        ts = [time_pp(lm, cfg, n) for _ in range(3)]
        print(f"{a.shape} pp{n}: {[f'{n / t:.0f}' for t in ts]} t/s", flush=True)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            t0 = time.perf_counter()
            time_pp(lm, cfg, n)
            wall = time.perf_counter() - t0
        ka = prof.key_averages()
        cuda_total = sum(e.self_device_time_total for e in ka) / 1e3
        cpu_total = sum(e.self_cpu_time_total for e in ka) / 1e3
        print(f"pp{n} under the profiler: wall {wall * 1e3:.1f} ms, GPU kernels {cuda_total:.1f} ms, "
              f"CPU self {cpu_total:.1f} ms", flush=True)
        print(ka.table(sort_by="self_cpu_time_total", row_limit=22, max_name_column_width=50))
        print(ka.table(sort_by="self_device_time_total", row_limit=14, max_name_column_width=50))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
