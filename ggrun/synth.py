"""``ggrun synth``: a random-weight GGUF of a known model's exact shape and quant mix.

For benchmarks and tests where the real weights can't be downloaded:

>>> synth("deepseek-coder-6.7b", "ds67.gguf", ftype="Q4_K_M", vocab="ggml-vocab-deepseek-coder.gguf")

The per-tensor types are llama-quantize's mix for that shape (``plan_quantize``). The
blocks are random bytes with valid scale fields (finite f16 d/dmin of a size that
gives weights of about ±0.02), not quantized floats: a pool of random blocks per type
is made once and streamed to the file from a random block offset per tensor, so the
writer runs at disk speed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from .errors import BadArgumentError
from .quantize import (BF16, F16, F32, GGML_QNT_VERSION, Q2_K, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0,
                       _TYPE_SIZE, GGUFOut, parse_ftype, plan_quantize, row_size, typed_metadata)


@dataclass(frozen=True)
class Shape:
    """The hyperparameters of a llama-family model."""

    name: str
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int
    n_ctx: int
    rope_base: float = 10000.0
    rope_linear: float = 0.0          # linear RoPE scaling factor (0: none)
    eps: float = 1e-5
    tied: bool = False                # output shares token_embd
    vocab: str = ""                   # llama.cpp vocab file that fits (models/ggml-vocab-*.gguf)
    extra: dict = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


PRESETS: dict[str, Shape] = {s.name: s for s in [
    Shape("deepseek-coder-33b", 7168, 62, 56, 8, 19200, 32256, 16384, 100000.0, 4.0, 1e-6, vocab="deepseek-coder"),
    Shape("deepseek-coder-6.7b", 4096, 32, 32, 32, 11008, 32256, 16384, 100000.0, 4.0, 1e-6, vocab="deepseek-coder"),
    Shape("deepseek-coder-1.3b", 2048, 24, 16, 16, 5504, 32256, 16384, 100000.0, 4.0, 1e-6, vocab="deepseek-coder"),
    Shape("smollm2-135m", 576, 30, 9, 3, 1536, 49152, 8192, 100000.0, 0.0, 1e-5, tied=True, vocab="smollm2"),
]}


def tensor_shapes(s: Shape) -> list[tuple[str, tuple[int, ...]]]:
    """(name, torch-order shape) of every tensor of a llama model of shape ``s``."""
    hd = s.head_dim
    out: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (s.n_vocab, s.n_embd)), ("output_norm.weight", (s.n_embd,))]
    if not s.tied:
        out.append(("output.weight", (s.n_vocab, s.n_embd)))
    for i in range(s.n_layer):
        p = f"blk.{i}."
        out += [(p + "attn_norm.weight", (s.n_embd,)), (p + "attn_q.weight", (s.n_head * hd, s.n_embd)),
                (p + "attn_k.weight", (s.n_head_kv * hd, s.n_embd)), (p + "attn_v.weight", (s.n_head_kv * hd, s.n_embd)),
                (p + "attn_output.weight", (s.n_embd, s.n_head * hd)), (p + "ffn_norm.weight", (s.n_embd,)),
                (p + "ffn_gate.weight", (s.n_ff, s.n_embd)), (p + "ffn_up.weight", (s.n_ff, s.n_embd)),
                (p + "ffn_down.weight", (s.n_embd, s.n_ff))]
    return out


def model_metadata(s: Shape, ftype: int, tokenizer_kvs: list[tuple[str, Any, int, int | None]]) -> list:
    """GGUF metadata (key, value, type, item type) as convert_hf_to_gguf + llama-quantize write it."""
    U32, F32_, STR = 4, 6, 8
    a = "llama"
    kv = [("general.architecture", a, STR, None), ("general.type", "model", STR, None),
          ("general.name", f"synth {s.name}", STR, None),
          (f"{a}.block_count", s.n_layer, U32, None), (f"{a}.context_length", s.n_ctx, U32, None),
          (f"{a}.embedding_length", s.n_embd, U32, None), (f"{a}.feed_forward_length", s.n_ff, U32, None),
          (f"{a}.attention.head_count", s.n_head, U32, None), (f"{a}.attention.head_count_kv", s.n_head_kv, U32, None),
          (f"{a}.rope.freq_base", s.rope_base, F32_, None), (f"{a}.attention.layer_norm_rms_epsilon", s.eps, F32_, None),
          (f"{a}.vocab_size", s.n_vocab, U32, None), (f"{a}.rope.dimension_count", s.head_dim, U32, None)]
    if s.rope_linear:
        kv += [(f"{a}.rope.scaling.type", "linear", STR, None), (f"{a}.rope.scaling.factor", s.rope_linear, F32_, None)]
    kv += list(tokenizer_kvs)
    kv += [("general.quantization_version", GGML_QNT_VERSION, U32, None), ("general.file_type", ftype, U32, None)]
    return kv


# --------------------------------------------------------------------------------------
# Vocabularies
# --------------------------------------------------------------------------------------

def _find_vocab(s: Shape) -> str | None:
    if s.vocab == "smollm2":
        try:
            from .default_model import default_model_path

            return default_model_path(fetch=False)
        except Exception:
            return None
    here = Path(__file__).resolve().parent.parent
    for d in (here / "tests" / "data" / "vocab", Path.cwd() / "tests" / "data" / "vocab"):
        p = d / f"ggml-vocab-{s.vocab}.gguf"
        if p.exists():
            return str(p)
    return None


def tokenizer_metadata(path: str) -> list[tuple[str, Any, int, int | None]]:
    """The tokenizer.* keys of a GGUF file (a vocab-only file or a model), typed."""
    from .gguf_file import GGUFFile

    return [kv for kv in typed_metadata(GGUFFile(path)) if kv[0].startswith("tokenizer.")]


def placeholder_tokenizer(n_vocab: int) -> list[tuple[str, Any, int, int | None]]:
    """A byte-level BPE vocab (256 byte tokens, then <|synth_N|> fillers) when no real one is at hand;
    no merges (an empty list: llama.cpp, as ggrun, refuses a BPE vocab without the key), so text
    tokenizes byte by byte."""
    from .convert import bytes_to_unicode

    b2u = bytes_to_unicode()
    toks = [b2u[b] for b in range(256)]
    toks += ["<s>", "</s>"] + [f"<|synth_{i}|>" for i in range(n_vocab - len(toks) - 2)]
    types = [1] * 256 + [3, 3] + [4] * (n_vocab - 258)
    return [("tokenizer.ggml.model", "gpt2", 8, None), ("tokenizer.ggml.pre", "default", 8, None),
            ("tokenizer.ggml.tokens", toks[:n_vocab], 9, 8), ("tokenizer.ggml.token_type", types[:n_vocab], 9, 5),
            ("tokenizer.ggml.merges", [], 9, 8), ("tokenizer.ggml.bos_token_id", 256, 4, None), ("tokenizer.ggml.eos_token_id", 257, 4, None)]


# --------------------------------------------------------------------------------------
# Random valid blocks
# --------------------------------------------------------------------------------------

# typical f16 scale per type, so that weights come out around ±0.02
_D = {Q4_0: 3e-3, Q4_1: 3e-3, Q5_0: 1.5e-3, Q5_1: 1.5e-3, Q8_0: 2e-4,
      Q2_K: 4e-4, Q3_K: 1.5e-4, Q4_K: 1e-4, Q5_K: 5e-5, Q6_K: 1e-4}


def _f16(rng: np.random.Generator, n: int, base: float, signed: bool = False) -> np.ndarray:
    v = base * rng.uniform(0.5, 1.5, n)
    if signed:
        v *= rng.choice([-1.0, 1.0], n)
    return v.astype(np.float16).view(np.uint8).reshape(n, 2)


def random_blocks(t: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random blocks of ggml type ``t`` with valid (finite, sensible) scale fields: (n, type_size) uint8."""
    if t in (F32, F16, BF16):
        x = (0.02 * rng.standard_normal(n)).astype(np.float32)
        if t == F32:
            return x.view(np.uint8).reshape(n, 4)
        if t == F16:
            return x.astype(np.float16).view(np.uint8).reshape(n, 2)
        return (x.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(n, 2)
    b = rng.integers(0, 256, size=(n, _TYPE_SIZE[t]), dtype=np.uint8)
    d = _D[t]
    if t in (Q4_0, Q5_0, Q8_0):
        b[:, 0:2] = _f16(rng, n, d)
    elif t in (Q4_1, Q5_1):
        b[:, 0:2] = _f16(rng, n, d)
        b[:, 2:4] = _f16(rng, n, 8 * d * (2 if t == Q5_1 else 1), signed=True)
    elif t == Q2_K:                       # scales[16] qs[64] d dmin
        b[:, 80:82] = _f16(rng, n, d)
        b[:, 82:84] = _f16(rng, n, d / 2)
    elif t == Q3_K:                       # hmask[32] qs[64] scales[12] d
        b[:, 108:110] = _f16(rng, n, d)
    elif t in (Q4_K, Q5_K):               # d dmin scales[12] …
        b[:, 0:2] = _f16(rng, n, d)
        b[:, 2:4] = _f16(rng, n, d / 2)
    elif t == Q6_K:                       # ql[128] qh[64] scales[16] int8, d
        b[:, 192:208] = rng.integers(-16, 17, size=(n, 16), dtype=np.int8).view(np.uint8)
        b[:, 208:210] = _f16(rng, n, d)
    return b


POOL_BYTES = 8 << 20
CHUNK_BYTES = 64 << 20


class _Pool:
    """A few MiB of random blocks per type, tiled into 64 MiB chunks and streamed."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.tiles: dict[int, np.ndarray] = {}

    def tile(self, t: int) -> np.ndarray:
        if t not in self.tiles:
            ts = _TYPE_SIZE[t]
            n_pool = max(1, POOL_BYTES // ts)
            pool = random_blocks(t, n_pool, self.rng).reshape(-1)
            reps = -(-(CHUNK_BYTES + pool.size) // pool.size)
            self.tiles[t] = np.tile(pool, reps)          # ≥ CHUNK + POOL bytes, whole blocks
        return self.tiles[t]

    def chunks(self, t: int, nbytes: int):
        tile = self.tile(t)
        ts = _TYPE_SIZE[t]
        n_pool = max(1, POOL_BYTES // ts)
        off = int(self.rng.integers(0, n_pool)) * ts
        left = nbytes
        while left:
            step = min(left, CHUNK_BYTES)
            yield tile[off:off + step]
            left -= step
            off = (off + step) % (n_pool * ts)


def virtual_model(s: Shape, metadata: list | None = None) -> SimpleNamespace:
    """A stand-in for a GGUFFile of shape ``s`` with F32 tensors (``.metadata``, ``.tensors``):
    enough for ``plan_quantize``."""
    md = metadata if metadata is not None else model_metadata(s, 0, [])
    return SimpleNamespace(metadata={k: v for k, v, *_ in md}, architecture="llama", path=f"<{s.name}>",
                           tensors={n: SimpleNamespace(shape=sh, ggml_type=F32) for n, sh in tensor_shapes(s)})


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------

@dataclass
class SynthResult:
    path: str
    file_size: int
    seconds: float
    types: dict[str, int]


def resolve_shape(like: str) -> Shape:
    key = like.strip().lower()
    if key not in PRESETS:
        raise BadArgumentError(f"--like {like}: unknown model (known: {', '.join(PRESETS)})")
    return PRESETS[key]


def synth(like: str | Shape, out: str, ftype: str = "Q4_K_M", vocab: str | None = None, seed: int = 0,
          progress: Callable[[int, int, str], None] | None = None, sparse: bool = False) -> SynthResult:
    """Write a random-weight model of shape ``like`` with the mix ``ftype`` to ``out``.

    ``sparse``: write only the header and leave every tensor zero (a sparse file that takes
    no disk space: for plan and size checks, e.g. ``llama-quantize --dry-run``)."""
    t0 = time.perf_counter()
    s = like if isinstance(like, Shape) else resolve_shape(like)
    ft = parse_ftype(ftype)
    vocab_path = vocab or _find_vocab(s)
    if vocab_path is not None:
        tok_kvs = tokenizer_metadata(vocab_path)
        n_tok = next((len(v) for k, v, *_ in tok_kvs if k == "tokenizer.ggml.tokens"), 0)
        if not n_tok:
            raise BadArgumentError(f"--vocab {vocab_path}: the file has no tokenizer.ggml.tokens")
        if n_tok != s.n_vocab:
            s = replace(s, n_vocab=n_tok)
    else:
        if vocab is None and s.vocab:
            import sys

            print(f"ggrun synth: no {s.vocab} vocab found: writing a placeholder byte-level vocab "
                  f"(pass --vocab VOCAB.gguf for a real one)", file=sys.stderr)
        tok_kvs = placeholder_tokenizer(s.n_vocab)
    shapes = tensor_shapes(s)
    md = model_metadata(s, ft.ftype, tok_kvs)
    # plan on a virtual all-F32 source of this shape: the exact mix llama-quantize picks
    plans = plan_quantize(virtual_model(s, md), ft)
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise BadArgumentError(f"{out}: the folder {out_dir} does not exist")
    pool = _Pool(seed)
    rng = np.random.default_rng(seed + 1)
    tensors = [(p.name, p.shape, p.dst_type) for p in plans.values()]
    total = sum(p.n_bytes for p in plans.values())
    done = 0
    with GGUFOut(out, md, tensors) as w:
        if sparse:
            w.commit_sparse()
            return SynthResult(out, os.path.getsize(out), time.perf_counter() - t0,
                               {p.name: p.dst_type for p in plans.values()})
        for p in plans.values():
            if len(p.shape) == 1:                       # norms: around 1, like trained models
                w.write((1.0 + 0.05 * rng.standard_normal(p.shape[0])).astype(np.float32))
            else:
                w.write_stream(pool.chunks(p.dst_type, p.n_bytes))
            done += p.n_bytes
            if progress:
                progress(done, total, p.name)
        w.commit()
    return SynthResult(out, os.path.getsize(out), time.perf_counter() - t0, {p.name: p.dst_type for p in plans.values()})


def shape_from_args(n_embd: int, n_layer: int, n_head: int, n_head_kv: int, n_ff: int, n_vocab: int, **kw) -> Shape:
    """A custom shape (for tests): ``Shape`` with a name."""
    return Shape(kw.pop("name", "custom"), n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, kw.pop("n_ctx", 2048), **kw)
