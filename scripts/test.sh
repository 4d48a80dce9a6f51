#!/usr/bin/env bash
# Sets up and runs the whole test suite (CPU only, no network: tiny models, local Ray, local S3).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check speech_emotion jobs tests benchmarks examples scripts infra
exec .venv/bin/pytest "$@"
