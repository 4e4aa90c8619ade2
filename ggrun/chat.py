"""Chat templates: the GGUF ``tokenizer.chat_template`` or a named built-in, rendered in a
sandboxed Jinja2 exactly as transformers' ``apply_chat_template`` and llama.cpp's ``--jinja``
render it (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loop controls,
``raise_exception``, ``bos_token``/``eos_token``, ``add_generation_prompt``).

A template is untrusted input (it comes inside a downloaded file), so the sandbox also
refuses unsafe attributes with an error (not a silent empty string) and bounds the work:
loop iterations, string/list growth, output size and wall-clock time. A hostile template
fails with one ``ChatTemplateError`` line; it never runs code, hangs or eats the memory.
The sandbox itself (the bounded Jinja2 environment and its limits) is ``ggrun.chat_sandbox``.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .chat_sandbox import (MAX_LOOP_ITERATIONS, MAX_OUTPUT_CHARS, MAX_RANGE, MAX_SECONDS,  # noqa: F401  (re-exported)
                           ChatTemplateError, _Budget, _budget, _environment)


# --- built-in templates ----------------------------------------------------------------
# deepseek-coder is deepseek-ai's own template (deepseek-coder-{1.3,6.7,33}b-instruct,
# tokenizer_config.json) character for character; the others are the model authors'
# templates, with the system message folded into the first user turn where the original
# has no system role (llama.cpp's built-ins do the same).

DEEPSEEK_CODER_SYSTEM = (
    "You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek "
    "Company, and you only answer questions related to computer science. For politically sensitive "
    "questions, security and privacy issues, and other non-computer science questions, you will refuse "
    "to answer")

DEEPSEEK_CODER = (
    "{% if not add_generation_prompt is defined %}\n{% set add_generation_prompt = false %}\n{% endif %}\n"
    "{%- set ns = namespace(found=false) -%}\n{%- for message in messages -%}\n"
    "    {%- if message['role'] == 'system' -%}\n        {%- set ns.found = true -%}\n    {%- endif -%}\n"
    "{%- endfor -%}\n{{bos_token}}{%- if not ns.found -%}\n"
    "{{'" + DEEPSEEK_CODER_SYSTEM + "\\n'}}\n{%- endif %}\n{%- for message in messages %}\n"
    "    {%- if message['role'] == 'system' %}\n{{ message['content'] }}\n    {%- else %}\n"
    "        {%- if message['role'] == 'user' %}\n{{'### Instruction:\\n' + message['content'] + '\\n'}}\n"
    "        {%- else %}\n{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n"
    "        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{% if add_generation_prompt %}\n{{'### Response:'}}\n{% endif %}")

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

MISTRAL = (
    "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n\n"
    "{{- bos_token }}\n{%- for message in loop_messages %}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
    "        {{- raise_exception('After the optional system message, conversation roles must alternate "
    "user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n"
    "        {%- if loop.first and system_message is defined %}\n"
    "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
    "        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n"
    "    {%- elif message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n"
    "    {%- else %}\n        {{- raise_exception('Only user and assistant roles are supported, with the "
    "exception of an initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n")

ALPACA_SYSTEM = ("Below is an instruction that describes a task. "
                 "Write a response that appropriately completes the request.")

ALPACA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{{ messages[0]['content'] + '\\n\\n' }}{% else %}{% set loop_messages = messages %}"
    "{{ '" + ALPACA_SYSTEM + "\\n\\n' }}{% endif %}{% for message in loop_messages %}"
    "{% if message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '### Response:\\n' + message['content'] + eos_token + '\\n\\n' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}")

ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")

PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
    "{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}")

GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first_prefix = messages[0]['content'] | trim + "
    "'\\n\\n' %}{% set loop_messages = messages[1:] %}{% else %}{% set first_prefix = '' %}"
    "{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\\n' + (first_prefix if loop.first else '') + "
    "message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}")

# name -> (source, end-of-turn markers: the text that closes an assistant turn)
BUILTINS: dict[str, tuple[str, tuple[str, ...]]] = {
    "deepseek-coder": (DEEPSEEK_CODER, ("<|EOT|>",)),
    "chatml": (CHATML, ("<|im_end|>",)),
    "llama2": (LLAMA2, ("</s>",)),
    "llama3": (LLAMA3, ("<|eot_id|>",)),
    "mistral": (MISTRAL, ("</s>",)),
    "alpaca": (ALPACA, ("### Instruction:",)),
    "zephyr": (ZEPHYR, ("</s>",)),
    "phi3": (PHI3, ("<|end|>",)),
    "gemma": (GEMMA, ("<end_of_turn>",)),
}
# bos/eos texts for `ggrun render --chat-template NAME` without a vocab (-m)
BUILTIN_SPECIALS: dict[str, tuple[str, str]] = {
    "deepseek-coder": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"), "chatml": ("", "<|im_end|>"),
    "llama2": ("<s>", "</s>"), "llama3": ("<|begin_of_text|>", "<|end_of_text|>"), "mistral": ("<s>", "</s>"),
    "alpaca": ("<s>", "</s>"), "zephyr": ("<s>", "</s>"), "phi3": ("<s>", "<|endoftext|>"), "gemma": ("<bos>", "<eos>"),
}
ALIASES = {"deepseek": "deepseek-coder", "deepseek-coder-instruct": "deepseek-coder", "llama-2": "llama2",
           "llama-3": "llama3", "phi-3": "phi3", "gemma2": "gemma"}

# Markers that close a turn in templates found in the wild; a model's own template is
# scanned for them so that chat stops at its end-of-turn token even when the vocab
# doesn't flag it as end-of-generation.
KNOWN_TURN_ENDS = ("<|EOT|>", "<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|end_of_turn|>",
                   "<|END_OF_TURN_TOKEN|>", "<|endoftext|>", "<｜end▁of▁sentence｜>")


@dataclass
class ChatTemplate:
    """A chat template: Jinja source, where it came from, and the text that ends a turn."""

    source: str
    name: str = "custom"
    turn_ends: tuple[str, ...] = field(default=())

    def render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True,
               bos_token: str = "", eos_token: str = "", **extra: Any) -> str:
        return render(self.source, messages, add_generation_prompt, bos_token, eos_token, **extra)


# --- rendering (in the sandbox of ggrun.chat_sandbox) ------------------------------------

@functools.lru_cache(maxsize=32)
def compile_template(source: str):
    """Parse and compile a template once (syntax errors as ``ChatTemplateError``)."""
    import jinja2

    if not isinstance(source, str):
        raise ChatTemplateError("chat template: not a string")
    token = _budget.set(_Budget(deadline=time.monotonic() + MAX_SECONDS))   # compile-time constant folding
    try:
        return _environment().from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"chat template: syntax error on line {e.lineno}: {e.message}") from None
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template: {type(e).__name__}: {e}") from None
    except RecursionError:
        raise ChatTemplateError("chat template: nested too deeply") from None
    finally:
        _budget.reset(token)


def render(template: str, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True,
           bos_token: str = "", eos_token: str = "", **extra: Any) -> str:
    """Render ``messages`` (OpenAI-style dicts with role and content) through ``template``."""
    import jinja2

    tpl = compile_template(template)
    token = _budget.set(_Budget(deadline=time.monotonic() + MAX_SECONDS))
    try:
        out: list[str] = []
        n = 0
        for piece in tpl.generate(messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt,
                                  bos_token=bos_token, eos_token=eos_token, **extra):
            n += len(piece)
            if n > MAX_OUTPUT_CHARS:
                raise ChatTemplateError(f"chat template: output exceeds {MAX_OUTPUT_CHARS} characters")
            _budget.get().check_time()
            out.append(piece)
        return "".join(out)
    except ChatTemplateError:
        raise
    except jinja2.exceptions.SecurityError as e:
        raise ChatTemplateError(f"chat template: refused by the sandbox: {e}") from None
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template: {type(e).__name__}: {e}") from None
    except RecursionError:
        raise ChatTemplateError("chat template: recursion too deep") from None
    except MemoryError:
        raise ChatTemplateError("chat template: ran out of memory") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError) as e:
        raise ChatTemplateError(f"chat template: {type(e).__name__}: {e}") from None
    finally:
        _budget.reset(token)


# --- choosing a template ---------------------------------------------------------------

def builtin_names() -> list[str]:
    return list(BUILTINS)


def builtin_template(name: str) -> ChatTemplate:
    """A named built-in (``--chat-template NAME``); a string holding Jinja is taken as a template."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in BUILTINS:
        src, ends = BUILTINS[key]
        return ChatTemplate(src, key, ends)
    if "{{" in name or "{%" in name:
        compile_template(name)
        return ChatTemplate(name, "custom", _scan_turn_ends(name))
    raise ChatTemplateError(f"unknown chat template {name!r}; built-ins: {', '.join(BUILTINS)} "
                            f"(or --chat-template-file FILE)")


def template_from_file(path: str) -> ChatTemplate:
    """``--chat-template-file FILE``: a Jinja template in a UTF-8 text file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ChatTemplateError(f"--chat-template-file {path}: no such file") from None
    except IsADirectoryError:
        raise ChatTemplateError(f"--chat-template-file {path}: is a directory") from None
    except OSError as e:
        raise ChatTemplateError(f"--chat-template-file {path}: {e.strerror}") from None
    if len(data) > MAX_OUTPUT_CHARS:
        raise ChatTemplateError(f"--chat-template-file {path}: {len(data)} bytes is too large for a template")
    try:
        src = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ChatTemplateError(f"--chat-template-file {path}: not UTF-8 text") from None
    try:
        compile_template(src)
    except ChatTemplateError as e:
        raise ChatTemplateError(f"--chat-template-file {path}: {e}") from None
    return ChatTemplate(src, Path(path).name, _scan_turn_ends(src))


def _scan_turn_ends(source: str) -> tuple[str, ...]:
    return tuple(m for m in KNOWN_TURN_ENDS if m in source)


def is_deepseek_coder(metadata: dict[str, Any]) -> bool:
    """DeepSeek Coder's vocab: its FIM tokens and the instruct end-of-turn ``<|EOT|>``."""
    toks = metadata.get("tokenizer.ggml.tokens") or []
    if len(toks) < 32022 or len(toks) > 40000:
        return False
    return "<|EOT|>" in toks[32000:] and "<｜fim▁begin｜>" in toks[32000:]


def select_template(metadata: dict[str, Any], name: str | None = None, file: str | None = None) -> ChatTemplate:
    """The template a chat uses: --chat-template-file, else --chat-template NAME, else the
    file's ``tokenizer.chat_template``, else deepseek-coder for a DeepSeek Coder vocab, else
    chatml (llama.cpp's fallback)."""
    if file:
        return template_from_file(file)
    if name:
        return builtin_template(name)
    src = metadata.get("tokenizer.chat_template")
    if isinstance(src, str) and src.strip():
        return ChatTemplate(src, "gguf", _scan_turn_ends(src))
    if is_deepseek_coder(metadata):
        return builtin_template("deepseek-coder")
    return builtin_template("chatml")


def token_text(tokenizer, token_id: int | None) -> str:
    if token_id is None or token_id < 0:
        return ""
    return tokenizer.token_to_piece(token_id, special=True).decode("utf-8", "replace")


def render_messages(template: ChatTemplate, tokenizer, messages: Sequence[dict[str, Any]],
                    add_generation_prompt: bool = True) -> str:
    """The exact prompt text, with the vocab's BOS/EOS texts as ``bos_token``/``eos_token``."""
    return template.render(messages, add_generation_prompt, bos_token=token_text(tokenizer, tokenizer.bos_id),
                           eos_token=token_text(tokenizer, tokenizer.eos_id))


def prompt_ids(tokenizer, text: str, add_special: bool = True) -> list[int]:
    """Tokens of a rendered prompt as llama.cpp makes them: special tokens parsed, and
    exactly one BOS when both the template and the vocab's add_bos give one (llama.cpp
    strips the template's BOS text, then tokenizes with add_bos)."""
    bos = tokenizer.bos_id
    if add_special and bos is not None:
        bos_text = token_text(tokenizer, bos)
        ids = tokenizer.encode(text, add_bos=None, parse_special=True)
        if bos_text and text.startswith(bos_text) and len(ids) > 1 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]
        return ids
    return tokenizer.encode(text, add_bos=False, parse_special=True)


def turn_end_stops(template: ChatTemplate, tokenizer, metadata: dict[str, Any]) -> tuple[set[int], list[str]]:
    """(token ids, stop strings) that end an assistant turn under ``template``: its end-of-turn
    markers that are one token of the vocab become stop tokens, the others stop strings."""
    toks = metadata.get("tokenizer.ggml.tokens") or []
    ids: set[int] = set()
    strings: list[str] = []
    for marker in template.turn_ends:
        try:
            i = toks.index(marker)
        except ValueError:
            i = -1
        if i >= 0:
            ids.add(i)
        else:
            strings.append(marker)
    return ids, strings


# --- messages --------------------------------------------------------------------------

ROLES = ("system", "user", "assistant", "tool", "developer")


def normalize_messages(obj: Any, where: str = "messages") -> list[dict[str, str]]:
    """Check an OpenAI-style list of {role, content} (content: text, or a list of text parts)."""
    if isinstance(obj, dict) and "messages" in obj:
        obj = obj["messages"]
    if not isinstance(obj, list):
        raise ChatTemplateError(f"{where}: expected a JSON list of {{role, content}} objects")
    out = []
    for i, m in enumerate(obj, 1):
        if not isinstance(m, dict):
            raise ChatTemplateError(f"{where}: item {i} is not an object")
        role, content = m.get("role"), m.get("content", "")
        if not isinstance(role, str) or not role:
            raise ChatTemplateError(f"{where}: item {i} has no 'role'")
        if content is None:
            content = ""
        if isinstance(content, list):
            parts = []
            for p in content:
                if isinstance(p, dict) and p.get("type", "text") == "text" and isinstance(p.get("text"), str):
                    parts.append(p["text"])
                else:
                    raise ChatTemplateError(f"{where}: item {i} has a content part that is not text")
            content = "".join(parts)
        if not isinstance(content, str):
            raise ChatTemplateError(f"{where}: item {i}: 'content' must be text")
        msg = {k: v for k, v in m.items() if k not in ("role", "content")}
        msg.update(role=role, content=content)
        out.append(msg)
    return out


def load_messages(path: str) -> list[dict[str, str]]:
    """Read ``--messages FILE.json`` ('-' reads stdin)."""
    import sys

    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except FileNotFoundError:
        raise ChatTemplateError(f"--messages {path}: no such file") from None
    except OSError as e:
        raise ChatTemplateError(f"--messages {path}: {e.strerror}") from None
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ChatTemplateError(f"--messages {path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ChatTemplateError(f"--messages {path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    return normalize_messages(obj, f"--messages {path}")


def with_system(messages: Sequence[dict[str, Any]], system: str | None) -> list[dict[str, Any]]:
    """Messages with ``system`` as the system message (replacing one already there)."""
    rest = [dict(m) for m in messages if m.get("role") != "system"] if system is not None else [dict(m) for m in messages]
    return ([{"role": "system", "content": system}] if system is not None else []) + rest


def render_for(tokenizer, metadata: dict[str, Any], messages: Sequence[dict[str, Any]],
               add_generation_prompt: bool = True, name: str | None = None, file: str | None = None) -> str:
    """Render with the model's template (or ``name``/``file``), as ``select_template`` picks it."""
    return render_messages(select_template(metadata, name, file), tokenizer, messages, add_generation_prompt)
