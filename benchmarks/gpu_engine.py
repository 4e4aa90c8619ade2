#!/usr/bin/env python3
"""The user's path on a GPU: a GGUF file on disk → ``ggrun.load(-ngl …)`` → Engine.

Run on the device after benchmarks/gpu.py (which times the kernels and the synthetic
in-memory models):

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_engine.py [--like deepseek-coder-6.7b] [--type Q4_K_M] [--out DIR]

1. ``ggrun synth`` writes a random-weight file of the shape (real DeepSeek Coder vocab when
   tests/data/vocab has it).
2. ``ggrun bench -m FILE -ngl 99 -p 512,2048 -n 128``: the CLI's llama-bench table, through the
   loader, the pipelined prefill and the engine's CUDA-graph decode steps (GraphSteps).
3. In process: GPU memory after load against the file's bytes (goal: ≤ file + 2%) and after a
   2048-token prefill against weights + KV (goal: ≤ + 1.5 GB); greedy tokens of the graph steps
   against the eager forward; llama.cpp-style timings of a generation.
4. With several GPUs: the same generation split over them (-ts 1,1), tokens compared.
Writes gpu_engine.json under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

RES: dict = {"errors": []}


def log(*a):
    print(*a, flush=True)


def step(name):
    def wrap(fn):
        def run(*a, **kw):
            log(f"\n=== {name} ===")
            t0 = time.time()
            try:
                return fn(*a, **kw)
            except Exception as e:  # one failure must not lose the other figures
                traceback.print_exc()
                RES["errors"].append(f"{name}: {e!r}"[:400])
            finally:
                log(f"--- {name}: {time.time() - t0:.1f} s")
        return run
    return wrap


@step("synth")
def make_file(like: str, ftype: str, path: Path) -> None:
    from ggrun.synth import synth

    t0 = time.perf_counter()
    r = synth(like, str(path), ftype)
    dt = time.perf_counter() - t0
    RES["file"] = {"path": str(path), "bytes": r.file_size, "synth_s": dt}
    log(f"{path.name}: {r.file_size / 1e9:.2f} GB in {dt:.1f} s")


@step("ggrun bench (CLI)")
def cli_bench(path: Path) -> None:
    cmd = [sys.executable, "-m", "ggrun", "bench", "-m", str(path), "-ngl", "99", "-p", "512", "-p", "2048",
           "-n", "128", "-r", "3", "-o", "json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    rows = json.loads(p.stdout)
    RES["cli_bench"] = rows
    for r in rows:
        log(f"{r['model']} {r['backend']} ngl {r['n_gpu_layers']} {r['test']}: {r['avg_ts']:.1f} ± {r['stdev_ts']:.1f} t/s")


def _greedy(eng, prompt: list[int], n: int) -> tuple[list[int], object]:
    from ggrun.sampling import SamplingParams

    toks, tm = [], None
    for ev in eng.generate(prompt, SamplingParams(temperature=0.0), max_tokens=n, ignore_eos=True):
        if ev.token is not None:
            toks.append(ev.token)
        else:
            tm = ev.timings
    return toks, tm


@step("engine in process")
def engine(path: Path) -> None:
    from ggrun.loader import load, warm_up

    fbytes = path.stat().st_size
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    eng = load(str(path), n_ctx=4096, n_gpu_layers=99, warmup=False)   # weights + KV alone, then the warm-up
    torch.cuda.synchronize()
    w_gpu = torch.cuda.memory_allocated() - base
    kv = eng.cache.n_bytes
    warm_up(eng)                # (as load does by default: the generation below is timed in its steady state)
    log(f"after load: {w_gpu / 1e9:.3f} GB allocated (KV {kv / 1e9:.3f} GB) for a {fbytes / 1e9:.3f} GB file: "
        f"weights ≈ {(w_gpu - kv) / fbytes:.2%} of the file")
    torch.cuda.reset_peak_memory_stats()
    prompt = list(range(100, 2148))
    toks, tm = _greedy(eng, prompt, 64)
    peak = torch.cuda.max_memory_allocated() - base
    log(f"2048-token prompt + 64 tokens: peak {peak / 1e9:.3f} GB = weights+KV + {(peak - w_gpu) / 1e9:.3f} GB")
    log(tm.report())
    RES["engine"] = {"alloc_after_load_gb": w_gpu / 1e9, "kv_gb": kv / 1e9, "file_gb": fbytes / 1e9,
                     "weights_over_file": (w_gpu - kv) / fbytes, "peak_gb": peak / 1e9,
                     "peak_over_weights_kv_gb": (peak - w_gpu) / 1e9, "prompt_tps": tm.prompt_tps,
                     "gen_tps": tm.gen_tps, "timings": tm.report()}
    # graph steps vs the eager forward, same prompt
    fast = eng.model.fast_decode
    eng.reset()
    eng.model.fast_decode = None
    eager, tm_e = _greedy(eng, prompt[:64], 32)
    eng.model.fast_decode = fast
    eng.reset()
    graph, tm_g = _greedy(eng, prompt[:64], 32)
    same = sum(a == b for a, b in zip(eager, graph))
    first_diff = next((i for i, (a, b) in enumerate(zip(eager, graph)) if a != b), None)
    log(f"greedy 32 tokens: graph steps vs eager forward: {same}/32 equal (first difference at {first_diff}); "
        f"eager {tm_e.gen_tps:.1f} t/s, graph {tm_g.gen_tps:.1f} t/s")
    RES["engine"].update(graph_vs_eager_equal=same, first_diff=first_diff, eager_tps=tm_e.gen_tps,
                         graph_tps=tm_g.gen_tps, tokens=graph)
    del eng
    torch.cuda.empty_cache()


@step("two GPUs")
def two_gpus(path: Path) -> None:
    from ggrun.loader import load

    n = torch.cuda.device_count()
    if n < 2:
        log(f"{n} GPU: skipped")
        return
    eng = load(str(path), n_ctx=4096, n_gpu_layers=99, tensor_split=[1, 1])
    devs = sorted({str(d) for d in eng.model.layer_devices})
    for i in range(n):
        log(f"cuda:{i}: {torch.cuda.memory_allocated(i) / 1e9:.2f} GB allocated")
    _greedy(eng, list(range(100, 164)), 4)                  # warm-up: Triton compiles, cuBLAS plans
    eng.reset()
    toks, tm = _greedy(eng, list(range(100, 164)), 32)
    ref = RES.get("engine", {}).get("tokens", [])
    same = sum(a == b for a, b in zip(ref, toks))
    log(f"-ts 1,1 over {devs}: {tm.prompt_tps:.0f} t/s prompt, {tm.gen_tps:.1f} t/s generation; "
        f"{same}/{len(ref)} tokens as on one GPU")
    RES["two_gpus"] = {"devices": devs, "prompt_tps": tm.prompt_tps, "gen_tps": tm.gen_tps, "same": same}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--like", default="deepseek-coder-6.7b")
    ap.add_argument("--type", default="Q4_K_M")
    ap.add_argument("--work", default="/tmp/ggrun-engine")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"{a.like}-{a.type}.gguf"
    make_file(a.like, a.type, path)
    if path.exists():
        cli_bench(path)
        engine(path)
        two_gpus(path)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "gpu_engine.json").write_text(json.dumps(RES, indent=1, default=str))
    if RES["errors"]:
        log("ERRORS:\n  " + "\n  ".join(RES["errors"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
