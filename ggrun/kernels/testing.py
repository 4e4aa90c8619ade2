"""Random but valid GGUF blocks (any device) and a torch reference, for tests and benchmarks."""

from __future__ import annotations

import math

import torch

from .layout import LAYOUTS, Q4_0, Q4_K, Q5_K, Q6_K, Q8_0

# byte offsets of the f16 fields of each type's block
_F16_FIELDS = {Q4_K: (0, 2), Q5_K: (0, 2), Q6_K: (208,), Q8_0: (0,), Q4_0: (0,)}


def random_blocks(n_out: int, n_in: int, ggml_type: int, device="cpu", generator: torch.Generator | None = None,
                  scale: float = 1.0) -> torch.Tensor:
    """uint8 [n_out, row_bytes]: random quants and scales, block scales as small positive f16."""
    bs, ts, _, _ = LAYOUTS[ggml_type]
    assert n_in % bs == 0, (n_in, bs)
    nb = n_in // bs
    raw = torch.randint(0, 256, (n_out, nb, ts), dtype=torch.uint8, device=device, generator=generator)
    for off in _F16_FIELDS[ggml_type]:
        d = (torch.rand(n_out, nb, device=device, generator=generator) * 0.9 + 0.1) * (scale * 2.0 ** -9)
        raw[..., off:off + 2] = d.half().view(torch.uint8).reshape(n_out, nb, 2)
    return raw.reshape(n_out, nb * ts)


def dequantize_ref(raw: torch.Tensor, ggml_type: int) -> torch.Tensor:
    """uint8 [n_out, row_bytes] → f32 [n_out, n_in] with ggrun.quants (gguf-py when it's absent)."""
    try:
        from ..quants import dequantize

        return dequantize(raw, ggml_type)
    except ImportError:  # pragma: no cover
        import numpy as np
        from gguf.quants import dequantize as gdq

        return torch.from_numpy(np.ascontiguousarray(gdq(raw.cpu().numpy(), ggml_type))).to(raw.device)


def qx_dequant(qx) -> torch.Tensor:
    """The quantized activations back as f32 [M, K] (q · d): what the integer kernels multiply."""
    M, K = qx.M, qx.K
    return (qx.q.float().view(M, K // 32, 32) * qx.d.view(M, K // 32, 1)).view(M, K)


# --- synthetic llama models (random valid blocks, exact shapes) -----------------------

SHAPES = {
    # name: (n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab)
    "deepseek-coder-6.7b": (32, 4096, 11008, 32, 32, 32256),
    "deepseek-coder-33b": (62, 7168, 19200, 56, 8, 32256),
}


def synthetic_config(shape: str, n_layer: int | None = None, **over):
    """A ``ModelConfig`` with a named shape (or explicit dims in ``over``); DeepSeek Coder rope."""
    from ..config import ModelConfig, RopeConfig

    nl, d, f, h, hkv, v = SHAPES[shape] if shape in SHAPES else (2, 256, 512, 4, 2, 300)
    dims = dict(n_layer=n_layer or nl, n_embd=d, n_ff=f, n_head=h, n_head_kv=hkv, n_vocab=v)
    dims.update(over)
    hd = dims["n_embd"] // dims["n_head"]
    return ModelConfig(arch="llama", head_dim=hd, n_ctx_train=16384, rms_eps=1e-6, tied_output=False, name=shape,
                       rope=RopeConfig(dim=hd, freq_base=100000.0, scaling_type="linear", scaling_factor=4.0), **dims)


def more_bits(i: int, n: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the layers and every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def mix_types(mix: str, n_layer: int) -> dict[str, object]:
    """Tensor types of a llama-family mix: {'token_embd', 'output', 'attn_v': [per layer], …}."""
    if mix == "Q4_K_M":
        hi = [Q6_K if more_bits(i, n_layer) else Q4_K for i in range(n_layer)]
        lay = dict(attn_q=[Q4_K] * n_layer, attn_k=[Q4_K] * n_layer, attn_v=hi, attn_output=[Q4_K] * n_layer,
                   ffn_gate=[Q4_K] * n_layer, ffn_up=[Q4_K] * n_layer, ffn_down=hi)
        return dict(token_embd=Q4_K, output=Q6_K, **lay)
    t = {"Q4_K": Q4_K, "Q5_K": Q5_K, "Q6_K": Q6_K, "Q8_0": Q8_0, "Q4_0": Q4_0}[mix]
    lay = {k: [t] * n_layer for k in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")}
    return dict(token_embd=t, output=Q6_K if t in (Q4_K, Q5_K) else t, **lay)


def synthetic_llama(cfg, mix: str = "Q4_K_M", device="cpu", seed: int = 0, pack: bool = True):
    """``LlamaWeights`` of random valid blocks with ``cfg``'s shapes and ``mix``'s types.

    With ``pack`` the matrices are re-laid out on ``device`` at once (``w.cache``) and the raw
    bytes dropped (``w.data`` None: ``layout.unpack(w.cache)`` gives them back), so that the
    stacking of QKV and gate/up (views) leaves one copy of the weights on the device."""
    from ..weights import LayerWeights, LlamaWeights, QuantWeight
    from . import layout

    g = torch.Generator(device=device).manual_seed(seed)
    types = mix_types(mix, cfg.n_layer)
    D, Fd, hd = cfg.n_embd, cfg.n_ff, cfg.head_dim
    nbytes = [0]

    def mat(name: str, t: int, n_out: int, n_in: int, scale: float = 1.0) -> QuantWeight:
        raw = random_blocks(n_out, n_in, t, device=device, generator=g, scale=scale)
        w = QuantWeight(name, t, (n_out, n_in), raw)
        nbytes[0] += raw.numel()
        if pack:
            w.cache = layout.pack(raw, t)
            w.data = None
        return w

    def norm(n: int) -> torch.Tensor:
        nbytes[0] += 4 * n
        return (1.0 + 0.1 * torch.randn(n, device=device, generator=g)).float()

    layers = []
    s_in = 1.0 / math.sqrt(D / 4096)
    for i in range(cfg.n_layer):
        layers.append(LayerWeights(
            attn_norm=norm(D),
            wq=mat(f"blk.{i}.attn_q.weight", types["attn_q"][i], cfg.n_head * hd, D, s_in),
            wk=mat(f"blk.{i}.attn_k.weight", types["attn_k"][i], cfg.n_head_kv * hd, D, s_in),
            wv=mat(f"blk.{i}.attn_v.weight", types["attn_v"][i], cfg.n_head_kv * hd, D, s_in),
            wo=mat(f"blk.{i}.attn_output.weight", types["attn_output"][i], D, cfg.n_head * hd, 0.25),
            ffn_norm=norm(D),
            w_gate=mat(f"blk.{i}.ffn_gate.weight", types["ffn_gate"][i], Fd, D, s_in),
            w_up=mat(f"blk.{i}.ffn_up.weight", types["ffn_up"][i], Fd, D, s_in),
            w_down=mat(f"blk.{i}.ffn_down.weight", types["ffn_down"][i], D, Fd, 0.25),
        ))
    embd = mat("token_embd.weight", types["token_embd"], cfg.n_vocab, D)
    out = mat("output.weight", types["output"], cfg.n_vocab, D, s_in)
    w = LlamaWeights(token_embd=embd, layers=layers, output_norm=norm(D), output=out)
    w.n_bytes = nbytes[0]
    return w
