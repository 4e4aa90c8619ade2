"""The driver loop of ``ggrun quantize``: reading, computing and writing overlap.

Three stages run at once, joined by small queues: a reader thread hands on each slab of source
rows of the memory-mapped file (on the CPU in place, after touching its pages so that the disk
reads happen in that thread; on a GPU copied into pinned memory and uploaded on its own CUDA
stream); the main thread decodes and re-encodes it (ggrun.quants; on the CPU, F32/F16/BF16 rows
go straight into the C quantizers of ggrun.cpu, all torch threads, no float32 copy) and, on a GPU,
starts the copy back into pinned memory; a writer thread waits for that copy and appends the
bytes to the output, tensor by tensor in file order (tensors that keep their type are copied
from the map directly). Memory stays bounded: at most a few slabs are in flight.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

import numpy as np
import torch

from .gguf_file import GGUFFile
from .gguf_write import GGUFOut

_END = object()
_DEPTH = 3                  # slabs in flight per queue


def _slab_rows(p, step_elems: int) -> int:
    return max(1, step_elems // p.shape[-1])


def run_pipeline(src: GGUFFile, plans: list, w: GGUFOut, device: str, step_elems: int,
                 progress: Callable[[int, int, str], None] | None = None) -> None:
    from .quantize import dequantize_rows, quantize_tensor

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    cpu_quantize = _c_quantizer() if not cuda else None

    def direct(p) -> bool:
        return cpu_quantize is not None and p.src_type in _FLOAT_DTYPES and p.dst_type in _C_TYPES
    upload = torch.cuda.Stream(dev) if cuda else None
    q_in: queue.Queue = queue.Queue(_DEPTH)
    q_out: queue.Queue = queue.Queue(_DEPTH)
    stop = threading.Event()
    errors: list[BaseException] = []

    def put(q: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(q: queue.Queue):
        while True:
            if stop.is_set() and errors:
                raise _Stopped
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue

    def reader() -> None:
        try:
            with _on(dev, upload):
                for p in plans:
                    if not p.requantize:
                        continue
                    data = src.tensors[p.name].data
                    rows = data if data.ndim == 2 else data.reshape(1, -1)
                    step = _slab_rows(p, step_elems)
                    for r in range(0, rows.shape[0], step):
                        slab = rows[r:r + step]
                        if not cuda:                                 # read in place: no copy
                            if not put(q_in, _in_place(slab)):
                                return
                            continue
                        host = torch.empty(slab.shape, dtype=torch.uint8, pin_memory=cuda)
                        host.numpy()[...] = slab                     # page cache → (pinned) memory
                        if cuda:
                            host = host.to(dev, non_blocking=True)
                            upload.synchronize()
                        if not put(q_in, host):
                            return
            put(q_in, _END)
        except BaseException as e:   # noqa: BLE001 (handed to the main thread)
            errors.append(e)
            stop.set()

    def writer() -> None:
        try:
            done, total = 0, sum(src.tensors[p.name].n_bytes for p in plans)
            for p in plans:
                ti = src.tensors[p.name]
                if not p.requantize:
                    w.write(ti.data)
                else:
                    n_rows = ti.data.shape[0] if ti.data.ndim == 2 else 1
                    n_slabs = -(-n_rows // _slab_rows(p, step_elems))

                    def chunks(n=n_slabs):
                        for _ in range(n):
                            host, ev = get(q_out)
                            if ev is not None:
                                ev.synchronize()
                            yield host.numpy()

                    w.write_stream(chunks())
                done += ti.n_bytes
                if progress:
                    progress(done, total, p.name)
        except _Stopped:
            pass
        except BaseException as e:   # noqa: BLE001
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=reader, daemon=True), threading.Thread(target=writer, daemon=True)]
    for t in threads:
        t.start()
    try:
        with _on(dev, None):
            main = torch.cuda.current_stream(dev) if cuda else None
            for p in plans:
                if not p.requantize:
                    continue
                data = src.tensors[p.name].data
                n_rows = data.shape[0] if data.ndim == 2 else 1
                for _ in range(-(-n_rows // _slab_rows(p, step_elems))):
                    x = get(q_in)
                    if cuda:
                        x.record_stream(main)
                    q = None
                    if direct(p):      # raw F32/F16/BF16 rows straight into the C quantizers
                        q = cpu_quantize(x.view(_FLOAT_DTYPES[p.src_type]), p.dst_type)
                    elif cuda and p.src_type in _FLOAT_DTYPES and p.dst_type in _K_TYPES:
                        q = _gpu_kquant(x, p)  # … or into the fused Triton k-quant kernels
                    if q is None:
                        q = quantize_tensor(dequantize_rows(x, p.src_type, device), p.dst_type)
                    ev = None
                    if cuda:
                        host = torch.empty(q.shape, dtype=torch.uint8, pin_memory=True)
                        host.copy_(q, non_blocking=True)
                        ev = torch.cuda.Event()
                        ev.record(main)
                        q = host
                    if not put(q_out, (q, ev)):
                        raise _Stopped
            if get(q_in) is not _END:
                raise RuntimeError("internal: the reader produced more slabs than planned")
    except _Stopped:
        pass
    except BaseException as e:   # noqa: BLE001
        errors.append(e)
        stop.set()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


_FLOAT_DTYPES = {0: torch.float32, 1: torch.float16, 30: torch.bfloat16}   # ggml F32 / F16 / BF16
_K_TYPES = frozenset({10, 11, 12, 13, 14})                                    # Q2_K … Q6_K


def _gpu_kquant(x: torch.Tensor, p):
    """Source rows (rows, row_bytes) uint8 of a float type on the GPU → (rows, out_row_bytes)
    uint8 through the Triton k-quant kernels, the floats widened inside the kernel (None: the
    type or the machine can't)."""
    from .quants.quantizers import quantize_blocks_gpu

    if x.ndim != 2:
        return None
    rows = x.shape[0]
    v = x.view(_FLOAT_DTYPES[p.src_type]).reshape(-1, 256)
    q = quantize_blocks_gpu(v, p.dst_type)
    return None if q is None else q.reshape(rows, -1)
_C_TYPES = frozenset({0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 30})


def _c_quantizer():
    """ggrun.cpu.quantize_rows when the compiled kernels are available (else None): on the CPU it
    reads F32/F16/BF16 source rows as they are (exact conversion per block, no float32 copy of the
    slab) and quantizes them on torch.get_num_threads() threads."""
    try:
        from . import cpu

        return cpu.quantize_rows if cpu.available() else None
    except Exception:  # noqa: BLE001 (no compiler etc.: the torch path)
        return None


def _in_place(slab: np.ndarray) -> torch.Tensor:
    """A slab of the source's memory map as a uint8 tensor without copying it (the codecs only
    read it). One byte of every page is read here, in the reader thread, so that a file not yet in
    the page cache is read from disk while the main thread computes (what the copy did)."""
    from .quants._common import as_u8_tensor

    a = np.ascontiguousarray(slab)
    flat = a.reshape(-1)
    if flat.size:
        int(flat[::4096].max())                              # fault the pages in
    return as_u8_tensor(a)


def _on(dev: torch.device, stream):
    """Context: the CUDA device (and stream) to use, or nothing on the CPU."""
    import contextlib

    if dev.type != "cuda":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.cuda.device(dev))
    if stream is not None:
        stack.enter_context(torch.cuda.stream(stream))
    return stack


class _Stopped(Exception):
    """Another stage failed: unwind quietly, its error is raised."""
