"""``ggrun bench --synthetic SHAPE:MIX``: llama-bench's pp/tg tests on random but valid GGUF
blocks built in GPU memory with a named model's exact shapes and quant mix (no file needed).

    ggrun bench --synthetic deepseek-coder-33b:Q4_K_M -p 512 -n 128 -ngl 99 -r 3

Prints llama-bench's table (model, size, params, backend, ngl, test, t/s ± sd) plus the
achieved weight bandwidth of the generation tests (weight bytes × tokens/s) and its share of
the device-to-device copy bandwidth measured at the start of the run (batch-1 decoding reads
every weight once per token, so that share is how close it runs to the limit).

tg with every layer on the GPU runs ``GraphDecoder`` (one CUDA graph per token, greedy argmax
on the GPU); pp, and tg with -ngl below the layer count (llama.cpp's partial offload: the last
N layers on the GPU, the output layer too when N > n_layer), run ``LlamaModel.forward``.

Shapes: ``ggrun.kernels.testing.SHAPES`` (deepseek-coder-6.7b, deepseek-coder-33b); mixes
(``testing.MIXES``): llama-quantize's file types with the per-tensor types it picks for the
shape (Q2_K, Q3_K_S/M/L, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K_S/M, Q5_K_S/M, Q6_K: e.g. Q4_0
has a Q6_K output, Q3_K_M Q4_K/Q5_K attn_v, attn_output and ffn_down), and Q4_K / Q5_K (every
matrix of that type, a Q6_K output).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch

from .bench import device_sync as _sync
from .errors import BadArgumentError


def parse_spec(spec: str) -> tuple[str, str]:
    from .kernels.testing import MIXES as mixes
    from .kernels.testing import SHAPES

    shape, _, mix = spec.partition(":")
    mix = mix or "Q4_K_M"
    if shape not in SHAPES or mix not in mixes:
        raise BadArgumentError(f"--synthetic {spec!r}: expected SHAPE:MIX with SHAPE in {sorted(SHAPES)} "
                               f"and MIX in {list(mixes)}")
    return shape, mix


def copy_bandwidth(device="cuda", n: int = 1 << 30, reps: int = 10) -> float:
    """Device-to-device copy, bytes read + written, median of ``reps``: TB/s."""
    a = torch.empty(n, dtype=torch.uint8, device=device).random_()
    b = torch.empty_like(a)
    b.copy_(a)
    ts = []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        b.copy_(a)
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1))
    del a, b
    return 2 * n / statistics.median(ts) / 1e9


TINY = dict(n_layer=4, n_embd=256, n_ff=256, n_head=4, n_head_kv=2, n_vocab=64)   # build()'s test shape


def n_params(cfg) -> int:
    D, Fd, hd = cfg.n_embd, cfg.n_ff, cfg.head_dim
    per_layer = D * hd * (2 * cfg.n_head + 2 * cfg.n_head_kv) + 3 * D * Fd + 2 * D
    return cfg.n_layer * per_layer + 2 * cfg.n_vocab * D + D


def build(shape: str, mix: str, n_gpu_layers: int = 99, device="cuda", seed: int = 0, n_threads: int | None = None):
    """(cfg, weights, model, n_weight_bytes): random valid blocks, GPU layers re-laid out on
    ``device`` and the CPU layers' raw blocks (and norms) in host memory."""
    from .backends.cuda import CUDABackend
    from .kernels import layout
    from .kernels.testing import SHAPES, synthetic_config, synthetic_llama
    from .model import LlamaModel

    cfg = synthetic_config(shape, **({} if shape in SHAPES else TINY))
    ngl = cfg.n_layer + 1 if n_gpu_layers < 0 else n_gpu_layers
    gpu = CUDABackend(device)
    if ngl > cfg.n_layer:                                  # all on the GPU (the embedding too)
        from .backends.cuda_decode import use_graphs

        w = synthetic_llama(cfg, mix, device=device, seed=seed)
        lm = LlamaModel(cfg, w, gpu, max_pos=4096)
        use_graphs(lm, w)                                 # as load() sets a one-GPU model up
        return cfg, w, lm, w.n_bytes
    from . import model as model_mod
    from .backends.cpu import CPUBackend

    if not hasattr(model_mod, "offload_plan"):
        raise BadArgumentError(f"-ngl {n_gpu_layers}: partial offload needs model.py's per-layer backends "
                               "(.gpu_patches/offload.diff)")
    w = synthetic_llama(cfg, mix, device=device, seed=seed, pack=False)
    cpu = CPUBackend(n_threads)
    layer_be, out_be = model_mod.offload_plan(cfg.n_layer, ngl, cpu, gpu)

    def place(qw, on_gpu: bool):
        if on_gpu:
            qw.cache = layout.pack(qw.data, qw.ggml_type)
            qw.data = None
        else:
            qw.data = qw.data.cpu()

    for L, b in zip(w.layers, layer_be):
        for qw in (L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_up, L.w_down):
            place(qw, b is gpu)
        if b is not gpu:
            L.attn_norm, L.ffn_norm = L.attn_norm.cpu(), L.ffn_norm.cpu()
    place(w.token_embd, False)                             # the input layer stays on the CPU, as llama.cpp
    place(w.output, out_be is gpu)
    if out_be is not gpu:
        w.output_norm = w.output_norm.cpu()
    torch.cuda.empty_cache()
    lm = LlamaModel(cfg, w, cpu, max_pos=4096, layer_backends=layer_be, output_backend=out_be)
    return cfg, w, lm, w.n_bytes


def _gpu_weight_bytes(w) -> int:
    """Bytes of the matrices held on the GPU (packed blocks; stacked parts counted once)."""
    from .kernels import layout

    seen, total = set(), 0
    mats = [w.token_embd, w.output] + [m for L in w.layers for m in (L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_up, L.w_down)]
    for m in mats:
        p = m.cache
        if isinstance(p, layout.Packed):
            for t in (p.w, p.d):
                if t is not None and t.is_cuda:
                    key = (t.untyped_storage().data_ptr(), t.storage_offset())
                    if key not in seen:
                        seen.add(key)
                        total += t.numel() * t.element_size()
    return total


_CACHES: dict = {}


def _cache(lm, cfg, n: int):
    """One KV cache per (model, size), reused across repetitions as an engine's is (a captured
    prefill graph is bound to its cache)."""
    key = (id(lm), n)
    hit = _CACHES.get(key)
    if hit is None or hit[0] is not lm:
        _CACHES.clear()
        hit = _CACHES[key] = (lm, _new_cache(lm, cfg, n))
    return hit[1]


def _new_cache(lm, cfg, n: int):
    from .model import KVCache

    if getattr(lm, "layer_backends", None) is not None:           # per-layer devices (offload patch)
        return KVCache(cfg, n, device=lm.device, layer_devices=lm.layer_devices)
    return KVCache(cfg, n, device=lm.device)


def time_pp(lm, cfg, n: int) -> float:
    from .model import SeqChunk

    cache = _cache(lm, cfg, n)
    toks = torch.randint(0, cfg.n_vocab, (n,))
    _sync()
    t0 = time.perf_counter()
    lm.forward(toks, [SeqChunk(0, 0, n)], cache)
    _sync()
    return time.perf_counter() - t0


def time_tg_eager(lm, cfg, n: int) -> float:
    from .model import SeqChunk

    cache = _cache(lm, cfg, n + 1)
    tok = 1
    _sync()
    t0 = time.perf_counter()
    for p in range(n):
        tok = int(lm.forward(torch.tensor([tok]), [SeqChunk(0, p, 1)], cache).argmax())
    _sync()
    return time.perf_counter() - t0


def bench_synthetic(spec: str, n_prompt=(512,), n_gen=(128,), n_gpu_layers: int = 99, repetitions: int = 3,
                    output: str = "md", n_threads: int | None = None, file=None, device="cuda") -> list[dict]:
    """Run the tests and print the table (or JSON) to ``file`` (stdout); returns the rows."""
    from .backends.cuda import GraphDecoder

    file = file or sys.stdout
    if not torch.cuda.is_available():
        raise BadArgumentError("--synthetic builds its weights in GPU memory: no CUDA device is available")
    shape, mix = parse_spec(spec)
    bw = copy_bandwidth(device)
    t0 = time.perf_counter()
    cfg, w, lm, nbytes = build(shape, mix, n_gpu_layers, device=device, n_threads=n_threads)
    all_gpu = (cfg.n_layer + 1 if n_gpu_layers < 0 else n_gpu_layers) > cfg.n_layer
    build_s = time.perf_counter() - t0
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    backend = "CUDA" if all_gpu else "CUDA+CPU"
    rows = []
    dec = None
    tests = [("pp", n) for n in n_prompt if n > 0] + [("tg", n) for n in n_gen if n > 0]
    for kind, n in tests:
        if kind == "pp":
            time_pp(lm, cfg, n)                            # warm-up: kernels, cuBLAS, the scratch buffer
            secs = [time_pp(lm, cfg, n) for _ in range(max(1, repetitions))]
        elif all_gpu:
            if dec is None or dec.n_ctx < n + 1:
                dec = GraphDecoder(cfg, w, n_ctx=max(n + 1, 256), device=device)
                dec.capture()
            secs = []
            for r in range(max(1, repetitions) + 1):
                dec.reset(1, 0)
                _sync()
                t1 = time.perf_counter()
                dec.decode(n)
                _sync()
                if r:                                       # the first run warms up
                    secs.append(time.perf_counter() - t1)
        else:
            time_tg_eager(lm, cfg, 2)
            secs = [time_tg_eager(lm, cfg, n) for _ in range(max(1, repetitions))]
        ts = [n / s for s in secs]
        avg = statistics.mean(ts)
        rows.append(dict(model=f"{shape} {mix} (synthetic)", model_size=nbytes, model_n_params=n_params(cfg),
                         backend=backend, n_gpu_layers=n_gpu_layers, test=f"{kind}{n}", avg_ts=avg,
                         stdev_ts=statistics.stdev(ts) if len(ts) > 1 else 0.0, samples_ts=ts,
                         gbs=avg * nbytes / 1e9 if kind == "tg" else None, copy_tbs=bw, build_s=build_s,
                         peak_alloc_gb=torch.cuda.max_memory_allocated(device) / 1e9,
                         peak_reserved_gb=torch.cuda.max_memory_reserved(device) / 1e9,
                         weights_gpu_gb=_gpu_weight_bytes(w) / 1e9))
    if output == "json":
        json.dump(rows, file, indent=2)
        print(file=file)
    else:
        if rows:
            r = rows[-1]
            print(f"GPU memory: weights {r['weights_gpu_gb']:.2f} GB (blocks {nbytes / 1e9:.2f} GB), peak allocated "
                  f"{r['peak_alloc_gb']:.2f} GB, peak reserved {r['peak_reserved_gb']:.2f} GB", file=file)
        print(f"copy bandwidth {bw:.3f} TB/s (device-to-device, read + write); weights built in {build_s:.1f} s",
              file=file)
        print("| model | size | params | backend | ngl | test | t/s | GB/s | % of copy BW |", file=file)
        print("| --- | ---: | ---: | --- | --: | ---: | ---: | ---: | ---: |", file=file)
        for r in rows:
            gb = f"{r['gbs']:.0f}" if r["gbs"] else "-"
            pct = f"{r['gbs'] / (bw * 1e3):.0%}" if r["gbs"] else "-"
            print(f"| {r['model']} | {nbytes / 2**30:.2f} GiB | {r['model_n_params'] / 1e9:.2f} B | {backend} | "
                  f"{n_gpu_layers} | {r['test']} | {r['avg_ts']:.2f} ± {r['stdev_ts']:.2f} | {gb} | {pct} |", file=file)
    _CACHES.clear()
    del dec, lm, w
    torch.cuda.empty_cache()
    return rows


def run_synthetic_bench(args) -> int:
    """``ggrun bench --synthetic SPEC`` with bench's parsed flags (-p, -n, -ngl, -r, -o, -t)."""
    ngl = args.n_gpu_layers if args.n_gpu_layers else 99     # the weights live on the GPU: default all layers
    bench_synthetic(args.synthetic, n_prompt=args.n_prompt if args.n_prompt is not None else [512],
                    n_gen=args.n_gen if args.n_gen is not None else [128], n_gpu_layers=ngl,
                    repetitions=args.repetitions, output=args.output, n_threads=args.threads)
    return 0
