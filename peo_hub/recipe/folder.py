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

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from peo_hub import __version__
from peo_hub.bundle.manifest import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    ADAPTERS_DIR,
    BASE_DIR,
    EVALUATIONS_DIR,
    LEGACY_RUN_RECORD,
    MANIFEST_NAME,
    MORL_DIR,
    RUN_RECORD,
    SEEDS_DIR,
    TRAINING_INFO,
    adapter_complete,
    load_manifest,
    read_training_info,
)
from peo_hub.data.base import Base
from peo_hub.recipe.preflight import Plan
from peo_hub.recipe.schema import Recipe, recipe_json
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


NOT_IDENTITY = ("hub", "name", "seeds")  # recipe fields a run may change under --resume (recipe_fingerprint)


def recipe_fingerprint(recipe: Recipe) -> dict[str, Any]:
    """What must not change between a run and its ``--resume``: everything but the name, the push and
    the list of training seeds.

    ``seeds`` is left out because no artefact depends on it: a seed's adapters, MORL baselines and
    records depend on that seed and the rest of the recipe only (every seed is swept with the run's
    seed, the first of the list, which ``seed`` holds and the fingerprint keeps). So a finished run
    takes more seeds under ``--resume`` (``--seeds 0,1,2`` after a run of seed 0 trains and sweeps
    seeds 1 and 2 only), and a one-seed run's hash is what it was before ``seeds`` existed.

    Fields added to the recipe after runs were first recorded (:func:`later_fields`) count only
    when set to something other than their default, so a folder started before they existed
    still resumes, and an unchanged recipe keeps its hash.
    """
    return without_later_defaults({k: v for k, v in recipe_json(recipe).items() if k not in NOT_IDENTITY})


@functools.cache
def later_fields() -> dict[tuple[str, ...], Any]:
    """(path, default) of the recipe fields added after 0.1.0's run records (see :func:`recipe_fingerprint`).

    Computed on first use: building the defaults imports PEFT (``train.lora`` is checked by it).
    """
    from peo_hub.evaluate.config import VllmSpec
    from peo_hub.train.config import LoraSpec, ModelSpec

    lora = LoraSpec().model_dump(mode="json")
    added = ("use_rslora", "init_lora_weights", "layers_to_transform", "layers_pattern", "rank_pattern",
             "alpha_pattern", "exclude_modules")
    return {("train", "model"): ModelSpec().model_dump(mode="json"),
            ("evaluate", "vllm"): VllmSpec().model_dump(mode="json"),
            **{("train", "lora", name): lora[name] for name in added},
            ("aspects", "*", "dataset", "generate", "pairs_per_prompt"): 1}


def without_later_defaults(dump: dict[str, Any]) -> dict[str, Any]:
    """``dump`` (a recipe as JSON) without the :func:`later_fields` that hold their default (``*``: any key)."""
    out = json.loads(json.dumps(dump))

    def drop(node: Any, path: tuple[str, ...], default: Any) -> None:
        if not isinstance(node, dict):
            return
        if len(path) > 1:
            for child in (node.values() if path[0] == "*" else [node.get(path[0])]):
                drop(child, path[1:], default)
        elif path[0] in node and node[path[0]] == default:
            del node[path[0]]

    for path, default in later_fields().items():
        drop(out, path, default)
    return out


def fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    """A short stable hash of a fingerprint, stored with every artefact the recipe made."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def _changed(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))


OWNER = "bundle"  # the ledger's writer name for run folders (peo_hub.utils.ledger); `evaluate` writes into them too


def derived_unit(rel: str) -> str | None:
    """The artefact a run-folder file belongs to, as a run makes it again: ``base``, ``adapters/<a>``,
    ``baselines/morl/<label>``, the same inside ``seeds/<seed>/``, or the evaluation record itself; ``None`` for the rest (card, merges).

    A damaged artefact is never kept as it is: it is named with the fix (delete the unit, and
    ``--resume`` makes exactly that again)."""
    parts = rel.split("/")
    if parts[0] == SEEDS_DIR and len(parts) > 2:  # seeds/<seed>/...: the same units inside a seed's folder
        inner = derived_unit("/".join(parts[2:]))
        return "/".join(parts[:2] + [inner or parts[2]])
    if parts[0] == BASE_DIR:
        return BASE_DIR
    for folder in (MORL_DIR, ADAPTERS_DIR):
        depth = folder.count("/") + 1
        if "/".join(parts[:depth]) == folder and len(parts) > depth:
            return "/".join(parts[:depth + 1])
    if parts[0] == EVALUATIONS_DIR and len(parts) > 1:
        return rel
    return None


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
        # Multi-seed folders made while the seed list was part of the fingerprint carry this stamp.
        self._listed_seeds_hash = fingerprint_hash({**self.fingerprint, "seeds": recipe.seeds}) if recipe.seeds else None

    # -- paths

    def replicate_root(self, seed: int | None = None) -> Path:
        """Where a training seed's adapters, MORL baselines and records live: the run folder itself for
        the run's seed (the first of ``seeds``: its adapters are the bundle's), ``seeds/<seed>/`` for the others."""
        return self.root if seed is None or seed == self.recipe.seed else self.root / SEEDS_DIR / str(seed)

    def adapter_dir(self, aspect: str, seed: int | None = None) -> Path:
        return self.replicate_root(seed) / ADAPTERS_DIR / aspect

    def morl_dir(self, label: str, seed: int | None = None) -> Path:
        return self.replicate_root(seed) / MORL_DIR / label

    def evaluations_dir(self, seed: int | None = None) -> Path:
        return self.replicate_root(seed) / EVALUATIONS_DIR

    @property
    def evaluations(self) -> Path:
        return self.evaluations_dir()

    def replicate_roots(self) -> list[Path]:
        """Every training seed's folder, the run's seed first."""
        return [self.replicate_root(seed) for seed in self.recipe.training_seeds]

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
                recorded = without_later_defaults(data.get("recipe", data) if name == RUN_RECORD else data)
                return ({k: v for k, v in recorded.items() if k not in NOT_IDENTITY}
                        if isinstance(recorded, dict) else recorded), name
        if (self.root / MANIFEST_NAME).is_file():
            try:
                manifest = load_manifest(self.root)
            except BundleError as exc:
                raise RecipeError(str(exc)) from None
            recipe = {k: v for k, v in manifest.recipe.items() if k not in NOT_IDENTITY}
            return (without_later_defaults(recipe) or None), MANIFEST_NAME
        return None, ""

    def _artefacts(self) -> list[Path]:
        """Finished things a recipe made here: adapters (aspects, MORL) and evaluation records, of every seed."""
        roots = [self.root, *sorted((self.root / SEEDS_DIR).glob("*"))]
        adapters = [f for root in roots for pattern in (f"{ADAPTERS_DIR}/*", f"{MORL_DIR}/*") for f in root.glob(pattern)
                    if adapter_complete(f)]
        return adapters + [r for root in roots for r in sorted((root / EVALUATIONS_DIR).glob("*.json"))]

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
            if (stamp is not None and stamp in (self.fingerprint_hash, self._listed_seeds_hash)) \
                    or (stamp is None and recorded is not None):
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
        self._refuse_other_writer()  # a compose, merge or export output is no run, whatever it holds
        self._refuse_composed()
        if (self.root / LEDGER_NAME).is_file() and not overwrite_allowed():
            self._check_edited()  # before check_output's generic line: a damaged artefact has its own fix
        check_output(self.root, "folder", ours=is_run_folder, what="--output", owner=OWNER)
        if self.started() and not resume:
            raise RecipeError(f"output folder {self.root} is not empty; pass --resume to continue that run, "
                              "or --output NEW_DIR")
        if self._artefacts():
            self.check_identity()
        if resume and not overwrite_allowed():
            self._check_whole()  # verify before trusting: what --resume keeps must be readable
        self.root.mkdir(parents=True, exist_ok=True)
        self._adopt()
        replicates = [self.root, self.root / SEEDS_DIR, *sorted((self.root / SEEDS_DIR).glob("*"))]
        for root in replicates:
            for folder in (root, root / ADAPTERS_DIR, root / EVALUATIONS_DIR, root / MORL_DIR):
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
        owned = ledger.owned()
        # A file of a kept artefact that is gone while the artefact's folder is still there: the
        # rest of it cannot be trusted either (a deleted folder is simply made again).
        for rel in owned:
            unit = derived_unit(rel)
            if unit is not None and unit != rel and (self.root / unit).is_dir() and not (self.root / rel).exists():
                raise RecipeError(f"{self.root / rel} is missing, but the run wrote it and would keep "
                                  f"{self.root / unit}; delete {self.root / unit} and run again with --resume to "
                                  "make it again")
        problems = ledger.conflicts(owned)
        if not problems:
            return
        first = problems[0].path
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        unit = derived_unit(first)
        if unit is not None:
            raise RecipeError(f"{self.root / first}{more} is damaged or was changed since peo-hub wrote it (its "
                              f"sha256 differs); delete {self.root / unit} and run again with --resume to make it "
                              "again")
        raise RecipeError(f"{self.root / first}{more} was changed since peo-hub wrote it and this run would replace "
                          "it; move it aside, or pass --overwrite to replace it")

    def _check_whole(self) -> None:
        """Every artefact ``--resume`` would keep can be read: the base copy's weights, each finished
        adapter's config, weights (finite) and training record, each evaluation record.

        The ledger's hashes catch a change to a file the run wrote; this catches damage in a
        folder written before ledgers (adopted as it was) and a file truncated by a crash of
        the disk. One line names the file and the fix, before any write.
        """
        from peo_hub.evaluate.records import read_evaluation
        from peo_hub.utils.weights import check_finite, check_model_folder

        def fix(unit: Path) -> str:
            return f"delete {unit} and run again with --resume to make it again"

        base = self.root / BASE_DIR
        if base.is_dir():
            try:
                check_model_folder(base, "copied base model", fix=fix(base))
            except BundleError as exc:
                raise RecipeError(str(exc)) from None
        for folder in [f for pattern in (f"{ADAPTERS_DIR}/*", f"{MORL_DIR}/*") for f in sorted(self.root.glob(pattern))
                       if adapter_complete(f)]:
            try:
                config = read_json(folder / ADAPTER_CONFIG, fix(folder))
                if not isinstance(config, dict) or str(config.get("peft_type", "")).upper() != "LORA":
                    raise BundleError(f"{folder / ADAPTER_CONFIG} is not a LoRA adapter config; {fix(folder)}")
                check_finite(folder / ADAPTER_WEIGHTS, "adapter weights", fix(folder))
                read_json(folder / TRAINING_INFO, fix(folder))
            except BundleError as exc:
                raise RecipeError(str(exc)) from None
        for record in sorted(self.evaluations.glob("*.json")):
            read_evaluation(record)

    def _refuse_other_writer(self) -> None:
        """A folder whose ledger names another command (compose, merge, export) is refused before any write."""
        if not (self.root / LEDGER_NAME).is_file() or overwrite_allowed():
            return
        writer = Ledger(self.root, OWNER).writer_recorded()
        if writer not in (None, "", OWNER):
            raise RecipeError(f"{self.root} holds the output of `peo-hub {writer}`, not a recipe's run; "
                              "`recipe run --resume` would replace its files: choose another --output")

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
                      if rel in ours or derived_unit(rel) is not None
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
                  progress: str | None = None, seed: int | None = None) -> dict[str, Any]:
        """Train one DPO LoRA adapter of this run into ``output`` (the one place adapters are trained).

        Aspects, MORL baselines and ``python -m peo_hub.train_aspect`` all come here, so every
        adapter of a bundle is trained from the same base at the same revision with the same
        settings, and carries this recipe's hash. ``progress`` names the task in the run's
        progress view (``None``: the Trainer's own bar, as under ``accelerate launch``).
        ``seed`` is the training seed (data order, LoRA init; default: the run's seed); a
        replicate's adapter records it in its ``training_info.json``.
        """
        seed = self.recipe.seed if seed is None else seed
        if len(self.recipe.training_seeds) > 1:
            info = {**dict(info), "seed": seed}
        from peo_hub.recipe.progress import training_callback
        from peo_hub.train.dpo import train_adapter

        return train_adapter(
            base_path=self.base_path(plan.base), tokenizer=plan.tokenizer, dataset=dataset,
            lora=self.recipe.train.lora, dpo=self.recipe.train.dpo, output=output, seed=seed,
            base_model_id=plan.base.name, base_revision=plan.base.revision,
            info={**dict(info), "recipe_hash": self.fingerprint_hash},
            callbacks=[training_callback(progress)] if progress else (), model=self.recipe.train.model,
        )

    def drop_adapters(self, seed: int) -> None:
        """Delete a replicate's adapters and MORL baselines (``--drop-seed-adapters``), never the run seed's.

        Only files this run wrote and nobody changed go (through the ledger); the seed's records,
        front and manifest stay, so its share of ``across_seeds`` can still be checked.
        """
        root = self.replicate_root(seed)
        if root == self.root:
            raise ValueError("the run seed's adapters are the bundle's; they are never dropped")
        ledger = self.ledger
        prefixes = [(root / name).relative_to(self.root).as_posix() + "/" for name in (ADAPTERS_DIR, MORL_DIR)]
        ledger.place({}, stale=[rel for rel in ledger.owned() if rel.startswith(tuple(prefixes))])

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
