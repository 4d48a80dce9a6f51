"""Writes infra/build/: the cluster configs with the values of infra/settings.env in place.

    python3 infra/configure.py [--settings infra/settings.env] [--out infra/build]

The shipped configs keep their placeholders (the tests check those files); each setting names
the placeholder text it replaces, so a value is set once, here, for every file.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Setting -> the placeholder it replaces in the shipped files. IMAGE first: it contains ACCOUNT
# and REGION's placeholders.
PLACEHOLDERS = {
    "IMAGE": "123456789012.dkr.ecr.us-west-2.amazonaws.com/speech-emotion:ray2.60.0-py311-gpu",
    "MANIFEST": "s3://bucket/manifests/calls/",
    "OUTPUT": "s3://bucket/labels/calls/",
    "AMI": "ami-REPLACE_WITH_DLAMI_BASE_UBUNTU_2204",
    "ACCOUNT": "123456789012",
    "REGION": "us-west-2",
}


def read_settings(path: Path) -> dict[str, str]:
    settings = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or key not in PLACEHOLDERS:
            raise SystemExit(f"{path}:{number}: expected one of {', '.join(PLACEHOLDERS)}=VALUE")
        settings[key] = value.strip()
    return settings


def render(settings: dict[str, str], out: Path) -> list[Path]:
    written = []
    for folder in ("aws", "kuberay"):
        for source in sorted((HERE / folder).glob("*.yaml")):
            text = source.read_text()
            for key, placeholder in PLACEHOLDERS.items():
                text = text.replace(placeholder, settings.get(key, placeholder))
            target = out / folder / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=Path, default=HERE / "settings.env")
    parser.add_argument("--out", type=Path, default=HERE / "build")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    for path in render(read_settings(args.settings), args.out):
        print(path)


if __name__ == "__main__":
    main()
