"""The Python APIs people already use, over ``ggrun.load``.

- ``AutoModelForCausalLM`` (ctransformers): ``from_pretrained(repo, model_file=…, model_type=…)``
  → an ``LLM`` you call with a prompt.
- ``Llama`` (llama-cpp-python): OpenAI-shaped ``create_completion`` / ``create_chat_completion``.

Both sit on ``ggrun.load`` (an ``Engine`` whose ``generate`` yields small dataclass events),
name models as ``ggrun.hub.find_model`` does (files, folders, ``org/name:QUANT``), and raise
``ggrun.GGRunError`` subclasses on bad input.
"""

from ..hub import AmbiguousModelError, ConflictingArgumentsError, HubUnreachableError, SplitModelError
from ._common import MODEL_TYPES, ModelTypeError, UnsupportedArgumentError
from .ctransformers import LLM, AutoConfig, AutoModelForCausalLM, Config
from .llama import Llama

__all__ = ["AutoModelForCausalLM", "AutoConfig", "Config", "LLM", "Llama", "MODEL_TYPES", "ModelTypeError",
           "UnsupportedArgumentError", "ConflictingArgumentsError", "AmbiguousModelError", "HubUnreachableError",
           "SplitModelError"]
