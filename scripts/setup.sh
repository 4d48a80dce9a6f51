#!/usr/bin/env bash
# Creates .venv and installs the project with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
# torch first and pinned: left to the resolver, it pulls several GB of CUDA packages.
.venv/bin/pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
# Debian's chromium, for the test that opens the run report in a real browser (it skips, saying
# why, where chromium cannot be installed: no apt-get, or not root).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ]; then
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "setup: could not install chromium; the browser test of the report will skip"
fi
