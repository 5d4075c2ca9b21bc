"""Errors a user can fix, and close-match suggestions for names they mistype.

A UserError is a ValueError whose message names the problem and the fix; the command line prints it as one
line without a traceback (`--verbose` shows the traceback).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(ValueError):
    pass


class MissingPackage(UserError, ImportError):
    """An optional package a chosen setting needs is not installed; the message says how to install it."""


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """" (did you mean 'cpu-demo'?)" for the closest of `choices`, or "" when none is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class NotebookFailed(RuntimeError):
    """A notebook of a run failed; the message names it, the failing cell and the error."""
