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
    # the Python APIs (ggrun.api) and model names (ggrun.hub), imported on first use
    "load", "AutoModelForCausalLM", "AutoConfig", "Llama", "resolve_model", "default_model_path",
    "AmbiguousModelError", "ConflictingArgumentsError", "HubUnreachableError", "ModelTypeError", "SplitModelError",
    "UnsupportedArgumentError",
]


def __getattr__(name: str):
    if name == "GGUFFile":
        from .gguf_file import GGUFFile

        return GGUFFile
    if name == "Tokenizer":
        from .tokenizer import Tokenizer

        return Tokenizer
    lazy = {
        "load": ("loader", "load"),
        "AutoModelForCausalLM": ("api", "AutoModelForCausalLM"),
        "AutoConfig": ("api", "AutoConfig"),
        "Llama": ("api", "Llama"),
        "ModelTypeError": ("api", "ModelTypeError"),
        "UnsupportedArgumentError": ("api", "UnsupportedArgumentError"),
        "resolve_model": ("hub", "resolve_model"),
        "AmbiguousModelError": ("hub", "AmbiguousModelError"),
        "ConflictingArgumentsError": ("hub", "ConflictingArgumentsError"),
        "HubUnreachableError": ("hub", "HubUnreachableError"),
        "SplitModelError": ("hub", "SplitModelError"),
        "default_model_path": ("default_model", "default_model_path"),
    }
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'ggrun' has no attribute {name!r}")
