"""The bounded Jinja2 sandbox that ``ggrun.chat`` renders chat templates in.

A chat template is untrusted input (it comes inside a downloaded file). On top of Jinja2's
``ImmutableSandboxedEnvironment`` (trim_blocks, lstrip_blocks, loop controls, transformers'
``{% generation %}`` tag and ``tojson``, ``raise_exception``, ``strftime_now``), this module
refuses unsafe attributes with an error (not a silent empty string) and bounds the work of
one render: loop iterations, ``range()`` sizes, string/list growth from ``*``, ``+``, ``~``,
``%``/``format`` widths and the growing string methods and filters, and wall-clock time
(the per-render ``_Budget`` in the ``_budget`` context variable, set by ``ggrun.chat.render``
and ``ggrun.chat.compile_template``). Every failure is a one-line ``ChatTemplateError``.

``_environment()`` builds the (cached) environment; the public API is in ``ggrun.chat``,
which re-exports the limits and ``ChatTemplateError``.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from .errors import GGRunError

MAX_OUTPUT_CHARS = 4 << 20        # rendered text, and any one string or list built on the way
MAX_LOOP_ITERATIONS = 1_000_000   # all loop iterations of one render, nested loops included
MAX_RANGE = 100_000               # one range()
MAX_SECONDS = 5.0                 # wall clock of one render


class ChatTemplateError(GGRunError):
    """A chat template that can't be used: unknown name, missing file, syntax, sandbox, limits."""


# --- the bounded sandbox ---------------------------------------------------------------

@dataclass
class _Budget:
    deadline: float
    iterations: int = 0

    def tick(self, n: int = 1) -> None:
        self.iterations += n
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise ChatTemplateError(f"chat template: more than {MAX_LOOP_ITERATIONS} loop iterations (an endless loop?)")
        if time.monotonic() > self.deadline:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise ChatTemplateError(f"chat template: rendering took longer than {MAX_SECONDS:g} s")


_budget: contextvars.ContextVar[_Budget] = contextvars.ContextVar("ggrun_template_budget")


def _tick(n: int = 1) -> None:
    b = _budget.get(None)
    if b is not None:
        b.tick(n)


def _check_size(n: int, what: str) -> None:
    if n > MAX_OUTPUT_CHARS:
        raise ChatTemplateError(f"chat template: {what} of {n} items exceeds the limit of {MAX_OUTPUT_CHARS}")


def _sized(x: Any) -> int:
    return len(x) if isinstance(x, (str, list, tuple, dict)) else 0


_WIDTH = re.compile(r"\d{7,}")


def _check_format(fmt: Any, *args: Any) -> None:
    """Refuse formats that pad to huge widths ('%999999999s', '{:>{w}}' with a huge w)."""
    if isinstance(fmt, str) and _WIDTH.search(fmt):
        raise ChatTemplateError("chat template: a format width or precision too large")
    for a in args:
        vals = a.values() if isinstance(a, dict) else a if isinstance(a, (list, tuple)) else (a,)
        if any(isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_OUTPUT_CHARS for v in vals):
            raise ChatTemplateError("chat template: a format width or precision too large")


def _g_iter(iterable: Any):
    """Wraps the iterable of every {% for %}: counts iterations against the budget."""
    for item in iterable:
        _tick()
        yield item


def _g_binop(op: str, left: Any, right: Any) -> Any:
    _tick()
    if op == "*":
        for a, b in ((left, right), (right, left)):
            if isinstance(a, (str, list, tuple)) and isinstance(b, int):
                _check_size(len(a) * max(b, 0), "repetition")
        return left * right
    if op == "+":
        _check_size(_sized(left) + _sized(right), "concatenation")
        return left + right
    if op == "**":
        if isinstance(right, (int, float)) and isinstance(left, (int, float)) and abs(right) > 1024 and abs(left) > 1:
            raise ChatTemplateError("chat template: exponent too large")
        return left ** right
    if op == "%":
        if isinstance(left, str):
            _check_format(left, right)
        return left % right
    raise ChatTemplateError(f"chat template: operator {op}")  # pragma: no cover


def _g_concat(*parts: Any) -> str:
    """The ``~`` operator."""
    _tick()
    out = [str(p) for p in parts]
    _check_size(sum(len(s) for s in out), "concatenation")
    return "".join(out)


def _g_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise ChatTemplateError(f"chat template: range of {len(r)} items exceeds the limit of {MAX_RANGE}")
    return r


def _raise_exception(message: str = "") -> None:
    raise ChatTemplateError(f"chat template raised: {message}")


def _strftime_now(fmt: str) -> str:
    _check_format(fmt)
    return time.strftime(fmt)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    """transformers' tojson filter (no HTML escaping, unlike Jinja's own)."""
    if indent is not None and (not isinstance(indent, int) or indent > 64):
        raise ChatTemplateError("chat template: tojson indent too large")
    s = json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    _check_size(len(s), "tojson output")
    return s


def _bounded_filters(filters: dict[str, Any]) -> dict[str, Any]:
    """Filters whose output can be much larger than their input, with a size check first."""
    orig = dict(filters)

    def replace(s, old, new, count=None):
        s, old, new = str(s), str(old), str(new)
        n = s.count(old) if old else len(s) + 1
        if count is not None:
            n = min(n, count)
        _check_size(len(s) + n * max(len(new) - len(old), 0), "replace() result")
        return orig["replace"](s, old, new, count)

    def widen(name):
        def f(value, width=80, *a, **k):
            if isinstance(width, int):
                _check_size(width, f"{name} width")
            return orig[name](value, width, *a, **k)
        return f

    def indent(s, width=4, *a, **k):
        w = width if isinstance(width, int) else len(str(width))
        _check_size(len(str(s)) * (w + 1), "indent() result")
        return orig["indent"](s, width, *a, **k)

    def join(ctx, value, d="", attribute=None):
        items = list(value)
        _check_size(sum(len(str(x)) for x in items) + len(str(d)) * len(items), "join() result")
        return orig["join"](ctx, items, d, attribute)

    def format_(value, *args, **kwargs):
        _check_format(value, args, kwargs)
        return orig["format"](value, *args, **kwargs)

    import jinja2.filters as jf

    join = jf.pass_eval_context(join)
    return {"replace": replace, "center": widen("center"), "wordwrap": widen("wordwrap"),
            "truncate": widen("truncate"), "indent": indent, "join": join, "format": format_, "tojson": _tojson}


_GROWING_STR_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join"}


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2
    import jinja2.ext
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _Generation(jinja2.ext.Extension):
        """transformers' ``{% generation %}…{% endgeneration %}``: renders its body."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    binops = {nodes.Add: "+", nodes.Mul: "*", nodes.Mod: "%", nodes.Pow: "**"}

    from jinja2.visitor import NodeTransformer

    class _Guard(NodeTransformer):
        """Routes loops, growing operators and ``~`` through the budget checks."""

        def generic_visit(self, node, *args, **kwargs):
            node = super().generic_visit(node, *args, **kwargs)
            if isinstance(node, nodes.For):
                node.iter = nodes.Call(nodes.Name("__ggrun_iter", "load"), [node.iter], [], None, None,
                                       lineno=node.lineno)
            elif type(node) in binops:
                node = nodes.Call(nodes.Name("__ggrun_binop", "load"),
                                  [nodes.Const(binops[type(node)]), node.left, node.right], [], None, None,
                                  lineno=node.lineno)
            elif isinstance(node, nodes.Concat):
                node = nodes.Call(nodes.Name("__ggrun_concat", "load"), list(node.nodes), [], None, None,
                                  lineno=node.lineno)
            return node

    class BoundedEnv(ImmutableSandboxedEnvironment):
        def _parse(self, source, name, filename):  # type: ignore[override]
            return _Guard().visit(super()._parse(source, name, filename))

        def wrap_str_format(self, value):  # type: ignore[override]
            wrapper = super().wrap_str_format(value)
            if wrapper is None:
                return None
            _check_format(value.__self__)

            def guarded(*args, **kwargs):
                _check_format(None, args, kwargs, *[a for a in args if isinstance(a, dict)])
                return wrapper(*args, **kwargs)

            return guarded

        def unsafe_undefined(self, obj, attribute):  # type: ignore[override]
            raise jinja2.exceptions.SecurityError(
                f"access to attribute {attribute!r} of a {type(obj).__name__!r} object is unsafe")

        def call(__self, __context, __obj, *args, **kwargs):  # type: ignore[override]  # noqa: N805
            _tick()
            if isinstance(getattr(__obj, "__self__", None), str) and getattr(__obj, "__name__", "") in _GROWING_STR_METHODS:
                s, meth = __obj.__self__, __obj.__name__
                if meth in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
                    _check_size(args[0], f"{meth}() width")
                elif meth == "expandtabs":
                    _check_size(len(s) * (args[0] if args and isinstance(args[0], int) else 8), "expandtabs() result")
                elif meth == "replace" and len(args) >= 2:
                    old, new = str(args[0]), str(args[1])
                    n = s.count(old) if old else len(s) + 1
                    _check_size(len(s) + n * max(len(new) - len(old), 0), "replace() result")
                elif meth == "join" and args:
                    items = list(args[0])
                    args = (items,) + args[1:]
                    _check_size(sum(len(str(x)) for x in items) + len(s) * len(items), "join() result")
            return super().call(__context, __obj, *args, **kwargs)

    env = BoundedEnv(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined,
                     extensions=[jinja2.ext.loopcontrols, _Generation])
    env.globals.pop("lipsum", None)
    env.globals.update(range=_g_range, raise_exception=_raise_exception, strftime_now=_strftime_now,
                       __ggrun_iter=_g_iter, __ggrun_binop=_g_binop, __ggrun_concat=_g_concat)
    env.filters.update(_bounded_filters(env.filters))
    return env
