"""peo_hub.data.load: every format row by row, chat-template rendering, sampling, and every error path."""

from __future__ import annotations

import csv
import json
import logging
import sys
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

import realdata
from peo_hub.data.config import DatasetSpec, parse_dataset_spec
from peo_hub.data.load import load_preference_data, load_preference_dataset, load_prompts
from peo_hub.data.chat import render_prompt
from peo_hub.utils.errors import DataError

COLUMNS = ["prompt", "chosen", "rejected"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# --------------------------------------------------------------------------- formats


def test_pairs_jsonl_row_by_row_drops_unusable_rows(tmp_path, caplog):
    rows = [
        {"prompt": "p1", "chosen": "good one", "rejected": "bad one", "extra": 1},
        {"prompt": "p2", "chosen": "same", "rejected": "same", "extra": 2},  # no DPO signal
        {"prompt": "p3", "chosen": None, "rejected": "x", "extra": 3},  # missing text
        {"prompt": "p4", "chosen": "yes", "rejected": "no", "extra": 4},
    ]
    spec = DatasetSpec(source=str(write_jsonl(tmp_path / "p.jsonl", rows)))
    with caplog.at_level(logging.WARNING, logger="peo_hub.data.load"):
        data = load_preference_data(spec)
    assert data.train.column_names == COLUMNS
    assert data.train.to_list() == [
        {"prompt": "p1", "chosen": "good one", "rejected": "bad one"},
        {"prompt": "p4", "chosen": "yes", "rejected": "no"},
    ]
    assert data.eval is None
    assert data.rows_read == 4
    assert data.dropped == {"chosen identical to rejected": 1, "missing or empty text": 1}
    assert "dropped 2 of 4 rows" in caplog.text
    prov = data.provenance()
    assert prov["source"] == spec.source and prov["train_rows"] == 2 and prov["dropped"] == data.dropped


def test_pku_saferlhf_better_and_safer_pick_the_right_response(tmp_path):
    path = realdata.write_pku_saferlhf_parquet(tmp_path / "pku.parquet", rows=40)
    source = pq.read_table(path).to_pylist()
    assert {"is_response_0_safe", "response_1_harm_category", "response_0_sha256"} <= set(source[0])
    for label, id_column in (("better", "better_response_id"), ("safer", "safer_response_id")):
        ds = load_preference_dataset({"source": str(path), "format": "pku-saferlhf", "label": label})
        assert ds.num_rows == 40 and ds.column_names == COLUMNS
        for row, src in zip(ds, source):
            pick = src[id_column]
            assert row["prompt"] == src["prompt"]
            assert row["chosen"] == src[f"response_{pick}"]
            assert row["rejected"] == src[f"response_{1 - pick}"]
    better = load_preference_dataset({"source": str(path), "format": "pku-saferlhf", "label": "better"})
    safer = load_preference_dataset({"source": str(path), "format": "pku-saferlhf", "label": "safer"})
    # The synthetic data conflicts like the real one: on risky prompts the labels disagree.
    disagree = sum(b != s for b, s in zip(better["chosen"], safer["chosen"]))
    assert disagree == 20


def test_hh_rlhf_splits_at_last_assistant_turn_and_drops_divergent_rows(tmp_path, caplog):
    path = realdata.write_hh_rlhf_jsonl(tmp_path / "hh.jsonl", rows=30, divergent=2)
    source = [json.loads(line) for line in path.read_text().splitlines()]
    with caplog.at_level(logging.WARNING, logger="peo_hub.data.load"):
        data = load_preference_data({"source": str(path), "format": "hh-rlhf"})
    assert data.train.num_rows == 28
    assert data.dropped == {"prompt differs between chosen and rejected": 2}
    assert "2 prompt differs" in caplog.text
    for row, src in zip(data.train, source):
        assert row["prompt"].endswith("\n\nAssistant:")
        assert "\n\nAssistant:" not in row["chosen"] and "\n\nHuman:" not in row["chosen"]
        assert row["prompt"] + row["chosen"] == src["chosen"]
        assert row["prompt"] + row["rejected"] == src["rejected"]
        assert row["chosen"].startswith(" ")  # plain text keeps the dialogue's own spacing
    assert data.train[0]["prompt"].count("\n\nHuman:") == 2  # a multi-turn prompt keeps its history




def test_hh_rlhf_hub_layout_with_data_dir_and_eval_split(tmp_path):
    root = realdata.write_hh_rlhf_dir(tmp_path / "hh-rlhf", rows=20)
    data = load_preference_data(
        {"source": str(root), "format": "hh-rlhf", "data_dir": "harmless-base", "eval_split": "test"}
    )
    assert data.train.num_rows == 18 and data.eval is not None and data.eval.num_rows == 10 - 2
    # harmless-base prefers the refusal
    assert all("can't" in c or "won't" in c or "rather not" in c or "Not reporting" in c or "Tracking" in c
               for c in data.train["chosen"])
    helpful = load_preference_dataset({"source": str(root), "format": "hh-rlhf", "data_dir": "helpful-base"})
    assert helpful[0]["chosen"].startswith(" Mix 500 g of flour")


def test_conversational_explicit_and_implicit_prompt(tmp_path):
    user = {"role": "user", "content": "hi"}
    explicit = write_jsonl(tmp_path / "c.jsonl", [
        {"prompt": [user], "chosen": [{"role": "assistant", "content": "hello"}],
         "rejected": [{"role": "assistant", "content": "go"}]},
    ])
    ds = load_preference_dataset({"source": str(explicit), "format": "conversational"})
    assert ds.to_list() == [{"prompt": "hi", "chosen": "hello", "rejected": "go"}]

    turn = [user, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "how are you"}]
    implicit = write_jsonl(tmp_path / "i.jsonl", [
        {"chosen": turn + [{"role": "assistant", "content": "fine"}],
         "rejected": turn + [{"role": "assistant", "content": "bad"}]},
        {"chosen": [user, {"role": "assistant", "content": "x"}],
         "rejected": [{"role": "user", "content": "other"}, {"role": "assistant", "content": "y"}]},
    ])
    data = load_preference_data({"source": str(implicit), "format": "conversational"})
    assert data.train.to_list() == [{
        "prompt": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you\n\nAssistant:",
        "chosen": "fine", "rejected": "bad",
    }]
    assert data.dropped == {"prompt differs between chosen and rejected": 1}


def test_columns_mapping_csv(tmp_path):
    path = tmp_path / "c.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "good", "bad", "score"])
        writer.writerow(["q1", "a, with comma", "b", "3"])
        writer.writerow(["q2", "c", "d", "1"])
    spec = {"source": str(path), "format": "columns",
            "columns": {"prompt": "question", "chosen": "good", "rejected": "bad"}}
    assert load_preference_dataset(spec).to_list() == [
        {"prompt": "q1", "chosen": "a, with comma", "rejected": "b"},
        {"prompt": "q2", "chosen": "c", "rejected": "d"},
    ]


def test_json_array_and_parquet_pairs(tmp_path):
    rows = [{"prompt": "p", "chosen": "c", "rejected": "r"}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    assert load_preference_dataset({"source": str(tmp_path / "a.json")}).to_list() == rows
    assert load_preference_dataset({"source": str(write_parquet(tmp_path / "a.parquet", rows))}).to_list() == rows


def test_saved_to_disk_folder(tmp_path):
    import datasets

    rows = {"prompt": ["p"], "chosen": ["c"], "rejected": ["r"]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(tmp_path / "saved")
    assert load_preference_dataset({"source": str(tmp_path / "saved")})[0] == {"prompt": "p", "chosen": "c", "rejected": "r"}


def test_embedded_source_calls_the_toy_world(monkeypatch):
    calls = []

    def embedded_pairs(name, split, label):
        calls.append((name, split, label))
        return [{"prompt": "how do i bake bread ?", "chosen": "sure first mix flour", "rejected": "sorry"}]

    monkeypatch.setitem(sys.modules, "peo_hub.world.toy", types.SimpleNamespace(embedded_pairs=embedded_pairs))
    ds = load_preference_dataset({"source": "embedded:toy", "label": "harmless", "split": "test"})
    assert calls == [("toy", "test", "harmless")]
    assert ds.to_list() == [{"prompt": "how do i bake bread ?", "chosen": "sure first mix flour", "rejected": "sorry"}]


# --------------------------------------------------------------------------- chat templates








def test_loading_with_tokenizer_renders_prompts_and_strips_completions(tmp_path, word_tok, chatml_tok):
    path = realdata.write_hh_rlhf_jsonl(tmp_path / "hh.jsonl", rows=6, divergent=0)
    ds = load_preference_dataset({"source": str(path), "format": "hh-rlhf"}, tokenizer=word_tok)
    assert ds[0]["prompt"].startswith("<s> <user> Hi, I have a question. <assistant> Sure,")
    assert ds[0]["prompt"].endswith(" <assistant>")
    assert ds[0]["chosen"].startswith("Mix 500 g") and not ds[0]["rejected"].startswith(" ")

    pku = realdata.write_pku_saferlhf_parquet(tmp_path / "pku.parquet", rows=4)
    ds = load_preference_dataset({"source": str(pku), "format": "pku-saferlhf", "label": "safer"}, tokenizer=chatml_tok)
    src = pq.read_table(pku).to_pylist()
    assert ds[1]["prompt"] == f"<|im_start|>user\n{src[1]['prompt']}<|im_end|>\n<|im_start|>assistant\n"




# --------------------------------------------------------------------------- sampling and hold-out


def test_max_samples_is_seeded_and_keeps_source_order(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(50)]
    path = str(write_jsonl(tmp_path / "p.jsonl", rows))
    a = load_preference_dataset({"source": path, "max_samples": 10, "seed": 1})["prompt"]
    b = load_preference_dataset({"source": path, "max_samples": 10, "seed": 1})["prompt"]
    c = load_preference_dataset({"source": path, "max_samples": 10, "seed": 2})["prompt"]
    assert list(a) == list(b) and list(a) != list(c) and len(a) == 10
    assert list(a) == sorted(a, key=lambda p: int(p[1:]))
    assert load_preference_dataset({"source": path, "max_samples": 500}).num_rows == 50


def test_test_size_holds_out_disjoint_pairs_and_load_prompts_uses_them(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(40)]
    path = str(write_jsonl(tmp_path / "p.jsonl", rows))
    data = load_preference_data({"source": path, "max_samples": 20, "test_size": 0.25})
    assert data.train.num_rows == 15 and data.eval.num_rows == 5
    assert not set(data.train["prompt"]) & set(data.eval["prompt"])
    assert load_prompts({"source": path, "max_samples": 20, "test_size": 0.25}) == list(data.eval["prompt"])
    counted = load_preference_data({"source": path, "test_size": 3})
    assert counted.eval.num_rows == 3 and counted.train.num_rows == 37
    with pytest.raises(DataError, match="leaving none to train on; lower test_size"):
        load_preference_data({"source": path, "max_samples": 5, "test_size": 5})


def test_test_size_holds_out_whole_prompts(tmp_path):
    # PKU-SafeRLHF pairs one prompt with several response pairs: no prompt may straddle the split.
    rows = [{"prompt": f"p{i // 4}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(40)]
    path = str(write_jsonl(tmp_path / "p.jsonl", rows))
    data = load_preference_data({"source": path, "test_size": 6})
    assert data.eval.num_rows == 8 and data.train.num_rows == 32  # 6 pairs rounded up to 2 whole prompts
    assert not set(data.train["prompt"]) & set(data.eval["prompt"])
    assert load_prompts({"source": path, "test_size": 6}) == sorted(set(data.eval["prompt"]), key=lambda p: int(p[1:]))
    with pytest.raises(DataError, match="holds out every prompt"):
        load_preference_data({"source": str(write_jsonl(tmp_path / "one.jsonl", rows[:4])), "test_size": 0.5})


# --------------------------------------------------------------------------- load_prompts


def test_load_prompts_inline_and_from_files(tmp_path, word_tok):
    assert load_prompts(["hi", "hi", "how are you", " "]) == ["hi", "how are you"]
    assert load_prompts(["hi"], tokenizer=word_tok) == ["<s> <user> hi <assistant>"]

    only_prompts = write_jsonl(tmp_path / "q.jsonl", [{"prompt": p} for p in ["a", "b", "a", "c", "d"]])
    assert load_prompts({"source": str(only_prompts)}) == ["a", "b", "c", "d"]
    assert len(load_prompts({"source": str(only_prompts), "max_samples": 2})) == 2

    hh = realdata.write_hh_rlhf_jsonl(tmp_path / "hh.jsonl", rows=12, divergent=0)
    prompts = load_prompts({"source": str(hh), "format": "hh-rlhf"})
    assert prompts and all(p.endswith("\n\nAssistant:") for p in prompts) and len(prompts) == len(set(prompts))

    pku = realdata.write_pku_saferlhf_parquet(tmp_path / "pku.parquet", rows=6)
    assert load_prompts({"source": str(pku), "format": "pku-saferlhf", "label": "better"}) == [
        r["prompt"] for r in pq.read_table(pku).to_pylist()
    ]


def test_load_prompts_errors(tmp_path):
    with pytest.raises(DataError, match="wrap it in a list"):
        load_prompts("just one prompt")
    with pytest.raises(DataError, match="inline prompt list is empty"):
        load_prompts([])
    with pytest.raises(DataError, match="must be strings"):
        load_prompts(["ok", 3])
    with pytest.raises(DataError, match="needs column.*prompt"):
        load_prompts({"source": str(write_jsonl(tmp_path / "x.jsonl", [{"text": "a"}]))})


# --------------------------------------------------------------------------- spec validation


@pytest.mark.parametrize(
    ("fields", "field", "needle"),
    [
        ({"format": "pku-saferlhf", "label": "helpful"}, "label", "label 'helpful'"),
        ({"label": "better"}, "label", "only format pku-saferlhf and embedded sources use a label; remove label"),
        ({"format": "columns"}, "columns", "format columns needs a mapping with exactly prompt, chosen and rejected"),
        ({"format": "columns", "columns": {"prompt": "q", "chosen": "c"}}, "columns", "missing ['rejected']"),
        ({"columns": {"prompt": "q", "chosen": "c", "rejected": "r"}}, "columns", "set format: columns or remove columns"),
        ({"test_size": 0.1, "eval_split": "test"}, "eval_split", "test_size is also set"),
        ({"test_size": 1.5}, "test_size", "neither a fraction in (0, 1) nor a whole count"),
        ({"max_samples": 0}, "max_samples", "greater than 0"),
        ({"format": "csv"}, "format", "unknown format 'csv'; known: pairs, pku-saferlhf, hh-rlhf"),
    ],
)
def test_spec_validation_names_field_and_fix(fields, field, needle):
    with pytest.raises(ValidationError) as info:
        DatasetSpec(source="data.jsonl", **fields)
    assert needle in str(info.value)
    with pytest.raises(DataError) as one_line:
        parse_dataset_spec({"source": "data.jsonl", **fields}, where="aspects.helpful.dataset")
    assert needle in str(one_line.value) and "\n" not in str(one_line.value)
    assert str(one_line.value).startswith(f"field 'aspects.helpful.dataset.{field}'")


def test_pku_label_is_needed_for_pairs_not_for_prompts(tmp_path):
    spec = {"source": "x.jsonl", "format": "pku-saferlhf"}
    assert parse_dataset_spec(spec, purpose="prompts").label is None  # prompts use no label
    with pytest.raises(DataError, match=r"^field 'dataset.label': format pku-saferlhf needs label: better or label: safer"):
        parse_dataset_spec(spec, purpose="pairs")
    rows = [{"prompt": f"q{i}", "response_0": "a", "response_1": "b", "better_response_id": 0,
             "safer_response_id": 1} for i in range(3)]
    assert load_prompts({"source": str(write_jsonl(tmp_path / "pku.jsonl", rows)), "format": "pku-saferlhf"}) == [
        "q0", "q1", "q2"]


def test_spec_misc_validation():
    with pytest.raises(DataError, match=r"unknown field 'dataset.colums' \(did you mean 'columns'\?\); remove or rename it"):
        parse_dataset_spec({"source": "x.jsonl", "colums": {}})
    with pytest.raises(DataError, match="missing required field 'dataset.source'; add it"):
        parse_dataset_spec({"format": "pairs"})
    with pytest.raises(DataError, match="embedded sources are already pairs"):
        parse_dataset_spec({"source": "embedded:toy", "format": "hh-rlhf"})
    with pytest.raises(DataError, match="needs a name after 'embedded:'"):
        parse_dataset_spec({"source": "embedded:"})
    spec = parse_dataset_spec({"source": "Anthropic/hh-rlhf", "format": "hh-rlhf", "name": "cfg", "data_dir": "helpful-base"})
    assert spec.subset == "cfg" and spec.source_kind == "hub"
    assert DatasetSpec(source="embedded:toy", label="helpful").source_kind == "embedded"
    assert DatasetSpec(source="train.jsonl.gz").source_kind == "file"
    assert DatasetSpec(source="./no_suffix").source_kind == "file"
    assert DatasetSpec(source="x", test_size=200.0).test_size == 200


# --------------------------------------------------------------------------- load errors


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"dataset file not found: .*nope\.parquet .*check source"):
        load_preference_dataset({"source": str(tmp_path / "nope.parquet")})


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError, match=r"cannot read .*bad\.parquet as parquet: .*check that the file is valid parquet") as info:
        load_preference_dataset({"source": str(bad)})
    assert "\n" not in str(info.value)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{not json\n')
    with pytest.raises(DataError, match=r"cannot read .*broken\.jsonl as json: (?!An error occurred)"):
        load_preference_dataset({"source": str(broken)})


def test_unsupported_file_type(tmp_path):
    txt = tmp_path / "data.txt"
    txt.write_text("hello")
    with pytest.raises(DataError, match=r"unsupported dataset file type: data\.txt; convert it to \.parquet"):
        load_preference_dataset({"source": str(txt)})


def test_missing_columns_name_the_columns_and_the_format(tmp_path):
    pku = realdata.write_pku_saferlhf_parquet(tmp_path / "pku.parquet", rows=4)
    with pytest.raises(DataError, match=r"format pairs needs column\(s\) chosen, rejected, found prompt, response_0.*format: columns"):
        load_preference_dataset({"source": str(pku)})
    hh = realdata.write_hh_rlhf_jsonl(tmp_path / "hh.jsonl", rows=4)
    with pytest.raises(DataError, match=r"format pku-saferlhf needs column\(s\) prompt, response_0, response_1, safer_response_id"):
        load_preference_dataset({"source": str(hh), "format": "pku-saferlhf", "label": "safer"})
    with pytest.raises(DataError, match=r"format columns needs column\(s\) q.*fix the columns mapping"):
        load_preference_dataset({"source": str(hh), "format": "columns",
                                 "columns": {"prompt": "q", "chosen": "chosen", "rejected": "rejected"}})


def test_bad_pku_ids(tmp_path):
    rows = realdata.pku_saferlhf_rows(3)
    rows[2]["better_response_id"] = 2
    path = write_parquet(tmp_path / "pku.parquet", rows)
    with pytest.raises(DataError, match=r"row 2: better_response_id is 2, expected 0 or 1"):
        load_preference_dataset({"source": str(path), "format": "pku-saferlhf", "label": "better"})
    # the safer column is fine, so label: safer still loads
    assert load_preference_dataset({"source": str(path), "format": "pku-saferlhf", "label": "safer"}).num_rows == 3


def test_bad_values_in_rows(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "p", "chosen": 3, "rejected": "r"}])
    with pytest.raises(DataError, match="row 0 chosen: expected text or a list of assistant messages, got int"):
        load_preference_dataset({"source": str(path)})
    path = write_jsonl(tmp_path / "y.jsonl", [{"prompt": "p", "chosen": [{"role": "user", "content": "u"}], "rejected": "r"}])
    with pytest.raises(DataError, match="only assistant messages"):
        load_preference_dataset({"source": str(path), "format": "conversational"})


def test_empty_after_filtering(tmp_path):
    path = write_jsonl(tmp_path / "same.jsonl", [{"prompt": "p", "chosen": "x", "rejected": "x"}] * 3)
    with pytest.raises(DataError, match=r"no usable preference pairs in split 'train' \(3 rows read; 3 chosen identical to rejected\); check format"):
        load_preference_dataset({"source": str(path)})


def test_eval_split_on_a_single_file(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}])
    with pytest.raises(DataError, match="is one file; use test_size"):
        load_preference_data({"source": str(path), "eval_split": "test"})


def test_unknown_split_in_folder(tmp_path):
    root = realdata.write_hh_rlhf_dir(tmp_path / "hh", rows=10)
    with pytest.raises(DataError, match="validation.*split"):
        load_preference_dataset({"source": str(root), "format": "hh-rlhf", "data_dir": "helpful-base", "split": "validation"})


def test_hub_dataset_offline_or_missing(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"Hub dataset 'nobody-xyz/no-such-dataset'.*(local cache|not found)") as info:
        load_preference_dataset({"source": "nobody-xyz/no-such-dataset", "format": "hh-rlhf"})
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="not a local file, a folder or a Hub dataset id"):
        load_preference_dataset({"source": "not a dataset!"})


# --------------------------------------------------------------------------- real-data stand-ins


def test_realdata_writers_are_deterministic(tmp_path):
    a = realdata.write_pku_saferlhf_parquet(tmp_path / "a.parquet", rows=50)
    b = realdata.write_pku_saferlhf_parquet(tmp_path / "b.parquet", rows=50)
    assert a.read_bytes() == b.read_bytes()
    c = realdata.write_hh_rlhf_jsonl(tmp_path / "c.jsonl.gz", rows=50)
    d = realdata.write_hh_rlhf_jsonl(tmp_path / "d.jsonl.gz", rows=50)
    assert c.read_bytes() == d.read_bytes()
    assert load_preference_dataset({"source": str(c), "format": "hh-rlhf"}).num_rows == 48


def test_tiny_models_load_like_hub_models(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    qwen = realdata.build_tiny_qwen2(tmp_path / "qwen")
    tok = AutoTokenizer.from_pretrained(qwen)
    model = AutoModelForCausalLM.from_pretrained(qwen)
    assert model.config.model_type == "qwen2" and model.config.hidden_size == 32
    pku = realdata.write_pku_saferlhf_parquet(tmp_path / "pku.parquet", rows=4)
    ds = load_preference_dataset({"source": str(pku), "format": "pku-saferlhf", "label": "better"}, tokenizer=tok)
    assert ds[0]["prompt"].startswith("<|im_start|>user\n") and ds[0]["prompt"].endswith("<|im_start|>assistant\n")
    inputs = tok(ds[0]["prompt"], return_tensors="pt", add_special_tokens=False)
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3

    gpt2 = realdata.build_tiny_gpt2(tmp_path / "gpt2")
    gtok = AutoTokenizer.from_pretrained(gpt2)
    assert not gtok.chat_template and render_prompt(gtok, "\n\nHuman: hi\n\nAssistant:") == "\n\nHuman: hi\n\nAssistant:"
    assert AutoModelForCausalLM.from_pretrained(gpt2).config.model_type == "gpt2"

    # TRL tokenizes prompt and prompt+completion and splits where they diverge: rendered
    # prompts must end on a token boundary, with and without a chat template.
    hh = realdata.write_hh_rlhf_jsonl(tmp_path / "hh.jsonl", rows=12)
    for tokenizer, spec in ((tok, {"source": str(pku), "format": "pku-saferlhf", "label": "safer"}),
                            (tok, {"source": str(hh), "format": "hh-rlhf"}),
                            (gtok, {"source": str(hh), "format": "hh-rlhf"})):
        for row in load_preference_dataset(spec, tokenizer=tokenizer):
            prompt_ids = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            for completion in (row["chosen"], row["rejected"]):
                full = tokenizer(row["prompt"] + completion, add_special_tokens=False)["input_ids"]
                assert full[: len(prompt_ids)] == prompt_ids

    for arch in ("qwen2", "gpt2"):
        rm_path = realdata.build_tiny_reward_model(tmp_path / f"rm-{arch}", arch=arch)
        rm = AutoModelForSequenceClassification.from_pretrained(rm_path)
        rtok = AutoTokenizer.from_pretrained(rm_path)
        batch = rtok(["short", "a much longer reply to force padding"], return_tensors="pt", padding=True)
        with torch.no_grad():
            scores = rm(**batch).logits
        assert scores.shape == (2, 1) and rm.config.pad_token_id == rtok.pad_token_id
        assert torch.isfinite(scores).all()
