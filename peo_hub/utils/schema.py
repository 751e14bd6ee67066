"""The rules every settings class of a recipe shares (TRL's ``XConfig`` style: one pydantic model per stage).

Unknown keys are refused, so a misspelled field is an error instead of a silent default; inf
and nan are refused in every number (an inf learning rate trains all-NaN adapters, a nan
alpha names no field when it breaks the sweep).
"""

from __future__ import annotations

from pydantic import ConfigDict

# Unknown keys refused; inf and nan refused in every number (an inf learning rate trains
# all-NaN adapters, a nan alpha names no field when it breaks the sweep).
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
