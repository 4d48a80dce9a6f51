"""Prints the output schema as the README's Markdown table (tests/test_docs.py keeps them equal)."""

from __future__ import annotations

from speech_emotion.schema import OUTPUT_COLUMN_DOCS, OUTPUT_SCHEMA


def schema_table() -> str:
    lines = ["| column | Arrow type | nullable | meaning |", "|---|---|---|---|"]
    for field in OUTPUT_SCHEMA:
        nullable = "yes" if field.nullable else "no"
        lines.append(
            f"| `{field.name}` | `{field.type}` | {nullable} | {OUTPUT_COLUMN_DOCS[field.name]} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(schema_table())
