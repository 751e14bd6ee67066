"""The run folder: one recipe's output, never mixed with another's, resumable piece by piece.

:class:`RunFolder` refuses to mix two recipes in one folder (the recipe is recorded in
``peo_run.json`` *and* in every adapter's ``training_info.json``, so a resume can tell even
when the record file was lost), keeps the ledger of the files the run wrote (a file a user
changed is refused or, damaged, made again), copies a local base into ``base/``, and trains
every adapter (aspects, MORL baselines, the ``accelerate`` entry point) through one
:meth:`RunFolder.train_one`. :func:`sample_pairs` fills a plan's self-sampled pairs from the
run's own base copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from peo_hub import __version__
from peo_hub.bundle.manifest import (
    ADAPTERS_DIR,
    BASE_DIR,
    EVALUATIONS_DIR,
    LEGACY_RUN_RECORD,
    MANIFEST_NAME,
    MORL_DIR,
    RUN_RECORD,
    adapter_complete,
    load_manifest,
    read_training_info,
)
from peo_hub.data.base import Base
from peo_hub.recipe.preflight import Plan
from peo_hub.recipe.schema import Recipe
from peo_hub.utils.errors import BundleError, RecipeError
from peo_hub.utils.fsutil import (
    atomic_dir,
    atomic_write_json,
    check_names,
    check_output,
    clean_stale_temps,
    overwrite_allowed,
    read_json,
)
from peo_hub.utils.ledger import LEDGER_NAME, Ledger, relative_files


def recipe_fingerprint(recipe: Recipe) -> dict[str, Any]:
    """What must not change between a run and its ``--resume``: everything but the name and the push."""
    return recipe.model_dump(mode="json", exclude={"hub", "name"})


def fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    """A short stable hash of a fingerprint, stored with every artefact the recipe made."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def _changed(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))


OWNER = "bundle"  # the ledger's writer name for run folders (peo_hub.utils.ledger); `evaluate` writes into them too


# Folders whose files a run derives and can make again: damaged, they are redone, not refused.
DERIVED = (ADAPTERS_DIR, MORL_DIR, EVALUATIONS_DIR, BASE_DIR)


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` holds a peo-hub run (its record, a manifest, or finished adapters)."""
    return any((path / name).is_file() for name in (RUN_RECORD, LEGACY_RUN_RECORD, MANIFEST_NAME)) or any(
        adapter_complete(folder) for folder in (path / ADAPTERS_DIR).glob("*"))


class RunFolder:
    """The output folder of one recipe's run (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str], recipe: Recipe, overrides: Sequence[str] = ()) -> None:
        self.root = Path(root)
        self.recipe = recipe
        self.overrides = list(overrides)  # the --set strings, recorded with the recipe they produced
        self.fingerprint = recipe_fingerprint(recipe)
        self.fingerprint_hash = fingerprint_hash(self.fingerprint)

    # -- paths

    def adapter_dir(self, aspect: str) -> Path:
        return self.root / ADAPTERS_DIR / aspect

    def morl_dir(self, label: str) -> Path:
        return self.root / MORL_DIR / label

    @property
    def evaluations(self) -> Path:
        return self.root / EVALUATIONS_DIR

    # -- identity

    def _recorded(self) -> tuple[dict[str, Any] | None, str]:
        """The fingerprint this folder was started with, and where it was found (None: unknown)."""
        for name in (RUN_RECORD, LEGACY_RUN_RECORD):
            path = self.root / name
            if path.is_file():
                try:
                    data = read_json(path, f"delete {path} and resume again, or use a new --output")
                except BundleError as exc:
                    raise RecipeError(str(exc)) from None
                if not isinstance(data, dict):
                    raise RecipeError(f"{path} is not a run record (a JSON object); delete it and resume again, "
                                      "or use a new --output")
                return data.get("recipe", data) if name == RUN_RECORD else data, name
        if (self.root / MANIFEST_NAME).is_file():
            try:
                manifest = load_manifest(self.root)
            except BundleError as exc:
                raise RecipeError(str(exc)) from None
            recipe = {k: v for k, v in manifest.recipe.items() if k not in ("hub", "name")}
            return (recipe or None), MANIFEST_NAME
        return None, ""

    def _artefacts(self) -> list[Path]:
        """Finished things a recipe made here: adapters (aspects, MORL) and evaluation records."""
        adapters = [f for pattern in (f"{ADAPTERS_DIR}/*", f"{MORL_DIR}/*") for f in self.root.glob(pattern)
                    if adapter_complete(f)]
        return adapters + sorted(self.evaluations.glob("*.json"))

    def check_identity(self) -> None:
        """Refuse a folder started with another recipe; every kept artefact must carry this recipe's hash."""
        recorded, where = self._recorded()
        if recorded is not None:
            changed = _changed(recorded, self.fingerprint)
            if changed:
                raise RecipeError(f"{self.root} was started with a different recipe (changed: {', '.join(changed)}), "
                                  f"as {where} records; use a new --output for the new recipe")
        for artefact in self._artefacts():
            record = read_training_info(artefact) if artefact.is_dir() else _read_record(artefact)
            stamp = record.get("recipe_hash")
            if stamp == self.fingerprint_hash or (stamp is None and recorded is not None):
                continue  # made by this recipe (unstamped: by peo-hub 0.1.0 under a matching record)
            if stamp is None:
                raise RecipeError(f"cannot tell which recipe made {artefact} ({RUN_RECORD} is missing and the file "
                                  "records none), so it cannot be kept; use a new --output")
            raise RecipeError(f"{artefact} was made by a different recipe, so it cannot be kept for this one; "
                              "use a new --output (or delete it to redo it)")

    def started(self) -> bool:
        """Whether the folder holds anything but a run record, set-up leftovers and the copied base."""
        if not self.root.exists():
            return False
        ignore = {RUN_RECORD, LEGACY_RUN_RECORD, BASE_DIR}
        return any(child.name not in ignore and ".tmp-" not in child.name and not child.name.startswith(".peo-probe")
                   for child in self.root.iterdir())

    def prepare(self, resume: bool) -> None:
        """Check the folder may take this run, then record the recipe (the first write of a run).

        A folder that holds nothing a recipe made (only the run record and the copied base,
        e.g. after a run stopped before its first adapter) takes any recipe: a fixed recipe
        simply starts over there. Once adapters or evaluations exist, only the recipe that
        made them may resume.
        """
        check_names(self.root, "--output")  # a name too long for the disk, before any look inside
        if (self.root / LEDGER_NAME).is_file() and not overwrite_allowed():
            self._check_edited()  # before check_output's generic line: a damaged artefact has its own fix
        check_output(self.root, "folder", ours=is_run_folder, what="--output", owner=OWNER)
        self._refuse_composed()
        if self.started() and not resume:
            raise RecipeError(f"output folder {self.root} is not empty; pass --resume to continue that run, "
                              "or --output NEW_DIR")
        if self._artefacts():
            self.check_identity()
        self.root.mkdir(parents=True, exist_ok=True)
        self._adopt()
        for folder in (self.root, self.root / ADAPTERS_DIR, self.evaluations, self.root / MORL_DIR):
            clean_stale_temps(folder)
        self.write_record()
        (self.root / LEGACY_RUN_RECORD).unlink(missing_ok=True)

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.root, OWNER, overwrite=overwrite_allowed())

    def _check_edited(self) -> None:
        """Refuse (one line) a run folder in which a file this run wrote was changed since.

        A changed README, card or merge YAML is the user's work: the run would replace it, so
        it is kept and the run refused (``--overwrite`` replaces it). A changed adapter,
        evaluation record or base copy is damage: the fix is to delete it, and the run
        makes it again.
        """
        ledger = self.ledger
        problems = ledger.conflicts(ledger.owned())
        if not problems:
            return
        first = problems[0].path
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        top = first.split("/")[0]
        if top in DERIVED:
            unit = "/".join(first.split("/")[:2]) if top != BASE_DIR else BASE_DIR
            raise RecipeError(f"{self.root / first}{more} is damaged or was changed since peo-hub wrote it (its "
                              f"sha256 differs); delete {self.root / unit} and run again with --resume to make it "
                              "again")
        raise RecipeError(f"{self.root / first}{more} was changed since peo-hub wrote it and this run would replace "
                          "it; move it aside, or pass --overwrite to replace it")

    def _refuse_composed(self) -> None:
        if not (self.root / MANIFEST_NAME).is_file():
            return
        try:
            composed = json.loads((self.root / MANIFEST_NAME).read_text(encoding="utf-8")).get("composed")
        except (OSError, ValueError, AttributeError):
            return  # an unreadable manifest is reported where it is read
        if composed:
            raise RecipeError(f"{self.root} is a bundle made by `peo-hub compose`, not a recipe's run; training "
                              "there would replace its adapters: use `peo-hub evaluate` on it, or a new --output")

    def _adopt(self) -> None:
        """Give a run folder its ledger: empty for a new folder; for one written before ledgers
        existed, the files a run writes (not a user's own files, which it then never touches)."""
        ledger = self.ledger
        if ledger.exists():
            return
        files = relative_files(self.root)
        labels = set()
        try:
            front = json.loads((self.root / "front.json").read_text(encoding="utf-8"))
            labels = {str(p.get("label")) for p in front.get("points", []) if isinstance(p, dict)}
        except (OSError, ValueError, AttributeError):
            pass
        ours = {RUN_RECORD, LEGACY_RUN_RECORD, MANIFEST_NAME, "front.json", "front.png", "README.md"}
        ledger.record(rel for rel in files
                      if rel in ours or rel.split("/")[0] in DERIVED
                      or (rel.startswith("merges/") and rel.removeprefix("merges/").removesuffix(".yaml") in labels))

    def intact(self, path: Path) -> bool:
        """Whether every file at ``path`` that this run wrote is still as written. Only reached
        with ``--overwrite`` (otherwise :meth:`prepare` refused the damage): a damaged artefact
        is then made again."""
        return self.ledger.intact(path)

    def check_may_take_adapters(self) -> bool:
        """For the ``accelerate`` entry point: same rules as ``--resume``; True when the record must be written."""
        check_output(self.root, "folder", ours=is_run_folder, what="--output")
        if self.root.exists() and any(self.root.iterdir()):
            if not is_run_folder(self.root):
                raise RecipeError(f"{self.root} is not a peo-hub run folder; choose another --output")
            if self._artefacts():
                self.check_identity()
        return not (self.root / RUN_RECORD).is_file()

    def write_record(self) -> None:
        record: dict[str, Any] = {"peo_hub_version": __version__, "recipe_hash": self.fingerprint_hash,
                                  "recipe": self.fingerprint}
        if self.overrides:
            record["overrides"] = self.overrides
        atomic_write_json(self.root / RUN_RECORD, record)

    # -- the base

    def base_path(self, base: Base) -> str:
        """Where adapters train from: the copy in ``base/`` for a local base, else the Hub id."""
        if not base.ships_inside:
            return base.source
        inside = self.root / BASE_DIR
        marker = inside / ".peo_base_source"
        source = str(Path(base.source).resolve())
        if ((inside / "config.json").is_file() and marker.is_file() and marker.read_text(encoding="utf-8") == source
                and self.intact(inside)):
            return str(inside)
        with atomic_dir(inside) as tmp:  # base/ is ours: re-copied when the recipe's base changed
            shutil.copytree(base.source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".peo_base_source"))
            (tmp / ".peo_base_source").write_text(source, encoding="utf-8")
        return str(inside)

    # -- training

    def train_one(self, plan: Plan, dataset: Any, output: Path, info: Mapping[str, Any],
                  progress: str | None = None) -> dict[str, Any]:
        """Train one DPO LoRA adapter of this run into ``output`` (the one place adapters are trained).

        Aspects, MORL baselines and ``python -m peo_hub.train_aspect`` all come here, so every
        adapter of a bundle is trained from the same base at the same revision with the same
        settings, and carries this recipe's hash. ``progress`` names the task in the run's
        progress view (``None``: the Trainer's own bar, as under ``accelerate launch``).
        """
        from peo_hub.recipe.progress import training_callback
        from peo_hub.train.dpo import train_adapter

        return train_adapter(
            base_path=self.base_path(plan.base), tokenizer=plan.tokenizer, dataset=dataset,
            lora=self.recipe.train.lora, dpo=self.recipe.train.dpo, output=output, seed=self.recipe.seed,
            base_model_id=plan.base.name, base_revision=plan.base.revision,
            info={**dict(info), "recipe_hash": self.fingerprint_hash},
            callbacks=[training_callback(progress)] if progress else (),
        )

    def kept(self, folder: Path) -> dict[str, Any] | None:
        """The training record of a finished adapter in ``folder`` (``None``: train it)."""
        return read_training_info(folder) if adapter_complete(folder) and self.intact(folder) else None


def _read_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged record is named where the sweep reads it (read_evaluation)
    return data if isinstance(data, dict) else {}


def sample_pairs(plan: Plan, folder: RunFolder) -> None:
    """Fill ``plan.data`` for the aspects whose pairs the base model samples (``dataset.generate``).

    Cached and resumable on its own (:mod:`peo_hub.train.selfpairs`), so a ``--resume`` that
    already trained an aspect's adapter pays only a cache read for its pairs.
    """
    if not plan.to_sample:
        return
    from peo_hub.train.selfpairs import sample_pairs as sample

    for aspect in plan.to_sample:
        spec = plan.recipe.aspects[aspect]
        plan.data[aspect] = sample(spec.dataset, spec.judge, folder.base_path(plan.base), plan.tokenizer,
                                   seed=plan.recipe.seed, revision=plan.base.revision, desc=f"[{aspect}] pairs")
