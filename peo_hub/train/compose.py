"""``peo-hub compose``: a bundle from LoRA adapters that already exist (on the Hub or on disk), no training.

People publish adapters trained by different runs, with different settings. They can be
summed into one PEO family only if every one of them is a plain low-rank delta of the *same*
base weights. So before anything is written, :func:`compatibility` reads every adapter and
the base and prints a report:

* the base each adapter declares (id and revision) against the base composed over;
* every adapted module's shape against the base's own weights (read from ``config.json`` on
  a meta-device skeleton, so a Hub base costs one small download);
* each adapter's per-module scale as PEFT computes it, with rsLoRA (``alpha/√r``),
  ``rank_pattern`` and ``alpha_pattern`` folded in (:func:`peo_hub.family.lora.scale_groups`): the
  number every realisation multiplies ``B @ A`` by;
* DoRA, LoRA biases, ``modules_to_save`` and other non-additive options, refused with the
  reason (:data:`peo_hub.family.lora.NONLINEAR_REASONS`);
* modules only some adapters adapt: the others contribute an exact zero there, in the live
  model and in every export alike.

A compatible set is written as an ordinary bundle (``base/`` when the base is local,
``adapters/<name>/``, ``peo_config.json`` with each adapter's source and commit, a card);
``peo-hub evaluate`` then sweeps it into a front like a trained bundle.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from peo_hub import __version__
from peo_hub.bundle.manifest import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTERS_DIR, ASPECT_NAME, BASE_DIR,
                                     MANIFEST_NAME, AspectEntry, Manifest, save_manifest)
from peo_hub.bundle.card import write_model_card
from peo_hub.utils.errors import BundleError, PEOError
from peo_hub.utils.fsutil import atomic_dir, check_output, file_sha256
from peo_hub.bundle.pull import download_adapter
from peo_hub.data.base import Base, meta_model, resolve_base
from peo_hub.utils.ids import HubRef, is_repo_id, parse_ref
from peo_hub.family.lora import (Adapter, base_shapes_from_model, check_adapters, partial_modules, read_adapter,
                                 scale_groups)

OWNER = "compose"  # the ledger's writer name for composed bundles (peo_hub.utils.ledger)

Echo = Callable[[str], None]


@dataclass
class AdapterInput:
    """One ``--adapter NAME=REF``: where it was asked for and the local folder it resolved to."""

    name: str
    ref: HubRef
    folder: Path
    commit: str | None = None


@dataclass
class Report:
    """What :func:`compatibility` found: the lines it printed, the refusals, the adapters read."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    adapters: list[Adapter] = field(default_factory=list)
    partial: dict[str, list[str]] = field(default_factory=dict)

    def refuse(self, line: str) -> None:
        self.problems.append(line)
        self.lines.append(f"    REFUSED: {line}")


# --------------------------------------------------------------------------- inputs


def parse_adapter_args(values: Sequence[str]) -> list[tuple[str, HubRef]]:
    """``NAME=REF`` strings as (aspect name, reference), checked: names folder-safe and distinct, two or more."""
    pairs: list[tuple[str, HubRef]] = []
    for value in values:
        name, sep, ref = value.partition("=")
        name = name.strip()
        if not sep or not ref.strip():
            raise PEOError(f"--adapter {value!r}: write NAME=REF, e.g. --adapter helpful=user/repo@main:adapters/helpful "
                           "or --adapter harmless=./my_adapter")
        if not ASPECT_NAME.match(name):
            raise PEOError(f"--adapter {value!r}: the name {name!r} must be letters, digits, '-' or '_' "
                           "(it names a folder of the bundle)")
        if any(name == other for other, _ in pairs):
            raise PEOError(f"--adapter {name} is given twice; give each aspect one adapter")
        pairs.append((name, parse_ref(ref)))
    if len(pairs) < 2:
        raise PEOError("PEO needs two or more aspects: give --adapter NAME=REF at least twice")
    return pairs


def resolve_compose_base(text: str) -> Base:
    """``BASE`` as a local folder, ``embedded:<name>``, a GGUF file (see :mod:`peo_hub.data.gguf`), or
    ``user/repo[@revision]`` (only its config is fetched, and the commit it resolved to recorded)."""
    from peo_hub.data.gguf import is_gguf_base
    from peo_hub.world.base import is_embedded

    if is_embedded(text) or is_gguf_base(text):
        return resolve_base(text, what="base model")
    ref = parse_ref(text)
    if ref.is_local:
        return resolve_base(text, what="base model")
    if ref.subfolder:
        raise PEOError(f"base model {text!r}: a base is a whole repo, give user/repo[@revision] without ':subfolder'")
    base = resolve_base(ref.repo, ref.revision, what="base model", pin_commit=True)
    base.given = text
    return base


def resolve_adapters(pairs: Sequence[tuple[str, HubRef]]) -> list[AdapterInput]:
    """Every adapter reference as a local folder (Hub ones downloaded, or read from the HF cache)."""
    inputs = []
    for name, ref in pairs:
        if ref.is_local:
            folder = Path(ref.repo).expanduser()
            if not folder.is_dir():
                raise PEOError(f"--adapter {name}={ref}: no such folder; give an adapter folder or "
                               "user/repo[@revision][:subfolder]")
            inputs.append(AdapterInput(name=name, ref=ref, folder=folder.resolve()))
        else:
            folder, commit = download_adapter(ref)
            inputs.append(AdapterInput(name=name, ref=ref, folder=folder, commit=commit))
    return inputs


# --------------------------------------------------------------------------- the report


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _settings(config: dict[str, Any]) -> str:
    parts = [f"r={config.get('r')}", f"lora_alpha={config.get('lora_alpha')}"]
    if config.get("use_rslora"):
        parts.append("rsLoRA (scale alpha/sqrt(r))")
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            parts.append(f"{key} {json.dumps(config[key], sort_keys=True)}")
    return ", ".join(parts)


def _declared(adapter: Adapter) -> tuple[str | None, str | None]:
    return adapter.base_model_name, adapter.config.get("revision")


def _check_declared_base(adapter: Adapter, base: Base, report: Report) -> bool:
    """Same base id and revision as the base composed over, where both are known; False when refused."""
    declared, revision = _declared(adapter)
    hub_declared = is_repo_id(declared or "", namespace=True) and not Path(declared or "").exists()
    shown = f"{declared or 'none'}" + (f"@{revision}" if revision else "")
    if base.ships_inside:
        report.lines.append(f"    declared base {shown}; composing over a local folder, so checked by module shapes")
        return True
    if hub_declared and declared.lower() != base.source.lower():  # type: ignore[union-attr]
        report.refuse(f"adapter {adapter.name!r} was trained on {declared}, not on {base.source}; compose it over "
                      f"{declared}, or use an adapter trained on {base.source}")
        return False
    wanted = base.revision or "main"
    if revision and revision != wanted and revision != base.commit:
        report.refuse(f"adapter {adapter.name!r} was trained on {base.source} revision {revision}, but the base "
                      f"is composed at {wanted}; write the base as {base.source}@{revision}")
        return False
    if not hub_declared:
        report.lines.append(f"    declared base {shown}; not a Hub id, so checked by module shapes only")
    else:
        report.lines.append(f"    declared base {shown}: matches" + ("" if revision else " (no revision declared)"))
    return True


def _check_same_declared_base(adapters: Sequence[Adapter], report: Report) -> None:
    """Adapters that name different Hub bases (or revisions) were trained on different weights."""
    named = [(a.name, *_declared(a)) for a in adapters
             if is_repo_id(a.base_model_name or "", namespace=True) and not Path(a.base_model_name or "").exists()]
    ids = {(d or "").lower() for _, d, _ in named}
    if len(ids) > 1:
        listing = ", ".join(f"{n}: {d}" for n, d, _ in named)
        report.refuse(f"the adapters were trained on different base models ({listing}); compose adapters of one base")
        return
    revisions = {r for _, _, r in named if r}
    if len(revisions) > 1:
        listing = ", ".join(f"{n}: {r}" for n, _, r in named if r)
        report.refuse(f"the adapters were trained on different revisions of their base ({listing}); compose "
                      "adapters of one revision")


def compatibility(base: Base, shapes: dict[str, tuple[int, ...]], inputs: Sequence[AdapterInput]) -> Report:
    """Read every adapter and check it against the base and the others; nothing is written.

    Every problem is collected (so the printed report shows all of them at once), then
    :func:`compose` refuses with the first one as its one-line error.
    """
    report = Report()
    where = base.given if base.ships_inside else base.source + (f"@{base.revision}" if base.revision else "")
    commit = f" (commit {base.commit[:12]})" if base.commit else ""
    report.lines.append(f"base: {where}{commit}, {len(shapes)} weight matrices")
    for item in inputs:
        source = str(item.ref) + (f" (commit {item.commit[:12]})" if item.commit else "")
        report.lines.append(f"  {item.name}: {source}")
        try:
            adapter = read_adapter(item.name, item.folder)
        except BundleError as exc:
            report.refuse(str(exc))
            continue
        report.lines.append(f"    LoRA {_settings(adapter.config)}; {len(adapter.modules)} modules")
        for scale, rank, groups in scale_groups(adapter):
            report.lines.append(f"    scale {_fmt(scale)} folded into rank-{rank} modules: {', '.join(groups)}")
        if not _check_declared_base(adapter, base, report):
            continue
        try:
            check_adapters([adapter], base.source, shapes)
        except BundleError as exc:
            report.refuse(str(exc))
            continue
        report.adapters.append(adapter)
    if report.problems:
        return report
    _check_same_declared_base(report.adapters, report)
    try:
        check_adapters(report.adapters, base.source, shapes)
    except BundleError as exc:
        report.refuse(str(exc))
    report.partial = partial_modules(report.adapters)
    if report.partial:
        report.lines.append("  modules only some adapters adapt (the others add exactly zero there):")
        for group, names in report.partial.items():
            report.lines.append(f"    {group}: {', '.join(names)}")
    return report


# --------------------------------------------------------------------------- writing


def is_composed_output(path: Path) -> bool:
    """Whether ``path`` is an earlier ``peo-hub compose`` output (which may then be replaced whole)."""
    try:
        raw = json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and isinstance(raw.get("composed"), dict)


def _entry(item: AdapterInput, adapter: Adapter) -> AspectEntry:
    config = adapter.config
    source = {
        "reference": str(item.ref),
        "local": item.ref.is_local,
        "repo": None if item.ref.is_local else item.ref.repo,
        "revision": item.ref.revision,
        "subfolder": item.ref.subfolder,
        "commit": item.commit,
        "sha256": file_sha256(item.folder / ADAPTER_WEIGHTS),
        "declared_base": adapter.base_model_name,
        "lora": {k: config.get(k) for k in ("r", "lora_alpha", "use_rslora", "rank_pattern", "alpha_pattern",
                                             )},
        "scales": [{"scale": s, "rank": r, "modules": g} for s, r, g in scale_groups(adapter)],
    }
    return AspectEntry(adapter=f"{ADAPTERS_DIR}/{item.name}", source=source)


def write_composed(out: Path, base: Base, inputs: Sequence[AdapterInput], report: Report) -> Path:
    """The bundle folder, built in a temporary sibling and renamed into place."""
    adapters = {a.name: a for a in report.adapters}
    with atomic_dir(out, owner=OWNER) as tmp:
        if base.ships_inside:
            shutil.copytree(base.source, tmp / BASE_DIR, ignore=shutil.ignore_patterns(".*"))
        for item in inputs:
            target = tmp / ADAPTERS_DIR / item.name
            target.mkdir(parents=True)
            for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
                shutil.copy2(item.folder / name, target / name)
        manifest = Manifest(
            peo_hub_version=__version__,
            base_model=BASE_DIR if base.ships_inside else base.source,
            base_model_revision=None if base.ships_inside else base.revision,
            base_source=base.provenance,
            aspects={item.name: _entry(item, adapters[item.name]) for item in inputs},
            composed={"base": base.given, "base_commit": base.commit, "partial_modules": report.partial,
                      "report": report.lines},
        )
        save_manifest(tmp, manifest)
        write_model_card(tmp)
    return out


def compose(base: str, adapters: Sequence[str], output: str | os.PathLike[str], echo: Echo = print) -> Path:
    """Check, report, then write a bundle of existing adapters (see the module docstring)."""
    pairs = parse_adapter_args(adapters)
    out = check_output(output, "folder", ours=is_composed_output, what="--output", owner=OWNER)
    resolved_base = resolve_compose_base(base)
    shapes = base_shapes_from_model(meta_model(resolved_base))
    inputs = resolve_adapters(pairs)
    report = compatibility(resolved_base, shapes, inputs)
    for line in report.lines:
        echo(line)
    if report.problems:
        more = f" (and {len(report.problems) - 1} more problem(s) above)" if len(report.problems) > 1 else ""
        raise BundleError(report.problems[0] + more)
    return write_composed(out, resolved_base, inputs, report)
