"""TODO docstring (data.base, from run.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from peo_hub.bundle.manifest import (BASE_DIR)
from peo_hub.utils.errors import BundleError, RecipeError
from peo_hub.utils.ids import kind_of
from peo_hub.recipe.schema import Recipe
from peo_hub.utils.weights import check_model_folder


@dataclass
class Base:
    """Where the base model is loaded from, and what the bundle calls it."""

    source: str  # a local folder or a Hub id
    name: str  # "base" (copied into the bundle) or the Hub id
    revision: str | None = None
    provenance: dict[str, Any] | None = None  # e.g. the GGUF file a base was converted from

    @property
    def ships_inside(self) -> bool:
        return self.name == BASE_DIR


def resolve_base(recipe: Recipe) -> Base:
    """The recipe's base model, checked: built (embedded), converted (GGUF), found (folder) or reachable (Hub).

    Fails in one line, before anything is written, when it cannot be had.
    """
    from peo_hub.data.gguf import ensure_gguf_base, is_gguf_base
    from peo_hub.world.base import ensure_embedded_base, is_embedded

    name = recipe.base_model
    if is_embedded(name):
        return Base(source=str(ensure_embedded_base(name, seed=recipe.seed)), name=BASE_DIR)
    if is_gguf_base(name):  # converted once into a cached folder, then shipped inside like a local base
        folder, provenance = ensure_gguf_base(name, revision=recipe.base_model_revision)
        return Base(source=str(folder), name=BASE_DIR, provenance=provenance)
    local = Path(name).expanduser()
    if kind_of(name) == "local" or local.is_dir():
        if not local.is_dir():
            raise RecipeError(f"base_model folder {name} does not exist; give a model folder, a Hub id or embedded:toy")
        try:
            check_model_folder(local, "base_model")
        except BundleError as exc:
            raise RecipeError(str(exc)) from None
        return Base(source=str(local), name=BASE_DIR)
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name, revision=recipe.base_model_revision)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecipeError(f"cannot load base_model {name!r}: {first}; check the id or path "
                          "(offline, it must be in the HF cache)") from None
    return Base(source=name, name=name, revision=recipe.base_model_revision)
