"""The project's own error types.

Everything a user can cause (a bad path, a damaged archive, an impossible flag
combination) is raised as a :class:`JaxcnnError` with a one-line message that
names the problem and the fix. The command-line entry points catch it and exit
with status 2 and that line, never a traceback.
"""

from __future__ import annotations


class JaxcnnError(Exception):
    """Base class: a problem the user can fix, described in one line."""

    def __init__(self, message: str):
        # One line, whatever the wrapped exception's text looked like.
        super().__init__(" ".join(str(message).split()))


class DataError(JaxcnnError):
    """A data source is missing, damaged, or not in a format we read."""


class ConfigError(JaxcnnError):
    """A flag or configuration value is invalid or inconsistent."""


class ResumeError(JaxcnnError):
    """An output folder holds a run made with different settings."""


class StartupError(JaxcnnError):
    """The processes of a multi-process run did not find each other in time."""


class OutBusyError(JaxcnnError):
    """Another run holds the lock on the same output folder (``--out``)."""
