"""A plan folder names the config it was planned from, and a changed config is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seedopt.errors import SeedoptError
from seedopt.plan_dir import PlanDir, config_record

CONFIG = Path(__file__).parents[1] / "configs" / "cases" / "vertebral.yaml"


def _plan_folder(tmp_path: Path, record: dict | None) -> Path:
    folder = tmp_path / "plan"
    folder.mkdir()
    doc = {"schema": "seedopt-plan-1", "needles": []}
    if record is not None:
        doc["config"] = record
    (folder / "plan.json").write_text(json.dumps(doc))
    return folder


def test_the_recorded_config_is_loaded_when_unchanged(tmp_path):
    cfg = tmp_path / "case.yaml"
    cfg.write_bytes(CONFIG.read_bytes())
    planned = PlanDir.load(_plan_folder(tmp_path, config_record(cfg)))
    assert planned.config == cfg.resolve()
    assert planned.spec.name == "vertebral"


def test_a_config_changed_since_the_plan_is_refused_unless_named(tmp_path):
    cfg = tmp_path / "case.yaml"
    cfg.write_bytes(CONFIG.read_bytes())
    folder = _plan_folder(tmp_path, config_record(cfg))
    cfg.write_bytes(CONFIG.read_bytes() + b"\n# edited\n")
    with pytest.raises(SeedoptError, match="changed since the plan was made"):
        PlanDir.load(folder)
    assert PlanDir.load(folder, cfg).config == cfg


def test_a_plan_without_a_record_or_whose_config_is_gone_asks_for_one(tmp_path):
    with pytest.raises(SeedoptError, match="records no config"):
        PlanDir.load(_plan_folder(tmp_path, None))
    gone = {"path": str(tmp_path / "nowhere.yaml"), "sha256": "0" * 64}
    other = tmp_path / "b"
    other.mkdir()
    with pytest.raises(SeedoptError, match="is gone"):
        PlanDir.load(_plan_folder(other, gone))


@pytest.mark.parametrize(
    ("text", "match"),
    [("{", "not valid JSON"), ("[]", "no needles list"), ('{"needles": 3}', "no needles list")],
)
def test_a_malformed_plan_json_is_one_error_naming_it(tmp_path, text, match):
    (tmp_path / "plan.json").write_text(text)
    with pytest.raises(SeedoptError, match=match):
        PlanDir.load(tmp_path, CONFIG)
