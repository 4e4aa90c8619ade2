"""llama.cpp's BPE pre-tokenizers and Unicode tables, plus small helpers of ggrun.tokenizer.

``PreTokenizer(pre).split(text)`` cuts a text fragment into the words that the BPE merges
then run on, exactly as llama.cpp's ``unicode_regex_split`` does for the pre-tokenizer
type ``pre`` (the GGUF ``tokenizer.ggml.pre``).

How the match with llama.cpp is kept exact:

* llama.cpp runs each regex of a pre-tokenizer in turn over the pieces the previous one
  left, and keeps the unmatched gaps as pieces too.  Regexes that use ``\\p{..}`` run over a
  "collapsed" text where every non-ASCII code point is replaced by one byte standing for its
  category (letter 0xD2, number 0xD1, punctuation 0xD3, mark 0xD4, symbol 0xD5, other 0xD0,
  whitespace 0x0B) and ``\\p{X}`` becomes ``[<byte><ASCII members>]``; the others run over the
  code points with non-ASCII whitespace replaced by 0x0B.  We do the same with Python's
  ``re`` (``re.ASCII``: ``\\s`` is ``[ \\t\\n\\v\\f\\r]`` like C's ``isspace``).
* llama.cpp's hand-written splitters for the GPT-2, Llama-3, Qwen2 and Qwen3.5 regexes
  implement those regexes over its own category flags, so running the regex over the
  collapsed text gives the same pieces.  The Kimi-K2 and AFMoE splitters have no regex
  equivalent and are ported as loops.
* Categories are llama.cpp's (UnicodeData 15.1, \\p{L}/\\p{N}/... by general category, its
  own whitespace list): Python's ``unicodedata`` plus the code points it lacks.  Exact for
  Python 3.11-3.13 (Unicode 14.0-15.1); a newer Python also knows code points assigned
  after 15.1, which llama.cpp treats as unassigned.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
import warnings

import numpy as np

# ---------------------------------------------------------------------------------------
# Unicode categories, llama.cpp style
# ---------------------------------------------------------------------------------------

F_UNDEFINED, F_NUMBER, F_LETTER, F_SEPARATOR = 0x01, 0x02, 0x04, 0x08
F_MARK, F_PUNCT, F_SYMBOL, F_CONTROL = 0x10, 0x20, 0x40, 0x80

_CAT_FLAG = {"C": F_CONTROL, "L": F_LETTER, "M": F_MARK, "N": F_NUMBER, "P": F_PUNCT, "S": F_SYMBOL, "Z": F_SEPARATOR}

WHITESPACE = frozenset(
    [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)

# Code points assigned after Unicode 14.0 (Python 3.11's unicodedata) that llama.cpp's
# Unicode 15.1 table knows: (first, last, category flag).
N, L, M, P, S, C = F_NUMBER, F_LETTER, F_MARK, F_PUNCT, F_SYMBOL, F_CONTROL
_NEWER = [
    (0xCF3, 0xCF3, M), (0xECE, 0xECE, M), (0x2FFC, 0x2FFF, S), (0x31EF, 0x31EF, S), (0x10EFD, 0x10EFF, M),
    (0x1123F, 0x11240, L), (0x11241, 0x11241, M), (0x11B00, 0x11B09, P), (0x11F00, 0x11F01, M), (0x11F02, 0x11F02, L),
    (0x11F03, 0x11F03, M), (0x11F04, 0x11F10, L), (0x11F12, 0x11F33, L), (0x11F34, 0x11F3A, M), (0x11F3E, 0x11F42, M),
    (0x11F43, 0x11F4F, P), (0x11F50, 0x11F59, N), (0x1342F, 0x1342F, L), (0x13439, 0x1343F, C), (0x13440, 0x13440, M),
    (0x13441, 0x13446, L), (0x13447, 0x13455, M), (0x1B132, 0x1B132, L), (0x1B155, 0x1B155, L), (0x1D2C0, 0x1D2D3, N),
    (0x1DF25, 0x1DF2A, L), (0x1E030, 0x1E06D, L), (0x1E08F, 0x1E08F, M), (0x1E4D0, 0x1E4EB, L), (0x1E4EC, 0x1E4EF, M),
    (0x1E4F0, 0x1E4F9, N), (0x1F6DC, 0x1F6DC, S), (0x1F774, 0x1F776, S), (0x1F77B, 0x1F77F, S), (0x1F7D9, 0x1F7D9, S),
    (0x1FA75, 0x1FA77, S), (0x1FA87, 0x1FA88, S), (0x1FAAD, 0x1FAAF, S), (0x1FABB, 0x1FABD, S), (0x1FABF, 0x1FABF, S),
    (0x1FACE, 0x1FACF, S), (0x1FADA, 0x1FADB, S), (0x1FAE8, 0x1FAE8, S), (0x1FAF7, 0x1FAF8, S), (0x2B739, 0x2B739, L),
    (0x2EBF0, 0x2EE5D, L), (0x31350, 0x323AF, L),
]
del N, L, M, P, S, C
_NEWER_START = [r[0] for r in _NEWER]


def cpt_category(cp: int) -> int:
    """llama.cpp's category flag of a code point (exactly one of the F_* bits)."""
    i = bisect.bisect_right(_NEWER_START, cp) - 1
    if i >= 0 and cp <= _NEWER[i][1]:
        return _NEWER[i][2]
    cat = unicodedata.category(chr(cp))
    return F_UNDEFINED if cat == "Cn" else _CAT_FLAG[cat[0]]


_COLLAPSE_BYTE = {F_NUMBER: 0xD1, F_LETTER: 0xD2, F_PUNCT: 0xD3, F_MARK: 0xD4, F_SYMBOL: 0xD5}


class _CollapseMap(dict):
    """str.translate table: non-ASCII code point -> its category byte (as a char)."""

    def __missing__(self, cp: int) -> int:
        if cp < 128:
            v = cp
        elif cp in WHITESPACE:
            v = 0x0B
        else:
            v = _COLLAPSE_BYTE.get(cpt_category(cp), 0xD0)
        self[cp] = v
        return v


class _WideMap(dict):
    """str.translate table: non-ASCII whitespace -> 0x0B, everything else unchanged."""

    def __missing__(self, cp: int) -> int:
        v = 0x0B if cp >= 128 and cp in WHITESPACE else cp
        self[cp] = v
        return v


_COLLAPSE = _CollapseMap()
_WIDE = _WideMap()

# ---------------------------------------------------------------------------------------
# The pre-tokenizer regexes (llama-vocab.cpp, llm_tokenizer_bpe), by pre-tokenizer type
# ---------------------------------------------------------------------------------------

_CONTR = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = _CONTR + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN2 = _CONTR + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

_REGEX_GROUPS = {
    ('LLAMA3', 'DBRX', 'SMAUG', 'CHATGLM4'): (_LLAMA3,),
    ('JAIS2',): (_CONTR + r'|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}',),
    ('DEEPSEEK_LLM',): ('[\r\n]', '\\s?[A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+', '\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+', r'\s+$', '[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+', r'\p{N}+',),
    ('DEEPSEEK3_LLM', 'HUNYUAN_DENSE', 'JOYAI_LLM', 'HY_V4'): (r'\p{N}{1,3}', '[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+', '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+',),
    ('SPARK2_5',): (r'\p{N}{1,3}', '[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+', '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+', r'\p{N}',),
    ('YOUTU',): ('[\uac00-\ud7a3\u3131-\u318e]+|[\uff01\u2026\u201c\u201d\u2018\u2019\u2014\uff1a\uff1b\uff0c\u3001-\u303f\ufe30-\ufe4f]+|[\u3105-\u312f]+|[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+', r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
    ('DEEPSEEK_CODER',): ('[\r\n]', r'\s?\p{L}+', r'\s?\p{P}+', '[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+', r'\p{N}',),
    ('FALCON',): (r'[\p{P}\$\+<=>\^~\|`]+', _GPT2, '[0-9][0-9][0-9]',),
    ('STARCODER', 'REFACT', 'COMMAND_R', 'SMOLLM', 'CODESHELL', 'EXAONE', 'MINERVA', 'MELLUM2'): (r'\p{N}', _GPT2,),
    ('GPT2', 'MPT', 'OLMO', 'JAIS', 'TRILLION', 'GRANITE_DOCLING'): (_GPT2,),
    ('STABLELM2', 'QWEN2', 'HUNYUAN', 'SOLAR_OPEN', 'GROK_2'): (_QWEN2,),
    ('QWEN35',): (_CONTR + r'|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+',),
    ('PORO', 'BLOOM', 'GPT3_FINNISH'): (' ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+',),
    ('VIKING',): (' ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+', r'\p{N}',),
    ('TEKKEN',): (r'[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+',),
    ('CHAMELEON',): ('<sentinel:[0-9]+>', '(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z', r'([\t\n]|    |  )', r'\p{N}', r'[\p{P}!-/:-@\[-`{-~]', _GPT2,),
    ('GPT4O', 'MINIMAX_M2'): (r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
    ('GRANITE_EMB_MULTI',): (r"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
    ('TINY_AYA',): (r'\d{1,3}(?=(?:\d{3})*\b)', r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
    ('KIMI_K2',): (r'\p{Han}+',),
    ('SUPERBPE',): (r'\p{N}+', r'(?=(\d{3})+(?!\d))',),
    ('BAILINGMOE',): (r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",),
    ('SEED_CODER',): (_CONTR + r'|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+',),
    ('UFAKZEKA',): (r'[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+',),
    ('AFMOE',): (r'\p{AFMoE_digits}', '[\u4e00-\u9fff\u3400-\u4dbf\u8c48-\ufaff\u3040-\u309f\u30a0-\u30ff\uff65-\uff9f\u2f00-\u2fdf\u0e40-\u0e7f\u0e80-\u0eff\u1780-\u17ff\u1000-\u109f\uaa60-\uaa7f\ua9e0-\ua9ff\uac00-\ud7af\u1100-\u11ff]+', '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',),
    ('LAGUNA',): (r'[^\n]+|[\n]+', _QWEN2,),
    ('EXAONE_MOE',): (_CONTR + r'|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+',),
    ('GEMMA4', 'SARVAM_MOE', 'MMBERT'): (r'[^\n]+|[\n]+',),
    ('MINICPM5',): (r'\p{N}{1,3}', _CONTR + r'|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+',),
    ('WHITESPACE',): (r'\S+',),
    ('DEFAULT',): (r'[\p{P}\$\+<=>\^~\|]+', _GPT2, r'\p{N}+', '[0-9][0-9][0-9]',),
}
REGEXES: dict[str, tuple[str, ...]] = {t: exprs for types, exprs in _REGEX_GROUPS.items() for t in types}
RAW_UTF8_TYPES = frozenset({"GEMMA4", "SARVAM_MOE", "MMBERT", "WHITESPACE"})  # no GPT-2 byte encoding

# tokenizer.ggml.pre -> (type, options); options: "nc" no clean_spaces, "im" ignore_merges,
# "bos" add BOS by default, "ew" escape whitespace as U+2581, "nb" no default BOS id
_PRE_NAMES_SRC = """
DEFAULT default | MINICPM5 minicpm5 im
LLAMA3 llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano im bos
DEEPSEEK_LLM deepseek-llm nc | DEEPSEEK_CODER deepseek-coder nc | DEEPSEEK3_LLM deepseek-v3 nc
SPARK2_5 spark2_5 nc | YOUTU youtu nc im | FALCON falcon | MPT mpt | STARCODER starcoder
GPT2 gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert
GPT2 jina-v1-en jina-v2-code roberta-bpe exaone4 | JAIS2 jais-2
GEMMA4 gemma4 granite-embed-multi-311m ew | MMBERT mmbert ew | SARVAM_MOE sarvam-moe ew nc
WHITESPACE whitespace | REFACT refact | COMMAND_R command-r nc
QWEN2 qwen2 deepseek-r1-qwen kormo f2llmv2 nc | QWEN2 megrez | QWEN35 qwen35 nc
STABLELM2 stablelm2 | OLMO olmo | DBRX dbrx | SMAUG smaug-bpe | PORO poro-chat nc
CHATGLM4 chatglm-bpe nb | CHATGLM4 glm4 glm5 nb im | VIKING viking nc | JAIS jais
TEKKEN tekken nc im bos | SMOLLM smollm nc | CODESHELL codeshell | BLOOM bloom
GPT3_FINNISH gpt3-finnish | EXAONE exaone | EXAONE_MOE exaone-moe | CHAMELEON chameleon bos nc
MINERVA minerva-7b | GPT4O gpt-4o llama4 kanana2 talkie nc | GRANITE_EMB_MULTI granite-embed-multi-97m nc im
TINY_AYA tiny_aya cohere2moe nc | SUPERBPE superbpe nc | TRILLION trillion nc
GRANITE_DOCLING granite-docling nc | BAILINGMOE bailingmoe bailingmoe2 llada-moe nc
SEED_CODER seed-coder nc | HUNYUAN hunyuan nc | HUNYUAN_DENSE hunyuan-dense nc | HY_V4 hy_v4 nc
JOYAI_LLM joyai-llm nc | KIMI_K2 kimi-k2 nc | UFAKZEKA ufakzeka nc | GROK_2 grok-2 nc | AFMOE afmoe nc
LAGUNA laguna nc | MINIMAX_M2 minimax-m2 nc | SOLAR_OPEN solar-open nc | MELLUM2 mellum2
"""
_OPTS = {"nc", "im", "bos", "ew", "nb"}
PRE_NAMES: dict[str, tuple[str, frozenset[str]]] = {}
for _entry in _PRE_NAMES_SRC.replace("\n", "|").split("|"):
    _w = _entry.split()
    if _w:
        _opts = frozenset(x for x in _w[1:] if x in _OPTS)
        for _name in (x for x in _w[1:] if x not in _OPTS):
            PRE_NAMES[_name] = (_w[0], _opts)

# ---------------------------------------------------------------------------------------
# Regex translation: llama.cpp's category collapse, then C++ ECMAScript -> Python re
# ---------------------------------------------------------------------------------------

_UCAT = {"\\p{N}": F_NUMBER, "\\p{L}": F_LETTER, "\\p{P}": F_PUNCT, "\\p{M}": F_MARK, "\\p{S}": F_SYMBOL,
         "\\p{Lu}": F_LETTER, "\\p{Ll}": F_LETTER, "\\p{Lt}": F_LETTER, "\\p{Lm}": F_LETTER, "\\p{Lo}": F_LETTER}
_UCAT_ASCII = {F_NUMBER: "0-9", F_LETTER: "A-Za-z", F_PUNCT: "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}",
               F_MARK: "", F_SYMBOL: "\\$\\+<->^`\\|\\~"}


def _uses_categories(expr: str) -> bool:
    return any(k in expr for k in _UCAT)


def _collapse_regex(expr: str) -> str:
    """Rewrite \\p{X} as a class of its collapsed byte plus its ASCII members (as llama.cpp)."""
    out, inside, i, n = [], False, 0, len(expr)
    while i < n:
        c = expr[i]
        if c == "[" and (i == 0 or expr[i - 1] != "\\"):
            out.append("[")
            inside = True
        elif inside and c == "]" and expr[i - 1] != "\\":
            out.append("]")
            inside = False
        elif c == "\\" and i + 3 < n and expr[i + 1] == "p" and expr[i + 2] == "{":
            j = expr.find("}", i + 3)
            flag = _UCAT.get(expr[i : j + 1]) if 0 <= j <= i + 10 else None
            if flag is None:
                out.append(c)
            else:
                cls = chr(_COLLAPSE_BYTE[flag]) + _UCAT_ASCII[flag]
                out.append(cls if inside else "[" + cls + "]")
                i = j
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _ecma_to_python(expr: str) -> str:
    """ECMAScript `$` only matches at the very end; Python's also before a final newline."""
    out, inside, esc = [], False, False
    for c in expr:
        if esc:
            esc = False
        elif c == "\\":
            esc = True
        elif c == "[":
            inside = True
        elif c == "]":
            inside = False
        elif c == "$" and not inside:
            out.append(r"\Z")
            continue
        out.append(c)
    return "".join(out)


def _compile(expr: str) -> re.Pattern:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "possible nested set" in copied classes
        return re.compile(_ecma_to_python(expr), re.ASCII)


# ---------------------------------------------------------------------------------------
# The splitter
# ---------------------------------------------------------------------------------------


def _is_han(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0x2CEB0 <= cp <= 0x2EBEF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _ascii_lower(cp: int) -> int:
    return cp | 0x20 if 65 <= cp <= 90 else cp


def _flags(cp: int) -> int:
    return cpt_category(cp) | (0x100 if cp in WHITESPACE else 0)


def _split_afmoe(text: str, s: int, e: int, out: list) -> None:
    """llama.cpp's AFMoE digit splitter: digit runs cut into a 1-2 digit head and groups of 3
    (text before a digit run stays glued to its first group, as in llama.cpp)."""
    prev, pos = s, s
    while pos < e:
        if cpt_category(ord(text[pos])) == F_NUMBER:
            start = pos
            while pos < e and cpt_category(ord(text[pos])) == F_NUMBER:
                pos += 1
            cur = start + (pos - start) % 3
            if cur > start:
                out.append((prev, cur))
                prev = cur
            while cur < pos:
                cur += 3
                out.append((prev, cur))
                prev = cur
        else:
            pos += 1
    if prev < e:
        out.append((prev, e))


def _split_kimi(text: str, s: int, e: int, out: list) -> None:
    """llama.cpp's Kimi-K2 splitter (Han runs, letter words with contractions, 1-3 digits, ...)."""
    cps = [ord(c) for c in text[s:e]]
    n = len(cps)
    fl = [_flags(c) for c in cps]
    cp = lambda i: cps[i] if 0 <= i < n else -1  # noqa: E731
    f = lambda i: fl[i] if 0 <= i < n else 0  # noqa: E731
    letter = lambda i: bool(f(i) & F_LETTER) and not _is_han(cp(i))  # noqa: E731
    prev = pos = 0

    def add(end: int) -> None:
        nonlocal prev
        if end > prev:
            out.append((s + prev, s + end))
        prev = end

    while pos < n:
        c, fc = cps[pos], fl[pos]
        if _is_han(c):
            while _is_han(cp(pos)):
                pos += 1
            add(pos)
            continue
        lead_ok = not (c in (13, 10) or fc & (F_LETTER | F_NUMBER))
        if letter(pos) or (lead_ok and letter(pos + 1)):
            lead = lead_ok
            pos += lead
            had = False
            while letter(pos):
                had = True
                pos += 1
            if had:
                if cp(pos) == 39 and pos + 1 < n:
                    c1 = _ascii_lower(cp(pos + 1))
                    if c1 in (115, 116, 109, 100):  # s t m d
                        pos += 2
                    elif pos + 2 < n and (c1, _ascii_lower(cp(pos + 2))) in ((114, 101), (118, 101), (108, 108)):
                        pos += 3  # re ve ll
                add(pos)
                continue
            pos -= lead
        if fc & F_NUMBER:
            ini = pos
            while f(pos) & F_NUMBER:
                pos += 1
                if pos - ini >= 3:
                    add(pos)
                    ini = pos
            add(pos)
            continue
        f2 = f(pos + 1) if c == 32 else fc
        if not f2 & (0x100 | F_LETTER | F_NUMBER) and f2:
            pos += c == 32
            while not f2 & (0x100 | F_LETTER | F_NUMBER) and f2:
                pos += 1
                f2 = f(pos)
            while cp(pos) in (13, 10):
                pos += 1
            add(pos)
            continue
        nws, last_nl = 0, 0
        while f(pos + nws) & 0x100:
            if cp(pos + nws) in (13, 10):
                last_nl = pos + nws + 1
            nws += 1
        if last_nl:
            pos = last_nl
        elif nws > 1 and pos + nws < n:
            pos += nws - 1
        elif nws:
            pos += nws
        else:
            pos += 1
        add(pos)


class PreTokenizer:
    """llama.cpp's pre-tokenizer for one ``tokenizer.ggml.pre`` type (see ``PRE_NAMES``)."""

    def __init__(self, pre_type: str):
        self.pre_type = pre_type
        self.byte_encode = pre_type not in RAW_UTF8_TYPES
        self._steps: list[tuple[str, re.Pattern | None]] = []
        for expr in REGEXES[pre_type]:
            if expr == r"\p{Han}+":
                self._steps.append(("kimi", None))
            elif expr in (r"\p{AFMoE_digits}", r"\d{1,3}(?=(?:\d{3})*\b)"):
                self._steps.append(("afmoe", None))
            elif _uses_categories(expr):
                self._steps.append(("collapsed", _compile(_collapse_regex(expr))))
            else:
                self._steps.append(("wide", _compile(expr)))

    def split(self, text: str) -> list[str]:
        """The pre-tokenizer's words of ``text`` (not yet byte-encoded)."""
        if not text:
            return []
        views: dict[str, str] = {}
        segs = [(0, len(text))]
        for kind, rx in self._steps:
            new: list[tuple[int, int]] = []
            if kind == "afmoe":
                for s, e in segs:
                    _split_afmoe(text, s, e, new)
            elif kind == "kimi":
                for s, e in segs:
                    _split_kimi(text, s, e, new)
            else:
                src = views.get(kind)
                if src is None:
                    src = text if text.isascii() else text.translate(_COLLAPSE if kind == "collapsed" else _WIDE)
                    views[kind] = src
                finditer, match, append = rx.finditer, rx.match, new.append
                for s, e in segs:
                    if e - s == 1:  # one char stays one piece, matched or not
                        append((s, e))
                        continue
                    sub = src[s:e] if (s or e != len(src)) else src
                    m = match(sub)
                    if m is not None and m.end() == e - s:  # the whole segment is one match
                        append((s, e))
                        continue
                    last = 0
                    for m in finditer(sub):
                        a, b = m.span()
                        if a > last:
                            append((s + last, s + a))
                        if b > a:
                            append((s + a, s + b))
                        last = b
                    if s + last < e:
                        append((s + last, e))
            segs = new
        return [text[s:e] for s, e in segs]


# ---------------------------------------------------------------------------------------
# GPT-2 byte-level alphabet
# ---------------------------------------------------------------------------------------


def _byte_chars() -> list[str]:
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, n = {}, 0
    for b in keep:
        table[b] = chr(b)
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return [table[b] for b in range(256)]


BYTE_CHARS = _byte_chars()                                   # byte -> char
BYTE_OF_CHAR = {c: b for b, c in enumerate(BYTE_CHARS)}      # char -> byte
BYTE_ENCODE = {b: c for b, c in enumerate(BYTE_CHARS)}       # str.translate table over latin-1 text


def byte_encode(word: str) -> str:
    """GPT-2 byte-level form of ``word``: its UTF-8 bytes, each as one printable char."""
    return word.encode("utf-8", "surrogatepass").decode("latin-1").translate(BYTE_ENCODE)


# ---------------------------------------------------------------------------------------
# Detokenizer clean-up (clean_up_tokenization_spaces)
# ---------------------------------------------------------------------------------------


def clean_spaces(t: bytes | bytearray) -> bytearray:
    """llama_detokenize's clean_spaces passes over detokenized bytes, byte for byte."""
    t = bytearray(t)
    if not any(p in t for p in (b" ?", b" !", b" .", b" ,", b" '")):
        return t
    # " ?", " !", " .", " ,"  -> drop the space
    n, k = len(t), 1 if t else 0
    for i in range(1, n):
        x = t[i]
        if t[i - 1] == 0x20 and x in b"?!.,":
            k -= 1
        t[k] = x
        k += 1
    # " ' " -> "'"
    n, k, i = k, 1 if k else 0, 1
    while i < n:
        x = t[i]
        if x == 0x27 and i + 1 < n and t[i - 1] == 0x20 and t[i + 1] == 0x20:
            k -= 1
            i += 1
            t[i] = 0
        t[k] = x
        k += 1
        i += 1
    # " 's", " 'm", " 're", " 've" -> drop the space
    n, k = k, 1 if k else 0
    for i in range(1, n):
        x = t[i]
        if t[i - 1] == 0x20 and x == 0x27 and i + 1 < n:
            x1 = t[i + 1]
            if x1 in b"sm" or (i + 2 < n and bytes(t[i + 1:i + 3]) in (b"re", b"ve")):
                k -= 1
        t[k] = x
        k += 1
    return t[:k]


# ---------------------------------------------------------------------------------------
# libstdc++'s std::unordered_map<std::string, int> iteration order
# ---------------------------------------------------------------------------------------
# llama.cpp detects EOT / FIM tokens by walking its token_to_id map, an unordered_map, and
# takes the first match.  When a vocab has several candidates (SmolLM2: <|endoftext|> and
# <|im_end|>) the winner depends on that walk's order; this reproduces it for GCC's
# libstdc++ (std::hash = _Hash_bytes, seed 0xc70f6907; prime rehash policy; keys inserted
# in id order).

_MUL = np.uint64(0xC6A4A7935BD1E995)
_SEED = np.uint64(0xC70F6907)
_BUCKETS = [13, 29, 59, 127, 257, 541, 1109, 2357, 5087, 10273, 20753, 42043, 85229, 172933,
            351061, 712697, 1447153, 2938679, 5967347]  # bucket counts as the map grows (GCC 12)


def _hash_bytes(keys: list[bytes]) -> np.ndarray:
    n = len(keys)
    lens = np.fromiter(map(len, keys), dtype=np.int64, count=n)
    chunks = np.frombuffer(b"".join(k + b"\0" * (-len(k) % 8) for k in keys) or b"\0" * 8, dtype="<u8")
    start = np.zeros(n, dtype=np.int64)
    if n > 1:
        start[1:] = np.cumsum((lens + 7) // 8)[:-1]
    full = lens // 8
    s47 = np.uint64(47)
    with np.errstate(over="ignore"):
        h = _SEED ^ (lens.astype(np.uint64) * _MUL)
        for j in range(int(full.max()) if n else 0):
            r = np.nonzero(full > j)[0]
            d = chunks[start[r] + j] * _MUL
            h[r] = (h[r] ^ ((d ^ (d >> s47)) * _MUL)) * _MUL
        r = np.nonzero(lens % 8)[0]
        h[r] = (h[r] ^ chunks[start[r] + full[r]]) * _MUL
        h = (h ^ (h >> s47)) * _MUL
        return h ^ (h >> s47)


def unordered_map_order(keys: list[bytes]) -> np.ndarray:
    """Insertion indices of ``keys`` in the iteration order of a libstdc++
    ``std::unordered_map<std::string, T>`` they were inserted into one by one."""
    n = len(keys)
    if n > _BUCKETS[-1]:
        raise ValueError(f"{n} keys: more than this emulation's bucket table covers")
    h = _hash_bytes(keys)
    order = np.empty(0, dtype=np.int64)
    lo = 0
    for nb in _BUCKETS:
        if lo >= n:
            break
        hi, ub = min(nb, n), np.uint64(nb)
        b = (h[order] % ub).astype(np.int64)
        if len(order):  # rehash: groups by first appearance, newest in front; each group reversed
            groups, first = np.unique(b, return_index=True)
            rank = np.empty(nb, dtype=np.int64)
            rank[groups] = np.argsort(np.argsort(-first))
            order = order[np.lexsort((-np.arange(len(order)), rank[b]))]
            b = (h[order] % ub).astype(np.int64)
        new = np.arange(lo, hi)
        bn = (h[new] % ub).astype(np.int64)
        known = np.zeros(nb, dtype=bool)
        known[b] = True
        fresh_groups, fresh_first = np.unique(bn[~known[bn]], return_index=True)
        old_groups, old_first = np.unique(b, return_index=True)
        gkey = np.zeros(nb, dtype=np.int64)
        gkey[fresh_groups] = len(fresh_groups) - 1 - np.argsort(np.argsort(fresh_first))  # newest first
        gkey[old_groups] = len(fresh_groups) + np.argsort(np.argsort(old_first))
        nodes = np.concatenate([new, order])
        w1 = np.concatenate([np.zeros(len(new), np.int64), np.ones(len(order), np.int64)])
        w2 = np.concatenate([-new, np.arange(len(order))])
        order = nodes[np.lexsort((w2, w1, gkey[np.concatenate([bn, b])]))]
        lo = hi
    return order
