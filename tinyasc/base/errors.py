"""The one error type that crosses tinyasc's boundaries.

Anything a user can get wrong (a missing folder, a bad CSV, an unreadable file, an unknown name)
raises TinyAscError with one line that names the file and the problem. The CLI prints that line
and exits with status 2, without a traceback.
"""


class TinyAscError(Exception):
    """A user-facing problem: the message is one line and names the file or value at fault."""

    def __init__(self, message: str, details: list[str] | None = None):
        super().__init__(" ".join(str(message).split()))
        self.details = list(details or [])  # one line each, e.g. every bad file of a dataset
