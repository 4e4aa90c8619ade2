"""Special tokens in the text, as llama.cpp's ``tokenizer_st_partition`` (src/llama-vocab.cpp).

Before a text is pre-tokenized, the text of every CONTROL / USER_DEFINED / UNKNOWN token is
cut out of it, longest token first (ties by id), and replaced by the token's id; the pieces
of text left between them are tokenized on their own. CONTROL and UNKNOWN tokens are only
cut when ``parse_special`` is on; USER_DEFINED tokens always are. A token with the LSTRIP
attribute also eats the ASCII whitespace before it, one with RSTRIP the whitespace after it;
llama.cpp sets those attributes by model name (``set_strip_attrs``), not from the GGUF.

This module holds the ``llama_token_attr`` bits (re-exported by ``ggrun.tokenizer``), the
order the special tokens are tried in, the per-model strip attributes, and the partition
itself; ``ggrun.tokenizer.Tokenizer`` calls them.
"""

from __future__ import annotations

from typing import Any

# llama_token_attr bits (llama.h)
ATTR_UNKNOWN, ATTR_UNUSED, ATTR_NORMAL, ATTR_CONTROL = 1, 2, 4, 8
ATTR_USER_DEFINED, ATTR_BYTE, ATTR_LSTRIP, ATTR_RSTRIP = 16, 32, 128, 256

_ASCII_SPACE = " \t\n\v\f\r"  # C isspace()


def special_token_order(texts: list[str], attr: list[int]) -> list[int]:
    """Ids of the tokens cut out of the text, in the order they are tried: longest first (in
    UTF-8 bytes), then by id."""
    return sorted((i for i in range(len(texts)) if attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)),
                  key=lambda i: (-len(texts[i].encode("utf-8", "surrogatepass")), i))


def set_strip_attrs(md: dict[str, Any], tid: dict[str, int], attr: list[int], special: list[int]) -> None:
    """llama.cpp's per-model lstrip/rstrip attributes (set by name, not stored in GGUF)."""
    name = str(md.get("general.name", "")).lower()
    pre = str(md.get("tokenizer.ggml.pre", ""))
    arch = str(md.get("general.architecture", ""))
    if any(s in pre for s in ("jina-v2-de", "jina-v2-es", "jina-v2-code", "mmbert")) or any(
            s in arch for s in ("nomic-bert-moe", "jina-bert-v3")):
        if "<mask>" in tid:
            attr[tid["<mask>"]] |= ATTR_LSTRIP
    elif "phi-3" in name or "phi3" in name:
        for i in special:
            attr[i] |= ATTR_RSTRIP
        if "</s>" in tid:
            attr[tid["</s>"]] |= ATTR_RSTRIP
        for t in ("<unk>", "<s>", "<|endoftext|>"):
            if t in tid:
                attr[tid[t]] &= ~ATTR_RSTRIP
    elif "modern-bert" in name and "[MASK]" in tid:
        attr[tid["[MASK]"]] |= ATTR_LSTRIP


def partition(text: str, parse_special: bool, texts: list[str], attr: list[int], special: list[int],
              special_first: set[str]) -> list[str | int]:
    """Cut special tokens out of ``text`` (llama.cpp's tokenizer_st_partition): the pieces of
    text (str) and special token ids (int), in order. ``special`` is ``special_token_order``'s
    list, ``special_first`` the set of their first characters (a quick way out)."""
    frags: list[str | int] = [text]
    if not special_first & set(text):
        return frags
    seen: dict[str, bool] = {}  # 2-char prefix -> occurs in the text (skips most tokens fast)
    for sid in special:
        tok = texts[sid]
        head = tok[:2]
        here = seen.get(head)
        if here is None:
            here = seen[head] = head in text
        a = attr[sid]
        if not here or not parse_special and a & (ATTR_CONTROL | ATTR_UNKNOWN) or tok not in text:
            continue
        new: list[str | int] = []
        for f in frags:
            if isinstance(f, int) or tok not in f:
                new.append(f)
                continue
            pos, end = 0, len(f)
            while (m := f.find(tok, pos)) >= 0:
                left = f[pos:m]
                if a & ATTR_LSTRIP:
                    left = left.rstrip(_ASCII_SPACE)
                if left:
                    new.append(left)
                new.append(sid)
                pos = m + len(tok)
                if a & ATTR_RSTRIP:
                    while pos < end and f[pos] in _ASCII_SPACE:
                        pos += 1
            if pos < end:
                new.append(f[pos:])
        frags = new
    return frags
