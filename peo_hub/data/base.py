"""The base model θ₀, resolved once: built (``embedded:``), converted (a GGUF file), found (a folder) or on the Hub.

``recipe run`` and ``compose`` both start from a base named by a user, and both must fail in
one line, before anything is written, when it cannot be had. This module is the one place
that turns such a name into a :class:`Base`: where to load it from, what the bundle will
call it (``base`` when it ships inside the bundle, else the Hub id), and where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peo_hub.bundle.manifest import BASE_DIR
from peo_hub.utils.errors import BundleError, RecipeError, first_line
from peo_hub.utils.ids import kind_of
from peo_hub.utils.weights import check_model_folder

if TYPE_CHECKING:
    import torch


@dataclass
class Base:
    """Where the base model is loaded from, and what the bundle calls it."""

    source: str  # an absolute local folder, or a Hub id
    name: str  # "base" (copied into the bundle) or the Hub id
    revision: str | None = None
    provenance: dict[str, Any] | None = None  # e.g. the GGUF file a base was converted from
    given: str = ""  # as the user wrote it
    commit: str | None = None  # the Hub commit the revision resolved to (when it was asked for)
    config_dir: str | None = None  # a local folder with the base's config.json (when one was fetched or is local)

    @property
    def ships_inside(self) -> bool:
        """Whether the base is a local folder that the bundle carries a copy of (``base/``)."""
        return self.name == BASE_DIR


def resolve_base(name: str, revision: str | None = None, *, seed: int = 0, what: str = "base_model",
                 pin_commit: bool = False) -> Base:
    """``name`` as a :class:`Base`, checked, or one :class:`~peo_hub.utils.errors.RecipeError` line.

    ``what`` names the field in errors (``base_model`` in a recipe, ``base model`` for
    ``compose``); ``seed`` builds an embedded base; ``pin_commit`` downloads a Hub base's
    ``config.json`` and records the commit its revision resolved to (``compose`` records it in
    the bundle), where a recipe only checks that the config loads.
    """
    from peo_hub.data.gguf import ensure_gguf_base, is_gguf_base
    from peo_hub.world.base import ensure_embedded_base, is_embedded

    if is_embedded(name):
        folder = ensure_embedded_base(name, seed=seed)
        source = str(Path(folder).resolve())
        return Base(source=source, name=BASE_DIR, given=name, config_dir=source)
    if is_gguf_base(name):  # converted once into a cached folder, then shipped inside like a local base
        folder, provenance = ensure_gguf_base(name, revision=revision, what=what)
        source = str(Path(folder).resolve())
        return Base(source=source, name=BASE_DIR, provenance=provenance, given=name, config_dir=source)
    local = Path(name).expanduser()
    if kind_of(name) == "local" or local.is_dir():
        if not local.is_dir():
            raise RecipeError(f"{what} folder {name} does not exist; give a model folder, a Hub id or embedded:toy")
        try:
            check_model_folder(local, what)
        except BundleError as exc:
            raise RecipeError(str(exc)) from None
        source = str(local.resolve())
        return Base(source=source, name=BASE_DIR, given=name, config_dir=source)
    if pin_commit:
        from peo_hub.utils.hubio import download_model

        snapshot, commit = download_model(name, revision, config_only=True)
        return Base(source=name, name=name, revision=revision, given=name, commit=commit, config_dir=str(snapshot))
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name, revision=revision)
    except (OSError, ValueError) as exc:
        raise RecipeError(f"cannot load {what} {name!r}: {first_line(exc)}; check the id or path "
                          "(offline, it must be in the HF cache)") from None
    return Base(source=name, name=name, revision=revision, given=name)



def meta_model(base: Base) -> "torch.nn.Module":
    """The base's architecture without weights (PyTorch's meta device), for checks that must not load it.

    Module names and weight shapes are all that ``recipe validate``'s LoRA target check and
    ``compose``'s adapter check need; a Hub base then costs one ``config.json``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    where = base.config_dir or base.source
    try:
        config = AutoConfig.from_pretrained(where, revision=None if base.config_dir else base.revision)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"cannot read the base model's config in {where} ({first_line(exc)}); give a causal LM "
                          "folder or Hub id") from None
