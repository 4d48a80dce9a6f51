"""Prints the largest modules and classes of a package, by lines: where code piles up.

.venv/bin/python scripts/sizes.py speech_emotion [--top 10]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def sizes(package: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    modules, classes = [], []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        modules.append((len(text.splitlines()), str(path)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                classes.append((node.end_lineno - node.lineno + 1, f"{path}:{node.name}"))
    return sorted(modules, reverse=True), sorted(classes, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    modules, classes = sizes(args.package)
    for title, rows in (("modules", modules), ("classes", classes)):
        print(f"largest {title} (lines):")
        for lines, name in rows[: args.top]:
            print(f"  {lines:5d}  {name}")


if __name__ == "__main__":
    main()
