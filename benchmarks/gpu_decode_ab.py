#!/usr/bin/env python3
"""Batch-1 decode on the GPU, A/B in one process: the row-major Q4_K/Q6_K kernels
(``matvec._mv_q45k``, ``_mv_q6k``, their H200 tiles; session 3's batch-1 kernels, which the call-M
figures of gpu_results.md ran against, are gone) against the row-interleaved ones
(``_mv_q4k_il``, ``_mv_q6k_il``) over a tile sweep, per matrix of the DeepSeek Coder Q4_K_M decode shapes; then whole tokens
through GraphDecoder (tg128 from position 0 and 2048) with each layout, logits compared; PDL
repeatability; then the small kernels of a token.

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_decode_ab.py [--models deepseek-coder-33b,...] [--out DIR]

Prints the winners as ``matvec.H200_IL`` lines; writes decode_ab.json under --out.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import gpu  # noqa: E402  (benchmarks/gpu.py: graph_time, MV_SHAPES, rotating_packs, record_best, step_breakdown, …)
from gpu import MV_SHAPES, RESULTS, graph_time, log, section  # noqa: E402
from gpu_pdl_ab import greedy_logits, tps as _tps  # noqa: E402  (capture + 16 greedy steps; best tg t/s)
from ggrun.kernels.layout import Q4_K, Q6_K  # noqa: E402

def _set_layouts(ils: dict) -> None:
    from ggrun.kernels import layout

    for t, il in ils.items():
        layout.set_interleave(t, il)


def _rel(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@section
def sweep(models):
    from ggrun.kernels import matvec as mv

    rows = []
    for model in models:
        for label, N, K, t in MV_SHAPES[model]:
            from ggrun.kernels.testing import random_blocks

            raw = random_blocks(N, K, t, device="cuda")
            packs, nbytes, qx, y = gpu.rotating_packs(N, K, t, raw=raw, row_major=True)
            R = len(packs)
            ref = mv.matvec_q(packs[0], qx).clone()
            ms_old = graph_time([lambda i=i: mv.matvec_q(packs[i % R], qx, out=y) for i in range(2 * R)])
            del packs
            packs = gpu.rotating_packs(N, K, t, raw=raw)[0]
            del raw
            res = []

            def run(cfg, split):
                try:
                    err = _rel(mv.matvec_q(packs[0], qx, cfg=cfg, split=split), ref)
                    assert err < 1e-5, f"{cfg}/{split}: rel {err:.2e} against the row-major kernel"
                    ms = graph_time([lambda i=i: mv.matvec_q(packs[i % R], qx, out=y, cfg=cfg, split=split)
                                     for i in range(2 * R)])
                    res.append((nbytes / ms / 1e6, cfg, split, ms))
                except Exception as e:  # noqa: BLE001 (a tile may not compile; a wrong result is reported)
                    log(f"  {label} {cfg} split={split}: {e!r}"[:300])
                    RESULTS["errors"].append(f"{model} {label} {cfg}/{split}: {e!r}"[:300])

            for cfg in gpu.CFGS[t]:              # the interleaved kernels' tiles
                run(cfg, 1)
            if -(-N // 32) < 4 * mv.N_SM:    # few row groups: split K too for the best three
                for _, cfg, _, _ in sorted(res, reverse=True)[:3]:
                    for split in (2, 4):
                        run(cfg, split)
            rows.append(gpu.record_best(model, label, t, N, K, nbytes, res, "row-major", ms_old, new="interleaved"))
            del packs
            torch.cuda.empty_cache()
    RESULTS["sweep"] = rows
    log("\n# H200_IL (paste into ggrun/kernels/matvec.py)")
    for r in rows:
        log(f"    ({r['type']}, {r['N']}, {r['K']}): ({tuple(r['cfg'])}, {r['split']}),")
    gpu.save()


@section
def decode(models):
    """tg128 at positions 0 and 2048 with the Q4_K/Q6_K weights row-major, Q4_K interleaved, both
    interleaved (PDL off); the 16-step logits compared with the row-major ones."""
    from ggrun.backends.cuda import prepare_stacks
    from ggrun.kernels.testing import synthetic_config, synthetic_llama

    out = []
    for model in models:
        cfg = synthetic_config(model)
        logits = {}
        for name, ils in (("row-major", {Q4_K: 0, Q6_K: 0}), ("Q4_K il", {Q4_K: 32, Q6_K: 0}),
                          ("Q4_K+Q6_K il", {Q4_K: 32, Q6_K: 32})):
            _set_layouts(ils)
            try:
                w = synthetic_llama(cfg, "Q4_K_M", device="cuda")
            finally:
                _set_layouts({Q4_K: 32, Q6_K: 32})
            prepare_stacks(w, "cuda")
            dec, seq = greedy_logits(cfg, w)
            logits[name] = seq
            err = _rel(seq, logits["row-major"])
            same_top = bool(torch.equal(seq.argmax(-1), logits["row-major"].argmax(-1)))
            r = dict(model=model, layout=name, tg128_pos0=_tps(dec, 0), tg128_pos2048=_tps(dec, 2048),
                     logits_rel_vs_row_major=err, same_top1=same_top)
            out.append(r)
            anchor = gpu.ANCHORS[model][0]
            log(f"{model} {name:13s}: tg128 pos0 {r['tg128_pos0']:6.1f} t/s "
                f"({r['tg128_pos0'] / anchor:.2f}x llama.cpp), pos2048 {r['tg128_pos2048']:6.1f}; "
                f"logits rel {err:.1e} vs row-major, top-1 same {same_top}")
            del dec, w
            torch.cuda.empty_cache()
    RESULTS["decode"] = out
    gpu.save()


@section
def pdl_repeat(models):
    """PDL "off" and "end" twice each on one set of weights (shipped kernels and tiles): are the
    16-step logits bit-identical between repeats, and between the modes? tg128 of every repeat."""
    from ggrun.backends.cuda import prepare_stacks
    from ggrun.kernels._common import pdl_mode, set_pdl
    from ggrun.kernels.testing import synthetic_config, synthetic_llama

    prev = pdl_mode()
    out = []
    for model in models:
        cfg = synthetic_config(model)
        w = synthetic_llama(cfg, "Q4_K_M", device="cuda")
        prepare_stacks(w, "cuda")
        runs = []
        for mode in ("off", "end", "off", "end"):
            set_pdl(mode)
            dec, seq = greedy_logits(cfg, w)
            runs.append((mode, seq, _tps(dec, 0), _tps(dec, 2048)))
            del dec
            torch.cuda.empty_cache()
        set_pdl(prev)
        same = {f"{a}{i}=={b}{j}": bool(torch.equal(x, y))
                for i, (a, x, _, _) in enumerate(runs) for j, (b, y, _, _) in enumerate(runs) if i < j}
        r = dict(model=model, tg128=[(m, round(t0, 1), round(t2, 1)) for m, _, t0, t2 in runs], bitwise=same)
        out.append(r)
        log(f"{model}: tg128 (mode, pos0, pos2048) {r['tg128']}; logits bit-identical: {same}")
        del w
        torch.cuda.empty_cache()
    RESULTS["pdl_repeat"] = out
    gpu.save()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="deepseek-coder-33b,deepseek-coder-6.7b")
    ap.add_argument("--skip", default="")
    ap.add_argument("--out", default=".")
    a = ap.parse_args()
    gpu.OUT_DIR[0] = a.out
    models = a.models.split(",")
    skip = set(a.skip.split(","))
    gpu.device_info()
    if "sweep" not in skip:
        sweep(models)
    if "decode" not in skip:
        decode(models)
    if "pdl_repeat" not in skip:
        pdl_repeat(models)
    if "breakdown" not in skip:
        gpu.step_breakdown(models)
    gpu.save()
    log("errors:", RESULTS["errors"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
