#!/usr/bin/env python3
"""Decode with and without programmatic dependent launch (PDL), same weights, same process:
tg128 t/s from position 0 and at position 2048, and the logits of 16 greedy steps compared.

    python3 benchmarks/gpu_pdl_ab.py [--shapes deepseek-coder-6.7b,deepseek-coder-33b]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402


def tps(dec, pos: int, n: int = 128, reps: int = 3) -> float:
    best = 0.0
    for _ in range(reps + 1):
        dec.reset(1, pos)
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        dec.decode(n)
        e1.record()
        e1.synchronize()
        best = max(best, n / e0.elapsed_time(e1) * 1e3)
    return best


def greedy_logits(cfg, w, n: int = 16):
    """A GraphDecoder captured with the current kernel settings and its logits of n greedy steps
    from token 7 at position 0: (decoder, logits [n, n_vocab])."""
    from ggrun.backends.cuda import GraphDecoder

    dec = GraphDecoder(cfg, w, n_ctx=4096, device="cuda")
    dec.reset(1, 4095)
    dec.capture()
    dec.reset(7, 0)
    seq = []
    for _ in range(n):
        dec.graph.replay()
        seq.append(dec.logits.clone())
    return dec, torch.stack(seq)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="deepseek-coder-6.7b,deepseek-coder-33b")
    a = ap.parse_args()
    from ggrun.backends.cuda import prepare_stacks
    from ggrun.kernels._common import pdl_mode, set_pdl
    from ggrun.kernels.testing import synthetic_config, synthetic_llama

    prev = pdl_mode()

    for shape in a.shapes.split(","):
        cfg = synthetic_config(shape)
        w = synthetic_llama(cfg, "Q4_K_M", device="cuda")
        prepare_stacks(w, "cuda")
        res, logits = {}, {}
        for pdl in (False, True, False, True):
            set_pdl(pdl)
            dec, seq = greedy_logits(cfg, w)
            logits.setdefault(pdl, seq)
            r = (tps(dec, 0), tps(dec, 2048))
            res.setdefault(pdl, []).append(r)
            del dec
            torch.cuda.empty_cache()
        same = torch.equal(logits[False], logits[True])
        diff = (logits[False] - logits[True]).abs().max().item()
        for pdl in (False, True):
            s = "  ".join(f"pos0 {a:.1f} t/s, pos2048 {b:.1f} t/s" for a, b in res[pdl])
            print(f"{shape} PDL {'on ' if pdl else 'off'}: {s}", flush=True)
        print(f"{shape}: 16 greedy steps' logits identical with and without PDL: {same} (max |diff| {diff:.3g})",
              flush=True)
        del w
        torch.cuda.empty_cache()
    set_pdl(prev)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
