"""``ggrun bench``: llama-bench's pp/tg tests on a model, as a Markdown table or JSON."""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch

from .sampling import greedy_token

FTYPE_NAMES = {0: "all F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
               11: "Q3_K - Small", 12: "Q3_K - Medium", 13: "Q3_K - Large", 14: "Q4_K - Small",
               15: "Q4_K - Medium", 16: "Q5_K - Small", 17: "Q5_K - Medium", 18: "Q6_K", 32: "BF16"}


def describe(eng) -> dict:
    """model / size / params as llama-bench names them."""
    f = eng.gguf
    n_params = sum(t.n_elements for t in f.tensors.values())
    size = f.tensor_bytes
    label = f.metadata.get("general.size_label") or (f"{n_params / 1e9:.1f}B" if n_params > 1e9 else f"{n_params / 1e6:.0f}M")
    ftype = FTYPE_NAMES.get(f.metadata.get("general.file_type", -1), "?")
    return {"model": f"{f.architecture} {label} {ftype}", "size": size, "params": n_params,
            "size_str": f"{size / 2**30:.2f} GiB" if size > 2**30 else f"{size / 2**20:.2f} MiB",
            "params_str": f"{n_params / 1e9:.2f} B" if n_params > 1e9 else f"{n_params / 1e6:.2f} M"}


def time_prompt(eng, n: int) -> float:
    """Seconds to evaluate n tokens from an empty cache, in batches of n_batch."""
    g = torch.Generator().manual_seed(n)
    toks = torch.randint(0, eng.cfg.n_vocab, (n,), generator=g).tolist()
    eng.reset()
    device_sync()
    t0 = time.perf_counter()
    eng.eval(toks)
    device_sync()
    return time.perf_counter() - t0


def device_sync() -> None:
    """Wait for the GPU (when there is one) before reading a clock."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def backend_name(model) -> str:
    """'CPU', 'CUDA' or 'CUDA+CPU' (-ngl below the layer count), as llama-bench's column."""
    bes = [model.be, *(model.layer_backends or []), model.output_backend]
    names = {b.name for b in bes if b is not None}
    return "+".join(sorted(names, key=lambda n: n != "CUDA"))


def time_gen(eng, n: int) -> float:
    """Seconds to evaluate n tokens one at a time from an empty cache."""
    eng.reset()
    tok = 1
    t0 = time.perf_counter()
    for _ in range(n):
        logits = eng.eval([tok])
        tok = greedy_token(logits)
    return time.perf_counter() - t0


def run_bench(args) -> int:
    from .loader import load

    if getattr(args, "synthetic", None):
        from .bench_synthetic import run_synthetic_bench

        return run_synthetic_bench(args)

    pps = args.n_prompt if args.n_prompt is not None else [512]
    tgs = args.n_gen if args.n_gen is not None else [128]
    n_ctx = max([p for p in pps] + [t for t in tgs] + [16]) + 16
    from .cli import gpu_args

    eng = load(args.model, n_ctx=n_ctx, n_threads=args.threads, n_batch=args.batch_size, **gpu_args(args))
    d = describe(eng)
    backend = backend_name(eng.model)
    cpu_be = [b for b in (eng.model.be, *(eng.model.layer_backends or [])) if b is not None and b.name == "CPU"]
    threads = cpu_be[0].n_threads if cpu_be else 0
    results = []
    tests = [("pp", p) for p in pps if p > 0] + [("tg", n) for n in tgs if n > 0]
    for kind, n in tests:
        fn = time_prompt if kind == "pp" else time_gen
        fn(eng, n if kind == "pp" else min(n, 16))   # warm-up (a full prompt: kernels, GEMM plans)
        secs = [fn(eng, n) for _ in range(max(1, args.repetitions))]
        ts = [n / s for s in secs]
        results.append({
            "model": d["model"], "model_size": d["size"], "model_n_params": d["params"], "backend": backend,
            "n_threads": threads, "n_gpu_layers": args.n_gpu_layers, "test": f"{kind}{n}",
            "n_prompt": n if kind == "pp" else 0, "n_gen": n if kind == "tg" else 0,
            "type_k": eng.cache.type_k, "type_v": eng.cache.type_v,
            "avg_ts": statistics.mean(ts), "stdev_ts": statistics.stdev(ts) if len(ts) > 1 else 0.0,
            "samples_ts": ts,
        })
    if args.output == "json":
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        # llama-bench's columns: ngl for a GPU backend, threads where the CPU runs layers, the KV types when set
        cols = (["ngl"] if backend != "CPU" else []) + (["threads"] if cpu_be else [])
        cols += ["type_k", "type_v"] if (eng.cache.type_k, eng.cache.type_v) != ("f16", "f16") else []
        key = {"ngl": "n_gpu_layers", "threads": "n_threads", "type_k": "type_k", "type_v": "type_v"}
        print("| model | size | params | backend | " + "".join(f"{c} | " for c in cols) + "test | t/s |")
        print("| --- | ---: | ---: | --- | " + "---: | " * len(cols) + "---: | ---: |")
        for r in results:
            print(f"| {r['model']} | {d['size_str']} | {d['params_str']} | {r['backend']} | "
                  + "".join(f"{r[key[c]]} | " for c in cols) + f"{r['test']} | {r['avg_ts']:.2f} ± {r['stdev_ts']:.2f} |")
    return 0
