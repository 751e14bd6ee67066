"""peo-hub: PEO (Post-Training Extrapolation Optimization) as a Hugging Face Hub toolkit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["PEOModel", "__version__"]

if TYPE_CHECKING:
    from peo_hub.family.model import PEOModel


def __getattr__(name: str) -> Any:
    # Lazy: `import peo_hub` (and the CLI's start-up) must not pay for torch/transformers.
    if name == "PEOModel":
        from peo_hub.family.model import PEOModel

        return PEOModel
    raise AttributeError(name)
