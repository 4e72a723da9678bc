"""The model card contract (edge_fer/contracts/model_card.py): the shipped cards (written before
the format had a version) load through its one migration to the same model; a card survives a
write and a read; a card from a newer edge-fer, or any bad value, is one CardError line; and
the runtime reads it without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from edge_fer.contracts import model_card
from edge_fer.contracts.model_card import FORMAT_VERSION, CardError, ModelCard
from edge_fer.emotions.classifier import ModelError, PteClassifier, write_metadata
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.emotions.preprocess import PreprocessSpec

pytestmark = pytest.mark.fast  # units and contracts: the fast tier

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "edge_fer" / "models" / "edge_fer_student.pte"


def test_the_shipped_unversioned_card_reads_as_it_always_did():
    raw = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert "format_version" not in raw  # written before the format had a version
    card = model_card.read(SHIPPED)
    assert card.format_version == FORMAT_VERSION
    assert card.classes == EMOTIONS and card.dynamic_batch and card.name == raw["name"]
    assert card.preprocess == PreprocessSpec(**raw["preprocess"])
    assert card.calibration.scale == tuple(raw["calibration"]["scale"])
    assert card.to_json() == {"format_version": FORMAT_VERSION, **raw}


def test_a_card_survives_a_write_and_a_read(tmp_path):
    card = replace(model_card.read(SHIPPED), name="copy", details={"params": 7})
    model_card.write(tmp_path / "m.pte", card)
    again = model_card.read(tmp_path / "m.pte")
    assert again == card and again.to_json() == card.to_json()
    assert again.calibration.written == card.calibration.written  # method and fit notes kept


def test_the_old_default_margin_lives_in_the_migration_only():
    old = {"classes": list(EMOTIONS), "preprocess": {"input_size": 48, "mean": 0.5, "std": 0.5}}
    assert model_card.from_json(old).preprocess.margin == model_card.UNVERSIONED_MARGIN == 0.1
    new = {**old, "format_version": 1}
    assert model_card.from_json(new).preprocess.margin == PreprocessSpec().margin
    assert model_card.migrate(old)["format_version"] == 1 and "format_version" not in old


@pytest.mark.parametrize(
    ("version", "needle"),
    [(FORMAT_VERSION + 1, "newer than this edge-fer reads"), ("1", "not a whole number"),
     (True, "not a whole number"), (-1, "not a whole number"), (1.5, "not a whole number")],
)  # fmt: skip
def test_a_card_of_an_unknown_version_is_one_line(version, needle):
    data = {"format_version": version, "classes": list(EMOTIONS), "preprocess": {}}
    with pytest.raises(CardError, match=needle) as info:
        model_card.from_json(data, "m.json")
    assert "\n" not in str(info.value) and "m.json" in str(info.value)


def test_the_classifier_reads_the_card_and_refuses_a_newer_one(tmp_path):
    model = tmp_path / "m.pte"
    model.write_bytes(SHIPPED.read_bytes())
    write_metadata(model, model_card.read(SHIPPED))
    classifier = PteClassifier(model)
    assert classifier.card.dynamic_batch and classifier.info()["name"].startswith("edge-fer emotion student")
    assert classifier.metadata["format_version"] == FORMAT_VERSION
    classifier.close()
    data = json.loads(model.with_suffix(".json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**data, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ModelError, match="newer than this edge-fer reads"):
        PteClassifier(model)


def test_write_metadata_never_writes_a_card_that_cannot_be_read(tmp_path):
    model = tmp_path / "m.pte"
    good = json.loads(SHIPPED.with_suffix(".json").read_text())
    for bad in ({**good, "classes": ["a"]}, {**good, "calibration": {"temperature": 0}}, []):
        with pytest.raises(ModelError):
            write_metadata(model, bad)
    assert not model.with_suffix(".json").exists()
    write_metadata(model, good)  # a dict as tools/calibrate.py passes it: migrated, versioned
    assert json.loads(model.with_suffix(".json").read_text())["format_version"] == FORMAT_VERSION


def test_a_card_holds_its_typed_fields_and_keeps_the_rest_as_written():
    card = ModelCard(classes=EMOTIONS, preprocess=PreprocessSpec(margin=-0.05), dynamic_batch=True,
                     input={"shape": [15, 1, 48, 48]}, details={"student": "mobilenetv2"})  # fmt: skip
    data = card.to_json()
    assert data["input"] == {"shape": [15, 1, 48, 48], "dynamic_batch": True}
    assert data["student"] == "mobilenetv2" and "name" not in data and "calibration" not in data
    assert model_card.from_json(data) == card


def test_the_contracts_never_import_torch():
    code = (
        "import sys, edge_fer.contracts.model_card as m; m.read(sys.argv[1]); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(SHIPPED)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
