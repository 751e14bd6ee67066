"""peo_hub.data.formats: the format registry, and the parts of a format that stand alone (HH-RLHF splitting).

Each format's reading of real rows, from files and Hub layouts, is tested through the loader
in tests/data/test_load.py.
"""

from __future__ import annotations

import pytest

from peo_hub.utils.errors import DataError
from peo_hub.data.formats import FORMATS, Format, get_format, register


def test_registry_lists_every_format_once_and_unknown_names_are_one_line():
    assert list(FORMATS) == ["pairs", "pku-saferlhf", "hh-rlhf", "conversational", "columns"]
    assert all(isinstance(f, Format) and f.summary for f in FORMATS.values())
    with pytest.raises(DataError, match="unknown dataset format 'csv'; known: pairs"):
        get_format("csv")


def test_a_registered_format_is_accepted_by_the_spec_and_the_loader(tmp_path):
    import json

    from peo_hub.data.config import DatasetSpec
    from peo_hub.data.load import load_preference_data

    @register
    class Upper(Format):
        name = "upper-test"
        summary = "pairs whose chosen replies are upper-cased (a test format)"

        def pairs(self, data, mapping, spec):
            rows = super().pairs(data, mapping, spec)
            rows.chosen = [c.upper() for c in rows.chosen]
            return rows

    try:
        path = tmp_path / "p.jsonl"
        path.write_text(json.dumps({"prompt": "p", "chosen": "yes", "rejected": "no"}) + "\n")
        loaded = load_preference_data(DatasetSpec(source=str(path), format="upper-test"))
        assert loaded.train["chosen"] == ["YES"]
    finally:
        del FORMATS["upper-test"]


def test_hh_rlhf_edge_rows():
    from peo_hub.data.formats import split_hh

    assert split_hh("\n\nHuman: hi\n\nAssistant: yo", "\n\nHuman: hi\n\nAssistant: no") == (
        "\n\nHuman: hi\n\nAssistant:", " yo", " no",
    )
    assert split_hh("\n\nHuman: hi", "\n\nHuman: hi") == "no assistant turn in chosen"
    assert split_hh("\n\nHuman: hi\n\nAssistant: yo", "\n\nHuman: ho\n\nAssistant: no") == (
        "prompt differs between chosen and rejected"
    )
    # The rejected dialogue goes on for more turns: its "completion" is not one reply.
    assert split_hh(
        "\n\nHuman: hi\n\nAssistant: yo", "\n\nHuman: hi\n\nAssistant: no\n\nHuman: ok\n\nAssistant: x"
    ) == "completion spans several turns"
