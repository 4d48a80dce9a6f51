"""The README documents what the code does: the output schema table matches the schema module,
and the options table matches the command line, option by option and default by default."""

from __future__ import annotations

import argparse
import re
import runpy
from pathlib import Path

import pytest

from speech_emotion.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_readme_schema_table_is_the_schema_module():
    schema_table = runpy.run_path(str(ROOT / "scripts" / "schema_table.py"))["schema_table"]
    assert schema_table() in README


def readme_options() -> dict[str, str]:
    """Option -> its default as the README's options table writes it."""
    table = README.split("| option | default | meaning |\n|---|---|---|\n", 1)[1]
    options: dict[str, str] = {}
    for line in table.split("\n\n", 1)[0].splitlines():
        names_cell, default_cell = line.strip("|").split(" | ")[:2]
        names = re.findall(r"`(--[a-z0-9-]+)`", names_cell)
        defaults = re.split(r" / |, ", default_cell)
        if len(defaults) != len(names):
            defaults = [default_cell] * len(names)
        options.update(zip(names, defaults, strict=True))
    return options


def annotate_options() -> dict[str, object]:
    [commands] = [a for a in build_parser()._actions if a.dest == "command"]
    annotate = commands.choices["annotate"]
    return {
        name: action.default
        for action in annotate._actions
        for name in action.option_strings
        if name.startswith("--") and name != "--help"
    }


def test_the_readme_lists_every_option_of_annotate_and_no_other():
    assert sorted(readme_options()) == sorted(annotate_options())


def shown(default: object) -> str:
    return f"{default:g}" if isinstance(default, float) else str(default)


@pytest.mark.parametrize(
    ("option", "default"),
    [
        (name, default)
        for name, default in annotate_options().items()
        if default not in (None, argparse.SUPPRESS)
    ],
)
def test_the_readme_gives_each_options_default_as_the_command_line_has_it(option, default):
    documented = readme_options().get(option, "")
    assert re.search(rf"(^|[`\s(]){re.escape(shown(default))}($|[`\s)])", documented), (
        f"{option}: README says {documented!r}, the command line defaults to {default!r}"
    )


def sql_statements() -> list[str]:
    """Every statement of the README's SQL blocks, in order."""
    blocks = re.findall(r"```sql\n(.*?)```", README, re.S)
    statements = []
    for block in blocks:
        code = "\n".join(line for line in block.splitlines() if not line.startswith("--"))
        statements += [s.strip() for s in code.split(";") if s.strip()]
    return statements


@pytest.mark.slow  # one run of the example corpus
def test_every_sql_statement_of_the_readme_runs_on_the_examples_output(
    tmp_path, tiny_models, ray_cluster
):
    import duckdb

    from speech_emotion.config import JobConfig, ManifestConfig, OutputConfig
    from speech_emotion.pipeline import run

    from .factories import tiny_model_config

    out = tmp_path / "labels"
    manifest = ROOT / "examples" / "corpus" / "manifest.jsonl"
    run(
        JobConfig(
            ManifestConfig(str(manifest)),
            OutputConfig(str(out)),
            models=tiny_model_config(tiny_models),
        )
    )
    db = duckdb.connect()
    ran = 0
    for statement in sql_statements():
        if statement.startswith(("INSTALL", "LOAD", "CREATE SECRET")):
            continue  # S3 access: DuckDB's httpfs downloads at first use, offline here
        sql = statement.replace("s3://bucket/labels/", "labels/").replace("'labels/", f"'{out}/")
        if sql.startswith("CREATE VIEW"):
            db.sql("DROP VIEW IF EXISTS labels")  # the S3 block makes the same view again
        result = db.sql(sql)
        if result is not None:
            result.fetchall()
        ran += 1
    assert ran >= 8
    current = dict(db.sql("SELECT status, count(*) FROM labels GROUP BY status").fetchall())
    assert current == {"ok": 6, "error": 1}
