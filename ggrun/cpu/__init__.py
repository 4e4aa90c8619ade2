"""CPU matmul kernels for raw GGUF weights: ``y = x @ W^T`` with llama.cpp's CPU numerics.

The kernels are C (``kernels.c`` next to this file), compiled at first use with the system C
compiler (``gcc -O3 -march=native``), cached under ``$XDG_CACHE_HOME/ggrun/cpu/`` (default
``~/.cache/ggrun/cpu/``) keyed by a hash of the source, the flags, the compiler and the CPU flags,
and loaded with ctypes. When no compiler is found or the build fails, :func:`available` is False,
:func:`unavailable_reason` says why, and :mod:`ggrun.cpu.reference` (pure torch, same numerics,
slower) is the fallback.

Numerics (what llama.cpp's CPU backend does on x86): each row of ``x`` is first converted to the
weight type's ``vec_dot_type`` -- Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for
Q2_K..Q6_K, f16 for F16, bf16 for BF16, f32 for F32 -- with llama.cpp's rounding (x86 SIMD
``quantize_row_q8_0/q8_1``: half-to-even; ``quantize_row_q8_K_ref``; byte-identical), then each
block's integer dot product is scaled by the fp16 scales the way ``ggml_vec_dot_*`` does.
For Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 the default "exact" mode also reproduces llama.cpp's float
accumulation order (an 8-lane accumulator per output, one fma per block in block order, the same
horizontal sum, the ``m*s`` fma chain): results are bit-identical to ``ggml_vec_dot_*`` (and to
tinyBLAS for Q8_0). ``set_exact(False)`` switches to faster kernels whose
float summation order differs (last-ulp level). Other types: last-ulp level differences.

Quantization: :func:`quantize_rows` runs llama.cpp's reference quantizers (``quantize.c``,
quantize_row_*_ref without an imatrix: what llama-quantize writes, byte for byte) on float32,
float16 or bfloat16 rows, on several threads; ggrun.quants.quantize uses it for CPU tensors.

Configuration (all explicit; nothing is read from the environment):
  configure(cc=None, extra_cflags=None, enabled=True)   build options; call before the first use
      (available(), matmul, quantize_rows, loading a model on the CPU): the C compiler (default gcc,
      then cc), extra flags (e.g. ["-march=x86-64-v3"] for the AVX2 build), or enabled=False to
      never build/load the kernels (available() is False; ``ggrun --no-cpu-kernels`` on the CLI)
  set_num_threads(n)        default thread count (default: the CPUs this process may run on)
  set_spin_us(us)           how long idle workers spin before sleeping (default 500)
  set_exact(False)          the faster kernels for the legacy 32-block types (default True)

Calling it from a model with little overhead:
  * build one :class:`FusedMatmul` per group of weights that share an input, once at load time
    (q/k/v, gate/up; single ones for o, down, output): x is converted once per group and all rows of
    all its weights go to the threads in one dispatch;
  * call ``plan(x, out=buf)`` with a preallocated contiguous float32 ``buf`` (about 2 us of Python +
    ctypes per call; allocating the output costs ~1.5 us more); ``plan.run_ptr(xp, yp, m)`` skips all
    checks (~0.7 us) when the buffers are persistent;
  * ``matmul(w, type, x)`` caches a plan per weight object, so it works too (~2.5 us overhead);
  * the kernels run on their own thread pool (the caller is one of the threads). Between calls the
    workers spin for 500 us (:func:`set_spin_us`) and then sleep. Keep torch's own intra-op
    pool from competing for the same cores during decode (``torch.set_num_threads(1)``), or lower
    the spin with :func:`set_spin_us` if torch ops between the matmuls need the cores.
"""

from __future__ import annotations

import ctypes
import os
import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch

from . import builder
from .builder import build

__all__ = [
    "available", "unavailable_reason", "isa", "kernel_impl", "matmul", "matmul_multi", "FusedMatmul",
    "set_num_threads", "get_num_threads", "set_spin_us", "set_exact", "get_exact", "row_bytes", "TYPE_SIZES", "library_path",
    "quantize_rows", "QUANTIZE_TYPES", "configure", "build",
]

# ggml type id -> (elements per block, bytes per block)
TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    30: (1, 2),  # BF16
}

_ERRORS = {
    -1: "bad argument",
    -2: "unsupported ggml type",
    -3: "K is not a multiple of the type's block size",
    -4: "weight row stride is smaller than a row",
    -5: "out of memory",
    -6: "too many weights in one call (max 64)",
}

_lock = threading.Lock()
_lib = None
_lib_path: str | None = None
_reason: str | None = None
_tried = False
_nthreads = 0
_f_run = _f_run_ex = _f_create = _f_free = None


def row_bytes(ggml_type: int, k: int) -> int:
    """Bytes of one row of ``k`` elements of ``ggml_type``."""
    blck, bb = TYPE_SIZES[ggml_type]
    if k % blck:
        raise ValueError(f"row of {k} elements is not a whole number of {blck}-element blocks")
    return k // blck * bb


# --------------------------------------------------------------------------------------------
# build + load
# --------------------------------------------------------------------------------------------


def configure(cc: str | None = None, extra_cflags: list[str] | None = None, enabled: bool = True) -> None:
    """Build options of the C kernels. Call it before their first use (anything that builds or loads
    them: available(), matmul, quantize_rows, a CPU model); afterwards a change raises RuntimeError.

    cc: the C compiler, a name on PATH or a path (default: gcc, then cc);
    extra_cflags: flags appended to the build's (e.g. ``["-march=x86-64-v3"]`` for the AVX2 build);
    enabled: False never builds or loads the kernels: available() is False and callers take the torch
    fallback (``ggrun --no-cpu-kernels`` on the command line).
    """
    if isinstance(extra_cflags, str):
        raise TypeError("extra_cflags is a list of flags, e.g. ['-march=x86-64-v3']")
    opts = builder.BuildOptions(cc or None, tuple(extra_cflags or ()), bool(enabled))
    with _lock:
        if _tried and opts != builder.options:
            raise RuntimeError("ggrun.cpu.configure() must be called before the CPU kernels are first used")
        builder.options = opts


def _load():
    global _lib, _lib_path, _reason, _tried, _nthreads, _f_run, _f_run_ex, _f_create, _f_free
    with _lock:
        if _tried:
            return _lib
        _tried = True
        if not builder.options.enabled:
            _reason = "disabled by ggrun.cpu.configure(enabled=False) (ggrun --no-cpu-kernels)"
            return None
        path, reason = build()
        if path is None:
            _reason = reason
            return None
        try:
            lib = ctypes.CDLL(path)
            builder.declare(lib)
        except (OSError, AttributeError) as e:
            _reason = f"loading the compiled kernels {path} failed: {e}"
            return None
        _f_run, _f_run_ex = lib.gg_plan_run, lib.gg_plan_run_ex
        _f_create, _f_free = lib.gg_plan_create, lib.gg_plan_free
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            n = os.cpu_count() or 1
        _nthreads = max(1, min(n, 64))
        lib.gg_set_default_threads(_nthreads)
        lib.gg_set_spin_us(500)
        lib.gg_set_exact(1)
        _lib, _lib_path = lib, path
        return lib


def available() -> bool:
    """True when the compiled kernels are loaded (compiles them on the first call)."""
    return (_lib if _tried else _load()) is not None


def unavailable_reason() -> str | None:
    """Why the kernels are unavailable (None when they are available)."""
    if not _tried:
        _load()
    return _reason


def library_path() -> str | None:
    """Path of the loaded shared library."""
    available()
    return _lib_path


def _need():
    lib = _lib if _tried else _load()
    if lib is None:
        raise RuntimeError(f"ggrun CPU kernels unavailable: {_reason}")
    return lib


def isa() -> str:
    """Instruction set of the loaded build: 'avx512', 'avx2' or 'scalar'."""
    return _need().gg_isa().decode()


def kernel_impl(ggml_type: int) -> str:
    """Which implementation serves ``ggml_type`` ('avx512-vnni', 'avx512', 'avx2', 'scalar')."""
    buf = ctypes.create_string_buffer(64)
    if _need().gg_kernel_info(int(ggml_type), buf, 64) != 0:
        raise ValueError(f"unsupported ggml type {ggml_type}")
    return buf.value.decode()


def set_num_threads(n: int) -> None:
    """Default number of threads (including the caller) for the kernels."""
    global _nthreads
    lib = _need()
    _nthreads = max(1, min(int(n), 64))
    lib.gg_set_default_threads(_nthreads)


def get_num_threads() -> int:
    _need()
    return _nthreads


def set_exact(on: bool) -> None:
    """Q4_0/Q4_1/Q5_0/Q5_1/Q8_0: True (default) = llama.cpp's exact float accumulation order
    (bit-identical to ggml_vec_dot_* / tinyBLAS on x86); False = the faster kernels (same integer
    dot products, different float summation order: last-ulp differences; ~2x faster for prompts)."""
    _need().gg_set_exact(1 if on else 0)


def get_exact() -> bool:
    return bool(_need().gg_get_exact())


def set_spin_us(us: int) -> None:
    """How long idle worker threads spin (busy-wait) for the next call before sleeping."""
    _need().gg_set_spin_us(int(us))


# --------------------------------------------------------------------------------------------
# calls
# --------------------------------------------------------------------------------------------


_F32 = torch.float32


def _weight(w, ggml_type: int):
    """-> (pointer, N, row stride, row bytes)"""
    if isinstance(w, np.ndarray):
        if w.dtype != np.uint8 or w.ndim != 2:
            raise TypeError(f"weights must be a 2-D uint8 array of raw blocks, got {w.dtype} {w.shape}")
        if w.strides[1] != 1:
            raise ValueError("weight rows must be contiguous")
        return w.__array_interface__["data"][0], w.shape[0], w.strides[0], w.shape[1]
    if isinstance(w, torch.Tensor):
        if w.dtype != torch.uint8 or w.dim() != 2 or w.device.type != "cpu":
            raise TypeError(f"weights must be a 2-D uint8 CPU tensor of raw blocks, got {w.dtype} {tuple(w.shape)}")
        if w.stride(1) != 1:
            raise ValueError("weight rows must be contiguous")
        return w.data_ptr(), w.shape[0], w.stride(0), w.shape[1]
    raise TypeError(f"weights must be a numpy array or torch tensor, got {type(w).__name__}")


def _check(rc: int) -> None:
    if rc != 0:
        raise ValueError(f"ggrun CPU matmul failed: {_ERRORS.get(rc, rc)}")


class FusedMatmul:
    """Weights sharing one input, registered once and run as one call: x is converted once per
    distinct vec_dot format, and the row chunks of all the weights go to the threads in one dispatch.

        qkv = FusedMatmul([(wq, tq), (wk, tk), (wv, tv)])
        y = qkv(x)                 # float32 (M, Nq+Nk+Nv)  (x: (M, K) or (K,))
        q, k, v = qkv.split(y)     # views

    The fast path (x float32 contiguous, ``out`` None or float32 contiguous, no n_threads) costs
    about 2 us of Python + ctypes per call; pass a preallocated ``out`` to save the allocation.
    The plan keeps references to the weight arrays (the C side reads them in place).
    """

    __slots__ = ("n", "K", "N", "sizes", "offsets", "n_threads", "_keep", "_id", "__weakref__")

    def __init__(self, weights, n_threads: int | None = None, _keep: bool = True):
        self._id = 0
        _need()
        weights = list(weights)
        if not weights:
            raise ValueError("FusedMatmul needs at least one weight")
        if len(weights) > 64:
            raise ValueError("at most 64 weights in one FusedMatmul")
        ptrs, types, ns, strides, offs = [], [], [], [], []
        k_all = None
        off = 0
        for w, t in weights:
            t = int(t)
            if t not in TYPE_SIZES:
                raise ValueError(f"unsupported ggml type {t}")
            wp, n, ws, rb = _weight(w, t)
            blck, bb = TYPE_SIZES[t]
            if rb % bb or rb == 0:
                raise ValueError(f"weight rows of {rb} bytes are not whole {bb}-byte blocks of type {t}")
            k = rb // bb * blck
            if k_all is None:
                k_all = k
            elif k != k_all:
                raise ValueError(f"all weights must have the same K (got {k_all} and {k})")
            ptrs.append(wp)
            types.append(t)
            ns.append(n)
            strides.append(ws)
            offs.append(off)
            off += n
        self.n = len(weights)
        self.K = k_all
        self.N = off
        self.sizes = ns
        self.offsets = offs
        self.n_threads = n_threads
        self._keep = [w for w, _ in weights] if _keep else None
        arr = lambda ct, v: (ct * len(v))(*v)  # noqa: E731
        a = [arr(ctypes.c_int64, ptrs), arr(ctypes.c_int32, types), arr(ctypes.c_int64, ns),
             arr(ctypes.c_int64, strides), arr(ctypes.c_int64, offs)]
        pid = _f_create(self.n, *[ctypes.addressof(v) for v in a], self.K, int(n_threads or 0))
        if pid <= 0:
            _check(int(pid))
        self._id = pid

    def __del__(self):
        if self._id > 0 and _f_free is not None:
            _f_free(self._id)
            self._id = 0

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None, n_threads: int | None = None) -> torch.Tensor:
        """x float32 (M, K) or (K,) -> y float32 (M, N_total) (or (N_total,))."""
        if n_threads is None and x.dtype is _F32 and x.is_contiguous():
            shp = x.shape
            nd = len(shp)
            if shp[-1] == self.K and nd <= 2:
                m = shp[0] if nd == 2 else 1
                if out is None:
                    out = torch.empty((m, self.N) if nd == 2 else (self.N,), dtype=_F32)
                elif not (out.dtype is _F32 and out.is_contiguous() and out.numel() == m * self.N):
                    return self._general(x, out, n_threads)
                rc = _f_run(self._id, x.data_ptr(), out.data_ptr(), m)
                if rc:
                    _check(rc)
                return out
        return self._general(x, out, n_threads)

    def _general(self, x, out, n_threads):
        if not isinstance(x, torch.Tensor) or x.dtype != _F32:
            raise TypeError(f"x must be a float32 tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        if x.shape[-1] != self.K or x.dim() not in (1, 2):
            raise ValueError(f"x must be (M, {self.K}) or ({self.K},), got {tuple(x.shape)}")
        if x.dim() == 1:
            x = x.contiguous()
            m, ldx = 1, self.K
        else:
            if x.stride(1) != 1 or (x.shape[0] > 1 and x.stride(0) < self.K):
                x = x.contiguous()
            m, ldx = x.shape[0], max(x.stride(0), self.K)
        nt = self.N
        if out is None:
            out = torch.empty((nt,) if x.dim() == 1 else (m, nt), dtype=_F32)
            ldy = nt
        else:
            if (out.dtype != _F32 or out.shape[-1] != nt or out.stride(-1) != 1 or out.numel() != m * nt
                    or out.dim() not in (1, 2) or (out.dim() == 2 and m > 1 and out.stride(0) < nt)):
                raise ValueError(f"out must be float32 with shape ({m}, {nt}) and contiguous rows")
            ldy = max(out.stride(0), nt) if out.dim() == 2 else nt
        rc = _f_run_ex(self._id, x.data_ptr(), m, ldx, out.data_ptr(), ldy, int(n_threads or self.n_threads or 0))
        if rc:
            _check(rc)
        return out

    def run_ptr(self, x_ptr: int, y_ptr: int, m: int) -> None:
        """Unchecked fastest path (~0.7 us): x_ptr -> float32 (m, K) contiguous, y_ptr -> float32
        (m, N) contiguous, e.g. ``data_ptr()`` of persistent buffers. Nothing is validated."""
        rc = _f_run(self._id, x_ptr, y_ptr, m)
        if rc:
            _check(rc)

    def split(self, y: torch.Tensor) -> list[torch.Tensor]:
        """Per-weight views of a result of this plan."""
        return list(y.split(self.sizes, dim=-1))


# single-weight plans for matmul(), by weight object (dropped when the object dies)
_wplans: dict = {}


def _wplan(w, ggml_type: int) -> FusedMatmul:
    key = id(w)
    e = _wplans.get(key)
    if e is not None and e[1] == ggml_type and e[0]() is w:
        return e[2]
    plan = FusedMatmul([(w, ggml_type)], _keep=False)
    try:
        ref = weakref.ref(w, lambda _r, key=key: _wplans.pop(key, None))
    except TypeError:
        return plan
    _wplans[key] = (ref, ggml_type, plan)
    return plan


def matmul(w, ggml_type: int, x: torch.Tensor, out: torch.Tensor | None = None,
           n_threads: int | None = None) -> torch.Tensor:
    """``y = x @ W^T`` for raw GGUF weights, with llama.cpp's CPU numerics.

    w: raw blocks, np.ndarray uint8 (N, row_bytes) (a read-only memmap is fine: read in place, never
       copied) or a uint8 CPU tensor; ggml_type: the ggml type id;
    x: float32 (M, K) or (K,) with contiguous rows; out: optional float32 (M, N) (or (N,)) with
       contiguous rows. Returns y float32 (M, N) (or (N,)).
    The weight's pointer/shape are registered on first use (cached per weight object), so repeated
    calls cost ~2-3 us of overhead; a :class:`FusedMatmul` is cheaper still.
    """
    if _f_run is None:
        _need()
    e = _wplans.get(id(w))
    if e is not None and e[1] == ggml_type and e[0]() is w:
        plan = e[2]
    else:
        plan = _wplan(w, int(ggml_type))
    return plan(x, out, n_threads)


_plans: OrderedDict = OrderedDict()


def matmul_multi(weights, x: torch.Tensor, out: torch.Tensor | None = None,
                 n_threads: int | None = None) -> list[torch.Tensor]:
    """Run several ``(w, ggml_type)`` weights on the same ``x`` in one call (x quantized once).

    Returns one output per weight: views into a single float32 (M, sum N) buffer (``out`` if given).
    For repeated calls with the same weights keep a :class:`FusedMatmul` instead (cheaper).
    """
    _need()
    weights = [(w, int(t)) for w, t in weights]
    key = tuple((_weight(w, t)[:3], t) for w, t in weights)
    plan = _plans.get(key)
    if plan is None:
        plan = FusedMatmul(weights, _keep=False)  # the caller keeps the arrays alive during the call
        _plans[key] = plan
        if len(_plans) > 256:
            _plans.popitem(last=False)
    else:
        _plans.move_to_end(key)
    return plan.split(plan(x, out=out, n_threads=n_threads))


def quantize_row(vec_type: int, x: torch.Tensor):
    """The activation conversion the kernels do, for one row (tests / debugging).

    vec_type 8 (Q8_0) / 9 (Q8_1): -> (qs int8 (K,), d float32 (K/32,), s float32 (K/32,))
    vec_type 15 (Q8_K): -> (qs int8 (K,), d float32 (K/256,), bsums int16 (K/16,))
    vec_type 1 (F16) / 30 (BF16) / 0 (F32): -> rounded values as float32 (K,)
    """
    lib = _need()
    x = x.detach().to(torch.float32).contiguous().reshape(-1)
    k = x.numel()
    qs = torch.zeros(k, dtype=torch.int8)
    if vec_type in (8, 9):
        d = torch.zeros(k // 32, dtype=torch.float32)
        s = torch.zeros(k // 32, dtype=torch.float32)
        _check(lib.gg_quantize_row(vec_type, x.data_ptr(), k, qs.data_ptr(), d.data_ptr(), s.data_ptr(), None))
        return qs, d, s
    if vec_type == 15:
        d = torch.zeros(k // 256, dtype=torch.float32)
        bs = torch.zeros(k // 16, dtype=torch.int16)
        _check(lib.gg_quantize_row(vec_type, x.data_ptr(), k, qs.data_ptr(), d.data_ptr(), None, bs.data_ptr()))
        return qs, d, bs
    if vec_type in (0, 1, 30):
        d = torch.zeros(k, dtype=torch.float32)
        _check(lib.gg_quantize_row(vec_type, x.data_ptr(), k, None, d.data_ptr(), None, None))
        return d
    raise ValueError(f"unknown vec_dot type {vec_type}")


def call_overhead_ns(n: int = 20000) -> float:
    """Measured cost of one ctypes call with 11 integer arguments (ns)."""
    import time

    f = _need().gg_noop
    t0 = time.perf_counter_ns()
    for _ in range(n):
        f(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
    return (time.perf_counter_ns() - t0) / n


# ggml types gg_quantize writes: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K .. Q6_K, BF16
QUANTIZE_TYPES = frozenset(TYPE_SIZES)
_SRC_TYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 30}   # dtype -> ggml type of the source


def quantize_rows(x: torch.Tensor, ggml_type: int, n_threads: int | None = None,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """Quantize rows to ggml blocks with llama.cpp's reference quantizers (C, bit-exact).

    x: (N, n_per_row) CPU tensor of float32, or float16 / bfloat16 (converted to float32 exactly
    on the fly, as llama-quantize does: no float32 copy is made); made contiguous if it is not.
    ggml_type: the ggml type id to write (Q4_0 .. Q6_K, F16, BF16, F32). n_threads: threads to
    split the blocks over (default ``torch.get_num_threads()``). out: optional contiguous uint8
    (N, row_bytes) destination. Returns uint8 (N, row_bytes): the bytes ``quantize_row_*_ref``
    (ggml-quants.c, no imatrix) writes, i.e. what llama-quantize writes. ValueError for an
    unsupported type or a row length that is not a whole number of blocks.
    """
    lib = _need()
    t = int(ggml_type)
    if t not in QUANTIZE_TYPES:
        raise ValueError(f"quantize_rows: unsupported ggml type {t} (supported: {sorted(QUANTIZE_TYPES)})")
    src = _SRC_TYPES.get(getattr(x, "dtype", None)) if isinstance(x, torch.Tensor) else None
    if src is None or x.device.type != "cpu":
        raise TypeError("quantize_rows: x must be a float32, float16 or bfloat16 CPU tensor, got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() == 1:
        x = x.reshape(1, -1)
    if x.dim() != 2:
        raise ValueError(f"quantize_rows: x must be (N, n_per_row), got {tuple(x.shape)}")
    x = x.contiguous()
    n, k = x.shape
    rb = row_bytes(t, k)                                   # ValueError when k is not whole blocks
    if out is None:
        out = torch.empty((n, rb), dtype=torch.uint8)
    elif out.dtype != torch.uint8 or tuple(out.shape) != (n, rb) or not out.is_contiguous():
        raise ValueError(f"quantize_rows: out must be a contiguous uint8 ({n}, {rb}) tensor")
    if n == 0:
        return out
    nth = int(n_threads) if n_threads else torch.get_num_threads()
    rc = lib.gg_quantize(t, x.data_ptr(), src, n, k, out.data_ptr(), max(1, nth))
    if rc:
        raise ValueError(f"quantize_rows: {_ERRORS.get(rc, rc)} (type {t}, rows of {k})")
    return out
