"""ggrun: read, quantize, run and serve GGUF language models from Python.

Nothing heavy is imported here: torch and the model code load on first use.
"""

from .errors import (
    BadArgumentError,
    ContextError,
    GGRunError,
    GGUFFormatError,
    ModelNotFoundError,
    UnsupportedModelError,
)

__version__ = "0.1.0"

__all__ = [
    "BadArgumentError", "ContextError", "GGRunError", "GGUFFormatError", "ModelNotFoundError",
    "UnsupportedModelError", "GGUFFile", "Tokenizer", "__version__",
]


def __getattr__(name: str):
    if name == "GGUFFile":
        from .gguf_file import GGUFFile

        return GGUFFile
    if name == "Tokenizer":
        from .tokenizer import Tokenizer

        return Tokenizer
    raise AttributeError(f"module 'ggrun' has no attribute {name!r}")
