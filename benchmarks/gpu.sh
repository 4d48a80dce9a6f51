#!/usr/bin/env bash
# The whole GPU measurement in one command, under 8 minutes on one GPU (benchmarks/gpu.py says
# what it measures): builds the full-size random models on first use (about 3 minutes on a
# fresh machine, cached after), then times Whisper large-v3-turbo, the 580M emotion model and
# the whole job, and writes the figures into docs/benchmarks.md.
#
#   benchmarks/gpu.sh            on a GPU machine with the project installed (scripts/setup.sh)
#   benchmarks/gpu.sh --smoke    the same steps on CPU with 3 clips: run it before the GPU run
#
# PYTHON names the interpreter (default: the project's .venv). The GPU run needs CTranslate2
# built for the machine's CUDA (4.5 and later: CUDA 12, cuDNN 9; asr.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
missing=$("$PYTHON" - <<'PY'
import importlib.util
needed = ["torch", "transformers", "ctranslate2", "faster_whisper", "ray", "av", "soxr",
          "soundfile", "pyarrow", "fsspec", "speech_emotion"]
print(" ".join(name for name in needed if importlib.util.find_spec(name) is None))
PY
)
if [ -n "$missing" ]; then
    echo "gpu.sh: $PYTHON lacks $missing: install the project first (scripts/setup.sh)" >&2
    exit 2
fi
export PYTHONUNBUFFERED=1
exec timeout 480 "$PYTHON" benchmarks/gpu.py "$@"
