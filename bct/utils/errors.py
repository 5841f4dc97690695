"""The user-facing exception types: their messages are shown as a single line, without a traceback."""
import os

# Set by a script that runs the tools (scripts/own.sh): its own advice after a refusal to reuse or
# write over a result, which then replaces the inner tool's (whose flags the user did not give).
RERUN_HINT_ENV = "BCT_RERUN_HINT"


def rerun_hint(default: str) -> str:
    """The advice after a refusal to reuse or write over a result: the calling script's (its
    ``BCT_RERUN_HINT``) when it sets one, else ``default`` (the tool's own flags)."""
    return os.environ.get(RERUN_HINT_ENV, "").strip() or default


class BadInputError(Exception):
    """A user-facing error: which file/line/key is wrong, what was expected, what to do.

    The entry points catch it and print ``error: <message>`` without a traceback (exit code 2).
    """


class AgreedError(BadInputError):
    """A BadInputError that every rank of a torchrun job raises alike, having agreed on it through a
    collective (in one process: that process's). The entry point lets every rank print it before any
    rank exits (torchrun stops the other ranks as soon as one exits), so that each rank's log says why
    it stopped."""


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, a stopped peer); the message says why (exit code 1)."""


class CheckFailedError(RuntimeError):
    """A file a tool produced failed the tool's own check (e.g. an exported model disagrees with
    PyTorch); the message says by how much (exit code 1)."""
