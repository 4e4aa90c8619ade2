"""Compiling and loading the CPU kernels: build options (set by :func:`ggrun.cpu.configure`),
compiler discovery, the cached build, and the ctypes signatures of the library's entry points."""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_SOURCES = ("kernels.c", "kernels.h", "ops.c", "quantize.c")   # ops.c: attention, RoPE, SwiGLU, RMSNorm;
# quantize.c: llama.cpp's reference quantizers (float32 rows -> ggml blocks, see quantize_rows)
# -ffp-contract=off: no implicit a*b+c -> fma fusion (the rounding of every product is part of the numerics)
_BASE_FLAGS = ["-O3", "-march=native", "-std=gnu11", "-ffp-contract=off", "-fPIC", "-shared", "-pthread",
               "-fno-strict-aliasing"]


@dataclass(frozen=True)
class BuildOptions:
    """cc: C compiler, a name on PATH or a path (None: gcc, then cc); extra_cflags: appended to the
    base flags; enabled: False never builds or loads the kernels."""

    cc: str | None = None
    extra_cflags: tuple[str, ...] = ()
    enabled: bool = True


options = BuildOptions()   # replaced by ggrun.cpu.configure()


def _cache_dir() -> Path:
    from ..default_model import cache_dir

    return cache_dir() / "cpu"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.machine() + " " + platform.processor()


def find_compiler(cc: str | None = None) -> str | None:
    """Path of ``cc`` (a name on PATH or an executable path), or with None of gcc, then cc."""
    if cc:
        return shutil.which(cc) or (cc if os.path.isfile(cc) and os.access(cc, os.X_OK) else None)
    for name in ("gcc", "cc"):
        p = shutil.which(name)
        if p:
            return p
    return None


def build_flags() -> list[str]:
    """The compiler flags of the build: the base flags and the configured extra ones."""
    return _BASE_FLAGS + list(options.extra_cflags)


def build(source_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
          flags: list[str] | None = None, cc: str | None = None) -> tuple[str | None, str | None]:
    """Compile the kernels (or reuse the cached build). Returns ``(path, None)`` or ``(None, reason)``.

    flags / cc default to the configured ones (:func:`ggrun.cpu.configure`); a ``cc`` given here is
    run as is."""
    src_dir = Path(source_dir) if source_dir else _HERE
    cdir = Path(cache_dir) if cache_dir else _cache_dir()
    flags = list(flags) if flags is not None else build_flags()
    if cc is None:
        cc = find_compiler(options.cc)
        if cc is None:
            want = options.cc or "gcc"
            return None, f"no C compiler found ({want!r} is not on PATH); the CPU kernels need gcc"
    try:
        blobs = [(src_dir / name).read_bytes() for name in _SOURCES]
    except OSError as e:
        return None, f"kernel source missing: {e}"
    try:
        ver = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"C compiler {cc!r} does not run: {e}"
    h = hashlib.sha256()
    for b in blobs:
        h.update(b)
        h.update(b"\0")
    h.update(" ".join(flags).encode())
    h.update(b"\0" + (ver[0] if ver else cc).encode())
    h.update(b"\0" + _cpu_flags().encode())
    key = h.hexdigest()[:20]
    out = cdir / f"ggrun-cpu-{key}.so"
    if out.is_file():
        return str(out), None
    try:
        cdir.mkdir(parents=True, exist_ok=True)
        if not os.access(cdir, os.W_OK):
            raise OSError("not writable")
    except OSError as e:
        alt = Path(tempfile.gettempdir()) / f"ggrun-cpu-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        try:
            alt.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None, f"cannot create the kernel cache directory {cdir}: {e}"
        cdir, out = alt, alt / out.name
        if out.is_file():
            return str(out), None
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=str(cdir))
    os.close(fd)
    cmd = [cc, *flags, *(str(src_dir / n) for n in _SOURCES if n.endswith(".c")), "-o", tmp, "-lm"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as e:
        os.unlink(tmp)
        return None, f"running {cc} failed: {e}"
    if r.returncode != 0:
        os.unlink(tmp)
        msg = (r.stderr or r.stdout).strip()
        lines = [ln for ln in msg.splitlines() if "error" in ln.lower()] or msg.splitlines()
        detail = "\n".join(lines[:12])
        return None, f"compiling the CPU kernels failed ({' '.join(cmd[:1] + flags)} exited {r.returncode}):\n{detail}"
    os.replace(tmp, out)
    return str(out), None


def declare(lib) -> None:
    """Set the ctypes signatures of the matmul / quantize entry points (the ops: backends.cpu_ops)."""
    i64, i32, vp = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    lib.gg_matmul.argtypes = [vp, i32, i64, i64, i64, vp, i64, i64, vp, i64, i32]
    lib.gg_matmul.restype = i32
    lib.gg_matmul_multi.argtypes = [i32, vp, vp, vp, vp, vp, i64, vp, i64, i64, vp, i64, i32]
    lib.gg_matmul_multi.restype = i32
    lib.gg_plan_create.argtypes = [i32, vp, vp, vp, vp, vp, i64, i32]
    lib.gg_plan_create.restype = i64
    lib.gg_plan_free.argtypes = [i64]
    lib.gg_plan_free.restype = i32
    # the per-call entry points: c_void_p converts Python ints cheapest (~0.15 us per argument)
    lib.gg_plan_run.argtypes = [vp, vp, vp, vp]
    lib.gg_plan_run.restype = i32
    lib.gg_plan_run_ex.argtypes = [vp, vp, vp, vp, vp, vp, vp]
    lib.gg_plan_run_ex.restype = i32
    lib.gg_isa.restype = ctypes.c_char_p
    lib.gg_version.restype = ctypes.c_char_p
    lib.gg_kernel_info.argtypes = [i32, ctypes.c_char_p, i32]
    lib.gg_set_spin_us.argtypes = [i64]
    lib.gg_set_spin_us.restype = None
    lib.gg_set_default_threads.argtypes = [i32]
    lib.gg_set_default_threads.restype = None
    lib.gg_set_exact.argtypes = [i32]
    lib.gg_set_exact.restype = None
    lib.gg_get_exact.restype = i32
    lib.gg_quantize_row.argtypes = [i32, vp, i64, vp, vp, vp, vp]
    lib.gg_quantize_row.restype = i32
    lib.gg_quantize.argtypes = [i32, vp, i32, i64, i64, vp, i32]
    lib.gg_quantize.restype = i32
    lib.gg_noop.argtypes = [vp] * 11
    lib.gg_noop.restype = i64
