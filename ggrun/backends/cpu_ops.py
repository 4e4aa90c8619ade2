"""The C ops of the CPU backend (ggrun/cpu/ops.c): attention, RoPE, SwiGLU, RMSNorm with
llama.cpp's exact CPU numerics. They are compiled into the same library as the matmul kernels
(ggrun.cpu builds and caches it); this module only declares their signatures."""

from __future__ import annotations

import ctypes

P = ctypes.c_void_p
I, I64, F = ctypes.c_int, ctypes.c_int64, ctypes.c_float
_lib = None


def load():
    """The kernel library with the ops' signatures set, or None (then ``reason()`` says why)."""
    global _lib
    if _lib is not None:
        return _lib
    from .. import cpu

    if not cpu.available():
        return None
    lib = ctypes.CDLL(cpu.library_path())
    lib.ggrun_attention_f16.argtypes = [P, P, P, P, I, I, I, I, I, F, I, I]
    lib.ggrun_rope_cache.argtypes = [P, I, I, F, F, F, F, F, F]
    lib.ggrun_rope_apply.argtypes = [P, P, I, I, I, I, P, I]
    lib.ggrun_swiglu.argtypes = [P, P, P, I64]
    lib.ggrun_rms_norm.argtypes = [P, P, P, I64, I64, F]
    lib.ggrun_rope_store_attend.argtypes = [P, P, P, P, P, P, I, I, I, I, I, P, I, I, F, I, I, P, I, I, I, I]
    lib.ggrun_fwht.argtypes = [P, I64, I]
    lib.ggrun_attention_kv.argtypes = [P, P, P, P, I, I, I, I, I, F, I, I, I, I]
    lib.ggrun_quantize_row_q8_0.argtypes = [P, P, I64]
    for f in (lib.ggrun_attention_f16, lib.ggrun_rope_cache, lib.ggrun_rope_apply, lib.ggrun_swiglu,
              lib.ggrun_rms_norm, lib.ggrun_rope_store_attend, lib.ggrun_attention_kv, lib.ggrun_quantize_row_q8_0,
              lib.ggrun_fwht):
        f.restype = None
    _lib = lib
    return lib


def reason() -> str | None:
    from .. import cpu

    return cpu.unavailable_reason()
