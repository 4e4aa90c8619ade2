"""ggrun's command line: ``ggrun run | tokenize | bench | info`` with llama.cpp's flag names.

Bad input ends with one line on stderr that names the file or flag, and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .errors import GGRunError

ANSI_PROMPT = "\033[33m"     # yellow, as llama.cpp's prompt colour
ANSI_RESET = "\033[0m"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def _positive_or_minus_one(name: str):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {s!r}") from None
        if v < -1:
            raise argparse.ArgumentTypeError(f"{v} is out of range (≥ -1)")
        return v

    parse.__name__ = name
    return parse


def _non_negative(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} is out of range (≥ 0)")
    return v


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", default=None, help="GGUF file (default: the embedded SmolLM2-135M-Instruct Q4_1)")
    p.add_argument("-t", "--threads", type=_non_negative, default=None, help="CPU threads (default: all cores)")
    p.add_argument("-ngl", "--n-gpu-layers", "--gpu-layers", dest="n_gpu_layers", type=_positive_or_minus_one("ngl"),
                   default=0, help="layers to offload to the GPU (-1 or more than the model has: all)")
    p.add_argument("-mg", "--main-gpu", dest="main_gpu", type=_non_negative, default=0,
                   help="the GPU for -sm none (default 0)")
    p.add_argument("-ts", "--tensor-split", dest="tensor_split", type=_split_shares, default=None,
                   help="share of the offloaded layers per GPU, e.g. 3,1 (default: by free memory)")
    p.add_argument("-sm", "--split-mode", dest="split_mode", choices=["none", "layer", "row"], default="layer",
                   help="several GPUs: layer (cut the layers over them) or none (all on --main-gpu)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip the warm-up run after loading a model with GPU layers (kernel compiles, CUDA graphs)")
    add_cache_type_args(p)


def _cache_type(flag: str):
    def parse(s: str) -> str:
        from .errors import BadArgumentError
        from .kv_types import parse_cache_type

        try:
            return parse_cache_type(s, flag)
        except BadArgumentError as e:           # argparse names the flag itself
            msg = str(e)
            raise argparse.ArgumentTypeError(msg[len(flag) + 1:] if msg.startswith(flag + " ") else msg) from None

    parse.__name__ = "cache type"
    return parse


def add_cache_type_args(p: argparse.ArgumentParser) -> None:
    """llama.cpp's -ctk/--cache-type-k and -ctv/--cache-type-v (f16, q8_0, f32)."""
    p.add_argument("-ctk", "--cache-type-k", dest="cache_type_k", type=_cache_type("-ctk/--cache-type-k"),
                   default="f16", help="KV cache data type for K: f16 (default), q8_0, f32")
    p.add_argument("-ctv", "--cache-type-v", dest="cache_type_v", type=_cache_type("-ctv/--cache-type-v"),
                   default="f16", help="KV cache data type for V: f16 (default), q8_0, f32")


def _split_shares(s: str) -> list[float]:
    try:
        v = [float(x) for x in s.replace("/", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid split {s!r}: expected numbers like 3,1") from None
    if any(x < 0 for x in v) or sum(v) <= 0:
        raise argparse.ArgumentTypeError(f"invalid split {s!r}: shares must be ≥ 0 and not all 0")
    return v


def gpu_args(args) -> dict:
    """The load() arguments of -ngl, -mg, -ts, -sm, --no-warmup and of -ctk, -ctv (the KV cache types)."""
    return dict(n_gpu_layers=args.n_gpu_layers, main_gpu=args.main_gpu, tensor_split=args.tensor_split,
                split_mode=args.split_mode, warmup=getattr(args, "warmup", True), **cache_args(args))


def cache_args(args) -> dict:
    """The load() arguments of -ctk, -ctv."""
    return dict(cache_type_k=getattr(args, "cache_type_k", "f16"), cache_type_v=getattr(args, "cache_type_v", "f16"))


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temp", type=float, default=0.8, help="temperature (≤ 0: greedy)")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--repeat-penalty", "--repeat_penalty", dest="repeat_penalty", type=float, default=1.0)
    p.add_argument("--repeat-last-n", "--repeat_last_n", dest="repeat_last_n", type=int, default=64)
    p.add_argument("--presence-penalty", type=float, default=0.0)
    p.add_argument("--frequency-penalty", type=float, default=0.0)
    p.add_argument("-s", "--seed", type=int, default=-1, help="random seed (-1: random)")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="ggrun", description="Run, quantize and serve GGUF models, token for token like llama.cpp.")
    ap.add_argument("--no-cpu-kernels", action="store_true",
                    help="never build or load the C CPU kernels; use the torch fallback (before COMMAND)")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="generate text (llama.cpp main's flags)")
    _add_model_args(run)
    _add_sampling_args(run)
    run.add_argument("-p", "--prompt", default=None)
    run.add_argument("-f", "--file", default=None, help="read the prompt from a file")
    run.add_argument("-n", "--n-predict", type=_positive_or_minus_one("n"), default=-1,
                     help="tokens to generate (-1: until end of generation or context)")
    run.add_argument("-c", "--ctx-size", type=_non_negative, default=4096, help="context size (0: the model's)")
    run.add_argument("-b", "--batch-size", type=int, default=512)
    run.add_argument("--color", action="store_true", help="colour the prompt apart from the generated text")
    run.add_argument("--no-display-prompt", action="store_true", help="print only the generated text")
    run.add_argument("-e", "--escape", action="store_true", default=True, help="process escapes (\\n, \\t, …) in the prompt (default)")
    run.add_argument("--no-escape", dest="escape", action="store_false")
    run.add_argument("-r", "--reverse-prompt", action="append", default=[], help="stop at this string (repeatable)")
    run.add_argument("--ignore-eos", action="store_true")
    run.add_argument("--verbose-prompt", action="store_true", help="print the prompt's tokens before generating")
    run.add_argument("-cnv", "--conversation", action="store_true", help="chat: apply the model's chat template")
    run.add_argument("-st", "--single-turn", action="store_true", help="with -cnv: answer the prompt once and exit")
    run.add_argument("-sys", "--system-prompt", default=None, help="system message for the chat template")
    from .commands.chat import add_chat_args
    from .prompt_cache import add_prompt_cache_args

    add_chat_args(run, run_flags=True)        # -i, -ins, --in-prefix/--in-suffix, --chat-template[-file], --keep
    add_prompt_cache_args(run)                # --prompt-cache FILE, --prompt-cache-all, --prompt-cache-ro

    tok = sub.add_parser("tokenize", help="print the tokens of a text (like llama-tokenize)")
    tok.add_argument("-m", "--model", default=None)
    tok.add_argument("-p", "--prompt", default=None)
    tok.add_argument("-f", "--file", default=None)
    tok.add_argument("--ids", action="store_true", help="print only the ids, as a Python list")
    tok.add_argument("--no-bos", action="store_true")
    tok.add_argument("--no-parse-special", action="store_true")
    tok.add_argument("--show-count", action="store_true")

    bench = sub.add_parser("bench", help="measure prompt and generation speed (like llama-bench)")
    _add_model_args(bench)
    bench.add_argument("-p", "--n-prompt", type=_non_negative, action="append", default=None)
    bench.add_argument("-n", "--n-gen", type=_non_negative, action="append", default=None)
    bench.add_argument("-r", "--repetitions", type=_non_negative, default=5)
    bench.add_argument("-b", "--batch-size", type=int, default=2048,
                       help="prompt tokens evaluated per forward step (default 2048, llama-bench's -b)")
    bench.add_argument("-o", "--output", choices=["md", "json"], default="md")
    bench.add_argument("--synthetic", metavar="SHAPE:MIX", default=None,
                       help="random valid weights of a model shape on the GPU, e.g. deepseek-coder-33b:Q4_K_M")

    info = sub.add_parser("info", help="describe a GGUF file")
    info.add_argument("model", nargs="?", default=None)
    info.add_argument("-c", "--ctx-size", type=_non_negative, default=4096, help="context for the memory estimate (0: the model's)")
    info.add_argument("-ngl", "--n-gpu-layers", "--gpu-layers", dest="n_gpu_layers", type=_positive_or_minus_one("ngl"), default=0)
    info.add_argument("--quant-types", action="store_true", help="explain the quantization types and mixes")
    add_cache_type_args(info)                 # -ctk, -ctv: the KV cache in the memory estimate

    # commands that live in their own modules: each has register(subparsers), which adds
    # its parser and sets `func` (args -> exit code) as the parser's default
    import importlib
    import importlib.util

    for mod in COMMAND_MODULES:
        if importlib.util.find_spec(mod) is not None:
            importlib.import_module(mod).register(sub)
    return ap


# Modules that add subcommands (chat, render, infill, download, quantize, …).
COMMAND_MODULES = [
    "ggrun.commands.chat",
    "ggrun.commands.hub",
    "ggrun.commands.quantize",
    "ggrun.commands.perplexity",
]


def unescape(s: str) -> str:
    """llama.cpp's escape processing: \\n \\r \\t \\' \\" \\\\ \\xNN."""
    out, i = [], 0
    table = {"n": "\n", "r": "\r", "t": "\t", "'": "'", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n in table:
                out.append(table[n]); i += 2; continue
            hx = s[i + 2:i + 4]
            if n == "x" and len(hx) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in hx):
                out.append(chr(int(hx, 16))); i += 4; continue
        out.append(c); i += 1
    return "".join(out)


def _read_prompt(args) -> str:
    if args.file:
        try:
            with open(args.file, encoding="utf-8") as fh:
                return fh.read()
        except OSError as e:
            raise GGRunError(f"-f {args.file}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise GGRunError(f"-f {args.file}: not UTF-8 text") from None
    return args.prompt or ""


def cmd_run(args) -> int:
    from .loader import load
    from .sampling import SamplingParams

    if args.interactive or args.interactive_first or args.instruct or args.conversation:
        from .commands.chat import run_from_cli

        return run_from_cli(args)
    prompt = _read_prompt(args)
    if args.escape and not args.file:
        prompt = unescape(prompt)
    params = SamplingParams(
        temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
        repeat_penalty=args.repeat_penalty, repeat_last_n=args.repeat_last_n,
        presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty, seed=args.seed)
    eng = load(args.model, n_ctx=args.ctx_size, n_threads=args.threads, n_batch=args.batch_size, **gpu_args(args))
    tok = eng.tokenizer
    text = prompt
    ids = tok.encode(text, add_bos=None, parse_special=True)
    if not ids:
        raise GGRunError("the prompt is empty: pass -p TEXT or -f FILE")
    if args.verbose_prompt:
        print(f"prompt: {text!r}\nnumber of tokens in prompt = {len(ids)}", file=sys.stderr)
        for i in ids:
            print(f"{i:6d} -> '{tok.token_to_piece(i).decode('utf-8', 'replace')}'", file=sys.stderr)
    pc, generated = None, []
    if args.prompt_cache:
        from .prompt_cache import PromptCacheRun

        pc = PromptCacheRun(eng, args.prompt_cache, ids, save_all=args.prompt_cache_all,
                            read_only=args.prompt_cache_ro)
        pc.load()
    out = sys.stdout
    if not args.no_display_prompt:
        out.write((ANSI_PROMPT + text + ANSI_RESET) if args.color else text)
        out.flush()
    timings = None
    if args.keep is None:
        events = eng.generate(ids, params, max_tokens=args.n_predict, stop=args.reverse_prompt,
                              ignore_eos=args.ignore_eos)
    else:                                     # llama.cpp's context shift when the context fills
        from .prompt_cache import generate_with_shift

        events = generate_with_shift(eng, ids, params, max_tokens=args.n_predict, stop=args.reverse_prompt,
                                     n_keep=args.keep, ignore_eos=args.ignore_eos)
    try:
        for ev in events:
            if ev.token is not None:
                generated.append(ev.token)
            if ev.text:
                out.write(ev.text)
                out.flush()
            if ev.finish_reason:
                timings = ev.timings
                if ev.finish_reason == "length" and args.n_predict < 0:
                    print(f"\nggrun: the context of {eng.n_ctx} tokens is full (-c; --keep N shifts it)",
                          file=sys.stderr)
    finally:
        if pc is not None:
            pc.save(generated)
    out.write("\n")
    out.flush()
    if timings is not None:
        print("\n" + timings.report(), file=sys.stderr)
    return 0


def cmd_tokenize(args) -> int:
    from .tokenizer import Tokenizer

    from .hub import open_gguf, resolve_model

    tok = Tokenizer.from_gguf(open_gguf(resolve_model(args.model)))
    text = _read_prompt(args)
    ids = tok.encode(text, add_bos=False if args.no_bos else None, parse_special=not args.no_parse_special)
    if args.ids:
        print("[" + ", ".join(str(i) for i in ids) + "]")
    else:
        for i in ids:
            print(f"{i:6d} -> '{tok.token_to_piece(i).decode('utf-8', 'replace')}'")
    if args.show_count:
        print(f"Total number of tokens: {len(ids)}")
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench

    return run_bench(args)


def cmd_info(args) -> int:
    from .info import main as info_main

    return info_main(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ggrun`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.no_cpu_kernels:
        from . import cpu

        cpu.configure(enabled=False)
    builtin = {"run": cmd_run, "tokenize": cmd_tokenize, "bench": cmd_bench, "info": cmd_info}
    try:
        func = builtin.get(args.command) or args.func
        return func(args)
    except GGRunError as e:
        sys.stdout.flush()
        print(f"ggrun {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nggrun: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
