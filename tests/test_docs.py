"""The README documents what the code does: the output schema table matches the schema module."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_schema_table_is_the_schema_module():
    schema_table = runpy.run_path(str(ROOT / "scripts" / "schema_table.py"))["schema_table"]
    assert schema_table() in (ROOT / "README.md").read_text()
