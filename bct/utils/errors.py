"""The user-facing exception types: their messages are shown as a single line, without a traceback."""


class BadInputError(Exception):
    """A user-facing error: which file/line/key is wrong, what was expected, what to do.

    The entry points catch it and print ``error: <message>`` without a traceback (exit code 2).
    """


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, a stopped peer); the message says why (exit code 1)."""


class CheckFailedError(RuntimeError):
    """A file a tool produced failed the tool's own check (e.g. an exported model disagrees with
    PyTorch); the message says by how much (exit code 1)."""
