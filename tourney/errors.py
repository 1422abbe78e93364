"""The project's own error types: the base of every layer (models, harness, routers, trainers and
the CLI all import from here, and this module imports nothing of theirs).

The CLI turns exactly these into one line on stderr and exit status 2. Anything else is a bug
and keeps its traceback (`tourney --debug` shows the traceback of these too), so an internal
error is never dressed up as bad input.
"""
from __future__ import annotations


class TourneyError(Exception):
    """An expected failure the user can act on. The message names what is wrong and where."""


class DataError(TourneyError, ValueError):
    """Bad input data or files. The message names the file, the line and the field, and what was
    expected."""


class ConfigError(TourneyError, ValueError):
    """A bad option or configuration value. The message names the option or field."""


class OptionError(ConfigError):
    """A backend option that the backend refuses (unknown, or a bad value): what a router file's
    `model_args` caused, as opposed to a spec that cannot be loaded."""


class BackendError(TourneyError, RuntimeError):
    """A backend could not be built or could not answer; the message names the spec or server."""
