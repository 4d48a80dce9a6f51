#!/usr/bin/env bash
# The headline figures of docs/benchmarks.md, real-size models on CPU: about 65 minutes on two
# quiet cores. Each command rewrites its own block; run it when nothing else uses the machine.
#
#   benchmarks/headline.sh            the full runs
#   benchmarks/headline.sh --quick    reduced runs (about 25 minutes), to check the scripts
#
# TOOLKIT_PYTHON=$(benchmarks/toolkit_env.sh) adds the authors' toolkit itself to the
# emotion-bound runs (its environment: network once, to clone it and install its packages).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHONUNBUFFERED=1
bench() { "$PYTHON" benchmarks/throughput.py "$@"; }
toolkit=(${TOOLKIT_PYTHON:+--toolkit-python "$TOOLKIT_PYTHON"})
"$PYTHON" benchmarks/real_models.py --only base,emotion,bert
# Clips per run: the pipeline's and floors' corpus, the plain loops', the toolkit loop's; long
# recordings' lengths and count; precision's and packing's clips.
if [ "${1:-}" = "--quick" ]; then
    whisper=(30 10 3) emotion=(12 4 2) long=(120 180 2 1) precision=8 packing=16
else
    whisper=(200 60 10) emotion=(40 12 6) long=(240 360 6 2) precision=24 packing=60
fi
bench --corpus speech --whisper base --clips "${whisper[0]}" --naive-clips "${whisper[1]}" \
    --toolkit-clips "${whisper[2]}" --section headline-whisper
bench --corpus speech --emotion full --transcripts --clips "${emotion[0]}" \
    --naive-clips "${emotion[1]}" --toolkit-clips "${emotion[2]}" "${toolkit[@]}" \
    --runs floor,pipeline,naive,naive-tuned,toolkit-style,toolkit --section headline-emotion
bench --corpus speech --emotion full --transcripts --precision int8 --clips "${emotion[0]}" \
    --toolkit-clips "${emotion[2]}" "${toolkit[@]}" --runs floor,pipeline,toolkit-style,toolkit \
    --section headline-emotion-int8
bench --corpus long --min-s "${long[0]}" --max-s "${long[1]}" --whisper base --clips "${long[2]}" \
    --naive-clips "${long[3]}" --section headline-long
"$PYTHON" benchmarks/precision.py --clips "$precision"
"$PYTHON" benchmarks/packing.py --clips "$packing"
