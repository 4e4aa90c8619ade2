"""Model weights as they lie in the GGUF file: raw blocks, never expanded at load."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import UnsupportedModelError
from .gguf_file import GGUFFile, TensorInfo

F32, F16, BF16 = 0, 1, 30


@dataclass
class QuantWeight:
    """One weight matrix (n_out, n_in) as raw GGUF blocks: ``data`` is (n_out, row_bytes) uint8.

    Backends may attach a re-layout of the same bits in ``cache`` (e.g. on a GPU).
    """

    name: str
    ggml_type: int
    shape: tuple[int, int]
    data: np.ndarray
    cache: object = None

    @property
    def n_out(self) -> int:
        return self.shape[0]

    @property
    def n_in(self) -> int:
        return self.shape[1]

    @property
    def n_bytes(self) -> int:
        return int(self.data.nbytes)

    @classmethod
    def from_info(cls, info: TensorInfo) -> "QuantWeight":
        if len(info.shape) != 2:
            raise UnsupportedModelError(f"tensor '{info.name}' has shape {info.shape}, expected a matrix")
        return cls(info.name, info.ggml_type, (info.shape[0], info.shape[1]), info.data)


def dense_f32(info: TensorInfo) -> torch.Tensor:
    """A small tensor (norm weights) as float32, copied out of the map."""
    from .quants import dequantize

    if info.ggml_type == F32:
        return torch.from_numpy(np.frombuffer(info.data.tobytes(), dtype=np.float32).reshape(info.shape).copy())
    return dequantize(np.ascontiguousarray(info.data).reshape(1, -1), info.ggml_type).reshape(info.shape)


@dataclass
class LayerWeights:
    attn_norm: torch.Tensor     # [n_embd] f32
    wq: QuantWeight             # [n_head*head_dim, n_embd]
    wk: QuantWeight             # [n_head_kv*head_dim, n_embd]
    wv: QuantWeight             # [n_head_kv*head_dim, n_embd]
    wo: QuantWeight             # [n_embd, n_head*head_dim]
    ffn_norm: torch.Tensor      # [n_embd] f32
    w_gate: QuantWeight         # [n_ff, n_embd]
    w_up: QuantWeight           # [n_ff, n_embd]
    w_down: QuantWeight         # [n_embd, n_ff]


@dataclass
class LlamaWeights:
    """All weights of a llama-family model, named as in the GGUF file."""

    token_embd: QuantWeight     # [n_vocab, n_embd]
    layers: list[LayerWeights]
    output_norm: torch.Tensor   # [n_embd]
    output: QuantWeight         # [n_vocab, n_embd] (token_embd when tied)

    @classmethod
    def from_gguf(cls, f: GGUFFile, n_layer: int) -> "LlamaWeights":
        def t(name: str) -> TensorInfo:
            info = f.tensors.get(name)
            if info is None:
                raise UnsupportedModelError(f"{f.path}: tensor '{name}' is missing")
            return info

        def q(name: str) -> QuantWeight:
            return QuantWeight.from_info(t(name))

        layers = []
        for i in range(n_layer):
            p = f"blk.{i}."
            layers.append(LayerWeights(
                attn_norm=dense_f32(t(p + "attn_norm.weight")),
                wq=q(p + "attn_q.weight"), wk=q(p + "attn_k.weight"), wv=q(p + "attn_v.weight"),
                wo=q(p + "attn_output.weight"),
                ffn_norm=dense_f32(t(p + "ffn_norm.weight")),
                w_gate=q(p + "ffn_gate.weight"), w_up=q(p + "ffn_up.weight"), w_down=q(p + "ffn_down.weight"),
            ))
        embd = q("token_embd.weight")
        out = q("output.weight") if "output.weight" in f.tensors else embd
        return cls(token_embd=embd, layers=layers, output_norm=dense_f32(t("output_norm.weight")), output=out)

    def all_matrices(self) -> list[QuantWeight]:
        mats = [self.token_embd]
        for L in self.layers:
            mats += [L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_up, L.w_down]
        if self.output is not self.token_embd:
            mats.append(self.output)
        return mats
