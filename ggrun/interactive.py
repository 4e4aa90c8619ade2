"""Multi-turn chat on one KV slot, and the interactive terminal around it.

``ChatSession`` keeps the conversation's tokens in the KV cache between turns: each turn
renders the whole conversation with the chat template, checks that it starts with the
text already fed, and appends only the tokens of the new part (the closing of the last
answer, the user's message, the generation prompt), as llama.cpp's conversation mode
does. Turn N therefore evaluates only its new tokens; ``TurnResult`` says how many.

Answers end at the vocab's end-of-generation tokens, at the template's end-of-turn token
(``<|EOT|>`` for DeepSeek Coder, even where the vocab doesn't flag it), at a stop string,
at ``max_tokens``, or when the context is full: then, with ``n_keep`` set, llama.cpp's
context shift makes room (the first n_keep tokens stay, half of the rest goes), else the
turn ends with the reason.

``Terminal`` is the REPL of ``ggrun chat`` and ``ggrun run -i/-ins/-cnv``: streaming,
colours, multi-line input, Ctrl-C (stops the answer; at the prompt, quits), Ctrl-D, and
the commands /reset /save /load /system /multi /help /exit.

>>> s = ChatSession(ggrun.loader.load("deepseek-coder-6.7b-instruct.Q4_K_M.gguf"))
>>> s.send("Write a quick sort in Python.").text
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from .chat import (ChatTemplate, builtin_template, prompt_ids, render_messages, select_template, turn_end_stops,
                   with_system)
from .engine import _StopMatcher
from .errors import ContextError, GGRunError
from .sampling import SamplingParams


@dataclass
class TurnResult:
    """One answer: its text and tokens, why it ended, and what the prompt cost."""

    text: str = ""
    tokens: list[int] = field(default_factory=list)
    finish_reason: str = "stop"      # stop | length | interrupted | context
    prompt_n: int = 0                # prompt tokens evaluated this turn
    cached_n: int = 0                # prompt tokens reused from the KV cache
    gen_n: int = 0
    prompt_ms: float = 0.0
    gen_ms: float = 0.0              # wall time from the first token to the end (sampling included)
    sample_ms: float = 0.0           # of which sampling (the engine's Timings)
    n_past: int = 0                  # tokens in the KV cache after the turn
    shifted: int = 0                 # tokens dropped by context shift

    def summary(self, n_ctx: int) -> str:
        gen_tps = self.gen_n / self.gen_ms * 1e3 if self.gen_ms > 0 else 0.0
        pp_tps = self.prompt_n / self.prompt_ms * 1e3 if self.prompt_ms > 0 else 0.0
        s = (f"[prompt {self.prompt_n} new + {self.cached_n} reused tokens, {pp_tps:.1f} t/s · "
             f"answer {self.gen_n} tokens, {gen_tps:.1f} t/s · context {self.n_past}/{n_ctx}")
        if self.shifted:
            s += f" · context shift dropped {self.shifted}"
        return s + "]"


class ChatSession:
    """A conversation with ``engine`` through ``template`` (None: the model's own, see
    ``chat.select_template``; a string: a built-in name). ``n_keep`` enables context shift
    (-1: keep the system part; N: the first N tokens, plus BOS)."""

    def __init__(self, engine, template: ChatTemplate | str | None = None, system: str | None = None,
                 params: SamplingParams | None = None, max_tokens: int = -1, stop: Sequence[str] = (),
                 n_keep: int | None = None, slot: int = 0, ignore_eos: bool = False):
        self.engine = engine
        self.tok = engine.tokenizer
        md = getattr(getattr(engine, "gguf", None), "metadata", {}) or {}
        if template is None:
            template = select_template(md)
        elif isinstance(template, str):
            template = builtin_template(template)
        self.template = template
        self.system = system
        self.params = params or SamplingParams()
        self.max_tokens = max_tokens
        self.slot = slot
        self.ignore_eos = ignore_eos
        self.n_keep = n_keep
        ids, strings = turn_end_stops(template, self.tok, md)
        self.stop_ids = set() if ignore_eos else ids
        self.stop = list(stop) + strings
        self.messages: list[dict[str, Any]] = []
        self._fed_text = ""          # the text the conversation's tokens stand for
        self._fed_ids: list[int] = []
        self.last: TurnResult | None = None

    # --- state ----------------------------------------------------------------------
    def all_messages(self) -> list[dict[str, Any]]:
        return with_system(self.messages, self.system) if self.system is not None else list(self.messages)

    @property
    def n_tokens(self) -> int:
        return len(self._fed_ids)

    def reset(self) -> None:
        """Forget the conversation (the system message stays)."""
        self.messages, self._fed_text, self._fed_ids = [], "", []
        self.engine.reset(self.slot)

    def set_system(self, text: str | None) -> None:
        self.system = text or None

    # --- one turn -----------------------------------------------------------------------
    def _prompt(self, user_text: str) -> tuple[list[dict[str, Any]], str, list[int]]:
        msgs = self.all_messages() + [{"role": "user", "content": user_text}]
        full = render_messages(self.template, self.tok, msgs, add_generation_prompt=True)
        if self._fed_ids and full.startswith(self._fed_text):
            delta = full[len(self._fed_text):]
            ids = self._fed_ids + self.tok.encode(delta, add_bos=False, parse_special=True)
        else:
            ids = prompt_ids(self.tok, full)
        return msgs, full, ids

    def _keep_count(self) -> int:
        if self.n_keep is None:
            return 0
        bos = 1 if (self.tok.add_bos and self.tok.bos_id is not None) else 0
        if self.n_keep >= 0:
            return self.n_keep + bos
        sys_only = [m for m in self.all_messages() if m.get("role") == "system"]
        return max(bos, len(prompt_ids(self.tok, render_messages(self.template, self.tok, sys_only, False))))

    def _fit(self, ids: list[int], result: TurnResult) -> list[int]:
        """Make ``ids`` fit the context (with a token of room), by context shift if allowed."""
        n_ctx = self.engine.n_ctx
        if len(ids) < n_ctx:
            return ids
        if self.n_keep is None:
            raise ContextError(f"the conversation is {len(ids)} tokens, more than the context of {n_ctx}: "
                               f"/reset, or restart with a larger -c or with --keep N (context shift)")
        keep = self._keep_count()
        held = self.engine.cache.tokens[self.slot]
        common = 0
        for a, b in zip(held, ids):
            if a != b:
                break
            common += 1
        del held[common:]
        while len(ids) >= n_ctx:
            n_past = len(held)
            n_discard = (n_past - keep) // 2
            if n_discard <= 0 or len(ids) - n_past >= n_ctx - keep:
                raise ContextError(f"the new message is {len(ids) - n_past} tokens, too long for the context of "
                                   f"{n_ctx} with --keep {self.n_keep}")
            from .prompt_cache import shift_context

            shift_context(self.engine, self.slot, keep, n_discard)
            ids = ids[:keep] + ids[keep + n_discard:]
            result.shifted += n_discard
        return ids

    def _reusable(self, ids: list[int]) -> int:
        held = self.engine.cache.tokens[self.slot]
        common = 0
        for a, b in zip(held, ids):
            if a != b:
                break
            common += 1
        return min(common, len(ids) - 1)

    def stream(self, user_text: str, max_tokens: int | None = None) -> Iterator[str]:
        """Send a user message; yield the answer's text as it comes. ``self.last`` holds the
        ``TurnResult`` afterwards. Ctrl-C (KeyboardInterrupt) ends the answer, not the session:
        the partial answer stays in the conversation."""
        from .prompt_cache import shift_context

        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        self.last = None
        msgs, full, ids = self._prompt(user_text)
        res = TurnResult()
        ids = self._fit(ids, res)
        eng, slot = self.engine, self.slot
        matcher = _StopMatcher(self.stop)
        shown: list[str] = []
        raw: list[str] = []
        res.cached_n = self._reusable(ids)
        res.prompt_n = len(ids) - res.cached_n
        conv = list(ids)                    # the conversation's tokens as fed, then the answer's
        t0 = time.perf_counter()
        t_first: float | None = None
        finish: str | None = None
        closed = False
        try:
            while True:
                left = -1 if max_tokens < 0 else max_tokens - len(res.tokens)
                gen = eng.generate(conv, self.params, max_tokens=left, slot=slot, ignore_eos=self.ignore_eos)
                finish = None
                try:
                    for ev in gen:
                        if t_first is None:
                            t_first = time.perf_counter()
                        if ev.token is not None and ev.token in self.stop_ids:
                            finish = "stop"                 # the template's end-of-turn token
                            break
                        if ev.token is None:
                            finish = ev.finish_reason
                            if ev.timings is not None:
                                res.sample_ms += ev.timings.sample_ms
                        else:
                            res.tokens.append(ev.token)
                            conv.append(ev.token)
                        raw.append(ev.text)
                        out, hit = matcher.push(ev.text)
                        if out:
                            shown.append(out)
                            yield out
                        if hit:
                            finish = "stop-string"
                            break
                        if ev.token is None:
                            break
                finally:
                    gen.close()
                room = len(eng.cache.tokens[slot]) + 1 <= eng.n_ctx
                if finish != "length" or room or 0 <= max_tokens <= len(res.tokens):
                    break
                keep = self._keep_count()
                n_discard = (len(eng.cache.tokens[slot]) - keep) // 2
                if self.n_keep is None or n_discard <= 0:
                    finish = "context"
                    break
                shift_context(eng, slot, keep, n_discard)     # llama.cpp's context shift, then go on
                conv = conv[:keep] + conv[keep + n_discard:]
                res.shifted += n_discard
        except KeyboardInterrupt:
            finish = "interrupted"
        except GeneratorExit:          # the caller stopped iterating (Ctrl-C in its loop, a break)
            finish, closed = "interrupted", True
        tail = matcher.flush() if finish != "stop-string" else ""
        shown.append(tail)
        t_end = time.perf_counter()
        res.finish_reason = "stop" if finish in (None, "stop", "stop-string") else finish
        res.text = "".join(shown)
        res.gen_n = len(res.tokens)
        t_first = t_first or t_end
        res.prompt_ms = (t_first - t0) * 1e3
        res.gen_ms = (t_end - t_first) * 1e3
        self.messages = list(self.messages) + [msgs[-1]]
        self.messages.append({"role": "assistant", "content": res.text})
        self._fed_ids = conv
        self._fed_text = full + "".join(raw)
        res.n_past = len(eng.cache.tokens[slot])
        self.last = res                 # recorded before the last yield: a caller may stop there
        if tail and not closed:
            yield tail

    def send(self, user_text: str, max_tokens: int | None = None) -> TurnResult:
        """Send a user message and return the whole answer."""
        for _ in self.stream(user_text, max_tokens):
            pass
        assert self.last is not None
        return self.last

    # --- /save and /load ------------------------------------------------------------------
    def save(self, path: str) -> int:
        """Save the conversation and its KV state (``prompt_cache`` format). Returns tokens saved."""
        from .prompt_cache import save_state

        held = self.engine.cache.tokens[self.slot]
        n = 0
        for a, b in zip(held, self._fed_ids):
            if a != b:
                break
            n += 1
        meta = {"kind": "ggrun-chat", "messages": self.messages, "system": self.system,
                "fed_text": self._fed_text, "fed_ids": self._fed_ids, "template": self.template.name}
        return save_state(self.engine, path, held[:n], self.slot, meta)

    def load(self, path: str) -> int:
        """Restore a conversation saved by ``save`` (its KV state too). Returns tokens restored."""
        from .prompt_cache import PromptCacheError, load_state, read_header

        header, _ = read_header(path)
        meta = header.get("meta") or {}
        if meta.get("kind") != "ggrun-chat":
            raise PromptCacheError(f"{path}: not a saved chat (a --prompt-cache file?)")
        msgs, fed_ids, fed_text = meta.get("messages"), meta.get("fed_ids"), meta.get("fed_text")
        if not (isinstance(msgs, list) and isinstance(fed_ids, list) and isinstance(fed_text, str)):
            raise PromptCacheError(f"{path}: damaged chat session")
        st = load_state(self.engine, path, self.slot)
        self.messages = msgs
        self.system = meta.get("system") if isinstance(meta.get("system"), str) else None
        self._fed_ids = [int(t) for t in fed_ids]
        self._fed_text = fed_text
        return len(st.tokens)


class TextSession(ChatSession):
    """``-i`` without a chat template: the prompt, then each input appended as plain text
    (with --in-prefix/--in-suffix), as llama.cpp's interactive mode."""

    def __init__(self, engine, prompt: str = "", in_prefix: str = "", in_suffix: str = "",
                 in_prefix_bos: bool = False, **kw: Any):
        super().__init__(engine, template=ChatTemplate("", "none", ()), **kw)
        self.prompt, self.in_prefix, self.in_suffix, self.in_prefix_bos = prompt, in_prefix, in_suffix, in_prefix_bos

    def _prompt(self, user_text: str):
        tok = self.tok
        if self._fed_ids:
            ids, text = list(self._fed_ids), self._fed_text
        else:
            ids, text = tok.encode(self.prompt, add_bos=None, parse_special=True), self.prompt
        if user_text:
            if self.in_prefix_bos and tok.bos_id is not None:
                ids.append(tok.bos_id)
            for piece, special in ((self.in_prefix, True), (user_text, False), (self.in_suffix, True)):
                if piece:
                    ids += tok.encode(piece, add_bos=False, parse_special=special)
            text += self.in_prefix + user_text + self.in_suffix
        if not ids:
            raise ContextError("nothing to evaluate: pass -p TEXT or type something")
        return self.messages + [{"role": "user", "content": user_text}], text, ids

    def all_messages(self) -> list[dict[str, Any]]:
        return list(self.messages)

    def _keep_count(self) -> int:
        if self.n_keep is not None and self.n_keep < 0:
            return len(self.tok.encode(self.prompt, add_bos=None, parse_special=True))
        return super()._keep_count()


# --- the terminal ------------------------------------------------------------------------

class InputError(GGRunError):
    """A line of input that can't be used (not UTF-8, NUL bytes)."""


ANSI = {"prompt": "\033[33m", "input": "\033[1m\033[32m", "error": "\033[1m\033[31m", "info": "\033[2m",
        "reset": "\033[0m"}

HELP = """commands:
  /reset          forget the conversation (keeps the system message)
  /save FILE      save the conversation and its KV state
  /load FILE      load a saved conversation (the next turn evaluates only its new tokens)
  /system [TEXT]  set (or show) the system message
  /multi          type several lines; a line with only /end sends them
  /help           this text
  /exit           quit (also Ctrl-D, or Ctrl-C at the prompt)
  a line ending with \\ continues on the next line; start a message with // to send a leading /
  Ctrl-C while the model answers stops the answer and keeps the session"""


class Terminal:
    """The interactive loop around a session: reads lines, runs commands, streams answers."""

    def __init__(self, session: ChatSession, color: bool = False, timings: bool = True, escape: bool = False,
                 stdin=None, stdout=None, stderr=None, banner: str | None = None):
        self.s = session
        self.color = color
        self.timings = timings
        self.escape = escape
        self.stdin = stdin or sys.stdin
        self.out = stdout or sys.stdout
        self.err = stderr or sys.stderr
        self.banner = banner
        self.tty = hasattr(self.stdin, "isatty") and self.stdin.isatty() and self.stdin is sys.stdin
        if self.tty:
            try:
                import readline  # noqa: F401  (line editing and history for input())
            except ImportError:  # pragma: no cover
                pass
            try:
                sys.stdin.reconfigure(errors="surrogateescape")
            except (AttributeError, ValueError):  # pragma: no cover
                pass

    # --- output -----------------------------------------------------------------------
    def _c(self, kind: str, text: str) -> str:
        return f"{ANSI[kind]}{text}{ANSI['reset']}" if self.color and text else text

    def info(self, text: str) -> None:
        self.err.write(self._c("info", text) + "\n")
        self.err.flush()

    def error(self, text: str) -> None:
        self.out.flush()
        self.err.write(self._c("error", f"error: {text}") + "\n")
        self.err.flush()

    # --- input ------------------------------------------------------------------------
    def _readline(self, prompt: str) -> str | None:
        """One line without its newline; None at end of input (Ctrl-D)."""
        if self.tty:
            p = f"\001{ANSI['prompt']}\002{prompt}\001{ANSI['reset']}{ANSI['input']}\002" if self.color else prompt
            try:
                line = input(p)
            except EOFError:
                return None
            finally:
                if self.color:
                    self.out.write(ANSI["reset"])
                    self.out.flush()
            if any("\udc80" <= ch <= "\udcff" for ch in line):
                raise InputError("the input is not UTF-8 text: ignored")
        else:
            self.out.write(self._c("prompt", prompt))
            self.out.flush()
            buf = getattr(self.stdin, "buffer", None)
            rawline = buf.readline() if buf is not None else self.stdin.readline()
            if not rawline:
                return None
            if isinstance(rawline, bytes):
                try:
                    line = rawline.decode("utf-8")
                except UnicodeDecodeError:
                    raise InputError("the input is not UTF-8 text: ignored") from None
            else:
                line = rawline
            line = line[:-1] if line.endswith("\n") else line
            line = line[:-1] if line.endswith("\r") else line
        if "\x00" in line:
            raise InputError("the input holds NUL bytes (binary data?): ignored")
        return line

    def read_message(self) -> str | None:
        """A whole message: lines joined while they end with a backslash."""
        line = self._readline("\n> ")
        if line is None:
            return None
        parts = []
        while line.endswith("\\"):
            parts.append(line[:-1])
            nxt = self._readline("")
            if nxt is None:
                break
            line = nxt
        else:
            parts.append(line)
        return "\n".join(parts)

    def read_block(self) -> str | None:
        lines = []
        while True:
            line = self._readline("")
            if line is None or line.strip() == "/end":
                return "\n".join(lines)
            lines.append(line)

    # --- commands ---------------------------------------------------------------------
    def command(self, line: str) -> bool | str:
        """Run a /command. False: quit; True: handled; a string: a message to send."""
        cmd, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if cmd in ("/exit", "/quit", "/bye"):
            return False
        if cmd in ("/help", "/?"):
            self.info(HELP)
        elif cmd == "/reset":
            self.s.reset()
            self.info("[conversation cleared]")
        elif cmd == "/save":
            if not arg:
                raise InputError("/save FILE: which file?")
            n = self.s.save(arg)
            self.info(f"[saved {len(self.s.messages)} messages, {n} tokens of KV state, to {arg}]")
        elif cmd == "/load":
            if not arg:
                raise InputError("/load FILE: which file?")
            n = self.s.load(arg)
            self.info(f"[loaded {len(self.s.messages)} messages, {n} tokens of KV state, from {arg}]")
        elif cmd == "/system":
            if arg:
                self.s.set_system(arg)
                self.info("[system message set]")
            else:
                self.info(f"[system message: {self.s.system!r}]")
        elif cmd == "/multi":
            text = self.read_block()
            return text if text else True
        else:
            raise InputError(f"unknown command {cmd} (try /help; start with // to send a line beginning with /)")
        return True

    # --- answers ----------------------------------------------------------------------
    def answer(self, text: str) -> TurnResult | None:
        if self.escape:
            from .cli import unescape

            text = unescape(text)
        gen = self.s.stream(text)
        try:
            for piece in gen:
                self.out.write(piece)
                self.out.flush()
        except KeyboardInterrupt:       # in the generator before it began, or here while printing
            gen.close()                 # (the session records the partial answer)
        res = self.s.last
        if res is None:
            self.out.write(self._c("info", " [interrupted: message not sent]") + "\n")
            self.out.flush()
            return None
        if res.finish_reason == "interrupted":
            self.out.write(self._c("info", " [interrupted]"))
        elif res.finish_reason == "context":
            self.out.write("\n")
            self.error(f"the context of {self.s.engine.n_ctx} tokens is full: /save and /reset, "
                       f"or restart with a larger -c or with --keep N")
        self.out.write("\n")
        self.out.flush()
        if self.timings:
            self.info(res.summary(self.s.engine.n_ctx))
        return res

    def run(self, first: str | None = None, single_turn: bool = False, generate_first: bool = False) -> int:
        """The loop. ``first``: a message to send before reading input; ``generate_first``:
        continue the raw prompt first (``-i -p``)."""
        if self.banner:
            self.info(self.banner)
        try:
            if generate_first or first:
                self.answer(first or "")
                if single_turn:
                    return 0
        except GGRunError as e:
            self.error(str(e))
            if single_turn:
                return 2
        while True:
            try:
                msg = self.read_message()
            except KeyboardInterrupt:
                self.out.write("\n")
                break
            except InputError as e:
                self.error(str(e))
                continue
            if msg is None:
                self.out.write("\n")
                break
            try:
                if msg.startswith("/") and not msg.startswith("//"):
                    r = self.command(msg)
                    if r is False:
                        break
                    if r is True:
                        continue
                    msg = r
                elif msg.startswith("//"):
                    msg = msg[1:]
                if not msg.strip():
                    continue
                self.answer(msg)
            except KeyboardInterrupt:
                self.out.write("\n")
                self.info("[interrupted]")
            except GGRunError as e:
                self.error(str(e))
        self.out.flush()
        return 0
