#!/usr/bin/env bash
# Sets up and annotates the example corpus in examples/corpus, writing example-output/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
models=()
if ! .venv/bin/python -c "from speech_emotion.sources import check_model_source as c
c('UMUTeam/w2v-bert-beto-concat-emotion-en')" 2>/dev/null; then
  echo "The Hugging Face hub is not reachable: running with tiny random stand-in models."
  echo "The pipeline is the real one; the labels and transcripts are noise."
  HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error \
    .venv/bin/python -m speech_emotion.tiny_models .models/tiny >/dev/null
  models=(--emotion-model .models/tiny/emotion-concat --text-encoder .models/tiny/text-encoder
          --whisper-model .models/tiny/whisper)
fi
rm -rf example-output
.venv/bin/speech-emotion annotate examples/corpus/manifest.jsonl example-output \
  --num-gpus-per-worker 0 "${models[@]}"
.venv/bin/python - <<'PY'
import pyarrow.dataset as ds

rows = ds.dataset("example-output").to_table(
    columns=["id", "status", "emotion", "emotion_score", "transcript", "error"]).to_pylist()
for row in sorted(rows, key=lambda r: r["id"]):
    detail = (f"{row['emotion']} ({row['emotion_score']:.2f})  {row['transcript']!r}"
              if row["status"] == "ok" else row["error"])
    print(f"{row['id']:<12} {row['status']:<6} {detail}")
PY
echo "The run's report, to open in a browser: $(ls example-output/_runs/*.html)"
