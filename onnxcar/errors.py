"""The one exception type for user-facing errors, and its kinds.

Library messages speak of arguments, not command-line flags; the CLI alone turns an error
into one line on stderr and its ``exit_code``.
"""


class OnnxcarError(Exception):
    """A user error: bad input, bad option or a model onnxcar cannot handle."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None, *, arguments: tuple[str, ...] = ()):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        self.arguments = arguments  # the library arguments at fault, which a front end maps to its options


class ModelError(OnnxcarError):
    """The model file cannot be read, or is not a model onnxcar can work on."""


class DataError(OnnxcarError):
    """The data cannot be read, or does not fit the model."""


class UnsupportedOpError(OnnxcarError):
    """An op, or an op's attributes, that onnxcar does not handle where it was asked to."""


class VerificationError(OnnxcarError):
    """A produced model does not compute what it should (the pruned model differs from the masked one)."""

    exit_code = 1


class GateError(OnnxcarError):
    """A pipeline gate was missed; the artifacts were still written."""

    exit_code = 3
