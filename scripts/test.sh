#!/usr/bin/env bash
# Sets up and runs the checks and the whole test suite (CPU only, no network: tiny models, local
# Ray, local S3). Arguments go to pytest: scripts/test.sh -m "not slow" is the quick edit loop.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
paths=(speech_emotion jobs tests benchmarks examples scripts infra)
.venv/bin/ruff check "${paths[@]}"
.venv/bin/ruff format --check "${paths[@]}"
.venv/bin/mypy
exec .venv/bin/pytest "$@"
