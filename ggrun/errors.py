"""Exception types. Every message is one line that says what went wrong and where."""


class GGRunError(Exception):
    """Base class of every error ggrun raises on purpose (bad input, not a bug)."""


class GGUFFormatError(GGRunError):
    """The file is not a valid GGUF file (bad magic, truncated, hostile counts …)."""


class UnsupportedModelError(GGRunError):
    """A valid GGUF file that ggrun can't run: unknown architecture, tensor type, …"""


class ModelNotFoundError(GGRunError):
    """A model path, repository or file that does not exist."""


class ContextError(GGRunError):
    """A prompt or request that does not fit the context, or a context that doesn't fit in memory."""


class BadArgumentError(GGRunError):
    """An argument value that is out of range or conflicts with another."""
