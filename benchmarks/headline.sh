#!/usr/bin/env bash
# The headline figures of docs/benchmarks.md, real-size models on CPU: about 1.5 hours on two
# quiet cores. Each command rewrites its own block; run it when nothing else uses the machine.
#
#   benchmarks/headline.sh            the full runs
#   benchmarks/headline.sh --quick    reduced runs (about 25 minutes), to check the scripts
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHONUNBUFFERED=1
bench() { "$PYTHON" benchmarks/throughput.py "$@"; }
"$PYTHON" benchmarks/real_models.py --only base,emotion,bert
if [ "${1:-}" = "--quick" ]; then
    bench --corpus speech --whisper base --clips 30 --naive-clips 10 --toolkit-clips 3 \
        --section headline-whisper
    bench --corpus speech --emotion full --transcripts --clips 12 --naive-clips 4 \
        --toolkit-clips 2 --section headline-emotion
    bench --corpus speech --emotion full --transcripts --precision int8 --clips 12 \
        --toolkit-clips 2 --runs floor,pipeline,toolkit --section headline-emotion-int8
    bench --corpus long --min-s 120 --max-s 180 --whisper base --clips 2 --naive-clips 1 \
        --section headline-long
    "$PYTHON" benchmarks/precision.py --clips 8
    "$PYTHON" benchmarks/packing.py --clips 16
else
    bench --corpus speech --whisper base --clips 200 --naive-clips 60 --toolkit-clips 10 \
        --section headline-whisper
    bench --corpus speech --emotion full --transcripts --clips 40 --naive-clips 12 \
        --toolkit-clips 6 --section headline-emotion
    bench --corpus speech --emotion full --transcripts --precision int8 --clips 40 \
        --toolkit-clips 6 --runs floor,pipeline,toolkit --section headline-emotion-int8
    bench --corpus long --min-s 240 --max-s 360 --whisper base --clips 6 --naive-clips 2 \
        --section headline-long
    "$PYTHON" benchmarks/precision.py --clips 24
    "$PYTHON" benchmarks/packing.py --clips 60
fi
