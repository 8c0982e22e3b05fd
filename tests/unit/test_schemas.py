"""Generated files that are committed: the JSON Schemas and docs/settings.md."""

from __future__ import annotations

import json

from agentic.schemas_export import EXPORTED, SCHEMA_DIR, drifted_files, main, write_schemas
from agentic.settings import settings_markdown
from tests.factories import REPO


def test_the_committed_json_schemas_match_the_models():
    drifted = drifted_files()

    assert drifted == [], (
        f"out of date: {[p.name for p in drifted]}; run `python -m agentic.schemas_export`"
    )


def test_every_contract_has_a_schema_file_that_validates_its_own_name():
    names = sorted(p.name for p in SCHEMA_DIR.glob("*.json"))

    assert names == sorted(f"{m.__name__}.json" for m in EXPORTED)
    spec = json.loads((SCHEMA_DIR / "StepSpec.json").read_text())
    assert spec["title"] == "StepSpec"
    assert "run_id" in spec["required"]
    assert spec["additionalProperties"] is False


def test_check_mode_lists_drifted_files_and_exits_1(tmp_path, capsys):
    write_schemas(tmp_path)
    assert main(["--check", "--dir", str(tmp_path)]) == 0

    (tmp_path / "RunEvent.json").write_text("{}\n")
    (tmp_path / "StepResult.json").unlink()

    assert main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "RunEvent.json: out of date" in err
    assert "StepResult.json: out of date" in err
    assert "StepSpec.json" not in err


def test_schema_files_are_sorted_indented_and_end_with_a_newline(tmp_path):
    [path, *_] = write_schemas(tmp_path)
    text = path.read_text()

    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_the_settings_page_is_up_to_date():
    committed = (REPO / "docs" / "settings.md").read_text()

    assert committed == settings_markdown(), (
        "docs/settings.md is stale: run `python -m agentic.settings > docs/settings.md`"
    )
