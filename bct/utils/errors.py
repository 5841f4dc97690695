"""The one exception type for bad input: its message is shown to the user as a single line."""


class BadInputError(Exception):
    """A user-facing error: which file/line/key is wrong, what was expected, what to do.

    The entry points catch it and print ``error: <message>`` without a traceback (exit code 2).
    """
