#!/usr/bin/env python3
"""Session 5's decode launches, A/B on the H200, and where PDL "end" goes wrong.

1. ``sweep``: GraphDecoder with subsets of its fused launches (``FUSIONS``: attention output
   quantized by the attention kernel, a Q6_K attn_v in the q+k launch, silu(gate)·up quantized by
   the gate/up launch) and PDL off / "end", on the DeepSeek Coder 33B / 6.7B Q4_K_M shapes (random
   blocks): tg128 from position 0 (best of 3 graph replays of 128 steps) and whether 16 greedy
   steps give the unfused logits bit for bit; then tiles for the pair launch.
2. ``pdl_unfused``: PDL "end" on the unfused launches (session 3's logit difference), eager and graph.
3. ``bisect``: every decode kernel compiled with its PDL instructions (GDC = 2: let the next kernel
   launch after the K loop, wait before reading), but the launch attribute that lets a kernel start
   before its predecessor ends given to one call site of GraphDecoder.step at a time (and to all
   but one): which edge changes the 6.7B logits, eagerly, 16 steps.

4. ``tune``: under PDL "end" with every fusion, each matrix's tile (and the pair launch's) chosen
   by whole-token t/s, one matrix at a time.

    python3 benchmarks/gpu_fusion_ab.py [--skip sweep,tune,pdl_unfused,bisect] [--shapes ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from gpu_pdl_ab import tps  # noqa: E402  (best tg t/s of graph replays)

RESULTS: dict = {}


def _model(shape):
    from ggrun.backends.cuda import prepare_stacks
    from ggrun.kernels.testing import synthetic_config, synthetic_llama

    cfg = synthetic_config(shape)
    w = synthetic_llama(cfg, "Q4_K_M", device="cuda")
    prepare_stacks(w, "cuda")
    return cfg, w


def _decoder(cfg, w, fuse=True, graph=True, n_ctx=4096, **kw):
    """A GraphDecoder (``kw``: its other arguments), captured unless ``graph`` is False."""
    from ggrun.backends.cuda import GraphDecoder

    dec = GraphDecoder(cfg, w, n_ctx=n_ctx, device="cuda", fuse=fuse, **kw)
    if graph:
        dec.reset(1, n_ctx - 1)
        dec.capture()
    return dec


def _greedy(dec, n=16):
    dec.reset(7, 0)
    seq = []
    for _ in range(n):
        dec.decode(1)
        seq.append(dec.logits.clone())
    torch.cuda.synchronize()
    return torch.stack(seq)


# fusion subsets (GraphDecoder FUSIONS) × PDL mode, per shape; "-" = none
COMBOS = [("-", "off"), ("attention_q8", "off"), ("qkv_pair", "off"), ("swiglu_q8", "off"),
          ("attention_q8,swiglu_q8", "off"), ("attention_q8,qkv_pair,swiglu_q8", "off"),
          ("-", "end"), ("attention_q8,swiglu_q8", "end"), ("attention_q8,qkv_pair,swiglu_q8", "end"),
          ("-", "off")]
COMBOS_SHORT = [("-", "end"), ("attention_q8,qkv_pair", "end"), ("attention_q8,qkv_pair,swiglu_q8", "end"),
                ("-", "off")]
PAIR_CFGS = [(32, 8, 8, 0), (32, 16, 4, 1), (32, 16, 8, 0), (32, 4, 4, 1), (32, 8, 4, 1), (32, 16, 8, 1)]


def _pair_shape(dec):
    for L in dec.layers:
        if len(L["qkv"]) == 2:
            p6, p4 = sorted((p for _, p in L["qkv"]), key=lambda p: p.n_out)
            return p6.n_out, p4.n_out, p4.n_in
    return None


def sweep(shapes, combos=COMBOS, pair_cfgs=PAIR_CFGS):
    """tg128 per fusion subset and PDL mode (best of 3), logits of 16 greedy steps against the
    first unfused run; then the pair launch's tile (all fusions, PDL off and end)."""
    from ggrun.kernels import matvec
    from ggrun.kernels._common import pdl_mode, set_pdl

    prev = pdl_mode()
    for shape in shapes:
        cfg, w = _model(shape)
        ref = None
        rows = RESULTS.setdefault("sweep", {}).setdefault(shape, [])

        def one(fuse, mode, tag=""):
            nonlocal ref
            set_pdl(mode)
            dec = _decoder(cfg, w, fuse=set() if fuse == "-" else set(fuse.split(",")))
            lg = _greedy(dec)
            t = tps(dec, 0)
            ps = _pair_shape(dec)
            del dec
            torch.cuda.empty_cache()
            set_pdl(prev)
            if ref is None:
                ref = lg
            d = (lg - ref).abs().max().item()
            print(f"{shape:20s} fuse {fuse:34s} pdl {mode:3s} {tag:16s}: {t:7.1f} t/s; logits vs unfused/off: "
                  f"{'identical' if d == 0 else f'max |diff| {d:.3g}'}", flush=True)
            rows.append(dict(fuse=fuse, pdl=mode, tag=tag, tps=round(t, 1), diff=d))
            return ps

        ps = None
        for fuse, mode in combos:
            ps = one(fuse, mode) or ps
        if ps is not None:
            for c in pair_cfgs:
                matvec.PAIR_TUNED[(*ps, 1)] = c
                for mode in ("off", "end"):
                    one("attention_q8,qkv_pair,swiglu_q8", mode, f"pair {c}")
            matvec.PAIR_TUNED.clear()
        del w
        torch.cuda.empty_cache()


Q4_CANDS = [(32, 16, 4, 1), (32, 16, 8, 0), (32, 16, 8, 1), (32, 8, 8, 0), (32, 8, 8, 1), (32, 8, 4, 1)]
Q6_CANDS = [((32, 8, 8, 0), 1), ((32, 8, 8, 0), 2), ((32, 16, 8, 0), 1), ((32, 4, 4, 0), 1), ((32, 16, 8, 0), 2)]


def _matrices(dec):
    """The distinct batch-1 products of a decoder's token: [(role, (type, N, K))] (interleaved, not in
    a pair launch), and the pair launch's (Q6_K rows, Q4_K rows, K) or None."""
    seen, out = set(), []
    pair = _pair_shape(dec)
    for L in dec.layers:
        items = [("gate+up", L["gu"][0][1])] if len(L["gu"]) == 1 else []
        items += [("down", L["down"]), ("wo", L["wo"])]
        if len(L["qkv"]) == 1:
            items.append(("qkv", L["qkv"][0][1]))
        for role, p in items:
            key = (p.ggml_type, p.n_out, p.n_in)
            if key not in seen:
                seen.add(key)
                out.append((role, key))
    return out, pair


def tune(shape, n=64):
    """Under PDL "end" with every fusion: per matrix of the token (the biggest first) the tile that
    makes the whole token fastest, one matrix at a time (coordinate descent over whole-token t/s;
    the tiles of the earlier matrices kept). Prints the H200_IL / PAIR_TUNED entries it found."""
    from ggrun.kernels import matvec
    from ggrun.kernels._common import pdl_mode, set_pdl
    from ggrun.kernels.layout import Q4_K

    prev = pdl_mode()
    set_pdl("end")
    cfg, w = _model(shape)

    def measure():
        dec = _decoder(cfg, w)
        t = tps(dec, 0, n=n, reps=2)
        del dec
        return t

    dec = _decoder(cfg, w)
    mats, pair = _matrices(dec)
    del dec
    best = measure()
    print(f"tune {shape}: start {best:.1f} t/s", flush=True)
    found = {}
    for role, (t, N, K) in mats:
        cur = matvec._default_cfg(t, True, N, K, 1)
        cands = [(c, 1) for c in Q4_CANDS] if t == Q4_K else Q6_CANDS
        choice = (cur[0], cur[1] or 1)
        for c, sp in cands:
            if (tuple(c), sp) == (tuple(choice[0]), choice[1]):
                continue
            matvec.set_tuned(t, N, K, c, sp)
            r = measure()
            print(f"tune {shape} {role:8s} {N}x{K} t{t} {c} split {sp}: {r:.1f} t/s (best {best:.1f})", flush=True)
            if r > best * 1.002:
                best, choice = r, (c, sp)
        matvec.set_tuned(t, N, K, *choice)
        found[(t, N, K)] = choice
    if pair is not None:
        key = (*pair, 1)
        choice = matvec._default_cfg(Q4_K, True, pair[1], pair[2], 1)[0]
        for c in Q4_CANDS:
            matvec.PAIR_TUNED[key] = c
            r = measure()
            print(f"tune {shape} pair     {pair} {c}: {r:.1f} t/s (best {best:.1f})", flush=True)
            if r > best * 1.002:
                best, choice = r, c
        matvec.PAIR_TUNED[key] = choice
        found[("pair", *pair)] = choice
    print(f"tune {shape}: end {best:.1f} t/s; tiles {found}", flush=True)
    RESULTS.setdefault("tune", {})[shape] = dict(tps=best, tiles={str(k): v for k, v in found.items()})
    matvec.TUNED.clear()
    matvec.PAIR_TUNED.clear()
    set_pdl(prev)
    del w
    torch.cuda.empty_cache()


def pdl_unfused(shape):
    """The old question: PDL "end" on the unfused launches (session 3's 0.15-logit difference)."""
    from ggrun.kernels._common import pdl_mode, set_pdl

    prev = pdl_mode()
    cfg, w = _model(shape)
    lg = {}
    for mode in ("off", "end", "end"):
        set_pdl(mode)
        for graph in (False, True):
            dec = _decoder(cfg, w, fuse=False, graph=graph, n_ctx=1024)
            lg.setdefault((mode, graph), []).append(_greedy(dec))
            del dec
    set_pdl(prev)
    ref = lg[("off", False)][0]
    for (mode, graph), seqs in lg.items():
        for s in seqs:
            d = (s - ref).abs()
            first = int((d.flatten(1).amax(1) > 0).nonzero()[0]) if d.max() > 0 else -1
            print(f"unfused {shape} pdl {mode} graph {graph}: max |diff| {d.max().item():.3g}, first differing step "
                  f"{first}", flush=True)


def bisect(shape):
    """Launch attribute per call site of GraphDecoder.step (its line number), all kernels with GDC = 2."""
    import ggrun.kernels._common as C
    from ggrun.kernels import attention, dequant, matvec, quantize_x

    state = {"select": lambda site: False, "sites": set()}

    def pdl_kw():
        f = sys._getframe(1)
        while f is not None and f.f_code.co_name != "step":
            f = f.f_back
        site = f.f_lineno if f is not None else -1
        state["sites"].add(site)
        return {"GDC": 2, "launch_pdl": True} if state["select"](site) else {"GDC": 2}

    mods = (attention, dequant, matvec, quantize_x)
    saved = [m.pdl_kw for m in mods]
    prev = C.pdl_mode()
    cfg, w = _model(shape)

    def run(select):
        state["select"] = select
        dec = _decoder(cfg, w, graph=False, n_ctx=1024)
        out = _greedy(dec)
        del dec
        return out

    C.set_pdl("off")
    ref = run(lambda s: False)                      # the shipped kernels, no PDL
    for m in mods:
        m.pdl_kw = pdl_kw
    try:
        res = {}

        def report(name, seq):
            d = (seq - ref).abs()
            first = int((d.flatten(1).amax(1) > 0).nonzero()[0]) if d.max() > 0 else -1
            res[name] = (d.max().item(), first)
            print(f"bisect {name:28s}: max |diff| {d.max().item():.3g}, first differing step {first}", flush=True)

        report("GDC=2, no attribute", run(lambda s: False))
        report("all", run(lambda s: True))
        report("all again", run(lambda s: True))
        sites = sorted(state["sites"])
        import inspect

        from ggrun.backends.cuda import GraphDecoder
        src, start = inspect.getsourcelines(GraphDecoder.step)
        for site in sites:
            line = src[site - start].strip()[:60] if 0 <= site - start < len(src) else "?"
            report(f"only {site}", run(lambda s, site=site: s == site))
            report(f"all but {site}", run(lambda s, site=site: s != site))
            print(f"        site {site}: {line}", flush=True)
        RESULTS["bisect"] = res
    finally:
        for m, k in zip(mods, saved):
            m.pdl_kw = k
        C.set_pdl(prev)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip", default="")
    ap.add_argument("--shapes", default="deepseek-coder-33b,deepseek-coder-6.7b")
    ap.add_argument("--out", default=None)
    ap.add_argument("--short", action="store_true", help="sweep: four combinations, no pair tiles")
    a = ap.parse_args()
    skip = set(a.skip.split(","))
    shapes = a.shapes.split(",")
    print(torch.cuda.get_device_name(), flush=True)
    if "sweep" not in skip:
        sweep(shapes, *((COMBOS_SHORT, []) if a.short else ()))
    if "tune" not in skip:
        for shape in shapes:
            tune(shape)
    if "pdl_unfused" not in skip:
        pdl_unfused("deepseek-coder-6.7b")
    if "bisect" not in skip:
        bisect("deepseek-coder-6.7b")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "fusion_ab.json"), "w") as f:
            json.dump(RESULTS, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
