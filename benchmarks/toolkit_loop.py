"""The authors' own ``predict_emotion`` loop, timed: run by the toolkit's Python, not ours.

    /path/to/toolkit/venv/bin/python benchmarks/toolkit_loop.py --model FOLDER --bert FOLDER \\
        --files files.json

``files.json`` lists ``[audio path, transcript]`` pairs of local files. The toolkit
(github.com/NLP-UMUTeam/umuteam-speech-emotion, installed in its own environment: its package is
also called ``speech_emotion``) is called exactly as its README shows, one file per call, mode
concat, English, on CPU, with every library's default threads. Two things are changed so that it
runs offline, neither on its inference path: its BERT id (``google-bert/bert-base-uncased``) points
at a local folder of that shape, and ``evaluate``, which its model modules import for training
metrics and which fetches metric scripts from the hub at import, is replaced by an empty module.

Prints one JSON line: seconds for the whole loop (its first call loads and caches BERT, every
call loads the emotion model, as the toolkit does) and the number of files.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import types
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="emotion model folder (UMUTeam layout)")
    parser.add_argument("--bert", required=True, help="bert-base folder standing in for the hub's")
    parser.add_argument("--files", required=True, help="JSON list of [audio path, transcript]")
    args = parser.parse_args()
    files = json.loads(Path(args.files).read_text())

    sys.modules["evaluate"] = types.SimpleNamespace(load=lambda *_, **__: None)  # type: ignore[assignment]
    # The toolkit's package, not ours: imported by name so that no tool mistakes it for ours.
    # Its README's script template imports from .inference (its __init__.py is empty).
    importlib.import_module("speech_emotion.config").BERT_MODELS["en"] = args.bert
    predict_emotion = importlib.import_module("speech_emotion.inference").predict_emotion
    started = time.perf_counter()
    for path, text in files:
        predict_emotion(
            audio_path=path, text=text or None, model_id=args.model, mode="concat", language="en"
        )
    print(json.dumps({"seconds": time.perf_counter() - started, "files": len(files)}))


if __name__ == "__main__":
    main()
