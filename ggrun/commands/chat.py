"""``ggrun chat``, ``ggrun render`` and ``ggrun infill``, and the chat entry of ``ggrun run -i/-ins/-cnv``.

    ggrun chat   -m FILE [--system TEXT] [--chat-template NAME | --chat-template-file F] [--keep N]
    ggrun render -m FILE | --chat-template NAME  --messages FILE.json [--system TEXT] [--ids | --json]
    ggrun infill -m FILE --in-prefix TEXT --in-suffix TEXT [--prefix-file F] [--suffix-file F]
"""

from __future__ import annotations

import json
import sys

from ..errors import BadArgumentError, GGRunError


def register(sub) -> None:
    from ..cli import _add_model_args, _add_sampling_args, _non_negative, _positive_or_minus_one

    chat = sub.add_parser("chat", help="chat with a model in the terminal (multi-turn, streaming)")
    _add_model_args(chat)
    _add_sampling_args(chat)
    chat.add_argument("-sys", "--system", "--system-prompt", dest="system_prompt", default=None,
                      help="the system message (default: the template's own, if any)")
    chat.add_argument("-p", "--prompt", default=None, help="a first message to send")
    chat.add_argument("-f", "--file", default=None, help="read the first message from a file")
    chat.add_argument("-n", "--n-predict", type=_positive_or_minus_one("n"), default=-1,
                      help="most tokens per answer (-1: until the end of the turn or of the context)")
    chat.add_argument("-c", "--ctx-size", type=_non_negative, default=4096, help="context size (0: the model's)")
    chat.add_argument("-b", "--batch-size", type=int, default=512)
    chat.add_argument("-r", "--reverse-prompt", action="append", default=[], help="also stop at this string")
    chat.add_argument("--color", action="store_true", help="colour the prompt, your input and the answer apart")
    chat.add_argument("-st", "--single-turn", action="store_true", help="answer -p once and exit")
    add_chat_args(chat)
    chat.set_defaults(func=cmd_chat)

    render = sub.add_parser("render", help="print the exact prompt a chat template makes of a conversation")
    render.add_argument("-m", "--model", default=None,
                        help="GGUF file whose template and vocab to use (a vocab-only file will do)")
    render.add_argument("--chat-template", default=None, metavar="NAME")
    render.add_argument("--chat-template-file", default=None, metavar="FILE")
    render.add_argument("--messages", required=True, metavar="FILE.json",
                        help="an OpenAI-style JSON list of {role, content} ('-': stdin)")
    render.add_argument("-sys", "--system", dest="system", default=None, help="use this system message")
    render.add_argument("--no-generation-prompt", dest="generation_prompt", action="store_false",
                        help="leave out the assistant's generation prompt")
    out = render.add_mutually_exclusive_group()
    out.add_argument("--ids", action="store_true", help="also print the tokens, as llama.cpp's --verbose-prompt")
    out.add_argument("--json", action="store_true", help="print {\"prompt\": …, \"ids\": […]} as JSON")
    render.set_defaults(func=cmd_render)

    inf = sub.add_parser("infill", help="fill in the middle between a prefix and a suffix (code models)")
    _add_model_args(inf)
    _add_sampling_args(inf)
    inf.add_argument("--in-prefix", default=None, help="the code before the hole")
    inf.add_argument("--in-suffix", default=None, help="the code after the hole")
    inf.add_argument("--prefix-file", default=None, help="read the prefix from a file")
    inf.add_argument("--suffix-file", default=None, help="read the suffix from a file")
    inf.add_argument("--fim-style", default="auto", choices=["auto", "deepseek", "codellama", "starcoder", "qwen"],
                     help="which FIM tokens (auto: the vocab's)")
    inf.add_argument("--spm-infill", action="store_true", help="suffix before prefix (SPM order)")
    inf.add_argument("-n", "--n-predict", type=_positive_or_minus_one("n"), default=-1)
    inf.add_argument("-c", "--ctx-size", type=_non_negative, default=4096)
    inf.add_argument("-b", "--batch-size", type=int, default=512)
    inf.add_argument("-r", "--reverse-prompt", action="append", default=[], help="stop at this string")
    inf.add_argument("--verbose-prompt", action="store_true", help="print the prompt's tokens first (stderr)")
    inf.set_defaults(func=cmd_infill)


def cmd_chat(args) -> int:
    if args.chat_template and args.chat_template_file:
        raise BadArgumentError("--chat-template and --chat-template-file: give one")
    return run_from_cli(args)


def _vocab_for_render(path: str | None):
    """(metadata, tokenizer or None) for `render`: a GGUF file's (tensors not needed)."""
    if path is None:
        return {}, None
    from ..tokenizer import Tokenizer

    try:
        from ..hub import open_gguf, resolve_model          # repo ids, split files: as `ggrun tokenize`

        f = open_gguf(resolve_model(path))
    except ImportError:  # pragma: no cover
        from ..gguf_file import GGUFFile

        f = GGUFFile(path)
    return f.metadata, Tokenizer.from_gguf(f)


def cmd_render(args) -> int:
    from ..chat import BUILTIN_SPECIALS, load_messages, prompt_ids, select_template, token_text, with_system

    if args.chat_template and args.chat_template_file:
        raise BadArgumentError("--chat-template and --chat-template-file: give one")
    model = args.model
    if model is None and not (args.chat_template or args.chat_template_file):
        from ..default_model import default_model_path

        model = default_model_path()
    messages = load_messages(args.messages)
    if args.system is not None:
        messages = with_system(messages, args.system)
    md, tok = _vocab_for_render(model)
    tpl = select_template(md, args.chat_template, args.chat_template_file)
    if tok is not None:
        bos, eos = token_text(tok, tok.bos_id), token_text(tok, tok.eos_id)
    else:
        bos, eos = BUILTIN_SPECIALS.get(tpl.name, ("", ""))
    text = tpl.render(messages, args.generation_prompt, bos_token=bos, eos_token=eos)
    out = sys.stdout
    if (args.ids or args.json) and tok is None:
        raise BadArgumentError("--ids/--json need -m FILE (the vocab to tokenize with)")
    if args.json:
        out.write(json.dumps({"prompt": text, "ids": prompt_ids(tok, text), "template": tpl.name},
                             ensure_ascii=False) + "\n")
    elif args.ids:
        ids = prompt_ids(tok, text)
        out.write(text + "\n")
        out.write(f"number of tokens in prompt = {len(ids)}\n")
        for i in ids:
            out.write(f"{i:6d} -> '{tok.token_to_piece(i).decode('utf-8', 'replace')}'\n")
    else:
        out.write(text)
    out.flush()
    return 0


def _read_text(label: str, value: str | None, path: str | None) -> str:
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise GGRunError(f"{label} {path}: no such file") from None
        except OSError as e:
            raise GGRunError(f"{label} {path}: {e.strerror}") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise GGRunError(f"{label} {path}: not UTF-8 text") from None
    return value or ""


def cmd_infill(args) -> int:
    from ..infill import infill_ids
    from ..loader import load

    if args.in_prefix is not None and args.prefix_file is not None:
        raise BadArgumentError("--in-prefix and --prefix-file: give one")
    if args.in_suffix is not None and args.suffix_file is not None:
        raise BadArgumentError("--in-suffix and --suffix-file: give one")
    prefix = _read_text("--prefix-file", args.in_prefix, args.prefix_file)
    suffix = _read_text("--suffix-file", args.in_suffix, args.suffix_file)
    if not prefix and not suffix:
        raise BadArgumentError("infill needs --in-prefix/--prefix-file and/or --in-suffix/--suffix-file")
    from ..cli import gpu_args

    eng = load(args.model, n_ctx=args.ctx_size, n_threads=args.threads, n_batch=args.batch_size, **gpu_args(args))
    tok = eng.tokenizer
    ids = infill_ids(tok, prefix, suffix, args.fim_style, args.spm_infill, n_batch=max(args.batch_size, 2048),
                     n_ctx=eng.n_ctx, n_predict=args.n_predict)
    if args.verbose_prompt:
        print(f"number of tokens in prompt = {len(ids)}", file=sys.stderr)
        for i in ids:
            print(f"{i:6d} -> '{tok.token_to_piece(i).decode('utf-8', 'replace')}'", file=sys.stderr)
    timings = None
    for ev in eng.generate(ids, _params(args), max_tokens=args.n_predict, stop=args.reverse_prompt):
        if ev.text:
            sys.stdout.write(ev.text)
            sys.stdout.flush()
        if ev.finish_reason:
            timings = ev.timings
            if ev.finish_reason == "length" and args.n_predict < 0:
                print(f"\nggrun: the context of {eng.n_ctx} tokens is full (-c)", file=sys.stderr)
    sys.stdout.write("\n")
    sys.stdout.flush()
    if timings is not None:
        print("\n" + timings.report(), file=sys.stderr)
    return 0


# --- entry points ------------------------------------------------------------------------

def add_chat_args(p, run_flags: bool = False) -> None:
    """Flags of ``ggrun chat``; with ``run_flags`` only those ``ggrun run`` lacks (for -i/-ins)."""
    if run_flags:
        p.add_argument("-i", "--interactive", action="store_true", help="interactive mode: type after the prompt")
        p.add_argument("--interactive-first", action="store_true", help="interactive mode, waiting for input first")
        p.add_argument("-ins", "--instruct", action="store_true",
                       help="instruct mode: chat with the model's template (DeepSeek Coder: ### Instruction/Response)")
        p.add_argument("--in-prefix", default="", help="text put before each input (-i without a template)")
        p.add_argument("--in-suffix", default="", help="text put after each input (-i without a template)")
        p.add_argument("--in-prefix-bos", action="store_true", help="put a BOS before each input (-i)")
    p.add_argument("--chat-template", default=None, metavar="NAME",
                   help="built-in template: deepseek-coder, chatml, llama2, llama3, mistral, alpaca, zephyr, phi3, gemma")
    p.add_argument("--chat-template-file", default=None, metavar="FILE", help="a Jinja chat template file")
    p.add_argument("--keep", type=int, default=None, metavar="N",
                   help="when the context fills, keep the first N tokens and drop half of the rest "
                        "(llama.cpp's context shift; -1: keep the system prompt); default: stop with a message")
    p.add_argument("-mli", "--multiline-input", action="store_true", help="(accepted; use \\ or /multi)")
    p.add_argument("--no-timings", dest="timings", action="store_false", help="don't print the per-turn timings line")


def _params(args):
    from ..sampling import SamplingParams

    return SamplingParams(temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                          repeat_penalty=args.repeat_penalty, repeat_last_n=args.repeat_last_n,
                          presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty,
                          seed=args.seed)


def _banner(eng, session) -> str:
    from ..interactive import TextSession

    name = "the model's own" if session.template.name == "gguf" else session.template.name
    mode = "interactive (no template)" if isinstance(session, TextSession) else f"chat · template {name}"
    return (f"== ggrun {mode} · {eng.path.rsplit('/', 1)[-1]} · context {eng.n_ctx} ==\n"
            " - Ctrl-C stops the answer; Ctrl-C at the prompt or Ctrl-D quits.\n"
            " - End a line with \\ to continue it; /multi … /end for a block; /help lists the commands.")


def run_from_cli(args) -> int:
    """``ggrun run -i | -ins | -cnv [-st]`` and ``ggrun chat``: load, then the session."""
    from ..chat import select_template
    from ..interactive import ChatSession, Terminal, TextSession
    from ..loader import load

    raw_mode = getattr(args, "interactive", False) or getattr(args, "interactive_first", False)
    chat_mode = getattr(args, "conversation", False) or getattr(args, "instruct", False) or args.command == "chat"
    prompt = ""
    if getattr(args, "file", None) or getattr(args, "prompt", None):
        from ..cli import _read_prompt, unescape

        prompt = _read_prompt(args)
        if getattr(args, "escape", False) and not getattr(args, "file", None):
            prompt = unescape(prompt)
    chosen = None
    if args.chat_template or args.chat_template_file:           # a bad name or file fails before loading
        chosen = select_template({}, args.chat_template, args.chat_template_file)
    from ..cli import gpu_args

    eng = load(args.model, n_ctx=args.ctx_size, n_threads=args.threads, n_batch=args.batch_size, **gpu_args(args))
    common = dict(params=_params(args), max_tokens=args.n_predict, stop=args.reverse_prompt, n_keep=args.keep,
                  ignore_eos=getattr(args, "ignore_eos", False))
    if chat_mode or not raw_mode:
        tpl = chosen or select_template(eng.gguf.metadata)
        session = ChatSession(eng, tpl, system=getattr(args, "system_prompt", None), **common)
    else:
        session = TextSession(eng, prompt, args.in_prefix, args.in_suffix, args.in_prefix_bos, **common)
    single = getattr(args, "single_turn", False) and bool(prompt)
    term = Terminal(session, color=args.color, timings=getattr(args, "timings", True),
                    escape=bool(getattr(args, "escape", False)) and args.command == "run",
                    banner=None if single else _banner(eng, session))
    if isinstance(session, TextSession):
        go = bool(prompt) and not getattr(args, "interactive_first", False)
        if go and not getattr(args, "no_display_prompt", False):
            sys.stdout.write(term._c("prompt", prompt))
            sys.stdout.flush()
        return term.run(generate_first=go)
    if not single:
        return term.run(first=prompt or None)
    # -cnv -st: one answer, shown as `ggrun run` shows a completion
    _, shown, ids = session._prompt(prompt)
    if getattr(args, "verbose_prompt", False):
        print(f"prompt: {shown!r}\nnumber of tokens in prompt = {len(ids)}", file=sys.stderr)
        for i in ids:
            print(f"{i:6d} -> '{session.tok.token_to_piece(i).decode('utf-8', 'replace')}'", file=sys.stderr)
    if not getattr(args, "no_display_prompt", False):
        sys.stdout.write(term._c("prompt", shown))
        sys.stdout.flush()
    term.timings = False
    rc = term.run(first=prompt, single_turn=True)
    r = session.last
    if r is not None:
        from ..engine import Timings

        tm = Timings(load_ms=eng.load_ms, prompt_n=r.prompt_n, prompt_ms=r.prompt_ms, gen_n=r.gen_n,
                     gen_ms=max(r.gen_ms - r.sample_ms, 0.0), sample_n=r.gen_n, sample_ms=r.sample_ms,
                     cached_n=r.cached_n)
        print("\n" + tm.report(), file=sys.stderr)
    return rc
