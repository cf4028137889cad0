"""classifier.json has one reader and one writer (ClassifierManifest): what it writes it reads back
unchanged, aliases land on their column, and a malformed file is refused naming the field."""
import json

import pytest

from opencc_cm_contract import HARM_CATEGORIES
from opencc_cm_contract.bundle_format import CLASSIFIER_FILE, ClassifierManifest, ManifestError


def manifest(**changes):
    values = dict(labels=HARM_CATEGORIES, thresholds=tuple(0.1 * (i % 9) for i in range(11)), objective="multilabel",
                  vocab_size=1024, pad_token_id=3, max_tokens=2048, checkpoint="ckpt", precision="fp32",
                  tokenizer_vocab_size=1000, attention_query_block=256,
                  parity={"passed": True, "max_abs_score_diff": 1e-7}, torch_parity=None)
    values.update(changes)
    return ClassifierManifest(**values)


def test_round_trip(tmp_path):
    written = manifest()
    path = written.write(tmp_path)
    assert path == tmp_path / CLASSIFIER_FILE
    assert ClassifierManifest.read(tmp_path) == written == ClassifierManifest.read(path)
    raw = json.loads(path.read_text())
    assert raw["activation"] == "sigmoid" and raw["num_labels"] == 11


def test_alias_in_the_file_is_its_column(tmp_path):
    raw = manifest().to_json()
    raw["labels"][6] = "Integrity & Quality violations"
    raw["thresholds"] = {("Integrity & Quality violations" if k == "Information Integrity" else k): v
                         for k, v in raw["thresholds"].items()}
    read = ClassifierManifest.from_json(raw)
    assert read.labels == HARM_CATEGORIES and read.thresholds == manifest().thresholds


@pytest.mark.parametrize("field, value, message", [
    ("labels", [], "'labels' must be a non-empty list"),
    ("objective", "regression", "objective must be one of"),
    ("vocab_size", True, "'vocab_size' must be an integer >= 1"),
    ("pad_token_id", 5000, "pad_token_id 5000 is not below vocab_size 1024"),
    ("max_tokens", 0, "'max_tokens' must be an integer >= 1"),
    ("num_labels", 3, "num_labels 3 != 11 labels"),
    ("parity", "yes", "'parity' must be an object or null"),
    ("thresholds", {"CBRN": 0.5}, "missing thresholds for label(s)"),
])
def test_malformed_field_is_named(field, value, message):
    raw = manifest().to_json()
    raw[field] = value
    with pytest.raises(ManifestError, match="where.json") as caught:
        ClassifierManifest.from_json(raw, "where.json")
    assert message in str(caught.value)


def test_writer_refuses_what_the_reader_would(tmp_path):
    with pytest.raises(ManifestError, match="pad_token_id"):
        manifest(pad_token_id=1024).write(tmp_path)
    assert not (tmp_path / CLASSIFIER_FILE).exists()  # nothing left behind
