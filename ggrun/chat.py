"""Chat templates: the GGUF ``tokenizer.chat_template`` rendered in a sandboxed Jinja2.

Rendered as transformers' ``apply_chat_template`` and llama.cpp's ``--jinja`` do
(trim_blocks, lstrip_blocks), with ``raise_exception``, ``bos_token``/``eos_token`` and
``add_generation_prompt``. The sandbox refuses attribute tricks (``__class__`` …); the
output size and loop count are bounded so a hostile template can't hang or eat memory.
"""

from __future__ import annotations

from typing import Any, Sequence

from .errors import GGRunError

MAX_OUTPUT_CHARS = 4 << 20
MAX_LOOP_ITERATIONS = 100_000


class ChatTemplateError(GGRunError):
    """A chat template that fails to render (syntax, sandbox violation, limits)."""


def _environment():
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BoundedEnv(ImmutableSandboxedEnvironment):
        """Sandbox that also bounds loops (range sizes) and string repetition."""

        def call_binop(self, context, operator, left, right):  # type: ignore[override]
            if operator == "*":
                for a, b in ((left, right), (right, left)):
                    if isinstance(a, (str, list, tuple)) and isinstance(b, int) and len(a) * b > MAX_OUTPUT_CHARS:
                        raise ChatTemplateError("chat template: repetition too large")
            if operator == "**" and isinstance(right, int) and right > 4096:
                raise ChatTemplateError("chat template: exponent too large")
            return super().call_binop(context, operator, left, right)

    def bounded_range(*args: int):
        r = range(*args)
        if len(r) > MAX_LOOP_ITERATIONS:
            raise ChatTemplateError(f"chat template: range of {len(r)} items exceeds the limit of {MAX_LOOP_ITERATIONS}")
        return r

    def raise_exception(msg: str) -> None:
        raise ChatTemplateError(f"chat template raised: {msg}")

    env = BoundedEnv(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined)
    env.globals["range"] = bounded_range
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = _tojson
    return env


def _tojson(x: Any, indent: int | None = None, ensure_ascii: bool = False, **_: Any) -> str:
    import json

    return json.dumps(x, indent=indent, ensure_ascii=ensure_ascii)


def render(template: str, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True,
           bos_token: str = "", eos_token: str = "", **extra: Any) -> str:
    """Render ``messages`` (OpenAI-style dicts with role and content) through ``template``."""
    import jinja2

    try:
        tpl = _environment().from_string(template)
        out = []
        n = 0
        for piece in tpl.generate(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                  bos_token=bos_token, eos_token=eos_token, **extra):
            n += len(piece)
            if n > MAX_OUTPUT_CHARS:
                raise ChatTemplateError(f"chat template: output exceeds {MAX_OUTPUT_CHARS} characters")
            out.append(piece)
        return "".join(out)
    except ChatTemplateError:
        raise
    except jinja2.exceptions.SecurityError as e:
        raise ChatTemplateError(f"chat template: unsafe operation refused by the sandbox: {e}") from None
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template: {type(e).__name__}: {e}") from None
    except RecursionError:
        raise ChatTemplateError("chat template: recursion too deep") from None


def render_for(tokenizer, metadata: dict[str, Any], messages: Sequence[dict[str, Any]],
               add_generation_prompt: bool = True) -> str:
    """Render with the model's own template (``tokenizer.chat_template``)."""
    template = metadata.get("tokenizer.chat_template")
    if not template:
        raise ChatTemplateError("the model has no tokenizer.chat_template; pass --chat-template NAME")
    bos = tokenizer.token_to_piece(tokenizer.bos_id).decode("utf-8", "replace") if tokenizer.bos_id is not None else ""
    eos = tokenizer.token_to_piece(tokenizer.eos_id).decode("utf-8", "replace") if tokenizer.eos_id is not None else ""
    return render(template, messages, add_generation_prompt, bos_token=bos, eos_token=eos)
