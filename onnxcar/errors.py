"""The one exception type for user-facing errors."""


class OnnxcarError(Exception):
    """A user error: bad input, bad option or a model onnxcar cannot handle.

    The CLI prints it as one line on stderr and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
