import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    """The real SmolLM2-135M-Instruct Q4_1 file (installed by `make setup` from PyPI)."""
    from ggrun.default_model import default_model_path

    return default_model_path(fetch=False)


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory) -> str:
    from tiny_model import write_tiny_llama

    p = tmp_path_factory.mktemp("tiny") / "tiny-q8_0.gguf"
    return str(write_tiny_llama(p))


@pytest.fixture(scope="session")
def vocab_dir() -> Path:
    d = ROOT / "tests" / "data" / "vocab"
    if not (d / "ggml-vocab-deepseek-coder.gguf").exists():
        pytest.fail("llama.cpp's vocab fixtures are missing: run `make setup`")
    return d
