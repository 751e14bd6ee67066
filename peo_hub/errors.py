"""User-facing errors.

Every mistake a user can make (a bad recipe field, an unknown aspect, a refused token)
raises a :class:`PEOError`. The CLI prints its message as one line and exits with
``exit_code``; Python callers can catch it like any ``ValueError``. Bugs stay ordinary
exceptions so that they keep their traceback.
"""

from __future__ import annotations


class PEOError(ValueError):
    """A problem the user can fix; the message names the problem and the fix."""

    exit_code: int = 2


class RecipeError(PEOError):
    """The recipe file is missing, unreadable or invalid."""


class PreferenceError(PEOError):
    """Preference weights, alpha or coefficients are invalid."""


class BundleError(PEOError):
    """A PEO bundle is missing, incomplete or inconsistent."""


class DataError(PEOError):
    """A preference dataset cannot be read or lacks the columns its format needs."""


class HubError(PEOError):
    """The Hub refused or failed a request (token, repo, network)."""

    exit_code = 3
