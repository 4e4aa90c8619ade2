#!/usr/bin/env python3
"""Decode speed at short and long context, attention split over the context (the kernel's plan)
vs one split, on the decoder's own contiguous cache and on an engine KVCache slot (the layout
the engine uses: [n_ctx, Hkv, hd] per slot). 6.7B shape, Q4_K_M, random valid blocks.

    python3 benchmarks/gpu_attention_ab.py [--shape deepseek-coder-6.7b] [--n-ctx 4096]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402


def ms_per_token(dec, pos: int, n: int = 64) -> float:
    dec.reset(1, pos)
    dec.decode(4)                                   # warm-up
    dec.reset(1, pos)
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    dec.decode(n)
    e1.record()
    e1.synchronize()
    return e0.elapsed_time(e1) / n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="deepseek-coder-6.7b")
    ap.add_argument("--n-ctx", type=int, default=4096)
    a = ap.parse_args()
    from ggrun.backends.cuda import GraphDecoder, prepare_stacks
    from ggrun.kernels.testing import synthetic_config, synthetic_llama
    from ggrun.model import KVCache

    cfg = synthetic_config(a.shape)
    w = synthetic_llama(cfg, "Q4_K_M", device="cuda")
    prepare_stacks(w, "cuda")
    n = a.n_ctx
    for layout_name in ("own", "engine"):
        cache = KVCache(cfg, n, device="cuda") if layout_name == "engine" else None
        for split in (None, n):
            dec = GraphDecoder(cfg, w, n_ctx=n, device="cuda", cache=cache, attn_split=split)
            dec.reset(1, n - 1)
            dec.capture()
            r = {p: ms_per_token(dec, p) for p in (0, 1024, 2048, n - 80)}
            label = "plan" if split is None else "one split"
            print(f"{a.shape} cache={layout_name:6s} attention={label:9s} " +
                  "  ".join(f"pos {p}: {ms:.3f} ms ({1e3 / ms:.0f} t/s)" for p, ms in r.items()), flush=True)
            del dec
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
