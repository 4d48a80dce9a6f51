"""``python -m speech_emotion.tiny_models OUT``: tiny random stand-ins for every model the job uses.

For offline demos and smoke tests only: the layouts are real, the weights are noise, so labels and
transcripts mean nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .emotion import build_tiny_emotion_model, build_tiny_text_encoder
from .whisper import build_tiny_whisper

PROJECTION_DIM = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the models into")
    out = parser.parse_args().out
    build_tiny_whisper(out / "whisper")
    build_tiny_text_encoder(out / "text-encoder", hidden_size=PROJECTION_DIM)
    for mode in ("concat", "audio", "mean", "multihead"):
        build_tiny_emotion_model(out / f"emotion-{mode}", mode=mode, projection_dim=PROJECTION_DIM)
    print(f"tiny stand-in models written to {out}")


if __name__ == "__main__":
    main()
