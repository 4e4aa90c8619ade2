"""Random but valid GGUF blocks (any device) and a torch reference, for tests and benchmarks."""

from __future__ import annotations

import math

import torch

from .layout import LAYOUTS, Q2_K, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0

# byte offsets of the f16 fields of each type's block
_F16_FIELDS = {Q4_K: (0, 2), Q5_K: (0, 2), Q6_K: (208,), Q8_0: (0,), Q4_0: (0,), Q4_1: (0, 2), Q5_0: (0,),
               Q5_1: (0, 2), Q2_K: (80, 82), Q3_K: (108,)}
# the fields that are an added min (x = d·q + m), made negative about −half the range as real blocks
_NEG_MIN = {Q4_1: (2, 8.0), Q5_1: (2, 16.0)}


def random_blocks(n_out: int, n_in: int, ggml_type: int, device="cpu", generator: torch.Generator | None = None,
                  scale: float = 1.0) -> torch.Tensor:
    """uint8 [n_out, row_bytes]: random quants and scales, block scales as small positive f16
    (Q4_1/Q5_1's min m negative: d·q + m spans about ±half the range)."""
    bs, ts, _, _ = LAYOUTS[ggml_type]
    assert n_in % bs == 0, (n_in, bs)
    nb = n_in // bs
    raw = torch.randint(0, 256, (n_out, nb, ts), dtype=torch.uint8, device=device, generator=generator)
    neg = _NEG_MIN.get(ggml_type, (-1, 0.0))
    for off in _F16_FIELDS[ggml_type]:
        d = (torch.rand(n_out, nb, device=device, generator=generator) * 0.9 + 0.1) * (scale * 2.0 ** -9)
        if off == neg[0]:
            d = -d * neg[1]
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


# mixes: llama-quantize's file types (the per-tensor types it picks for the shape), and "Q4_K" /
# "Q5_K": every matrix of that type but a Q6_K output
FTYPE_MIXES = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K_S", "Q4_K_M",
               "Q5_K_S", "Q5_K_M", "Q6_K")
MIXES = FTYPE_MIXES + ("Q4_K", "Q5_K")
_LAYER_KEYS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def mix_types(mix: str, n_layer: int, cfg=None) -> dict[str, object]:
    """Tensor types of a llama-family mix: {'token_embd', 'output', 'attn_v': [per layer], …}.

    A file type (``FTYPE_MIXES``) gives llama-quantize's choice for ``cfg``'s shape
    (``quantize.plan_quantize``; e.g. Q4_0: Q4_0 matrices and a Q6_K output, Q3_K_M: Q3_K with
    Q4_K/Q5_K attn_v, attn_output and ffn_down); Q4_K_M needs no ``cfg`` (the rules are here)."""
    if mix == "Q4_K_M":
        hi = [Q6_K if more_bits(i, n_layer) else Q4_K for i in range(n_layer)]
        lay = dict(attn_q=[Q4_K] * n_layer, attn_k=[Q4_K] * n_layer, attn_v=hi, attn_output=[Q4_K] * n_layer,
                   ffn_gate=[Q4_K] * n_layer, ffn_up=[Q4_K] * n_layer, ffn_down=hi)
        return dict(token_embd=Q4_K, output=Q6_K, **lay)
    if mix in ("Q4_K", "Q5_K"):
        t = Q4_K if mix == "Q4_K" else Q5_K
        return dict(token_embd=t, output=Q6_K, **{k: [t] * n_layer for k in _LAYER_KEYS})
    if mix not in FTYPE_MIXES:
        raise ValueError(f"unknown mix {mix!r} (known: {', '.join(MIXES)})")
    if cfg is None:
        raise ValueError(f"mix {mix}: the model's shape (cfg) is needed")
    from ..quantize import parse_ftype, plan_quantize
    from ..synth import shape_from_args, virtual_model

    shape = shape_from_args(cfg.n_embd, n_layer, cfg.n_head, cfg.n_head_kv, cfg.n_ff, cfg.n_vocab)
    t = {name: p.dst_type for name, p in plan_quantize(virtual_model(shape), parse_ftype(mix)).items()}
    return dict(token_embd=t["token_embd.weight"], output=t["output.weight"],
                **{k: [t[f"blk.{i}.{k}.weight"] for i in range(n_layer)] for k in _LAYER_KEYS})


def synthetic_llama(cfg, mix: str = "Q4_K_M", device="cpu", seed: int = 0, pack: bool = True):
    """``LlamaWeights`` of random valid blocks with ``cfg``'s shapes and ``mix``'s types.

    With ``pack`` the matrices are re-laid out on ``device`` at once (``w.cache``) and the raw
    bytes dropped (``w.data`` None: ``layout.unpack(w.cache)`` gives them back), so that the
    stacking of QKV and gate/up (views) leaves one copy of the weights on the device."""
    from ..weights import LayerWeights, LlamaWeights, QuantWeight
    from . import layout

    g = torch.Generator(device=device).manual_seed(seed)
    types = mix_types(mix, cfg.n_layer, cfg)
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
