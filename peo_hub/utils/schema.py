"""TODO docstring (utils.schema, from recipe.py)."""

from __future__ import annotations

from pydantic import ConfigDict


# Unknown keys refused; inf and nan refused in every number (an inf learning rate trains
# all-NaN adapters, a nan alpha names no field when it breaks the sweep).
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
