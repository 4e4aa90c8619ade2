"""``ggrun quantize``: GGUF → GGUF with llama-quantize's per-tensor type mixes.

The mix rules are those of llama.cpp's ``llama_tensor_get_type`` (src/llama-quant.cpp)
for the k-quant and legacy file types, without an importance matrix:

>>> plan = plan_quantize(GGUFFile("in.gguf"), "Q4_K_M")     # name -> TensorPlan
>>> quantize_file("in.gguf", "out.gguf", "Q4_K_M", allow_requantize=True)

The output is written like llama-quantize writes it: the input's metadata in its order
(split keys dropped), ``general.quantization_version`` and ``general.file_type`` moved to
the end, tensors ordered by (layer, name), each padded to the alignment. Work is done
tensor by tensor in slabs of rows (bounded memory) into a temporary file that is
renamed at the end, so a failure never leaves a half-written output behind.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from .errors import BadArgumentError, UnsupportedModelError
from .gguf_file import GGUFFile
from .gguf_write import GGUFOut, kv_types, typed_metadata  # noqa: F401  (re-exported)

# ggml type ids (ggml.h)
F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 = 0, 1, 2, 3, 6, 7, 8
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16 = 10, 11, 12, 13, 14, 30
_QUANTIZED = {Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K}
_BLOCK = {F32: 1, F16: 1, BF16: 1, Q4_0: 32, Q4_1: 32, Q5_0: 32, Q5_1: 32, Q8_0: 32,
          Q2_K: 256, Q3_K: 256, Q4_K: 256, Q5_K: 256, Q6_K: 256}
_TYPE_SIZE = {F32: 4, F16: 2, BF16: 2, Q4_0: 18, Q4_1: 20, Q5_0: 22, Q5_1: 24, Q8_0: 34,
              Q2_K: 84, Q3_K: 110, Q4_K: 144, Q5_K: 176, Q6_K: 210}
TYPE_NAMES = {F32: "F32", F16: "F16", BF16: "BF16", Q4_0: "Q4_0", Q4_1: "Q4_1", Q5_0: "Q5_0", Q5_1: "Q5_1",
              Q8_0: "Q8_0", Q2_K: "Q2_K", Q3_K: "Q3_K", Q4_K: "Q4_K", Q5_K: "Q5_K", Q6_K: "Q6_K"}
GGML_QNT_VERSION = 2


@dataclass(frozen=True)
class FType:
    """A llama-quantize file type: its llama_ftype id, default tensor type, description."""

    name: str
    ftype: int
    default: int
    desc: str


# llama.h's llama_ftype and tools/quantize's names; the aliases Q3_K/Q4_K/Q5_K as there.
FTYPES: dict[str, FType] = {f.name: f for f in [
    FType("F32", 0, F32, "26.00G @ 7B"),
    FType("F16", 1, F16, "14.00G, +0.0020 ppl @ Mistral-7B"),
    FType("BF16", 32, BF16, "14.00G, -0.0050 ppl @ Mistral-7B"),
    FType("Q4_0", 2, Q4_0, " 4.34G, +0.4685 ppl @ Llama-3-8B"),
    FType("Q4_1", 3, Q4_1, " 4.78G, +0.4511 ppl @ Llama-3-8B"),
    FType("Q5_0", 8, Q5_0, " 5.21G, +0.1316 ppl @ Llama-3-8B"),
    FType("Q5_1", 9, Q5_1, " 5.65G, +0.1062 ppl @ Llama-3-8B"),
    FType("Q8_0", 7, Q8_0, " 7.96G, +0.0026 ppl @ Llama-3-8B"),
    FType("Q2_K", 10, Q2_K, " 2.96G, +3.5199 ppl @ Llama-3-8B"),
    FType("Q3_K_S", 11, Q3_K, " 3.41G, +1.6321 ppl @ Llama-3-8B"),
    FType("Q3_K_M", 12, Q3_K, " 3.74G, +0.6569 ppl @ Llama-3-8B"),
    FType("Q3_K_L", 13, Q3_K, " 4.03G, +0.5562 ppl @ Llama-3-8B"),
    FType("Q4_K_S", 14, Q4_K, " 4.37G, +0.2689 ppl @ Llama-3-8B"),
    FType("Q4_K_M", 15, Q4_K, " 4.58G, +0.1754 ppl @ Llama-3-8B"),
    FType("Q5_K_S", 16, Q5_K, " 5.21G, +0.1049 ppl @ Llama-3-8B"),
    FType("Q5_K_M", 17, Q5_K, " 5.33G, +0.0569 ppl @ Llama-3-8B"),
    FType("Q6_K", 18, Q6_K, " 6.14G, +0.0217 ppl @ Llama-3-8B"),
]}
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
SEED_TYPES = ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_K_S", "Q4_K_M", "Q5_0",
              "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0"]
_FT = {f.name: f.ftype for f in FTYPES.values()}


def parse_ftype(name: str) -> FType:
    """'Q4_K_M' (any case, aliases too) → FType; BadArgumentError for an unknown name."""
    key = name.strip().upper()
    key = ALIASES.get(key, key)
    if key not in FTYPES:
        raise BadArgumentError(f"unknown quantization type '{name}' (known: {', '.join(list(FTYPES) + list(ALIASES))})")
    return FTYPES[key]


def parse_ggml_type(name: str) -> int:
    """A ggml tensor type name ('q8_0', 'Q4_K', 'f16' …) → its id, as llama-quantize's parse_ggml_type."""
    for t, n in TYPE_NAMES.items():
        if n.lower() == name.strip().lower():
            return t
    raise BadArgumentError(f"unknown ggml tensor type '{name}' (known: {', '.join(TYPE_NAMES.values())})")


def row_size(t: int, n: int) -> int:
    return n // _BLOCK[t] * _TYPE_SIZE[t]


# --------------------------------------------------------------------------------------
# The mix: llama_tensor_get_type
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorPlan:
    name: str
    shape: tuple[int, ...]       # torch order (rows first)
    src_type: int
    dst_type: int
    fallback: bool = False       # the row length could not take the mix's type

    @property
    def n_bytes(self) -> int:
        rows = int(np.prod(self.shape[:-1])) if len(self.shape) > 1 else 1
        return rows * row_size(self.dst_type, self.shape[-1])

    @property
    def requantize(self) -> bool:
        return self.src_type != self.dst_type


def _layer_of(name: str) -> int:
    m = re.match(r"blk\.(\d+)\.", name)
    return int(m.group(1)) if m else -1


def tensor_order(names: Iterable[str]) -> list[str]:
    """llama_model_loader's weights_map order: by layer (non-layer tensors first), then name."""
    return sorted(names, key=lambda n: (_layer_of(n), n.encode()))


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    # fused QKV and MLA's kv_b count as attn_v (llama.cpp's category_is_attn_v)
    for key, cat in (("attn_qkv.weight", "attn_v"), ("attn_kv_b.weight", "attn_v"), ("attn_v.weight", "attn_v"),
                     ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"),
                     ("attn_output.weight", "attn_output"), ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"),
                     ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


def _allows_quantization(name: str, shape: tuple[int, ...], quantize_output: bool) -> bool:
    if len(shape) < 2:
        return False
    q = name.endswith("weight") and "_norm.weight" not in name
    q &= quantize_output or name != "output.weight"
    for bad in ("ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj", "ssm_conv1d",
                "attn_rel_b.weight", ".position_embd", "position_embd.weight", "token_types.weight"):
        q &= bad not in name
    return q


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def plan_quantize(src: GGUFFile, ftype: str | FType, pure: bool = False, output_tensor_type: int | None = None,
                  token_embedding_type: int | None = None, leave_output_tensor: bool = False) -> dict[str, TensorPlan]:
    """Each tensor's target type, in output order, exactly as llama-quantize chooses it."""
    ft = ftype if isinstance(ftype, FType) else parse_ftype(ftype)
    md = src.metadata
    arch = src.architecture
    n_layer = int(md.get(f"{arch}.block_count", 0) or 0)
    n_head = md.get(f"{arch}.attention.head_count", 1)
    n_head_kv = md.get(f"{arch}.attention.head_count_kv", n_head)
    n_head = int(n_head[0] if isinstance(n_head, list) else n_head or 1)
    n_head_kv = int(n_head_kv[0] if isinstance(n_head_kv, list) else n_head_kv or n_head)
    n_gqa = n_head // n_head_kv if n_head_kv else 1
    n_expert = int(md.get(f"{arch}.expert_count", 0) or 0)
    is_70b = arch == "llama" and n_layer == 80 and n_head != n_head_kv
    falcon = arch == "falcon"

    names = tensor_order(src.tensors)
    cats = {n: _category(n) for n in names}
    n_attention_wv = sum(1 for c in cats.values() if c == "attn_v")
    tied = "output.weight" not in src.tensors
    n_ffn = n_layer
    st = {"i_attention_wv": 0, "i_ffn_down": 0, "i_ffn_gate": 0, "i_ffn_up": 0}
    default = ft.default
    f = ft.name

    def layer_info(counter: str, name: str) -> tuple[int, int]:
        if max(1, n_expert) > 1:
            i = _layer_of(name)
            if i < 0 or i >= n_ffn:
                raise UnsupportedModelError(f"can't determine the layer of tensor '{name}'")
            return i, n_ffn
        return st[counter], n_ffn

    def impl(new_type: int, name: str, ncols: int, cat: str) -> int:
        if cat == "output" or (tied and cat == "token_embd"):
            if output_tensor_type is not None:
                return output_tensor_type
            if falcon or ncols % _BLOCK[new_type] != 0:
                return Q8_0
            return Q6_K if new_type != Q8_0 else new_type
        if cat == "token_embd":
            return token_embedding_type if token_embedding_type is not None else new_type
        if cat == "attn_v":
            i = st["i_attention_wv"]
            if f == "Q2_K":
                new_type = Q4_K if n_gqa >= 4 else Q3_K
            elif f == "Q3_K_M":
                new_type = Q5_K if i < 2 else Q4_K
            elif f == "Q3_K_L":
                new_type = Q5_K
            elif f in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n_attention_wv):
                new_type = Q6_K
            elif f == "Q4_K_S" and i < 4:
                new_type = Q5_K
            if is_70b and new_type in (Q3_K, Q4_K):
                new_type = Q5_K
            if n_expert == 8:
                new_type = Q8_0
            st["i_attention_wv"] += 1
        elif cat == "attn_k":
            if n_expert == 8:
                new_type = Q8_0
        elif cat == "ffn_down":
            i_layer, n = layer_info("i_ffn_down", name)
            if f == "Q2_K":
                new_type = Q3_K
            elif f == "Q3_K_M":
                new_type = Q5_K if i_layer < n // 16 else (Q4_K if not falcon or _use_more_bits(i_layer, n) else Q3_K)
            elif f == "Q3_K_L":
                new_type = Q4_K if falcon else Q5_K
            elif f == "Q4_K_M":
                if falcon:
                    new_type = Q6_K if i_layer < n // 16 else (Q5_K if _use_more_bits(i_layer, n) else Q4_K)
                elif _use_more_bits(i_layer, n):
                    new_type = Q6_K
            elif f == "Q5_K_M" and _use_more_bits(i_layer, n):
                new_type = Q6_K
            elif f == "Q4_K_S" and not falcon and i_layer < n // 8:
                new_type = Q5_K
            st["i_ffn_down"] += 1
        elif cat == "attn_output":
            if not falcon:
                if n_expert == 8:
                    if f in ("Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M"):
                        new_type = Q5_K
                else:
                    new_type = {"Q2_K": Q3_K, "Q3_K_M": Q4_K, "Q3_K_L": Q5_K}.get(f, new_type)
            elif f == "Q3_K_L":
                new_type = Q4_K
        elif cat == "ffn_gate":
            layer_info("i_ffn_gate", name)
            st["i_ffn_gate"] += 1
        elif cat == "ffn_up":
            layer_info("i_ffn_up", name)
            st["i_ffn_up"] += 1
        return new_type

    def fallback(ncols: int, t: int) -> tuple[int, bool]:
        if ncols % _BLOCK[t] == 0:
            return t, False
        r = {Q2_K: Q4_0, Q3_K: Q4_0, Q4_K: Q5_0, Q5_K: Q5_1, Q6_K: Q8_0}.get(t, t)
        if ncols % _BLOCK[r] != 0:
            r = F16
        return r, True

    plans: dict[str, TensorPlan] = {}
    for name in names:
        ti = src.tensors[name]
        shape = tuple(ti.shape)
        dst = ti.ggml_type
        fb = False
        if _allows_quantization(name, shape, not leave_output_tensor):
            cat = cats[name]
            if token_embedding_type is not None and cat == "token_embd":
                dst = token_embedding_type
            elif output_tensor_type is not None and cat == "output":
                dst = output_tensor_type
            else:
                dst = default
                if dst in _QUANTIZED:
                    if not pure:
                        dst = impl(dst, name, shape[-1], cat)
                    dst, fb = fallback(shape[-1], dst)
        if dst not in _BLOCK:
            raise UnsupportedModelError(f"tensor '{name}': type id {dst} can't be written by ggrun quantize")
        if shape[-1] % _BLOCK[dst]:
            raise BadArgumentError(f"tensor '{name}' has rows of {shape[-1]} elements, which can't take type "
                                   f"{TYPE_NAMES[dst]} (blocks of {_BLOCK[dst]})")
        plans[name] = TensorPlan(name, shape, ti.ggml_type, dst, fb)
    return plans


# --------------------------------------------------------------------------------------
# The codecs
# --------------------------------------------------------------------------------------

def dequantize_rows(data: np.ndarray, t: int, device: str = "cpu"):
    """(rows, row_bytes) uint8 → (rows, n) float32 torch tensor on ``device``."""
    from .quants import dequantize

    return dequantize(data, t, device=device)


def quantize_tensor(x, t: int):
    """(rows, n) float32 torch tensor → (rows, row_bytes) uint8 torch tensor on x's device
    (llama.cpp's reference quantizers, through ggrun.quants)."""
    from .quants import quantize

    return quantize(x, t)


def quantize_rows(x, t: int) -> np.ndarray:
    """(rows, n) float32 torch tensor → (rows, row_bytes) uint8 numpy, llama.cpp's reference quantizers."""
    return quantize_tensor(x, t).cpu().numpy()


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------

@dataclass
class QuantizeResult:
    path: str
    plans: dict[str, TensorPlan]
    size_in: int            # tensor bytes in
    size_out: int           # tensor bytes out
    file_size: int
    n_fallback: int
    seconds: float


SLAB_ELEMENTS = 1 << 24     # rows quantized per step on the CPU: ≤ 64 MiB of f32 at a time
GPU_SLAB_ELEMENTS = 1 << 26  # on a GPU: 256 MiB of f32 a step


def output_metadata(src: GGUFFile, ftype: FType) -> list[tuple[str, Any, int, int | None]]:
    """The input's metadata as llama-quantize writes it back."""
    drop = {"general.quantization_version", "general.file_type", "split.no", "split.count", "split.tensors.count"}
    kvs = [kv for kv in typed_metadata(src) if kv[0] not in drop]
    kvs.append(("general.quantization_version", GGML_QNT_VERSION, 4, None))
    kvs.append(("general.file_type", ftype.ftype, 4, None))
    return kvs


def quantize_file(inp: str, out: str, ftype: str, allow_requantize: bool = False, pure: bool = False,
                  output_tensor_type: str | int | None = None, token_embedding_type: str | int | None = None,
                  leave_output_tensor: bool = False, device: str = "cpu",
                  progress: Callable[[int, int, str], None] | None = None) -> QuantizeResult:
    """Quantize GGUF ``inp`` to ``out`` with the mix ``ftype`` (see module doc)."""
    t0 = time.perf_counter()
    ft = parse_ftype(ftype)
    ott = parse_ggml_type(output_tensor_type) if isinstance(output_tensor_type, str) else output_tensor_type
    tet = parse_ggml_type(token_embedding_type) if isinstance(token_embedding_type, str) else token_embedding_type
    if os.path.abspath(inp) == os.path.abspath(out):
        raise BadArgumentError(f"{out}: the output must not be the input file")
    src = GGUFFile(inp)
    if not src.tensors:
        raise UnsupportedModelError(f"{inp}: the file has no tensors")
    plans = plan_quantize(src, ft, pure=pure, output_tensor_type=ott, token_embedding_type=tet,
                          leave_output_tensor=leave_output_tensor)
    for p in plans.values():
        if p.requantize and p.src_type in _QUANTIZED and not allow_requantize:
            raise BadArgumentError(f"{inp}: tensor '{p.name}' is already quantized ({TYPE_NAMES[p.src_type]}); "
                                   f"requantizing is disabled: pass --allow-requantize")
        if p.src_type not in _BLOCK:
            if p.requantize:
                raise UnsupportedModelError(f"{inp}: tensor '{p.name}' has a type ggrun can't decode")
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise BadArgumentError(f"{out}: the folder {out_dir} does not exist")
    with GGUFOut(out, output_metadata(src, ft), [(p.name, p.shape, p.dst_type) for p in plans.values()],
                 src.alignment) as w:
        from .quantize_pipeline import run_pipeline

        run_pipeline(src, list(plans.values()), w, device,
                     GPU_SLAB_ELEMENTS if device.startswith("cuda") else SLAB_ELEMENTS, progress)
        w.commit()
    size_in = sum(src.tensors[n].n_bytes for n in plans)
    size_out = sum(p.n_bytes for p in plans.values())
    return QuantizeResult(out, plans, size_in, size_out, os.path.getsize(out),
                          sum(p.fallback for p in plans.values()), time.perf_counter() - t0)


def predicted_file_size(src: GGUFFile, plans: dict[str, TensorPlan], ftype: FType, tmp_dir: str | None = None) -> int:
    """The exact size ``quantize_file`` will write for these plans (header written to a temp file, no data)."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=tmp_dir) as d:
        w = GGUFOut(os.path.join(d, "size.gguf"), output_metadata(src, ftype),
                    [(p.name, p.shape, p.dst_type) for p in plans.values()], src.alignment)
        try:
            return w.file_size()
        finally:
            w.abort()
