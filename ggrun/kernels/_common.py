"""Shared bits of the Triton kernels: the dp4a helper, f16 fields, the matvec store and the
interpreter switch."""

from __future__ import annotations

import os

import triton
import triton.language as tl


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU (TRITON_INTERPRET=1): no inline PTX there."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_asm() -> bool:
    return not interpreting()


# Programmatic dependent launch (PDL) of the decode kernels, on by default ("end") where the GPU has
# it (Hopper and later); GGRUN_PDL=off|start|end overrides. "end": a matvec lets the next kernel
# launch after its K loop, so that kernel's programs (the next matvec's: with its first weights
# prefetched) are resident and waiting while the matvec's last programs store; every kernel waits
# for its predecessor's writes before it reads activations. "start" (every program lets the next
# kernel launch first thing) was slower on the H200 (session 3: -10% on the 33B shape, -20% on the
# 6.7B: waiting programs of many small grids hold the SMs). Session 3 saw "end" change the 6.7B
# logits (by up to 0.15, the same every run); its split-K matvecs summed their K-slices with atomic
# float adds, whose order PDL's timing changes. Since session 4 the slices are summed in a fixed
# order (``store_y``), and the decode's logits with "end" equal those without PDL bit for bit (33B
# and 6.7B shapes, eager and graphed, and with the launch attribute on any one call site of the
# step or all but one: benchmarks/gpu_fusion_ab.py, session 5).
PDL_MODES = {"off": 0, "start": 1, "end": 2}


def _pdl_from_env() -> int:
    name = os.environ.get("GGRUN_PDL", "end")
    if name not in PDL_MODES:
        import sys

        print(f"ggrun: warning: GGRUN_PDL={name!r} is not one of off, start, end: using end", file=sys.stderr)
        name = "end"
    return PDL_MODES[name]


# early: kernels that can load what no kernel of the step writes (norm weights; the position, its
# cos/sin and the cached k/v of earlier steps) do so before their PDL wait, except under "start",
# where a kernel may launch before the previous step's last kernel is done (``early_kw``)
_PDL = {"mode": _pdl_from_env(), "ok": None, "early": True}


def pdl_mode() -> str:
    """The current PDL mode's name ("off", "start", "end")."""
    return {v: k for k, v in PDL_MODES.items()}[_PDL["mode"]]


def set_pdl(mode) -> None:
    """Programmatic dependent launch for the decode kernels: "off", "start" or "end" (the
    default; see above); True/False: "start"/"off"."""
    if isinstance(mode, bool):
        mode = "start" if mode else "off"
    _PDL["mode"] = PDL_MODES[mode]


def use_pdl() -> bool:
    """Launch the decode kernels with programmatic dependent launch (Hopper and later): each
    kernel's programs may start while the previous kernel drains and wait in ``gdc_wait`` for its
    writes (also inside CUDA graphs)."""
    if not _PDL["mode"] or interpreting():
        return False
    if _PDL["ok"] is None:
        import torch

        _PDL["ok"] = bool(torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9)
    return _PDL["ok"]


def pdl_kw() -> dict:
    """The launch keywords of a decode kernel: its GDC mode (0 off, 1 start, 2 end) and, with
    PDL, ``launch_pdl``."""
    return {"GDC": _PDL["mode"], "launch_pdl": True} if use_pdl() else {"GDC": 0}


def set_early(on: bool) -> None:
    """Loads before the PDL wait on (the default) or off (A/B runs): see ``early_kw``."""
    _PDL["early"] = bool(on)


def early_kw() -> dict:
    """EARLY for the kernels that load step-invariant data before their PDL wait: their launch
    comes after the previous kernel's programs have passed their own waits (mode "end"; without PDL
    the stream orders everything), so every kernel before that one is done. Not under "start"."""
    return {"EARLY": _PDL["early"] and _PDL["mode"] != 1}


@triton.jit
def gdc_sync(GDC: tl.constexpr):
    """With PDL: let the next kernel launch, then wait until the previous kernel's writes are
    visible. Called first in a kernel, before it reads anything a previous kernel wrote."""
    if GDC:
        tl.inline_asm_elementwise("griddepcontrol.launch_dependents; griddepcontrol.wait; mov.u32 $0, 0;", "=r", [],
                                  dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def gdc_enter(GDC: tl.constexpr):
    """A matvec's start with PDL: in mode 1 ("start") let the next kernel launch now; in any mode
    wait for the previous kernel's writes (mode 2, "end": the kernel calls ``gdc_launch(GDC == 2)``
    after its K loop)."""
    gdc_launch(GDC == 1)
    gdc_wait(GDC != 0)


@triton.jit
def gdc_launch(GDC: tl.constexpr):
    """With PDL: let the next kernel's programs start (they wait in their own ``gdc_wait``)."""
    if GDC:
        tl.inline_asm_elementwise("griddepcontrol.launch_dependents; mov.u32 $0, 0;", "=r", [],
                                  dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def gdc_wait(GDC: tl.constexpr):
    """With PDL: wait until the previous kernel's writes are visible. Loads of what no kernel
    writes (the weights) may come before it."""
    if GDC:
        tl.inline_asm_elementwise("griddepcontrol.wait; mov.u32 $0, 0;", "=r", [],
                                  dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def silu_mul(g, u):
    """SwiGLU's silu(g)·u, elementwise: the one expression of every kernel that computes it
    (prefill's f16 SwiGLU, the activation quantizer, the gate/up matvec's fused epilogue)."""
    return g / (1.0 + tl.exp(-g)) * u


@triton.jit
def dp4a(a, b, ASM: tl.constexpr):
    """Σ_i int8(a.byte[i]) * int8(b.byte[i]) over the 4 bytes of int32 words (elementwise,
    broadcasting). On the GPU one ``dp4a.s32.s32``; under the interpreter the same by shifts."""
    a, b = tl.broadcast(a, b)
    if ASM:
        return tl.inline_asm_elementwise("dp4a.s32.s32 $0, $1, $2, 0;", "=r,r,r", [a, b],
                                         dtype=tl.int32, is_pure=True, pack=1)
    else:
        r = ((a << 24) >> 24) * ((b << 24) >> 24)
        r += ((a << 16) >> 24) * ((b << 16) >> 24)
        r += ((a << 8) >> 24) * ((b << 8) >> 24)
        r += (a >> 24) * (b >> 24)
        return r


@triton.jit
def _dp4a_c(a, b, c, OP: tl.constexpr, ASM: tl.constexpr):
    """c + the dp4a of a and b, ``OP`` "s32" (signed bytes of a) or "u32" (unsigned)."""
    if ASM:
        return tl.inline_asm_elementwise("dp4a." + OP + ".s32 $0, $1, $2, $3;", "=r,r,r,r", [a, b, c],
                                         dtype=tl.int32, is_pure=True, pack=1)
    elif OP == "s32":
        return c + dp4a(a, b, ASM)
    else:
        return c + dp4a_hi(a, b, ASM)


@triton.jit
def dp4a_acc(a, b, c, ASM: tl.constexpr):
    """c + Σ_i int8(a.byte[i]) * int8(b.byte[i]) (one ``dp4a`` with its accumulator on the GPU)."""
    return _dp4a_c(a, b, c, "s32", ASM)


@triton.jit
def dp4a_hi(a, b, ASM: tl.constexpr):
    """16 · Σ_i hi4(a.byte[i]) * int8(b.byte[i]) for words a whose bytes hold only their high
    nibble (a & 0xF0F0F0F0): ``dp4a.u32.s32`` reads them as the unsigned bytes 16·hi4, which
    saves the shift that would move the nibbles down."""
    a, b = tl.broadcast(a, b)
    if ASM:
        return tl.inline_asm_elementwise("dp4a.u32.s32 $0, $1, $2, 0;", "=r,r,r", [a, b],
                                         dtype=tl.int32, is_pure=True, pack=1)
    else:
        return dp4a((a >> 4) & 0x0F0F0F0F, b, ASM) * 16


@triton.jit
def dp4a_hi_acc(a, b, c, ASM: tl.constexpr):
    """c + ``dp4a_hi(a, b)``."""
    return _dp4a_c(a, b, c, "u32", ASM)


@triton.jit
def lane(t, v, i: tl.constexpr):
    """Element i of the last axis (size 4) of a 4-d or 5-d t (v = that axis' index, broadcastable):
    a select within one thread's 16-byte vector when the axis is the thread's vector."""
    return tl.sum(tl.where(v == i, t, 0), axis=len(t.shape) - 1)


@triton.jit
def f16_lo(w):
    """The f16 in the low 16 bits of int32 words, as float32."""
    return (w & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def f16_hi(w):
    """The f16 in the high 16 bits of int32 words, as float32."""
    return ((w >> 16) & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def kq_scales(w1, w2, w3, jj):
    """Q4_K/Q5_K 6-bit scales and mins: from the 3 packed words of a block ([...]) and the
    64-element group index jj ([..., 4] broadcastable) → (sc_a, sc_b, m_a, m_b) int32 for the
    group's two 32-element sub-blocks 2jj and 2jj+1 (ggml's get_scale_min_k4, 4 at a time)."""
    sc_lo = w1 & 0x3F3F3F3F                                    # sc0..3
    m_lo = w2 & 0x3F3F3F3F                                     # m0..3
    sc_hi = (w3 & 0x0F0F0F0F) | ((w1 >> 2) & 0x30303030)       # sc4..7
    m_hi = ((w3 >> 4) & 0x0F0F0F0F) | ((w2 >> 2) & 0x30303030)  # m4..7
    sel = jj < 2
    scw = tl.where(sel, sc_lo, sc_hi)
    mw = tl.where(sel, m_lo, m_hi)
    sh = (jj % 2) * 16
    return (scw >> sh) & 0xFF, (scw >> (sh + 8)) & 0xFF, (mw >> sh) & 0xFF, (mw >> (sh + 8)) & 0xFF


@triton.jit
def program_tile(N, NB, bps, BN: tl.constexpr):
    """A matvec program's output rows [BN] (program id 0), their mask (rows < N) and its range of
    K blocks [b_lo, b_hi) (program id 1: split-K, ``bps`` blocks each)."""
    rows = tl.program_id(0) * BN + tl.arange(0, BN)
    b_lo = tl.program_id(1) * bps
    return rows, rows < N, b_lo, tl.minimum(b_lo + bps, NB)


@triton.jit
def last_to_arrive(cnt_ptr, idx, n):
    """Count this program's arrival at counter ``idx`` after its stores (every thread's, then a
    release); True for the last of the ``n`` programs that meet there, which then sees their stores
    (acquire) and resets the counter for the next launch (see ``counters``)."""
    tl.debug_barrier()
    arrived = tl.atomic_add(cnt_ptr + idx, 1, sem="acq_rel", scope="gpu")
    last = arrived == n - 1
    if last:
        tl.store(cnt_ptr + idx, 0)
    return last


@triton.jit
def store_y(acc, y_ptr, part_ptr, cnt_ptr, N, rows, rmask, M: tl.constexpr, MP: tl.constexpr, stride_ym,
            ACC: tl.constexpr, SPLIT: tl.constexpr):
    """A matvec program's result acc [MP, BN] into y [M, N] at ``rows``: stored, or added to what
    y holds (ACC). SPLIT (split-K: program id 1 is the K-slice): the part goes to ``part_ptr``
    [slices, MP, N], and the last slice of the row tile to arrive (``cnt_ptr``: one arrival counter
    per tile, zero before and after) sums the parts in slice order, so the result doesn't depend on
    the order the slices finish in (atomic float adds into y did)."""
    mrow = tl.arange(0, MP)
    ymask = (mrow[:, None] < M) & rmask[None, :]
    yp = y_ptr + mrow[:, None] * stride_ym + rows[None, :]
    if SPLIT:
        ns = tl.num_programs(1)
        tl.store(part_ptr + (tl.program_id(1) * MP + mrow[:, None]) * N + rows[None, :], acc, mask=ymask)
        if last_to_arrive(cnt_ptr, tl.program_id(0), ns):   # the last slice: all parts are out
            tot = acc * 0.0
            for sp in range(0, ns):
                tot += tl.load(part_ptr + (sp * MP + mrow[:, None]) * N + rows[None, :], mask=ymask, other=0.0,
                               cache_modifier=".cg")
            if ACC:
                tot += tl.load(yp, mask=ymask, other=0.0)
            tl.store(yp, tot, mask=ymask)
    else:
        if ACC:
            acc += tl.load(yp, mask=ymask, other=0.0)
        tl.store(yp, acc, mask=ymask)


_N_SM: dict[tuple[str, int | None], int] = {}


def n_sm(device) -> int:
    """The device's multiprocessor count (132, an H200's, for CPU tensors under the interpreter)."""
    import torch

    device = torch.device(device)
    key = (device.type, device.index)
    if key not in _N_SM:
        _N_SM[key] = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 132
    return _N_SM[key]


_COUNTERS: dict[tuple[str, int | None], object] = {}
_OLD_COUNTERS: list = []       # outgrown ones stay alive: captured graphs may use them


def counters(device, n: int):
    """Arrival counters (int32 zeros) for the kernels whose programs meet through a last-to-arrive
    program (split-K matvecs, split decode attention) on ``device``: every launch leaves them zero.
    The kernels of one stream run one after another, so they share one buffer (two streams must
    not run such kernels at the same time on one device)."""
    import torch

    key = (device.type, device.index)
    c = _COUNTERS.get(key)
    if c is None or c.numel() < n:
        if c is not None:
            _OLD_COUNTERS.append(c)
        c = _COUNTERS[key] = torch.zeros(max(n, 1024), dtype=torch.int32, device=device)
    return c
