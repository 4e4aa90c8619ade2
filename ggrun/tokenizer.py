"""GGUF tokenizers that give llama.cpp's token ids, token for token.

``Tokenizer.from_gguf(path)`` reads the ``tokenizer.*`` metadata of a GGUF file and follows
llama.cpp's ``llama_vocab`` (src/llama-vocab.cpp) for:

* BPE vocabularies (``tokenizer.ggml.model`` ``gpt2``, and ``gemma4``): llama.cpp's
  pre-tokenizer for ``tokenizer.ggml.pre`` (see ``ggrun.pretokenize``), GPT-2 byte-level
  encoding, then lowest-rank-first merges;
* SentencePiece vocabularies (``llama``): highest-score-first bigram merges over the text with
  spaces escaped as U+2581, a space prefix, and ``<0xXX>`` byte fallback;
* special tokens in the text (``parse_special``): CONTROL / USER_DEFINED / UNKNOWN tokens are
  cut out longest first before the text is tokenized, with llama.cpp's lstrip/rstrip rules;
* the special ids, ``add_bos`` defaults and end-of-generation set llama.cpp derives from the
  metadata and from token texts.

Decoding follows ``llama_token_to_piece`` / ``llama_detokenize``.
"""

from __future__ import annotations

import codecs
import heapq
import os
import re
from typing import Any, Iterable

from .errors import BadArgumentError, GGUFFormatError, UnsupportedModelError
from .pretokenize import BYTE_OF_CHAR, PRE_NAMES, PreTokenizer, byte_encode, clean_spaces, unordered_map_order
from .special_tokens import (ATTR_BYTE, ATTR_CONTROL, ATTR_LSTRIP, ATTR_NORMAL, ATTR_RSTRIP,  # noqa: F401  (re-exported)
                             ATTR_UNKNOWN, ATTR_UNUSED, ATTR_USER_DEFINED, partition, set_strip_attrs,
                             special_token_order)

# the GGUF token_type -> llama_token_attr map (the ATTR_* bits of llama.h, from ggrun.special_tokens)
_TYPE_TO_ATTR = {1: ATTR_NORMAL, 2: ATTR_UNKNOWN, 3: ATTR_CONTROL, 4: ATTR_USER_DEFINED, 5: ATTR_UNUSED, 6: ATTR_BYTE}

_SPACE = "\u2581"  # SentencePiece's escaped space
_NONE = 1 << 62

# token texts llama.cpp recognises when the metadata does not give the id (llama-vocab.cpp)
_DETECT = {
    "eot": ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
            "_<EOT>", "[EOT]", "<\uff5cend\u2581of\u2581sentence\uff5c>", "<end_of_utterance>"),
    "eom": ("<|eom_id|>",),
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\uff5cfim\u2581begin\uff5c>", "<PRE>", "\u2581<PRE>",
                "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uff5cfim\u2581hole\uff5c>", "<SUF>", "\u2581<SUF>",
                "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\uff5cfim\u2581end\uff5c>", "<MID>", "\u2581<MID>",
                "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}
_EOG_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
              "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
              "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<\uff5cend\u2581of\u2581sentence\uff5c>", "[e~[")
# metadata keys of the special ids, in llama.cpp's order (the deprecated FIM keys win)
_ID_KEYS = [("bos", "bos"), ("eos", "eos"), ("eot", "eot"), ("eom", "eom"), ("unk", "unknown"), ("sep", "seperator"),
            ("pad", "padding"), ("mask", "mask"), ("fim_pre", "fim_pre"), ("fim_suf", "fim_suf"), ("fim_mid", "fim_mid"),
            ("fim_pad", "fim_pad"), ("fim_rep", "fim_rep"), ("fim_sep", "fim_sep"), ("fim_pre", "prefix"),
            ("fim_suf", "suffix"), ("fim_mid", "middle")]
_SPM_BOUNDARY = re.compile(f"(?<=[^{_SPACE}])(?={_SPACE})")
_CACHE_MAX = 1 << 17


class Tokenizer:
    """A GGUF vocabulary: text -> token ids and back, exactly as llama.cpp does it.

    >>> tok = Tokenizer.from_gguf("model.gguf")
    >>> ids = tok.encode("<|im_start|>user\\nHi<|im_end|>\\n")
    >>> tok.decode(ids)
    """

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_gguf(cls, path_or_file: Any) -> "Tokenizer":
        """Build from a GGUF path or an open ``GGUFFile`` (vocab-only files are fine)."""
        if isinstance(path_or_file, (str, os.PathLike)):
            from .gguf_file import GGUFFile

            path_or_file = GGUFFile(path_or_file)
        return cls.from_metadata(path_or_file.metadata)

    @classmethod
    def from_metadata(cls, md: dict[str, Any]) -> "Tokenizer":
        """Build from a GGUF metadata dict (``tokenizer.ggml.*`` keys as plain Python values)."""
        return cls(md)

    def __init__(self, md: dict[str, Any]):
        model = md.get("tokenizer.ggml.model")
        pre = md.get("tokenizer.ggml.pre") or ""
        tokens = md.get("tokenizer.ggml.tokens")
        if not isinstance(model, str) or not isinstance(tokens, list) or not tokens:
            raise GGUFFormatError("no tokenizer in the GGUF metadata (tokenizer.ggml.model / tokenizer.ggml.tokens)")
        if model not in ("llama", "gpt2", "gemma4"):
            raise UnsupportedModelError(f"tokenizer model '{model}' is not supported (only gpt2/gemma4 BPE and llama SPM)")
        self.model: str = model
        self._spm = model == "llama"
        n = len(tokens)
        ids: dict[str, int | None] = dict.fromkeys((k for k, _ in _ID_KEYS), None)
        opts: frozenset[str] = frozenset()
        self._pre_type = "DEFAULT"
        if self._spm:
            ids.update(bos=1, eos=2, unk=0)
        else:
            if model == "gemma4":
                pre = "gemma4"
            elif model == "gpt2":
                ids.update(bos=11, eos=11)
            if pre and pre not in PRE_NAMES:
                raise UnsupportedModelError(f"unknown pre-tokenizer type '{pre}' (tokenizer.ggml.pre)")
            self._pre_type, opts = PRE_NAMES.get(pre, ("DEFAULT", frozenset()))
            if "nb" in opts:
                ids["bos"] = None
        self.pre: str = pre or "default"  # tokenizer.ggml.pre as llama.cpp reads it
        self._ignore_merges = "im" in opts
        self._escape_ws = "ew" in opts
        self.clean_spaces: bool = not self._spm and "nc" not in opts
        self.add_space_prefix: bool = bool(md.get("tokenizer.ggml.add_space_prefix", self._spm))
        self.add_bos: bool = self._spm or "bos" in opts
        self.add_eos: bool = False

        # vocabulary and attributes
        texts = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
        self._texts = texts
        self._tid: dict[str, int] = dict(zip(texts, range(n)))
        types = md.get("tokenizer.ggml.token_type")
        if types is not None and len(types) < n:
            raise GGUFFormatError(f"tokenizer.ggml.token_type has {len(types)} entries for {n} tokens")
        self._attr = [_TYPE_TO_ATTR.get(t, 0) for t in types[:n]] if types is not None else [ATTR_NORMAL] * n
        scores = md.get("tokenizer.ggml.scores")
        if scores is not None and len(scores) < n:
            raise GGUFFormatError(f"tokenizer.ggml.scores has {len(scores)} entries for {n} tokens")
        self._scores = [float(s) for s in scores[:n]] if scores is not None else [0.0] * n
        self._ranks: dict[str, int] = {}
        if not self._spm:
            merges = md.get("tokenizer.ggml.merges")
            if merges is None and pre != "kimi-k2":
                raise GGUFFormatError("BPE vocab without tokenizer.ggml.merges")
            # "a b" -> rank; the first occurrence of a pair wins, as with llama.cpp's emplace
            self._ranks = dict(zip(reversed(merges or []), range(len(merges or []) - 1, -1, -1)))
            self._pretok = PreTokenizer(self._pre_type)
            self._byte_encode = self._pretok.byte_encode

        # special ids: type defaults, then the metadata (ids out of range are ignored)
        for slot, key in _ID_KEYS:
            if ids[slot] is not None and ids[slot] >= n:
                ids[slot] = None
            v = md.get(f"tokenizer.ggml.{key}_token_id")
            if isinstance(v, int) and 0 <= v < n:
                ids[slot] = v
        for key, attr in (("add_bos", "add_bos"), ("add_eos", "add_eos")):
            v = md.get(f"tokenizer.ggml.{key}_token")
            if v is not None:
                setattr(self, attr, bool(v))
        if self._pre_type == "GEMMA4":
            self.add_bos = True
        self._detect_special_ids(ids)
        self._ids = ids

        # special tokens cut out of the text before tokenizing, longest first (ggrun.special_tokens)
        self._special = special_token_order(texts, self._attr)
        set_strip_attrs(md, self._tid, self._attr, self._special)
        self._special_first = {texts[i][0] for i in self._special}

        # SPM: a text can be cut before a U+2581 that follows another char when no token
        # contains such a pair (then no merge crosses the cut), so words can be cached
        bad = re.compile(f"[^{_SPACE}]{_SPACE}")
        self._spm_cut = self._spm and not any(_SPACE in t and bad.search(t) for t in texts)
        self._cache: dict[str, tuple[int, ...]] = {}
        self._pieces: list[bytes | None] = [None] * n

    def _detect_special_ids(self, ids: dict[str, int | None]) -> None:
        """EOT/EOM/FIM ids from token texts, the unused flags and the EOG set (llama.cpp's load)."""
        tid, attr, texts = self._tid, self._attr, self._texts
        self._eot_candidates: list[int] = []
        for slot, cands in _DETECT.items():
            if ids[slot] is not None:
                continue
            found = sorted({tid[t] for t in cands if t in tid})
            if not found:
                continue
            if len(found) > 1 and slot == "eot":  # order-dependent choice, resolved on first use
                self._eot_candidates = found
                continue
            pick = found[0] if len(found) == 1 else min(found, key=self._map_rank)
            ids[slot] = pick
            attr[pick] |= ATTR_CONTROL
        for i, t in enumerate(texts):
            if attr[i] & ATTR_CONTROL and "unused" in t:
                attr[i] |= ATTR_UNUSED
        eog = {ids[s] for s in ("fim_pad", "fim_rep", "fim_sep") if ids[s] is not None}
        for t in _EOG_TEXTS:
            if t in tid:
                eog.add(tid[t])
                attr[tid[t]] |= ATTR_CONTROL
        for t in ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"):  # gpt-oss: always rendered
            if t in tid:
                attr[tid[t]] = ATTR_USER_DEFINED
        eog.update(ids[s] for s in ("eos", "eot", "eom") if ids[s] is not None)
        by_text = {texts[i]: i for i in eog}
        has_call = "<|call|>" in by_text or "<|calls|>" in by_text
        if "<|end|>" in by_text and has_call and ("<|return|>" in by_text or "<|flush|>" in by_text):
            eog.discard(by_text["<|end|>"])  # o200k_harmony / solar-open: <|end|> is not EOG
            attr[by_text["<|end|>"]] = ATTR_USER_DEFINED
        if "</s>" in by_text and ("<|tool_response>" in by_text or "<|plamo:eos|>" in by_text):
            eog.discard(by_text["</s>"])  # gemma4 / plamo: a normal token
            attr[by_text["</s>"]] = ATTR_NORMAL
        self._eog = frozenset(eog)

    def _map_rank(self, token_id: int) -> int:
        """Position of a token in llama.cpp's token_to_id walk (libstdc++ unordered_map)."""
        if not hasattr(self, "_walk_rank"):
            try:
                order = unordered_map_order([t.encode("utf-8", "surrogatepass") for t in self._texts]).tolist()
            except ValueError:  # huge vocab: fall back to id order
                order = range(len(self._texts))
            rank = [0] * len(self._texts)
            for pos, i in enumerate(order):
                rank[i] = pos
            self._walk_rank = rank
        return self._walk_rank[token_id]

    # ------------------------------------------------------------------ properties

    @property
    def n_vocab(self) -> int:
        """Number of tokens in the vocabulary."""
        return len(self._texts)

    @property
    def bos_id(self) -> int | None:
        """Beginning-of-sequence token id (None if the vocab has none)."""
        return self._ids["bos"]

    @property
    def eos_id(self) -> int | None:
        """End-of-sequence token id (None if the vocab has none)."""
        return self._ids["eos"]

    @property
    def eot_id(self) -> int | None:
        """End-of-turn token id: tokenizer.ggml.eot_token_id, else the first of llama.cpp's
        known texts (<|eot_id|>, <|im_end|>, <|endoftext|>, ...) met in its vocab-map walk."""
        if self._ids["eot"] is None and self._eot_candidates:
            self._ids["eot"] = min(self._eot_candidates, key=self._map_rank)
        return self._ids["eot"]

    @property
    def eom_id(self) -> int | None:
        """End-of-message token id (<|eom_id|>), or None."""
        return self._ids["eom"]

    @property
    def unk_id(self) -> int | None:
        """Unknown-token id, or None."""
        return self._ids["unk"]

    @property
    def pad_id(self) -> int | None:
        """Padding token id, or None."""
        return self._ids["pad"]

    @property
    def fim_pre_id(self) -> int | None:
        """Fill-in-the-middle prefix token id, or None."""
        return self._ids["fim_pre"]

    @property
    def fim_suf_id(self) -> int | None:
        """Fill-in-the-middle suffix token id, or None."""
        return self._ids["fim_suf"]

    @property
    def fim_mid_id(self) -> int | None:
        """Fill-in-the-middle middle token id, or None."""
        return self._ids["fim_mid"]

    @property
    def fim_pad_id(self) -> int | None:
        """Fill-in-the-middle padding token id, or None."""
        return self._ids["fim_pad"]

    @property
    def fim_rep_id(self) -> int | None:
        """Fill-in-the-middle repository-name token id, or None."""
        return self._ids["fim_rep"]

    @property
    def fim_sep_id(self) -> int | None:
        """Fill-in-the-middle file-separator token id, or None."""
        return self._ids["fim_sep"]

    @property
    def eog_ids(self) -> frozenset[int]:
        """Every token that ends generation (EOS, EOT, EOM, FIM pad/repo/sep, <|im_end|>, ...)."""
        return self._eog

    def is_eog(self, token_id: int) -> bool:
        """True if generating ``token_id`` ends the generation."""
        return token_id in self._eog

    def token_text(self, token_id: int) -> str:
        """The raw vocabulary entry of a token (byte-level / U+2581-escaped form)."""
        return self._texts[self._check_id(token_id)]

    def token_id(self, text: str) -> int | None:
        """The id of the vocabulary entry whose raw text is exactly ``text``, or None."""
        return self._tid.get(text)

    def token_attr(self, token_id: int) -> int:
        """llama.cpp's ``llama_token_attr`` bits of a token (ATTR_* constants of this module)."""
        return self._attr[self._check_id(token_id)]

    def __repr__(self) -> str:
        return f"Tokenizer(model={self.model!r}, pre={self.pre!r}, n_vocab={self.n_vocab})"

    # ------------------------------------------------------------------ encoding

    def encode(self, text: str, add_bos: bool | None = None, parse_special: bool = True) -> list[int]:
        """Token ids of ``text``, as ``llama_tokenize``.

        ``add_bos``: None adds BOS when the vocab asks for it (``tokenizer.ggml.add_bos_token``,
        else llama.cpp's default: SPM yes, BPE only for llama3/tekken/chameleon/gemma4), and
        then also EOS if ``tokenizer.ggml.add_eos_token`` is set; True/False force BOS on/off.
        ``parse_special``: True turns the text of control tokens (``<|im_end|>``) into their ids;
        False tokenizes it as plain text.  User-defined tokens are always matched, as in
        llama.cpp.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, not {type(text).__name__}")
        special = self.add_bos if add_bos is None else bool(add_bos)
        out: list[int] = []
        if special:
            if self.bos_id is not None:
                out.append(self.bos_id)
            elif add_bos:
                raise BadArgumentError("add_bos=True but this vocab has no BOS token")
        frags = partition(text, parse_special, self._texts, self._attr, self._special, self._special_first) if text else []
        if self._spm:
            prev_special = True
            for f in frags:
                if isinstance(f, int):
                    out.append(f)
                    prev_special = True
                    continue
                if self.add_space_prefix and prev_special:
                    f = " " + f
                self._encode_spm(f.replace(" ", _SPACE), out)
                prev_special = False
        else:
            for f in frags:
                if isinstance(f, int):
                    out.append(f)
                else:
                    self._encode_bpe(f.replace(" ", _SPACE) if self._escape_ws else f, out)
        if special and self.add_eos and self.eos_id is not None:
            out.append(self.eos_id)
        return out

    def _encode_bpe(self, text: str, out: list[int]) -> None:
        words = self._pretok.split(text)
        if self._pre_type == "MMBERT":  # metaspace: every U+2581 starts a word, and so does the text
            split = []
            for w in words:
                if w.strip("\n"):
                    w = w if w.startswith(_SPACE) else _SPACE + w
                    split.extend(_SPACE + p for p in w[1:].split(_SPACE))
                else:
                    split.append(w)
            words = split
        cache = self._cache
        for w in words:
            ids = cache.get(w)
            if ids is None:
                if len(cache) > _CACHE_MAX:
                    cache.clear()
                ids = cache[w] = self._bpe_word(byte_encode(w) if self._byte_encode else w)
            out.extend(ids)

    def _bpe_word(self, word: str) -> tuple[int, ...]:
        """Merge one pre-tokenized word: lowest merge rank first, leftmost on ties."""
        tid = self._tid
        if word in tid and (self._ignore_merges or (self._pre_type in ("GEMMA4", "MMBERT") and not word.strip("\n"))):
            return (tid[word],)
        parts = list(word)
        if len(parts) > 1:
            ranks = self._ranks
            rk = [ranks.get(a + " " + b, _NONE) for a, b in zip(parts, parts[1:])]
            while rk:
                best = min(rk)
                if best == _NONE:
                    break
                i = rk.index(best)
                parts[i] += parts.pop(i + 1)
                del rk[i]
                if i > 0:
                    rk[i - 1] = ranks.get(parts[i - 1] + " " + parts[i], _NONE)
                if i < len(rk):
                    rk[i] = ranks.get(parts[i] + " " + parts[i + 1], _NONE)
        out = []
        for p in parts:
            t = tid.get(p)
            if t is not None:
                out.append(t)
                continue
            for b in p.encode("utf-8", "surrogatepass"):  # llama.cpp: one-byte tokens, else dropped
                if self._byte_encode:
                    t = tid.get(chr(b)) if b < 0x80 else None
                else:
                    t = tid.get(f"<0x{b:02X}>")
                if t is not None:
                    out.append(t)
        return tuple(out)

    def _encode_spm(self, text: str, out: list[int]) -> None:
        if not self._spm_cut or len(text) < 16:
            out.extend(self._spm_piece(text))
            return
        cache = self._cache
        for w in _SPM_BOUNDARY.split(text):
            ids = cache.get(w)
            if ids is None:
                if len(cache) > _CACHE_MAX:
                    cache.clear()
                ids = cache[w] = self._spm_piece(w)
            out.extend(ids)

    def _spm_piece(self, text: str) -> tuple[int, ...]:
        """llama.cpp's SPM session: merge the best-scoring adjacent pair first (leftmost on ties),
        then byte-fallback whatever is not a token."""
        syms = list(text)
        n = len(syms)
        if not n:
            return ()
        tid, scores = self._tid, self._scores
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        heap: list[tuple[float, int, int, int]] = []

        def push(left: int, right: int) -> None:
            s = syms[left] + syms[right]
            t = tid.get(s)
            if t is not None:
                heapq.heappush(heap, (-scores[t], left, right, len(s)))

        for i in range(n - 1):
            push(i, i + 1)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            a, b = syms[left], syms[right]
            if not a or not b or len(a) + len(b) != size:
                continue
            syms[left], syms[right] = a + b, ""
            r = nxt[left] = nxt[right]
            if r >= 0:
                prv[r] = left
            if prv[left] >= 0:
                push(prv[left], left)
            if r >= 0:
                push(left, r)
        ids = []
        i = 0
        while i >= 0:
            t = tid.get(syms[i])
            if t is not None:
                ids.append(t)
            else:
                for b in syms[i].encode("utf-8", "surrogatepass"):
                    t = tid.get(f"<0x{b:02X}>")
                    if t is None:
                        t = tid.get(chr(b)) if b < 0x80 else self.unk_id
                    if t is not None:
                        ids.append(t)
            i = nxt[i]
        return tuple(ids)

    # ------------------------------------------------------------------ decoding

    def _check_id(self, token_id: int) -> int:
        if not 0 <= token_id < len(self._texts):
            raise BadArgumentError(f"token id {token_id} is out of range [0, {len(self._texts)})")
        return token_id

    def token_to_piece(self, token_id: int, special: bool = True) -> bytes:
        """The bytes a token stands for (``llama_token_to_piece``): byte tokens give their byte,
        SPM's U+2581 gives a space, GPT-2 byte-level chars give their bytes; control and unknown
        tokens give their text when ``special`` is True and nothing otherwise."""
        a = self._attr[self._check_id(token_id)]
        if not special and a & (ATTR_CONTROL | ATTR_UNKNOWN):
            return b""
        piece = self._pieces[token_id]
        if piece is None:
            piece = self._pieces[token_id] = self._make_piece(token_id, a)
        return piece

    def _make_piece(self, token_id: int, a: int) -> bytes:
        text = self._texts[token_id]
        if a & (ATTR_CONTROL | ATTR_UNKNOWN | ATTR_USER_DEFINED):
            return text.encode("utf-8", "surrogatepass")
        if a & ATTR_NORMAL:
            if self._spm or self._escape_ws:
                return text.replace(_SPACE, " ").encode("utf-8", "surrogatepass")
            out = bytearray()
            for c in text:
                b = BYTE_OF_CHAR.get(c)
                if b is not None:
                    out.append(b)
                else:  # not a byte-level char: llama.cpp's marker
                    out += f"[UNK_BYTE_0x{c.encode('utf-8', 'surrogatepass').hex()}{text}]".encode("utf-8", "surrogatepass")
            return bytes(out)
        if a & ATTR_BYTE:
            return bytes([int(text[3:5], 16)])
        return b""

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of token ids, as ``llama_detokenize(remove_special=False, unparse_special=not
        skip_special)``: SPM drops the leading space of the first piece (add_space_prefix), and
        BPE vocabs with clean_up_tokenization_spaces (gpt-2, llama3, starcoder, ...) drop the
        space before ``?!.,`` and in `` 's``/`` 'm``/`` 're``/`` 've`` like llama.cpp.  Invalid
        UTF-8 becomes U+FFFD."""
        out = bytearray()
        strip = self.add_space_prefix
        for i in ids:
            p = self.token_to_piece(i, not skip_special)
            if strip and p[:1] == b" ":
                p = p[1:]
            strip = False
            out += p
        if self.clean_spaces:
            out = clean_spaces(out)
        return out.decode("utf-8", "replace")

    def stream(self, special: bool = False) -> "StreamDecoder":
        """A ``StreamDecoder`` for this vocab (see there)."""
        return StreamDecoder(self, special)


class StreamDecoder:
    """Incremental detokenizer: ``feed(id)`` returns the text that is complete so far.

    Pieces are joined as raw bytes (``token_to_piece``, no space cleaning, as llama.cpp prints
    generated tokens); a multi-byte character split across tokens is held back until its last
    byte arrives; ``flush()`` returns what is left (an incomplete tail becomes U+FFFD).
    """

    def __init__(self, tokenizer: Tokenizer, special: bool = False):
        self._tok = tokenizer
        self._special = special
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, token_id: int) -> str:
        """Add one token; return the newly completed text (may be empty)."""
        return self._dec.decode(self._tok.token_to_piece(token_id, self._special))

    def flush(self) -> str:
        """Return the held-back bytes (as U+FFFD if incomplete) and reset."""
        text = self._dec.decode(b"", final=True)
        self._dec.reset()
        return text
