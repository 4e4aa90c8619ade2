"""The C ops of the CPU backend (ggrun/cpu/ops.c): attention, RoPE, SwiGLU, RMSNorm with
llama.cpp's exact CPU numerics. Compiled once with the system C compiler, cached by hash."""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

_SRC = Path(__file__).resolve().parent.parent / "cpu" / "ops.c"
# -ffp-contract=fast is gcc's default for GNU C, as in llama.cpp's build; spelled out here.
_FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-ffp-contract=fast"]
_lib = None
_reason: str | None = None

P = ctypes.c_void_p
I, I64, F = ctypes.c_int, ctypes.c_int64, ctypes.c_float


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ggrun" / "cpu"


def load():
    """The ctypes library, or None (then ``reason()`` says why)."""
    global _lib, _reason
    if _lib is not None or _reason is not None:
        return _lib
    cc = os.environ.get("CC", "gcc")
    src = _SRC.read_bytes()
    try:
        ver = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        _reason = f"no C compiler ({cc}): {e}"
        return None
    key = hashlib.sha256(src + " ".join(_FLAGS).encode() + ver.encode() + _cpu_id().encode()).hexdigest()[:20]
    out = _cache_dir() / f"ggrun-ops-{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        r = subprocess.run([cc, *_FLAGS, str(_SRC), "-o", tmp, "-lm"], capture_output=True, text=True)
        if r.returncode != 0:
            os.unlink(tmp)
            _reason = f"compiling {_SRC.name} failed: {r.stderr.strip().splitlines()[:3]}"
            return None
        os.replace(tmp, out)
    lib = ctypes.CDLL(str(out))
    lib.ggrun_attention_f16.argtypes = [P, P, P, P, I, I, I, I, I, F, I, I]
    lib.ggrun_rope_cache.argtypes = [P, I, I, F, F, F, F, F, F]
    lib.ggrun_rope_apply.argtypes = [P, P, I, I, I, I, P, I]
    lib.ggrun_swiglu.argtypes = [P, P, P, I64]
    lib.ggrun_rms_norm.argtypes = [P, P, P, I64, I64, F]
    lib.ggrun_rope_store_attend.argtypes = [P, P, P, P, P, P, I, I, I, I, I, P, I, I, F, I, I, P]
    lib.ggrun_rope_store_attend.restype = None
    for f in (lib.ggrun_attention_f16, lib.ggrun_rope_cache, lib.ggrun_rope_apply, lib.ggrun_swiglu, lib.ggrun_rms_norm):
        f.restype = None
    _lib = lib
    return lib


def reason() -> str | None:
    return _reason


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return ""
