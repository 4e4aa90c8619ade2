"""Fill in the middle: the code between a prefix and a suffix, as llama.cpp's ``/infill`` does it.

The prompt is made of tokens, not text (tools/server/server-common.cpp, format_prompt_infill):

    [FIM_REP "myproject\\n"] [FIM_SEP name "\\n" chunk]… [FIM_SEP "filename\\n"]     (repo-level models)
    [BOS] FIM_PRE prefix FIM_SUF suffix FIM_MID                                 (PSM order)
    [BOS] FIM_SUF suffix FIM_PRE prefix FIM_MID                                 (--spm-infill)

prefix and suffix are tokenized without BOS and without parsing special tokens (a
``<|EOT|>`` written in the code stays text); the prefix keeps its last 3/4·n_batch tokens,
the suffix its first n_batch/4 − 2. The FIM tokens come from the vocab: the
``tokenizer.ggml.fim_{pre,suf,mid}_token_id`` keys where the file has them, else by their
text, as llama.cpp finds them. Known styles:

    deepseek   <｜fim▁begin｜> … <｜fim▁hole｜> … <｜fim▁end｜>   (DeepSeek Coder)
    codellama  ▁<PRE> … ▁<SUF> … ▁<MID>                       (CodeLlama, SPM vocab)
    starcoder  <fim_prefix> … <fim_suffix> … <fim_middle>     (StarCoder, Granite, Refact)
    qwen       <|fim_prefix|> … <|fim_suffix|> … <|fim_middle|>, <|repo_name|>, <|file_sep|>  (Qwen2.5-Coder)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from .errors import BadArgumentError, GGRunError

STYLES: dict[str, dict[str, tuple[str, ...]]] = {
    "deepseek": {"pre": ("<｜fim▁begin｜>",), "suf": ("<｜fim▁hole｜>",), "mid": ("<｜fim▁end｜>",)},
    "codellama": {"pre": ("▁<PRE>", "<PRE>"), "suf": ("▁<SUF>", "<SUF>"), "mid": ("▁<MID>", "<MID>")},
    "starcoder": {"pre": ("<fim_prefix>", "<fim-prefix>"), "suf": ("<fim_suffix>", "<fim-suffix>"),
                  "mid": ("<fim_middle>", "<fim-middle>")},
    "qwen": {"pre": ("<|fim_prefix|>",), "suf": ("<|fim_suffix|>",), "mid": ("<|fim_middle|>",),
             "rep": ("<|repo_name|>",), "sep": ("<|file_sep|>",)},
}


class InfillError(GGRunError):
    """A model without fill-in-the-middle tokens, or a style its vocab doesn't have."""


@dataclass(frozen=True)
class FimTokens:
    pre: int
    suf: int
    mid: int
    rep: int | None = None
    sep: int | None = None
    style: str = "auto"


def _vocab_index(tokenizer) -> dict[str, int]:
    idx = getattr(tokenizer, "_ggrun_text_index", None)
    if idx is None:
        n = tokenizer.n_vocab
        idx = {}
        for i in range(n):
            t = tokenizer.token_text(i)
            idx.setdefault(t, i)
        try:
            tokenizer._ggrun_text_index = idx
        except AttributeError:
            pass
    return idx


def fim_tokens(tokenizer, style: str | None = None) -> FimTokens:
    """The FIM tokens of a vocab: ``style`` None/'auto' takes the tokenizer's (metadata keys,
    else llama.cpp's detection by text); a named style looks its texts up in the vocab."""
    if style in (None, "", "auto"):
        ids = (tokenizer.fim_pre_id, tokenizer.fim_suf_id, tokenizer.fim_mid_id)
        if None in ids:
            raise InfillError("this model has no fill-in-the-middle tokens (FIM prefix/suffix/middle); "
                              "infill needs a code model such as DeepSeek Coder, CodeLlama, StarCoder or Qwen-Coder")
        return FimTokens(*ids, rep=getattr(tokenizer, "fim_rep_id", None), sep=getattr(tokenizer, "fim_sep_id", None))
    if style not in STYLES:
        raise BadArgumentError(f"--fim-style {style}: unknown; one of auto, {', '.join(STYLES)}")
    idx = _vocab_index(tokenizer)
    found: dict[str, Any] = {}
    for part, texts in STYLES[style].items():
        found[part] = next((idx[t] for t in texts if t in idx), None)
    missing = [p for p in ("pre", "suf", "mid") if found[p] is None]
    if missing:
        raise InfillError(f"--fim-style {style}: the vocab has no {', '.join(STYLES[style][m][0] for m in missing)} token")
    return FimTokens(found["pre"], found["suf"], found["mid"], found.get("rep"), found.get("sep"), style)


def infill_ids(tokenizer, prefix: str, suffix: str, style: str | None = None, spm: bool = False,
               extra: Sequence[dict[str, str]] = (), n_batch: int = 2048, n_ctx: int = 0, n_predict: int = -1,
               prompt: str = "") -> list[int]:
    """The token sequence llama.cpp's /infill feeds the model for ``prefix``/``suffix``.

    extra: repo-level context chunks [{"filename": …, "text": …}] (llama.cpp's input_extra);
    prompt: text that continues the prefix (llama.cpp's ``prompt`` field of /infill).
    """
    fim = fim_tokens(tokenizer, style)

    def tok(s: str) -> list[int]:
        return tokenizer.encode(s, add_bos=False, parse_special=False) if s else []

    extra_tokens: list[int] = []
    if fim.rep is not None:
        extra_tokens += [fim.rep] + tok("myproject\n")
    for chunk in extra:
        text, filename = str(chunk.get("text", "")), str(chunk.get("filename", "tmp"))
        if fim.sep is not None:
            extra_tokens += [fim.sep] + tok(filename + "\n")
        else:
            extra_tokens += tok("\n\n--- snippet ---\n\n")
        extra_tokens += tok(text)
    if fim.sep is not None:
        extra_tokens += [fim.sep] + tok("filename\n")

    p, s, pr = tok(prefix), tok(suffix), tok(prompt)
    n_prefix_take = min(len(p), 3 * (n_batch // 4))
    n_suffix_take = min(len(s), max(0, n_batch // 4 - (2 + len(pr))))
    p = p[len(p) - n_prefix_take:]
    s = s[:n_suffix_take]
    n_ctx = n_ctx or 1 << 30
    n_extra_take = min(max(0, n_ctx - n_batch - 2 * n_predict), len(extra_tokens))

    head = [fim.pre] + p + pr
    tail = [fim.suf] + s
    first, last = (tail, head) if spm else (head, tail)
    out = list(first)
    if tokenizer.add_bos and tokenizer.bos_id is not None:
        out.insert(0, tokenizer.bos_id)
    out = extra_tokens[len(extra_tokens) - n_extra_take:] + out + last + [fim.mid]
    return out


def infill_stream(engine, prefix: str, suffix: str, params=None, max_tokens: int = -1, style: str | None = None,
                  spm: bool = False, stop: Sequence[str] = (), slot: int = 0, extra: Sequence[dict[str, str]] = ()
                  ) -> Iterator[Any]:
    """Generate the middle: yields the engine's events (text pieces, then the final one)."""
    from .sampling import SamplingParams

    ids = infill_ids(engine.tokenizer, prefix, suffix, style, spm, extra, n_batch=max(engine.n_batch, 2048),
                     n_ctx=engine.n_ctx, n_predict=max_tokens)
    if len(ids) >= engine.n_ctx:
        from .errors import ContextError

        raise ContextError(f"the infill prompt is {len(ids)} tokens, the context only {engine.n_ctx} (-c)")
    yield from engine.generate(ids, params or SamplingParams(), max_tokens=max_tokens, stop=stop, slot=slot)


def infill(engine, prefix: str, suffix: str, params=None, max_tokens: int = -1, style: str | None = None,
           spm: bool = False, stop: Sequence[str] = (), slot: int = 0) -> str:
    """The code that goes between ``prefix`` and ``suffix`` (generation ends at the model's
    end-of-generation token, a stop string or ``max_tokens``).

    >>> eng = ggrun.loader.load("deepseek-coder-6.7b-base.Q4_K_M.gguf")
    >>> infill(eng, "def fib(n):\\n    ", "\\n    return fib(n - 1) + fib(n - 2)\\n", max_tokens=64)
    """
    return "".join(ev.text for ev in infill_stream(engine, prefix, suffix, params, max_tokens, style, spm, stop, slot))
