"""The KV state of one sequence: save it to a file, restore it, shift it (context shift).

``--prompt-cache FILE`` (``ggrun run``) works as llama.cpp's: the first run evaluates the
prompt and saves its KV state; a later run whose prompt starts with the same tokens loads
it and evaluates only the rest. ``--prompt-cache-all`` also saves the generated tokens,
``--prompt-cache-ro`` never writes. The chat's ``/save`` and ``/load`` use the same files,
with the conversation in the header.

File layout (little-endian; ggrun's own, llama.cpp's session files hold its internal state):

    b"GGRUNKV\\x01"  u32 header_len  header (UTF-8 JSON: model fingerprint, n_tokens,
                                          shapes, KV cache types, meta)
    int32[n_tokens]                       the tokens whose state follows
    K [n_layer, n_tokens, n_head_kv, R_k] as the cache stores it, then V [..., R_v]

The cache types (-ctk/-ctv, kv_types.py) set R and the element type: f16 and f32 rows hold
head_dim values, q8_0 rows head_dim/32·34 bytes (ggml blocks). Header version 1 (before
-ctk/-ctv) is f16 K and V. As llama.cpp's state files, a file is only loaded into a cache of the
same types (and the same Hadamard rotation of quantized caches, see kv_types.rotation_sizes).
A file made with another model (its GGUF header hash differs), a truncated file or a
bad header is refused with one clear line.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .errors import ContextError, GGRunError

MAGIC = b"GGRUNKV\x01"
MAX_HEADER = 64 << 20


class PromptCacheError(GGRunError):
    """A prompt-cache/session file that can't be read, or was made for another model."""


def model_fingerprint(engine) -> str:
    """sha256 of the GGUF header (metadata and tensor table), the file size and 32 samples of
    4 KiB spread over the tensor data: KV state is only valid for the exact same weights."""
    f = getattr(engine, "gguf", None)
    if f is None:
        cfg = engine.cfg
        return hashlib.sha256(repr((cfg.arch, cfg.n_layer, cfg.n_embd, cfg.n_head_kv, cfg.head_dim,
                                    cfg.n_vocab)).encode()).hexdigest()
    cached = getattr(f, "_ggrun_fingerprint", None)
    if cached:
        return cached
    h = hashlib.sha256()
    with open(f.path, "rb") as fh:
        h.update(fh.read(f.data_offset))
        span = max(f.file_size - f.data_offset, 0)
        for i in range(32):
            fh.seek(f.data_offset + span * i // 32)
            h.update(fh.read(4096))
    h.update(str(f.file_size).encode())
    fp = h.hexdigest()
    try:
        f._ggrun_fingerprint = fp
    except AttributeError:
        pass
    return fp


def save_state(engine, path: str, tokens: Sequence[int] | None = None, slot: int = 0,
               meta: dict[str, Any] | None = None) -> int:
    """Write the KV state of ``tokens`` (default: all the slot holds; must be a prefix of
    what it holds) to ``path``. Returns the number of tokens saved."""
    cache = engine.cache
    held = cache.tokens[slot]
    toks = list(held if tokens is None else tokens)
    if toks != held[:len(toks)]:
        raise PromptCacheError(f"{path}: the tokens to save are not what the KV cache holds")
    n = len(toks)
    header = {"version": 2, "model": model_fingerprint(engine), "n_tokens": n, "n_layer": cache.k.shape[0],
              "n_head_kv": cache.k.shape[3], "head_dim": engine.cfg.head_dim, "type_k": cache.type_k,
              "type_v": cache.type_v, "n_rot_k": cache.n_rot_k, "n_rot_v": cache.n_rot_v, "meta": meta or {}}
    hb = json.dumps(header, ensure_ascii=False).encode("utf-8")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(MAGIC + struct.pack("<I", len(hb)) + hb)
            fh.write(np.asarray(toks, dtype="<i4").tobytes())
            for t in (cache.k, cache.v):
                fh.write(t[:, slot, :n].cpu().contiguous().view(torch.uint8).numpy().tobytes())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise PromptCacheError(f"{path}: can't write ({e.strerror})") from None
    return n


@dataclass
class LoadedState:
    tokens: list[int]
    meta: dict[str, Any] = field(default_factory=dict)


def read_header(path: str) -> tuple[dict[str, Any], int]:
    """(header, byte offset of the tokens) of a state file, validated against its size."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:8] != MAGIC:
                raise PromptCacheError(f"{path}: not a ggrun prompt-cache/session file")
            (hlen,) = struct.unpack("<I", head[8:12])
            if hlen > MAX_HEADER or 12 + hlen > size:
                raise PromptCacheError(f"{path}: truncated or damaged header")
            header = json.loads(fh.read(hlen).decode("utf-8"))
    except FileNotFoundError:
        raise PromptCacheError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PromptCacheError(f"{path}: is a directory") from None
    except OSError as e:
        raise PromptCacheError(f"{path}: can't read ({e.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PromptCacheError(f"{path}: damaged header") from None
    if not isinstance(header, dict):
        raise PromptCacheError(f"{path}: damaged header")
    try:
        n, L, H, D = (int(header[k]) for k in ("n_tokens", "n_layer", "n_head_kv", "head_dim"))
        header.setdefault("type_k", "f16")                       # version 1: f16 K and V
        header.setdefault("type_v", "f16")
        rows = [_row_bytes(header[t], D) for t in ("type_k", "type_v")]
    except (KeyError, TypeError, ValueError):
        raise PromptCacheError(f"{path}: damaged header") from None
    if min(n, L, H, D) < 0 or 12 + hlen + 4 * n + L * n * H * sum(rows) != size:
        raise PromptCacheError(f"{path}: truncated or damaged (size doesn't match its header)")
    return header, 12 + hlen


def _row_bytes(type_name, head_dim: int) -> int:
    """Bytes of one head's row of a cache type (ValueError for an unknown type)."""
    from .kv_types import CACHE_TYPES, storage

    if type_name not in CACHE_TYPES or head_dim <= 0:
        raise ValueError(type_name)
    r, dt = storage(type_name, head_dim)
    return r * torch.empty(0, dtype=dt).element_size()


def load_state(engine, path: str, slot: int = 0) -> LoadedState:
    """Restore a saved state into ``slot`` (replacing what it held)."""
    header, off = read_header(path)
    cache = engine.cache
    if header.get("model") != model_fingerprint(engine):
        raise PromptCacheError(f"{path}: saved with a different model file; delete it or use another name")
    n, L, H, D = (int(header[k]) for k in ("n_tokens", "n_layer", "n_head_kv", "head_dim"))
    if (L, H, D) != (cache.k.shape[0], cache.k.shape[3], engine.cfg.head_dim):
        raise PromptCacheError(f"{path}: KV shapes don't match the model")
    saved = (header["type_k"], header["type_v"], int(header.get("n_rot_k", 0)), int(header.get("n_rot_v", 0)))
    if saved != (cache.type_k, cache.type_v, cache.n_rot_k, cache.n_rot_v):
        why = " (LLAMA_ATTN_ROT_DISABLE differs)" if saved[:2] == (cache.type_k, cache.type_v) else ""
        raise PromptCacheError(f"{path}: saved from a -ctk {saved[0]} -ctv {saved[1]} KV cache, this run's is "
                               f"-ctk {cache.type_k} -ctv {cache.type_v}{why}")
    if n > cache.n_ctx:
        raise ContextError(f"{path}: holds {n} tokens, more than the context of {cache.n_ctx} (-c)")
    with open(path, "rb") as fh:
        fh.seek(off)
        toks = np.frombuffer(fh.read(4 * n), dtype="<i4").astype(np.int64).tolist()
        nvocab = engine.cfg.n_vocab
        if any(t < 0 or t >= nvocab for t in toks):
            raise PromptCacheError(f"{path}: token ids out of the vocabulary")
        for t in (cache.k, cache.v):
            R = t.shape[4]
            nbytes = L * n * H * R * t.element_size()
            buf = bytearray(fh.read(nbytes))
            raw = torch.frombuffer(buf, dtype=torch.uint8) if nbytes else torch.empty(0, dtype=torch.uint8)
            t[:, slot, :n] = raw.view(t.dtype).reshape(L, n, H, R).to(t.device)
    cache.tokens[slot] = toks
    meta = header.get("meta") if isinstance(header.get("meta"), dict) else {}
    return LoadedState(toks, meta)


# --- llama.cpp's context shift ---------------------------------------------------------

def _rope_delta(cfg, delta: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [1, rope_dim/2] of a rotation by ``delta`` positions (ggml's rope cache at p=delta)."""
    from .model import rope_tables

    cos, sin = rope_tables(cfg, abs(delta) + 1)
    c, s = cos[abs(delta):abs(delta) + 1], sin[abs(delta):abs(delta) + 1]
    if delta < 0:
        s = -s
    r = cfg.rope
    if r.scaling_type == "yarn" or r.attn_factor != 1.0:      # a pure rotation: no magnitude scaling
        m = torch.sqrt(c * c + s * s)
        c, s = c / m, s / m
    return c.to(device), s.to(device)


def shift_context(engine, slot: int, n_keep: int, n_discard: int) -> None:
    """Drop positions [n_keep, n_keep + n_discard) of ``slot`` and move the rest down, re-rotating
    K by -n_discard positions (llama.cpp's llama_memory_seq_rm + llama_memory_seq_add). A q8_0 K
    is dequantized, rotated back from the Hadamard rotation, RoPE'd, rotated and quantized again,
    as llama.cpp's build_rope_shift."""
    from .kv_types import fwht, to_float, to_storage
    from .model import apply_rope

    cache = engine.cache
    held = cache.tokens[slot]
    n_past = len(held)
    if n_discard <= 0 or n_keep + n_discard > n_past:
        return
    cfg = engine.cfg
    src = slice(n_keep + n_discard, n_past)
    dst = slice(n_keep, n_past - n_discard)
    m = n_past - n_keep - n_discard
    if m > 0:
        c, s = _rope_delta(cfg, -n_discard, cache.k.device)
        for il in range(cache.k.shape[0]):
            kl = cache.k[il, slot]                                               # [n_ctx, Hkv, R] (a view)
            k = to_float(kl[src])                                                # [m, Hkv, hd] f32
            if cache.n_rot_k:
                k = fwht(k, cache.n_rot_k)
            cl, sl = c.to(k.device), s.to(k.device)                              # layers may differ (-ngl)
            k = apply_rope(k, cl.expand(m, -1), sl.expand(m, -1), cfg.rope.dim, cfg.rope.neox)
            if cache.n_rot_k:
                k = fwht(k, cache.n_rot_k)
            kl[dst] = to_storage(k, kl)
            cache.v[il, slot, dst] = cache.v[il, slot, src].clone()
    cache.tokens[slot] = held[:n_keep] + held[n_keep + n_discard:]


def keep_count(tokenizer, n_keep: int, prompt_len: int) -> int:
    """llama.cpp's --keep: -1 or more than the prompt keeps the whole prompt, else N (+ BOS)."""
    if n_keep < 0 or n_keep > prompt_len:
        return prompt_len
    return n_keep + (1 if tokenizer.add_bos and tokenizer.bos_id is not None else 0)


def generate_with_shift(engine, prompt: Sequence[int], params=None, max_tokens: int = -1, stop: Sequence[str] = (),
                        n_keep: int = 0, ignore_eos: bool = False, slot: int = 0):
    """``engine.generate`` that doesn't stop when the context fills: like llama.cpp's main loop
    it keeps the first ``n_keep`` tokens (``keep_count``), drops half of the rest and goes on.
    Yields the engine's events; the last one's timings add up all the rounds."""
    keep = keep_count(engine.tokenizer, n_keep, len(prompt))
    conv = list(prompt)
    n_gen, total = 0, None
    while True:
        left = -1 if max_tokens < 0 else max_tokens - n_gen
        last = None
        for ev in engine.generate(conv, params, max_tokens=left, stop=stop, slot=slot, ignore_eos=ignore_eos):
            if ev.token is not None:
                conv.append(ev.token)
                n_gen += 1
                yield ev
            else:
                last = ev
        tm = last.timings
        if total is None:
            total = tm
        else:
            for f in ("prompt_n", "prompt_ms", "gen_n", "gen_ms", "sample_n", "sample_ms"):
                setattr(total, f, getattr(total, f) + getattr(tm, f))
        held = engine.cache.tokens[slot]
        n_discard = (len(held) - keep) // 2
        full = len(held) + 1 > engine.n_ctx
        if last.finish_reason != "length" or not full or (0 <= max_tokens <= n_gen) or n_discard <= 0:
            last.timings = total
            yield last
            return
        if last.text:                    # text held back at the end of the round (no finish_reason)
            yield type(last)(None, last.text)
        shift_context(engine, slot, keep, n_discard)
        conv = conv[:keep] + conv[keep + n_discard:]


# --- --prompt-cache for one-shot runs ------------------------------------------------

def add_prompt_cache_args(p) -> None:
    """The flags of ``ggrun run`` (llama.cpp's names)."""
    p.add_argument("--prompt-cache", default=None, metavar="FILE",
                   help="save the prompt's KV state to FILE, and reuse it when a later prompt starts the same way")
    p.add_argument("--prompt-cache-all", action="store_true",
                   help="with --prompt-cache: save the generated tokens too")
    p.add_argument("--prompt-cache-ro", action="store_true",
                   help="with --prompt-cache: use FILE but never update it")


class PromptCacheRun:
    """One ``ggrun run --prompt-cache FILE``: ``load()`` before generating, ``save(out)`` after.

    >>> pc = PromptCacheRun(engine, "p.bin", ids)
    >>> pc.load()                                   # restores what FILE holds of the prompt
    >>> out = [ev.token for ev in engine.generate(ids, ...) if ev.token is not None]
    >>> pc.save(out)
    """

    def __init__(self, engine, path: str, prompt: Sequence[int], save_all: bool = False, read_only: bool = False,
                 slot: int = 0, log=None):
        self.engine, self.path, self.prompt = engine, path, list(prompt)
        self.save_all, self.read_only, self.slot = save_all, read_only, slot
        self.log = log if log is not None else (lambda msg: print(msg, file=sys.stderr))
        self.n_match = 0

    def load(self) -> int:
        """Restore FILE (if it exists and isn't empty); return how many prompt tokens it covers."""
        p = Path(self.path)
        if not p.exists():
            self.log(f"ggrun: prompt cache {self.path} does not exist, will create it")
            return 0
        if p.is_file() and p.stat().st_size == 0:
            self.log(f"ggrun: prompt cache {self.path} is empty, starting a new one")
            return 0
        st = load_state(self.engine, self.path, self.slot)
        n = 0
        for a, b in zip(st.tokens, self.prompt):
            if a != b:
                break
            n += 1
        self.n_match = n
        del self.engine.cache.tokens[self.slot][n:]      # forget the "future" the file may hold
        if n >= len(self.prompt):
            self.log(f"ggrun: prompt cache {self.path} has an exact match for the prompt ({n} tokens)")
        elif n < len(self.prompt) // 2:
            self.log(f"ggrun: prompt cache {self.path} matches only {n} of {len(self.prompt)} prompt tokens; "
                     "most will be evaluated again")
        else:
            self.log(f"ggrun: prompt cache {self.path} matches {n} of {len(self.prompt)} prompt tokens")
        return n

    def save(self, generated: Sequence[int] = ()) -> int:
        """Write FILE after the run (the prompt; with save_all, the output too). Returns the
        number of tokens written (0: nothing to update)."""
        if self.read_only:
            return 0
        held = self.engine.cache.tokens[self.slot]
        if self.save_all:
            want = self.prompt + list(generated)
            n = 0
            for a, b in zip(held, want):
                if a != b:
                    break
                n += 1
            return save_state(self.engine, self.path, held[:n], self.slot)
        if self.n_match >= len(self.prompt):
            return 0                                      # llama.cpp: nothing new to save
        if held[:len(self.prompt)] != self.prompt:
            return 0                                      # (context shift moved the prompt: don't save)
        return save_state(self.engine, self.path, self.prompt, self.slot)
