"""``ggrun convert``: a Hugging Face llama-family checkpoint → GGUF, as convert_hf_to_gguf.py writes it.

>>> convert("path/to/hf_model", "model-f16.gguf", outtype="f16")

- weights: ``*.safetensors`` (read here, memory-mapped; no safetensors package needed) or
  ``pytorch_model*.bin`` (torch.load with mmap), one tensor at a time;
- config.json → ``llama.*`` metadata, RoPE linear/yarn scaling included (DeepSeek Coder:
  ``rope_scaling {type: linear, factor: 4}`` → ``rope.scaling.type = linear``, ``factor = 4``);
- Q and K rows permuted for llama.cpp's RoPE on adjacent pairs (HF rotates halves);
- tokenizer.model (SentencePiece, parsed here) → ``tokenizer.ggml.model = llama``; else a
  byte-level BPE tokenizer.json → ``gpt2`` with ``tokenizer.ggml.pre`` found as llama.cpp
  finds it: sha256 of the token ids of its check text, looked up in llama.cpp's table;
- special tokens, add_bos/add_eos, merges and the chat template through gguf-py's SpecialVocab;
- norms and 1-D tensors in F32; the rest in the out type (q8_0 with llama.cpp's reference
  quantizer, F16 where a row can't take 32-blocks).
"""

from __future__ import annotations

import json
import os
import struct
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import BadArgumentError, GGRunError, ModelNotFoundError, UnsupportedModelError
from .quantize import BF16, F16, F32, GGML_QNT_VERSION, Q8_0, GGUFOut, quantize_rows

ARCHITECTURES = {"LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM", "LlamaModel"}
OUTTYPES = {"f32": (F32, 0), "f16": (F16, 1), "bf16": (BF16, 32), "q8_0": (Q8_0, 7)}   # ggml type, llama_ftype

# GGUF token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class ConvertResult:
    path: str
    file_size: int
    n_tensors: int
    pre: str
    seconds: float


# --------------------------------------------------------------------------------------
# Checkpoint reading
# --------------------------------------------------------------------------------------

_ST_DTYPES = {"F32": (np.float32, None), "F16": (np.float16, None), "BF16": (np.uint16, "bfloat16"),
              "F64": (np.float64, None), "I64": (np.int64, None), "I32": (np.int32, None),
              "I16": (np.int16, None), "I8": (np.int8, None), "U8": (np.uint8, None), "BOOL": (np.bool_, None)}


class _Tensor:
    """A lazily read checkpoint tensor: ``shape`` now, ``load()`` → float32 torch tensor later."""

    def __init__(self, shape: tuple[int, ...], load: Callable[[], Any]):
        self.shape = tuple(int(d) for d in shape)
        self.load = load


def read_safetensors(path: Path) -> dict[str, _Tensor]:
    """name → lazy tensor of one .safetensors file (header parsed here, data memory-mapped)."""
    import torch

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n <= 0 or n > min(size - 8, 100 << 20):
                raise ValueError(f"header length {n}")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as e:
        raise GGRunError(f"{path}: not a readable safetensors file ({e})") from None
    base = 8 + n
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out: dict[str, _Tensor] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dt, view = _ST_DTYPES[meta["dtype"]]
            b, e = meta["data_offsets"]
            shape = tuple(meta["shape"])
        except (KeyError, TypeError, ValueError):
            raise GGRunError(f"{path}: tensor '{name}' has an unsupported entry {meta!r}") from None
        if base + e > size or e - b != int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize:
            raise GGRunError(f"{path}: tensor '{name}' lies outside the file or has a wrong size (truncated?)")

        def load(b=b, e=e, dt=dt, view=view, shape=shape):
            a = mm[base + b:base + e].view(dt).reshape(shape)
            t = torch.from_numpy(np.array(a))
            if view == "bfloat16":
                t = t.view(torch.bfloat16)
            return t

        out[name] = _Tensor(shape, load)
    return out


def read_torch_bin(path: Path) -> dict[str, _Tensor]:
    import torch

    try:
        sd = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:  # pickle errors, truncated zip …
        raise GGRunError(f"{path}: not a readable PyTorch checkpoint ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(sd, dict):
        raise GGRunError(f"{path}: not a state dict")
    return {k: _Tensor(tuple(v.shape), (lambda v=v: v)) for k, v in sd.items() if hasattr(v, "shape")}


def checkpoint_tensors(d: Path) -> dict[str, _Tensor]:
    """Every tensor of the checkpoint in folder ``d`` (safetensors preferred, as convert_hf_to_gguf)."""
    st = sorted(d.glob("*.safetensors"))
    files = st or sorted(p for p in d.glob("pytorch_model*.bin")) or sorted(d.glob("*.bin"))
    if not files:
        raise ModelNotFoundError(f"{d}: no *.safetensors or pytorch_model*.bin files")
    out: dict[str, _Tensor] = {}
    for f in files:
        out.update(read_safetensors(f) if f.suffix == ".safetensors" else read_torch_bin(f))
    return out


# --------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------

_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_SKIP_SUFFIXES = (".rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")


def gguf_name(hf: str) -> str | None:
    """HF llama tensor name → GGUF name (None: not written)."""
    if hf.endswith(_SKIP_SUFFIXES):
        return None
    if not hf.startswith(("model.", "lm_head")):
        hf = "model." + hf                                     # LlamaModel checkpoints
    if hf in _NAMES:
        return _NAMES[hf]
    parts = hf.split(".")
    if len(parts) >= 4 and parts[0] == "model" and parts[1] == "layers" and parts[2].isdecimal():
        rest = ".".join(parts[3:])
        if rest in _LAYER:
            return f"blk.{int(parts[2])}.{_LAYER[rest]}"
    raise UnsupportedModelError(f"tensor '{hf}' is not part of a llama model (can't map it to a GGUF name)")


def permute_qk(w, n_head: int, n_head_kv: int | None = None):
    """HF's rotate-half Q/K rows → llama.cpp's adjacent-pair order (convert_hf_to_gguf's permute)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _out_type(name: str, shape: tuple[int, ...], outtype: int) -> int:
    if len(shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        return F32
    if outtype == Q8_0 and shape[-1] % 32:
        return F16                                             # gguf-py's QuantError fallback
    return outtype


# --------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------

def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character map (byte-level BPE tokens are written with it)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def does_token_look_special(t: str) -> bool:
    """convert_hf_to_gguf's guess for added tokens not flagged special (deepseek-coder, gemma …)."""
    return (t in ("<pad>", "<mask>", "<2mass>", "[@BOS@]") or (t.startswith("<|") and t.endswith("|>"))
            or (t.startswith("<｜") and t.endswith("｜>")) or (t.startswith("<unused") and t.endswith(">")))


def detect_pre(tokenizer_json: Path) -> tuple[str, str]:
    """(tokenizer.ggml.pre, check hash) of a tokenizer.json, as convert_hf_to_gguf's get_vocab_base_pre."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(tokenizer_json))
    except Exception as e:
        raise GGRunError(f"{tokenizer_json}: can't load it with the tokenizers library ({str(e)[:200]})") from None
    ids = tok.encode(CHKTXT).ids
    h = sha256(str(ids).encode()).hexdigest()
    if h not in PRE_HASHES:
        raise UnsupportedModelError(
            f"{tokenizer_json}: BPE pre-tokenizer not recognized (check hash {h}); llama.cpp's "
            f"convert_hf_to_gguf.py would refuse it too")
    return PRE_HASHES[h], h


def _read_json(p: Path) -> dict:
    try:
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise GGRunError(f"{p}: not readable JSON ({e})") from None


def vocab_gpt2(d: Path, n_vocab: int | None) -> tuple[list[str], list[int], str]:
    """tokens, token types and pre name of a byte-level BPE tokenizer.json (convert's get_vocab_base)."""
    tj = _read_json(d / "tokenizer.json")
    model = tj.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise UnsupportedModelError(f"{d / 'tokenizer.json'}: only BPE tokenizers are supported "
                                    f"(model type {model.get('type')!r}); a SentencePiece model needs tokenizer.model")
    vocab: dict[str, int] = dict(model["vocab"])
    added = {a["content"]: a for a in tj.get("added_tokens", [])}
    for c, a in added.items():
        vocab[c] = a["id"]
    if n_vocab is None:
        n_vocab = len(vocab)
    if vocab and max(vocab.values()) >= n_vocab:
        raise UnsupportedModelError(f"{d}: token id {max(vocab.values())} ≥ vocab_size {n_vocab} of config.json")
    pre, _ = detect_pre(d / "tokenizer.json")
    rev = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in rev:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
            continue
        t = rev[i]
        if t in added:
            if added[t].get("special") or does_token_look_special(t):
                types.append(CONTROL)
            else:
                t = t.replace("\u2581", " ")
                types.append(USER_DEFINED)
        else:
            types.append(NORMAL)
        tokens.append(t)
    return tokens, types, pre


def _varint(b: bytes, i: int) -> tuple[int, int]:
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def _proto_fields(b: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message (value: int, or bytes for length-delimited)."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield f, wt, v


def read_sentencepiece(path: Path) -> list[tuple[str, float, int]]:
    """(piece, score, type) of a SentencePiece tokenizer.model (its ModelProto, parsed here)."""
    try:
        data = path.read_bytes()
        pieces = []
        for f, wt, v in _proto_fields(data):
            if f != 1 or wt != 2:
                continue
            piece, score, typ = "", 0.0, NORMAL
            for g, wt2, w in _proto_fields(v):
                if g == 1:
                    piece = w.decode("utf-8")
                elif g == 2 and wt2 == 5:
                    (score,) = struct.unpack("<f", w)
                elif g == 3:
                    typ = w
            pieces.append((piece, score, typ))
    except (OSError, ValueError, IndexError, UnicodeDecodeError, struct.error) as e:
        raise GGRunError(f"{path}: not a readable SentencePiece model ({e})") from None
    if not pieces:
        raise GGRunError(f"{path}: no pieces in the SentencePiece model")
    return pieces


def vocab_spm(d: Path, n_vocab: int | None) -> tuple[list[str], list[float], list[int]]:
    """tokens, scores, types of a SentencePiece model (convert's _create_vocab_sentencepiece)."""
    pieces = read_sentencepiece(d / "tokenizer.model")
    n = n_vocab or len(pieces)
    tokens = [f"[PAD{i}]" for i in range(n)]
    scores = [-10000.0] * n
    types = [UNUSED] * n
    for i, (p, s, t) in enumerate(pieces[:n]):
        tokens[i], scores[i], types[i] = p, s, t
    if (d / "added_tokens.json").is_file():
        for k, i in _read_json(d / "added_tokens.json").items():
            if i < n:
                tokens[i], scores[i], types[i] = k, -1000.0, USER_DEFINED
    if (d / "tokenizer_config.json").is_file():
        for i, td in (_read_json(d / "tokenizer_config.json").get("added_tokens_decoder") or {}).items():
            i = int(i)
            if i >= n:
                continue
            t = td["content"]
            if td.get("special") or does_token_look_special(t):
                types[i] = CONTROL
            else:
                t = t.replace("\u2581", " ")
                types[i] = USER_DEFINED
            scores[i] = -1000.0
            tokens[i] = t
    return tokens, scores, types


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------

def _hparam(cfg: dict, keys: list[str], required: bool = True) -> Any:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    if required:
        raise UnsupportedModelError(f"config.json: none of {keys} is set")
    return None


def model_metadata(d: Path, cfg: dict, ftype: int) -> tuple[list[tuple[str, Any, int, int | None]], str]:
    """The GGUF metadata (key, value, type, item type) of a llama checkpoint, and the pre-tokenizer name."""
    import gguf

    w = gguf.GGUFWriter(None, "llama")
    w.add_type("model")
    name = str(cfg.get("_name_or_path") or d.name).rstrip("/").split("/")[-1] or d.name
    w.add_name(name)
    n_layer = int(_hparam(cfg, ["num_hidden_layers", "n_layers", "n_layer", "num_layers"]))
    w.add_block_count(n_layer)
    n_ctx = _hparam(cfg, ["max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length"], False)
    if n_ctx is not None:
        w.add_context_length(int(n_ctx))
    n_embd = int(_hparam(cfg, ["hidden_size", "n_embd", "dim"]))
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(int(_hparam(cfg, ["intermediate_size", "n_inner", "hidden_dim"])))
    n_head = int(_hparam(cfg, ["num_attention_heads", "n_head", "n_heads"]))
    w.add_head_count(n_head)
    n_head_kv = _hparam(cfg, ["num_key_value_heads", "n_kv_heads"], False)
    if n_head_kv is not None:
        w.add_head_count_kv(int(n_head_kv))
    rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    if "rope_type" not in rope and rope.get("type") is not None:
        rope["rope_type"] = rope["type"]
    rope_theta = _hparam(cfg, ["rope_theta", "rotary_emb_base"], False)
    if "rope_theta" not in rope and rope_theta is not None:
        rope["rope_theta"] = rope_theta
    rt, factor = rope.get("rope_type"), rope.get("factor")
    if rt == "linear" and factor is not None:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(factor))
    elif rt == "yarn" and factor is not None:
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(factor))
        w.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    elif rt not in (None, "default"):
        raise UnsupportedModelError(f"config.json: rope scaling '{rt}' is not supported by ggrun convert")
    if rope.get("rope_theta") is not None:
        w.add_rope_freq_base(float(rope["rope_theta"]))
    eps = _hparam(cfg, ["rms_norm_eps", "norm_eps"], False)
    if eps is not None:
        w.add_layer_norm_rms_eps(float(eps))
    head_dim = cfg.get("head_dim")
    if head_dim is not None:
        w.add_key_length(int(head_dim))
        w.add_value_length(int(head_dim))
    w.add_file_type(ftype)
    n_vocab = cfg.get("vocab_size")
    if n_vocab is not None:
        w.add_vocab_size(int(n_vocab))
    w.add_rope_dimension_count(int(head_dim) if head_dim is not None else n_embd // n_head)
    w.add_quantization_version(GGML_QNT_VERSION)

    # vocab (LlamaModel.set_vocab): SentencePiece first, else a byte-level BPE tokenizer.json
    tc = _read_json(d / "tokenizer_config.json") if (d / "tokenizer_config.json").is_file() else {}
    if tc.get("add_prefix_space") is not None:
        w.add_add_space_prefix(bool(tc["add_prefix_space"]))
    if (d / "tokenizer.model").is_file():
        tokens, scores, types = vocab_spm(d, n_vocab)
        pre = "default"
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        sv = _special_vocab(d, n_vocab=len(tokens))
    elif (d / "tokenizer.json").is_file():
        tokens, types, pre = vocab_gpt2(d, n_vocab)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        sv = _special_vocab(d, load_merges=True)
    else:
        raise ModelNotFoundError(f"{d}: no tokenizer.model or tokenizer.json")
    _add_special_vocab(w, sv)
    if n_vocab == 32016:                     # CodeLlama's infill tokens
        w.add_prefix_token_id(32007)
        w.add_suffix_token_id(32008)
        w.add_middle_token_id(32009)
        w.add_eot_token_id(32010)
    if n_vocab == 49152:                     # granite/SmolLM: no BOS, as convert_hf_to_gguf sets
        w.add_add_bos_token(False)
    kvs = [(k, v.value, int(v.type), None if v.sub_type is None else int(v.sub_type)) for k, v in w.kv_data[0].items()]
    return kvs, pre


def _quiet_gguf(fn, *a, **k):
    """Call into gguf-py without its log lines (its warnings are convert_hf_to_gguf's console noise)."""
    import logging

    lg = logging.getLogger("gguf")
    old = lg.level
    lg.setLevel(logging.ERROR)
    try:
        return fn(*a, **k)
    finally:
        lg.setLevel(old)


def _special_vocab(d: Path, **kw):
    """gguf-py's SpecialVocab (the one convert_hf_to_gguf uses): merges, special ids, add_bos/eos, chat template."""
    import gguf

    return _quiet_gguf(gguf.SpecialVocab, d, **kw)


def _add_special_vocab(w, sv) -> None:
    _quiet_gguf(sv.add_to_gguf, w, quiet=True)


def convert(model_dir: str, out: str, outtype: str = "f16", vocab_only: bool = False,
            progress: Callable[[int, int, str], None] | None = None) -> ConvertResult:
    """Convert the Hugging Face llama checkpoint in ``model_dir`` to the GGUF file ``out``."""
    import torch

    t0 = time.perf_counter()
    if outtype not in OUTTYPES:
        raise BadArgumentError(f"--outtype {outtype}: must be one of {', '.join(OUTTYPES)}")
    d = Path(model_dir)
    if not d.is_dir():
        raise ModelNotFoundError(f"{model_dir}: no such folder")
    if not (d / "config.json").is_file():
        raise ModelNotFoundError(f"{model_dir}: no config.json (not a Hugging Face checkpoint folder)")
    cfg = _read_json(d / "config.json")
    if "text_config" in cfg:
        cfg = {**cfg, **cfg["text_config"]}
    archs = cfg.get("architectures") or []
    if not any(a in ARCHITECTURES for a in archs):
        raise UnsupportedModelError(f"{model_dir}: architecture {archs or cfg.get('model_type')} is not supported "
                                    f"(ggrun convert handles {', '.join(sorted(ARCHITECTURES))})")
    if cfg.get("num_local_experts"):
        raise UnsupportedModelError(f"{model_dir}: mixture-of-experts llama models are not supported by ggrun convert")
    qtype, ftype = OUTTYPES[outtype]
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise BadArgumentError(f"{out}: the folder {out_dir} does not exist")
    kvs, pre = model_metadata(d, cfg, ftype)

    plan: list[tuple[str, tuple[int, ...], int, str, _Tensor]] = []
    if not vocab_only:
        tensors = checkpoint_tensors(d)
        n_head = int(_hparam(cfg, ["num_attention_heads", "n_head", "n_heads"]))
        n_head_kv = int(_hparam(cfg, ["num_key_value_heads", "n_kv_heads"], False) or n_head)
        tied = bool(cfg.get("tie_word_embeddings", False))
        for hf, t in tensors.items():
            g = gguf_name(hf)
            if g is None or (g == "output.weight" and tied):
                continue
            plan.append((g, t.shape, _out_type(g, t.shape, qtype), hf, t))
        names = [p[0] for p in plan]
        if "token_embd.weight" not in names:
            raise UnsupportedModelError(f"{model_dir}: the checkpoint has no model.embed_tokens.weight")
        from .quantize import tensor_order

        order = {n: i for i, n in enumerate(tensor_order(names))}
        plan.sort(key=lambda p: order[p[0]])
    total = sum(int(np.prod(p[1])) for p in plan)
    done = 0
    with GGUFOut(out, kvs, [(g, shape, t) for g, shape, t, _, _ in plan]) as w:
        for g, shape, t, hf, src in plan:
            x = src.load()
            if not torch.is_floating_point(x):
                raise UnsupportedModelError(f"tensor '{hf}' has dtype {x.dtype}, not a float type")
            x = x.to(torch.float32)
            if g.endswith("attn_q.weight"):
                x = permute_qk(x, n_head, n_head)
            elif g.endswith("attn_k.weight"):
                x = permute_qk(x, n_head, n_head_kv)
            w.write_stream(_encode_rows(x.reshape(-1, shape[-1]) if x.dim() > 1 else x.reshape(1, -1), t))
            done += int(np.prod(shape))
            if progress:
                progress(done, total, g)
            del x
        w.commit()
    return ConvertResult(out, os.path.getsize(out), len(plan), pre, time.perf_counter() - t0)


def _encode_rows(x, t: int, step_elems: int = 1 << 24):
    step = max(1, step_elems // x.shape[-1])
    for r in range(0, x.shape[0], step):
        yield quantize_rows(x[r:r + step].contiguous(), t)


# --------------------------------------------------------------------------------------
# llama.cpp's pre-tokenizer table (convert_hf_to_gguf.py, get_vocab_base_pre): the check
# text, and sha256(str(token ids)) → tokenizer.ggml.pre
# --------------------------------------------------------------------------------------

CHKTXT = ('\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български \'\'\'\'\'\'```````""""......!!!!!!?????? I\'ve been \'told he\'s there, \'RE you sure? \'M not sure I\'ll make it, \'D you like some tea? We\'Ve a\'lL')

PRE_HASHES = {
    "b6e8e1518dc4305be2fe39c313ed643381c4da5db34a98f6a04c093f8afbe99b": "chatglm-bpe",
    "81d72c7348a9f0ebe86f23298d37debe0a5e71149e29bd283904c02262b27516": "chatglm-bpe",
    "a1336059768a55c99a734006ffb02203cd450fed003e9a71886c88acf24fdbc2": "glm4",
    "9ca2dd618e8afaf09731a7cf6e2105b373ba6a1821559f258b272fe83e6eb902": "glm4",
    "cdf5f35325780597efd76153d4d1c16778f766173908894c04afc20108536267": "glm4",
    "1431a23e583c97432bc230bff598d103ddb5a1f89960c8f1d1051aaa944d0b35": "minerva-7b",
    "7e57df22b1fe23a7b1e1c7f3dc4e3f96d43a4eb0836d0c6bdc3436d7b2f1c664": "hunyuan",
    "bba3b3366b646dbdded5dbc42d59598b849371afc42f7beafa914afaa5b70aa6": "hunyuan-dense",
    "e6ddf9c6686791c12d698d34c31ab9be1fea9af5a3d9a6909783ab382198ae1c": "hy_v4",
    "a6b57017d60e6edb4d88ecc2845188e0eb333a70357e45dcc9b53964a73bbae6": "falcon-h1",
    "60476e1243776c4fb1b993dbd7a5f15ac22f83c80afdf425fa5ae01c8d44ef86": "falcon-h1",
    "3eda48b4c4dc7de733d1a8b3e3b4a85243dbbf704da2ee9d42c6beced8897896": "falcon-h1",
    "48f8e02c0359c0bbdd82f26909171fac1c18a457bb47573ed1fe3bbb2c1cfd4b": "falcon-h1",
    "81212dc7cdb7e0c1074ca62c5aeab0d43c9f52b8a737be7b12a777c953027890": "kimi-k2",
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",
    "1444df51289cfa8063b96f0e62b1125440111bc79a52003ea14b6eac7016fd5f": "qwen35",
    "66b8d4e19ab16c3bfd89bce5d785fb7e0155e8648708a1f42077cb9fe002c273": "grok-2",
    "b3d1dd861f1d4c5c0d2569ce36baf3f90fe8a102db3de50dd71ff860d91be3df": "jina-v2-de",
    "0fe1cf6eda062318a1af7270f3331a85c539a01778ff948e24388e949c5282f4": "gpt-2",
    "9e454714343b69b99b71795c1d27a68c2a1d15dab111f4d353109f966af29da7": "lfm2",
    "846deafc5b0fa786186fa4ae6c7b49903cf2f1d1895bdb80b9120d60be135252": "gemma4",
    "0a766d034107bc736a3f2dc4968fd62e54a3570f1454443e0c5a4cc6bd7941ed": "spark2_5",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754": "deepseek-llm",
    "347715f544604f9118bb75ed199f68779f423cabb20db6de6f31b908d04d7821": "deepseek-coder",
    "8aeee3860c56296a157a1fe2fad249ec40aa59b1bb5709f4ade11c4e6fe652ed": "falcon",
    "0876d13b50744004aa9aeae05e7b0647eac9d801b5ba4668afc01e709c15e19f": "bert-bge",
    "9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e": "falcon3",
    "8e62295832751ca1e8f92f2226f403dea30dc5165e448b5bfa05af5340c64ec7": "bert-bge-large",
    "b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166": "mpt",
    "35d91631860c815f952d711435f48d356ebac988362536bed955d43bfa436e34": "starcoder",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "32d85c31273f8019248f2559fed492d929ea28b17e51d81d3bb36fff23ca72b3": "stablelm2",
    "6221ad2852e85ce96f791f476e0b390cf9b474c9e3d1362f53a24a06dc8220ff": "refact",
    "9c2227e4dd922002fb81bde4fc02b0483ca4f12911410dee2255e4987644e3f8": "command-r",
    "d772b220ace2baec124bed8cfafce0ead7d6c38a4b65ef11261cf9d5d62246d1": "tiny_aya",
    "52df12b4c8d4176e7481aab4b6e8454d1fd0a210a04a574f6d4e067d10e23c3e": "cohere2moe",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",
    "b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166": "olmo",
    "a8594e3edff7c29c003940395316294b2c623e09894deebbc65f33f1515df79e": "dbrx",
    "c7699093ba4255a91e702aa38a596aa81669f3525dae06c2953267dde580f448": "jina-v1-en",
    "0876d13b50744004aa9aeae05e7b0647eac9d801b5ba4668afc01e709c15e19f": "jina-v2-en",
    "171aeeedd6fb548d418a7461d053f11b6f1f1fc9b387bd66640d28a4b9f5c643": "jina-v2-es",
    "27949a2493fc4a9f53f5b9b029c82689cfbe5d3a1929bb25e043089e28466de6": "jina-v2-de",
    "a023e9fdc5a11f034d3ef515b92350e56fb2af1f66c6b6811a4444ea9bf8763d": "jina-v5-nano",
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",
    "c7ea5862a53e4272c035c8238367063e2b270d51faa48c0f09e9d5b54746c360": "poro-chat",
    "7967bfa498ade6b757b064f31e964dddbb80f8f9a4d68d4ba7998fcf281c531a": "jina-v2-code",
    "7fc505bd3104ca1083b150b17d088b59534ede9bde81f0dd2090967d7fe52cee": "viking",
    "b53802fb28e26d645c3a310b34bfe07da813026ec7c7716883404d5e0f8b1901": "jais",
    "bc5108ee1eb6a3d600cadd065f63190fbd0554dbc9e4bbd6a0d977970afc8d2a": "jais-2",
    "7b3e7548e4308f52a76e8229e4e6cc831195d0d1df43aed21ac6c93da05fec5f": "codeshell",
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "3c30d3ad1d6b64202cd222813e7736c2db6e1bd6d67197090fc1211fbc612ae7": "bloom",
    "bc01ce58980e1db43859146dc51b1758b3b88729b217a74792e9f8d43e479d21": "gpt3-finnish",
    "4e2b24cc4770243d65a2c9ec19770a72f08cffc161adbb73fcbb6b7dd45a0aae": "exaone",
    "fcace8b9cac38ce847670c970cd5892031a753a1ef381abd1d9af00f713da085": "phi-2",
    "60824e3c0d9401f89943cbb2fff727f0e2d4c545ba4df2d6e4f09a6db0f5b450": "chameleon",
    "8b5a93ed704057481f240da0be7e7dca721d7f8f4755263b6807227a2cbeae65": "roberta-bpe",
    "ad851be1dba641f2e3711822f816db2c265f788b37c63b4e1aeacb9ee92de8eb": "gigachat",
    "d4c8f286ea6b520b3d495c4455483cfa2302c0cfcd4be05d781b6a8a0a7cdaf1": "megrez",
    "877081d19cf6996e2c4ff0e1236341e9b7bde288f5311a56a937f0afbbb3aeb5": "deepseek-v3",
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",
    "ccc2ef013c104be7bae2965776d611e1d7a8a2a9c547dd93a682c9a9fc80352e": "gpt-4o",
    "7dec86086fcc38b66b7bc1575a160ae21cf705be7718b9d5598190d7c12db76f": "superbpe",
    "1994ffd01900cfb37395608534236ecd63f2bd5995d6cb1004dda1af50240f15": "trillion",
    "96a5f08be6259352137b512d4157e333e21df7edd3fcd152990608735a65b224": "bailingmoe",
    "d353350c764d8c3b39c763113960e4fb4919bea5fbf208a0e3b22e8469dc7406": "llama4",
    "0e9433cbbb161f89e264eb32e8e64bfe69e834973ffca5d41d3948a604a3e2a3": "pixtral",
    "d5f1dd6f980fec569fb218a81a7658ac45fc56b38c5a0adeb1c232fbe04ef5ec": "seed-coder",
    "b0a6b1c0bd5998ebd9df08611efde34a4ff03faed45ae09c43e6b31ebd4b94cf": "a.x-4.0",
    "f6791d196f87ce6b56a7d234be618e0d58f8cda3549416635b2bebcd22cd95c4": "midm-2.0",
    "169bf0296a13c4d9b7672313f749eb36501d931022de052aad6e36f2bf34dd51": "lfm2",
    "2085e1638f6c377a0aa4ead21b27bb4cb941bf800df86ed391011769c1758dfb": "exaone4",
    "a1e163ecab2e718a4c829d1148b6e86824ec36163bb71941c3dca9cd5ac25756": "mellum",
    "a0b64b4385f123663873756336c085744376d015ff328bb1d901598f63c44152": "modern-bert",
    "49fc0303c9e0d2c2c565c510f64b2d9b271276acdcdadff733249eda9f7d59df": "afmoe",
    "9b1be57e70d20d9501b2b3186e792d81181ae36ada3903c26f9fea418cf87206": "bailingmoe2",
    "53e325976a6e142379c19b09afcae354f2f496f147afa8f9e189a33fe4e3024e": "granite-docling",
    "f4f37b6c8eb9ea29b3eac6bb8c8487c5ab7885f8d8022e67edc1c68ce8403e95": "minimax-m2",
    "4a2e2abae11ca2b86d570fc5b44be4d5eb5e72cc8f22dd136a94b37da83ab665": "kormo",
    "9d70134b369a70e5735009b6de918f7581b5211f7c074d1f89f753aea8248af1": "youtu",
    "16389f0a1f51ee53e562ffd51c371dc508639ab0e4261502071836e50e223e91": "solar-open",
    "6c81ce329e0802883b22eabab0d3fa48357337ef1ecb45443828bf1f6254833f": "exaone-moe",
    "d30d75d9059f1aa2c19359de71047b3ae408c70875e8a3ccf8c5fba56c9d8af4": "qwen35",
    "b4b8ca1f9769494fbd956ebc4c249de6131fb277a4a3345a7a92c7dd7a55808d": "joyai-llm",
    "e4d54df1ebc1f2b91acd986c5b51aa50837d5faf7c7398e73c1f9e9ee5d19869": "kanana2",
    "862f827721df956049dff5ca81a57f29e575280bc622e290d3bf4e35eca29015": "f2llmv2",
    "62f6fb0a6fd5098caeabb19b07a5c1099cafc8b9c40eab6ea89ece4ec02fbc57": "sarvam-moe",
    "f728162c1315c26e40249849799b4ba3fe584c32084b4795b03eb295e63cb5af": "talkie",
    "36f3066e97b7f3994b379aaacde306c1444c6ae84e81a5ae3cd2b7ed3b8c42d4": "minicpm5",
    "f241072145675bf8322086f115aebad05e9f869557a238bf2150a2a417d1bf60": "granite-embed-multi-97m",
    "789696f5946cc0fc59371f39f6097cafed196b3acded6140432f26bbb1ae1669": "granite-embed-multi-311m",
    "9dcf830ee9990cdbf78cc523a5f7bd9ad8f3f9890c2d3581d2785ad10f07049d": "mellum2",
    "972da7b59cec44d1f0a490a86c96df53859e486e481563e5dddac155013d87ac": "laguna",
    "653660222fb704f61cbf2b618a8ae6502b7f8b20c980f9a5de07ed78e13319cd": "ufakzeka",
    "4b05e02dad1c5ae07d266fd3342ddb644c6f6be058d728bc0a33af31a1d6ee66": "mmbert",
}
