#!/usr/bin/env python3
"""Session 6's decode changes, A/B on the H200, measured as ``ggrun bench`` measures tg128 (a
256-position cache, 128 tokens from position 0; best of 3 graph replays of 128 steps):

1. ``steps``: the session-5 step, then one change at a time:
   - ``argmax_next``: the greedy step's argmax, token write and position advance in one launch
     (three torch kernels before);
   - ``early``: loads before the PDL wait (the norm kernels' weights; decode attention's position,
     cos/sin and first tile of cached k/v);
   - ``bt128``: decode attention's tile of 128 positions (8 warps) instead of 64;
   in the order A B C D D C B A (drift shows as the two halves disagreeing), each with the logits
   of 16 greedy steps against the first; then ``bt`` 64 / 128 from position 2000 of a 4096 cache.
2. ``output``: the output matrix's tile under PDL (session 4 chose it without PDL), whole-token t/s.
3. ``ssq``: the RMSNorm kernels' sum of squares in one step of 8192 values (``quantize_x.SSQ_MAX``)
   or in steps of 4096 (before session 6: two steps on the 33B's rows of 7168), A B B A.

    python3 benchmarks/gpu_early_ab.py [--skip steps,output,ssq] [--shapes ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

import gpu_fusion_ab  # noqa: E402
from gpu_fusion_ab import _greedy, _model  # noqa: E402
from gpu_pdl_ab import tps  # noqa: E402

RESULTS: dict = {}
S5_FUSE = {"attention_q8", "qkv_pair", "swiglu_q8"}
VARIANTS = {   # name → (fusions, early loads, attention tile)
    "s5": (S5_FUSE, False, 64),
    "argmax_next": (S5_FUSE | {"argmax_next"}, False, 64),
    "early": (S5_FUSE | {"argmax_next"}, True, 64),
    "bt128": (S5_FUSE | {"argmax_next"}, True, 128),
}
SHIPPED = {"shipped": (S5_FUSE | {"argmax_next"}, True, None)}   # every fusion, early loads, the tile of _block_t


def _decoder(cfg, w, variant, n_ctx=256):
    from ggrun.kernels._common import set_early

    fuse, early, bt = {**VARIANTS, **SHIPPED}[variant]
    set_early(early)
    return gpu_fusion_ab._decoder(cfg, w, fuse=fuse, n_ctx=n_ctx, attn_bt=bt)


def steps(shape):
    from ggrun.kernels._common import set_early

    cfg, w = _model(shape)
    rows = RESULTS.setdefault("steps", {}).setdefault(shape, [])
    ref = None
    order = list(VARIANTS) + list(reversed(VARIANTS))
    for name in order:
        dec = _decoder(cfg, w, name)
        lg = _greedy(dec)
        t = tps(dec, 0, n=128, reps=3)
        del dec
        torch.cuda.empty_cache()
        ref = lg if ref is None else ref
        d = (lg - ref).abs().max().item()
        print(f"{shape:20s} {name:12s}: tg128 {t:7.2f} t/s; logits vs s5: "
              f"{'identical' if d == 0 else f'max |diff| {d:.3g}'}", flush=True)
        rows.append(dict(variant=name, tps=round(t, 2), diff=d))
    for name in ("early", "bt128", "early", "bt128"):
        dec = _decoder(cfg, w, name, n_ctx=4096)
        t = tps(dec, 2000, n=64, reps=3)
        del dec
        torch.cuda.empty_cache()
        print(f"{shape:20s} {name:12s}: 64 tokens from position 2000 (4096 cache): {t:7.2f} t/s", flush=True)
        rows.append(dict(variant=name, pos=2000, tps=round(t, 2)))
    set_early(True)
    del w
    torch.cuda.empty_cache()


OUT_CANDS = [((32, 2, 2, 0), 1), ((32, 4, 2, 0), 1), ((32, 4, 4, 0), 1), ((32, 8, 4, 0), 1), ((32, 8, 8, 0), 1),
             ((32, 16, 8, 0), 1), ((32, 2, 2, 0), 1)]


def output(shape, variant="early"):
    """The output matrix's tile, whole-token tg128 (the first candidate is the current one, and
    it comes again last)."""
    from ggrun.kernels import matvec

    cfg, w = _model(shape)
    dec = _decoder(cfg, w, variant)
    p = dec.output
    key = (p.ggml_type, p.n_out, p.n_in)
    del dec
    rows = RESULTS.setdefault("output", {}).setdefault(shape, [])
    for c, sp in OUT_CANDS:
        matvec.set_tuned(*key, c, sp)
        dec = _decoder(cfg, w, variant)
        t = tps(dec, 0, n=128, reps=3)
        del dec
        torch.cuda.empty_cache()
        print(f"{shape:20s} output {key} tile {c} split {sp}: tg128 {t:7.2f} t/s", flush=True)
        rows.append(dict(key=str(key), cfg=c, split=sp, tps=round(t, 2)))
    matvec.TUNED.clear()
    del w
    torch.cuda.empty_cache()


def ssq(shape):
    from ggrun.kernels import quantize_x

    cfg, w = _model(shape)
    rows = RESULTS.setdefault("ssq", {}).setdefault(shape, [])
    prev = quantize_x.SSQ_MAX
    for m in (8192, 4096, 4096, 8192):
        quantize_x.SSQ_MAX = m
        dec = _decoder(cfg, w, "shipped")
        t = tps(dec, 0, n=128, reps=3)
        del dec
        torch.cuda.empty_cache()
        print(f"{shape:20s} RMSNorm squares {m} at a time: tg128 {t:7.2f} t/s", flush=True)
        rows.append(dict(ssq_max=m, tps=round(t, 2)))
    quantize_x.SSQ_MAX = prev
    del w
    torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip", default="")
    ap.add_argument("--shapes", default="deepseek-coder-33b,deepseek-coder-6.7b")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    skip = set(a.skip.split(","))
    print(torch.cuda.get_device_name(), flush=True)
    for shape in a.shapes.split(","):
        if "steps" not in skip:
            steps(shape)
        if "output" not in skip:
            output(shape)
        if "ssq" not in skip:
            ssq(shape)
        if a.out:
            os.makedirs(a.out, exist_ok=True)
            with open(os.path.join(a.out, "early_ab.json"), "w") as f:
                json.dump(RESULTS, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
