"""User-facing errors, and the one way a pydantic validation error becomes a user's sentence.

Every mistake a user can make (a bad recipe field, an unknown aspect, a refused token, an
output path that cannot be written) raises a :class:`PEOError`. The CLI prints its message
as one line and exits with ``exit_code``; Python callers can catch it like any
``ValueError``. Bugs stay ordinary exceptions so that they keep their traceback.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from pydantic import ValidationError


class PEOError(ValueError):
    """A problem the user can fix; the message names the problem and the fix."""

    exit_code: int = 2


class RecipeError(PEOError):
    """The recipe file is missing, unreadable or invalid."""


class PreferenceError(PEOError):
    """Preference weights, alpha or coefficients are invalid."""


class BundleError(PEOError):
    """A PEO bundle is missing, incomplete, corrupt or inconsistent."""


class DataError(PEOError):
    """A preference dataset cannot be read or lacks the columns its format needs."""


class MergeError(PEOError):
    """A merge or export request that cannot be carried out as asked (kind, tools)."""


class OutputError(PEOError):
    """An output path that cannot be written, or that holds something peo-hub must not replace."""


class HubError(PEOError):
    """The Hub refused or failed a request (token, permission, network)."""

    exit_code = 3


# --------------------------------------------------------------------------- pydantic errors

# Pydantic names union members and validator wrappers in error locations, e.g.
# ``evaluate.prompts.function-after[_format_fields(), DatasetSpec].source``: internals a
# user never wrote. A location part is kept only when it is a field name or an index.
_INTERNAL_LOC = re.compile(r"[\[\](),]|^(list|dict|str|int|float|bool|function-\w+|tagged-union)\b")


def first_line(exc: BaseException, innermost: bool = False) -> str:
    """One line of an exception for a one-line error: the first non-empty line of its message
    (a Hub server's own message first), or its type's name when it has none.

    ``innermost`` follows ``__cause__``/``__context__`` down to the most specific exception:
    libraries such as ``datasets`` wrap a parse error in a generic one.
    """
    if innermost:
        while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
            exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = (getattr(exc, "server_message", None) or str(exc)).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


def _user_loc(loc: Iterable[object]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and _INTERNAL_LOC.search(p))]
    return ".".join(parts)


def validation_message(exc: "ValidationError", where: str = "", field_names: Iterable[str] = ()) -> str:
    """One line for a pydantic error: the field path as the user wrote it, the problem, the fix.

    ``where`` prefixes the path (``aspects.helpful.dataset``); ``field_names`` are the names a
    typo is compared with for a "did you mean" hint. Used for recipes, dataset specs,
    manifests and fronts alike, so every file reads its errors out the same way.
    """
    errors = exc.errors()
    # With unions (a prompt list or a dataset spec) pydantic reports one error per member;
    # the most specific (longest location) is the one that names the field the user meant.
    first = max(errors, key=lambda e: (len(_user_loc(e.get("loc", ()))), -errors.index(e)))
    loc = _user_loc(first.get("loc", ()))
    path = ".".join(p for p in (where, loc) if p)
    kind = first.get("type", "")
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "extra_forbidden":
        last = loc.rsplit(".", 1)[-1]
        hint = difflib.get_close_matches(last, sorted(set(field_names)), n=1)
        return f"unknown field {path!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") + "; remove or rename it"
    if kind == "missing":
        return f"missing required field {path!r}; add it"
    if kind in ("finite_number",):
        return f"field {path!r}: must be a finite number (not inf or nan)"
    if not loc and ": " in message:  # model-level checks name their field first ("label: ...")
        head, _, rest = message.partition(": ")
        if head.replace("_", "").replace(".", "").isalnum():
            return f"field {'.'.join(p for p in (where, head) if p)!r}: {rest}"
    return f"field {path!r}: {message}" if path else message
