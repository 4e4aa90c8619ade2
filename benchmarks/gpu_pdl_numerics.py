#!/usr/bin/env python3
"""Where do decode results with programmatic dependent launch differ from those without?

Each decode kernel alone (eager, same inputs) with PDL off / start / end, compared bit for bit;
then 16 greedy steps of the 6.7B shape through GraphDecoder eagerly and through its CUDA graph in
each mode. Device script (benchmarks/device_session.sh I).

    python3 benchmarks/gpu_pdl_numerics.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

MODES = ("off", "start", "end")


def per_kernel() -> None:
    from ggrun.kernels import layout
    from ggrun.kernels._common import pdl_mode, set_pdl
    from ggrun.kernels.attention import decode_attention
    from ggrun.kernels.matvec import matvec_q
    from ggrun.kernels.quantize_x import quantize_x
    from ggrun.kernels.testing import random_blocks

    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(1, 4096, device="cuda", generator=g)
    nw = torch.rand(4096, device="cuda", generator=g) + 0.5
    gu = torch.randn(1, 2 * 11008, device="cuda", generator=g)
    mats = {t: layout.pack(random_blocks(4096, 4096, t, device="cuda"), t) for t in (layout.Q4_K, layout.Q6_K)}
    kc0 = torch.randn(32, 512, 128, device="cuda", generator=g).half()
    vc0 = torch.randn_like(kc0)
    cos, sin = torch.rand(512, 64, device="cuda"), torch.rand(512, 64, device="cuda")
    q, k, v = (torch.randn(32 * 128, device="cuda", generator=g) for _ in range(3))
    P = torch.tensor([300], device="cuda", dtype=torch.int32)
    res = {}
    prev = pdl_mode()
    for mode in MODES:
        set_pdl(mode)
        r = {}
        qn = quantize_x(x, norm_w=nw, eps=1e-6)
        r["quantize+rmsnorm"] = (qn.q, qn.d, qn.s, qn.g)
        qs = quantize_x(gu[:, :11008], up=gu[:, 11008:])
        r["swiglu+quantize"] = (qs.q, qs.d, qs.s)
        for t, p in mats.items():
            r[f"matvec {layout.TYPE_NAMES[t]}"] = (matvec_q(p, qn),)
            y = x.clone()
            matvec_q(p, qn, out=y, acc=True)
            r[f"matvec {layout.TYPE_NAMES[t]} acc"] = (y,)
        kc, vc = kc0.clone(), vc0.clone()
        o = torch.empty(32 * 128, device="cuda")
        decode_attention(q, k, v, cos, sin, P, kc, vc, 0.088, out=o)
        r["attention"] = (o, kc, vc)
        torch.cuda.synchronize()
        res[mode] = {n: tuple(t.clone() for t in ts) for n, ts in r.items()}
    set_pdl(prev)
    for n in res["off"]:
        same = {m: all(torch.equal(a, b) for a, b in zip(res["off"][n], res[m][n])) for m in MODES[1:]}
        print(f"kernel {n:22s} bit-identical to PDL off: {same}", flush=True)


def decoder() -> None:
    from ggrun.backends.cuda import GraphDecoder, prepare_stacks
    from ggrun.kernels._common import pdl_mode, set_pdl
    from ggrun.kernels.testing import synthetic_config, synthetic_llama

    cfg = synthetic_config("deepseek-coder-6.7b")
    w = synthetic_llama(cfg, "Q4_K_M", device="cuda")
    prepare_stacks(w, "cuda")
    out = {}
    prev = pdl_mode()
    for mode in MODES:
        set_pdl(mode)
        for graph in (False, True):
            dec = GraphDecoder(cfg, w, n_ctx=1024, device="cuda")
            if graph:
                dec.reset(1, 1023)
                dec.capture()
            dec.reset(7, 0)
            seq = []
            for _ in range(16):
                dec.decode(1)
                seq.append(dec.logits.clone())
            out[(mode, graph)] = torch.stack(seq)
            del dec
            torch.cuda.empty_cache()
    set_pdl(prev)
    ref = out[("off", False)]
    for key, s in out.items():
        d = (s - ref).abs().max().item()
        print(f"decoder pdl={key[0]:5s} graph={key[1]!s:5s}: bit-identical to eager off {torch.equal(s, ref)}, "
              f"max |diff| {d:.3e}, same top-1 {torch.equal(s.argmax(-1), ref.argmax(-1))}", flush=True)


if __name__ == "__main__":
    per_kernel()
    decoder()
