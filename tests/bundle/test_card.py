"""Model cards: front matter only names real Hub ids and a license that is known; the body has the
front, presets and usage (peo-hub installed truthfully, PEFT loading by subfolder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from fakes import make_fake_bundle

from peo_hub.bundle.manifest import load_manifest, save_manifest
from peo_hub.bundle.card import (
    GENERATED_MARKER,
    CardLicense,
    card_is_intact,
    point_card,
    render_model_card,
    write_model_card,
)
from peo_hub.utils.errors import PreferenceError

FRONT = {
    "aspects": ["helpful", "harmless"],
    "reference_point": {"helpful": 0.0, "harmless": 0.0},
    "points": [
        {"method": "peo", "weights": {"helpful": 0.7, "harmless": 0.3}, "alpha": 0.5,
         "coefficients": {"helpful": 1.05, "harmless": 0.45},
         "metrics": {"helpful": {"mean": 0.61, "ci": [0.55, 0.67]}, "harmless": {"mean": 0.83, "ci": [0.8, 0.86]}},
         "on_front": True},
        {"method": "soup", "weights": {"helpful": 0.5, "harmless": 0.5}, "alpha": 0.0,
         "coefficients": {"helpful": 0.5, "harmless": 0.5},
         "metrics": {"helpful": {"mean": 0.4, "ci": [0.3, 0.5]}, "harmless": {"mean": 0.9, "ci": [0.85, 0.95]}},
         "on_front": False},
    ],
    "hypervolume": {"peo": 0.42, "soup": 0.35},
    "presets": {"helpful-leaning": {"weights": {"helpful": 0.7, "harmless": 0.3}, "alpha": 0.5}},
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_bundle(tmp_path_factory.mktemp("card") / "b")


def _meta(text: str) -> dict:
    return ModelCard(text).data.to_dict()


def test_embedded_base_is_said_in_text_not_in_metadata(bundle: Path) -> None:
    text = render_model_card(bundle, "alice/peo-toy")
    meta = _meta(text)
    assert "base_model" not in meta and "base_model_relation" not in meta and "datasets" not in meta
    # the Hub's PEFT snippet needs a top-level adapter_config.json, which a bundle does not have
    assert meta["library_name"] == "peo-hub"
    assert {"peo", "peft", "lora", "dpo", "trl", "mergekit"} <= set(meta["tags"])
    assert 'from_pretrained("alice/peo-toy", subfolder="base")' in text
    assert 'PeftModel.from_pretrained(base, "alice/peo-toy", subfolder="adapters/helpful")' in text
    assert 'PEOModel.from_pretrained("alice/peo-toy")' in text
    assert "mergekit-yaml" in text and "--as yaml" in text
    assert GENERATED_MARKER in text


def test_usage_says_how_to_install_peo_hub_truthfully(bundle: Path) -> None:
    text = render_model_card(bundle, "alice/peo-toy")
    assert "pip install peo-hub" not in text  # not a PyPI package
    assert "not published on PyPI" in text and "pip install -e" in text


def test_license_is_left_out_when_unknown_and_apache_for_the_embedded_world(bundle: Path, tmp_path: Path) -> None:
    import shutil

    meta = _meta(text := render_model_card(bundle, "alice/x"))  # a local base folder: its license is not ours to say
    assert "license" not in meta and "License: not stated (the base model is local)" in text
    b = Path(shutil.copytree(bundle, tmp_path / "b"))
    manifest = load_manifest(b)
    manifest.recipe = {"base_model": "embedded:toy"}
    save_manifest(b, manifest)
    assert _meta(render_model_card(b, "alice/x"))["license"] == "apache-2.0"
    manifest.recipe = {"base_model": "embedded:toy", "hub": {"license": "cc-by-4.0"}}
    save_manifest(b, manifest)
    text = render_model_card(b, "alice/x")
    assert _meta(text)["license"] == "cc-by-4.0" and "from the recipe's hub.license" in text


def test_hub_base_datasets_front_and_presets(bundle: Path, tmp_path: Path) -> None:
    import shutil

    b = Path(shutil.copytree(bundle, tmp_path / "b", ignore=shutil.ignore_patterns("base")))
    manifest = load_manifest(b)
    manifest.base_model = "HuggingFaceTB/SmolLM2-135M-Instruct"
    manifest.aspects["helpful"].dataset = {"source": "PKU-Alignment/PKU-SafeRLHF", "format": "pku-saferlhf",
                                           "label": "better", "split": "train"}
    manifest.aspects["harmless"].dataset = {"source": "data/harmless.jsonl", "format": "pairs"}
    manifest.aspects["harmless"].judge = {"type": "reward_model", "model": "org/cost-model", "negate": True}
    save_manifest(b, manifest)
    (b / "front.json").write_text(json.dumps(FRONT))
    (b / "front.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    text = render_model_card(b, "alice/peo-smol", license_lookup=False)
    meta = _meta(text)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["base_model_relation"] == "adapter"
    assert meta["datasets"] == ["PKU-Alignment/PKU-SafeRLHF"]  # the local file is not a Hub id
    assert "license" not in meta  # the base's card was not read: left out, never guessed
    assert "![Pareto front of the evaluated preference points](front.png)" in text
    assert "| peo | 0.42 | – |" in text and "| soup | 0.35 | – |" in text
    assert "biased upwards" in text  # this front has no selection/confirmation split, and the card says so
    row = next(line for line in text.splitlines() if line.startswith("| helpful-leaning"))
    assert "helpful=1.05, harmless=0.45" in row and "helpful 0.61 [0.55, 0.67]" in row
    assert "reward_model `org/cost-model` (negated)" in text
    assert 'AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")' in text
    assert "--weights helpful=0.7,harmless=0.3 --alpha 0.5" in text


def test_card_says_which_prompts_selected_and_which_confirmed(bundle: Path, tmp_path: Path) -> None:
    import shutil

    b = Path(shutil.copytree(bundle, tmp_path / "b"))
    front = {**FRONT, "evaluation_split": {"selection_fraction": 0.5, "seed": 0, "selection": [0, 2],
                                           "confirmation": [1, 3]},
             "hypervolume_ci": {"peo": [0.4, 0.45], "soup": [0.3, 0.4]},
             "hypervolume_difference": {"peo_minus_soup": {"estimate": 0.07, "ci": [0.01, 0.12], "verdict": "better"},
                                        "peo_minus_morl": {"estimate": 0.02, "ci": [-0.03, 0.05],
                                                           "verdict": "undecided"}}}
    (b / "front.json").write_text(json.dumps(front))
    text = render_model_card(b, "alice/x")
    assert "2 **selection** prompts chose the front" in text and "2 **confirmation** prompts" in text
    assert "| peo | 0.42 | [0.4, 0.45] |" in text
    assert "PEO beats soup at 95%" in text and "no difference between PEO and morl at 95%" in text


def test_write_model_card_is_atomic_and_valid_yaml(bundle: Path, tmp_path: Path) -> None:
    import shutil

    b = Path(shutil.copytree(bundle, tmp_path / "b"))
    path = write_model_card(b, "alice/x")
    assert path == b / "README.md"
    assert not [p for p in b.iterdir() if p.name.startswith(".README.md.tmp")]
    assert _meta(path.read_text())["library_name"] == "peo-hub"
    assert card_is_intact(path.read_text())


def test_point_card_states_the_point_and_links_the_bundle() -> None:
    text = point_card(aspects=["helpful", "harmless"], coefficients={"helpful": 1.05, "harmless": 0.45},
                      weights={"helpful": 0.7, "harmless": 0.3}, alpha=0.5, as_="adapter",
                      bundle_repo_id="alice/peo-toy", base_model="base", base_subfolder="base",
                      repo_id="alice/point")
    meta = _meta(text)
    # a point is one adapter at the top of its repo: PEFT's own snippet works for it
    assert "base_model" not in meta and meta["library_name"] == "peft" and "peo-point" in meta["tags"]
    assert "license" not in meta
    assert "| helpful | 0.7 | 1.05 |" in text and "alpha (extrapolation) = 0.5" in text
    assert 'from_pretrained("alice/peo-toy", subfolder="base")' in text
    assert 'PeftModel.from_pretrained(base, "alice/point")' in text
    with pytest.raises(PreferenceError):
        point_card(aspects=["a"], coefficients={"a": 1.0}, as_="yaml")


@pytest.mark.parametrize("as_, relation, library", [("adapter", "adapter", "peft"), ("model", "merge", "transformers")])
def test_point_card_names_the_hub_base_not_the_bundle(as_: str, relation: str, library: str) -> None:
    text = point_card(aspects=["helpful", "harmless"], coefficients={"helpful": 1.0, "harmless": 0.0}, as_=as_,
                      bundle_repo_id="alice/peo-toy", base_model="org/base", repo_id="alice/m",
                      license=CardLicense("llama3", "the base model's card (org/base)"))
    meta = _meta(text)
    assert meta["base_model"] in ("org/base", ["org/base"]) and "alice/peo-toy" not in str(meta["base_model"])
    assert meta["base_model_relation"] == relation and meta["library_name"] == library
    assert meta["license"] == "llama3"
    assert "[`alice/peo-toy`](https://huggingface.co/alice/peo-toy)" in text  # where it came from, linked


def test_the_digest_tells_an_edited_card_from_a_generated_one(bundle: Path) -> None:
    text = render_model_card(bundle, "alice/x")
    assert card_is_intact(text)
    assert not card_is_intact(text.replace("# x: a PEO bundle", "# x: my PEO bundle"))  # edited on the Hub
    assert not card_is_intact(text.replace(GENERATED_MARKER, ""))  # the marker removed: a person's card now
    assert not card_is_intact("---\nlicense: mit\n---\n\n# My own card\n")


# --------------------------------------------------------------------------- the base's license, from the Hub


def _hub_base_bundle(bundle: Path, tmp_path: Path, base: str) -> Path:
    import shutil

    b = Path(shutil.copytree(bundle, tmp_path / "hb", ignore=shutil.ignore_patterns("base")))
    manifest = load_manifest(b)
    manifest.base_model = base
    save_manifest(b, manifest)
    return b


def _publish_base_card(hub, repo_id: str, card: str) -> None:  # noqa: ANN001 - HubEnv
    from huggingface_hub import HfApi

    owner = {"bob": hub.bob_token, "alice": hub.alice_token}[repo_id.split("/")[0]]
    api = HfApi(token=owner)
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id)


def test_license_is_copied_from_the_base_models_hub_card(hub, bundle: Path, tmp_path: Path,  # noqa: ANN001
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    _publish_base_card(hub, "bob/tiny-base", "---\nlicense: other\nlicense_name: tiny-license\n"
                                             "license_link: LICENSE\n---\n\n# Tiny base\n")
    b = _hub_base_bundle(bundle, tmp_path, "bob/tiny-base")
    text = render_model_card(b, "alice/peo-tiny")
    meta = _meta(text)
    assert (meta["license"], meta["license_name"], meta["license_link"]) == ("other", "tiny-license", "LICENSE")
    assert "from the base model's card (bob/tiny-base)" in text
    ModelCard(text).validate()  # the (loopback) Hub's metadata check accepts the whole front matter
    # offline, the card already in the cache still answers
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert _meta(render_model_card(b, "alice/peo-tiny"))["license"] == "other"


def test_license_is_left_out_when_the_base_card_cannot_be_read(hub, bundle: Path, tmp_path: Path,  # noqa: ANN001
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    _publish_base_card(hub, "bob/no-license", "---\ntags: [x]\n---\n\n# No license here\n")
    text = render_model_card(_hub_base_bundle(bundle, tmp_path / "a", "bob/no-license"), "alice/x")
    assert "license" not in _meta(text)
    _publish_base_card(hub, "bob/licensed", "---\nlicense: mit\n---\n")
    b = _hub_base_bundle(bundle, tmp_path / "b", "bob/licensed")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # offline and not cached
    text = render_model_card(b, "alice/x")
    assert "license" not in _meta(text) and "could not be read here, e.g. offline" in text
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    ModelCard(text).validate()
    manifest = load_manifest(b)
    manifest.recipe = {"hub": {"license": "apache-2.0"}}  # the recipe's choice wins over the base's card
    save_manifest(b, manifest)
    assert _meta(render_model_card(b, "alice/x"))["license"] == "apache-2.0"
