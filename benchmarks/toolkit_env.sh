#!/usr/bin/env bash
# The authors' toolkit in an environment of its own, for throughput.py's toolkit run (its package
# is also called speech_emotion). Prints the python to pass as --toolkit-python.
#
#   benchmarks/toolkit_env.sh [FOLDER]     default ~/.cache/speech_emotion/toolkit
#
# Clones github.com/NLP-UMUTeam/umuteam-speech-emotion at the commit the figures used (network
# once); TOOLKIT_SRC=PATH uses a copy of it already on disk instead.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-$HOME/.cache/speech_emotion/toolkit}
COMMIT=385902948be3f224841f749f6e581c6a1f04768b
SRC=${TOOLKIT_SRC:-$DIR/src}
if [ ! -e "$SRC/pyproject.toml" ]; then
    git clone --quiet https://github.com/NLP-UMUTeam/umuteam-speech-emotion "$SRC"
    git -C "$SRC" checkout --quiet "$COMMIT"
fi
python3 -m venv "$DIR/venv"
pip=("$DIR/venv/bin/pip" install --quiet --disable-pip-version-check)
"${pip[@]}" "torch==2.13.0" >&2  # the CPU build, as ours
"${pip[@]}" -c "$ROOT/constraints.txt" -e "$SRC" >&2
echo "$DIR/venv/bin/python"
