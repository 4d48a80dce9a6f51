"""``--precision int8`` against fp32 on CPU: speed, and how far the probabilities move.

    .venv/bin/python benchmarks/precision.py [--clips 24] [--threads 1] [--no-write]

The full-size concat model (real_models.py: w2v-bert-2.0 + concat head and bert-base, random
weights at the published sizes), once in fp32 and once with every Linear layer dynamically
quantised to int8 (torch's ``quantize_dynamic``, as ``--precision int8`` loads it), on the same
espeak-ng speech clips of 1-20 s with their transcripts, features computed beforehand. Reports
audio-seconds per second of each, the share of clips whose top label agrees, and the largest and
mean absolute difference of a label's probability. Writes into docs/benchmarks.md between the
``precision`` markers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_models  # noqa: E402
from throughput import cpu_name, make_speech_corpus, write_results  # noqa: E402


def load_clips(count: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    from speech_emotion.audio import decode_audio

    with tempfile.TemporaryDirectory(prefix="se-precision-") as folder:
        _, texts = make_speech_corpus(Path(folder), count, 1.0, 20.0, seed)
        files = sorted((Path(folder) / "clips").iterdir())
        waves = [decode_audio(f.read_bytes()).waveform for f in files]
    return waves, texts


def classify(int8: bool, waves, texts, args) -> tuple[np.ndarray, float]:
    """Probabilities and seconds, features computed outside the timed part."""
    from speech_emotion.emotion import EmotionClassifier
    from speech_emotion.features import audio_features

    root = real_models.models_dir(args.models_dir)
    model = EmotionClassifier(
        real_models.emotion_model(root),
        mode="concat",
        text_encoder_dir=real_models.text_encoder(root),
        int8=int8,
        max_batch_clips=1,  # the job's CPU setting (models.py)
    )
    features = [audio_features(model.feature_spec, wave) for wave in waves]
    model.classify(None, texts[:1], features=features[:1])  # warm-up
    started = time.perf_counter()
    probabilities = model.classify(None, texts, features=features)
    return probabilities, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-dir", help="real_models.py's cache")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    waves, texts = load_clips(args.clips, args.seed)
    audio_s = sum(len(w) for w in waves) / 16000
    fp32, fp32_s = classify(False, waves, texts, args)
    int8, int8_s = classify(True, waves, texts, args)
    agree = int((fp32.argmax(axis=1) == int8.argmax(axis=1)).sum())
    diff = np.abs(fp32.astype(np.float64) - int8)
    command = "python benchmarks/precision.py " + " ".join(sys.argv[1:])
    markdown = "\n".join(
        [
            f"Latest run: `{command}` on {time.strftime('%Y-%m-%d')}, {cpu_name()}, "
            f"{os.cpu_count()} CPUs, torch on {args.threads} thread(s): random w2v-bert-2.0 + "
            f"concat head and bert-base at the published sizes; {len(waves)} espeak-ng clips "
            f"of 1-20 s ({audio_s / 60:.1f} min) with their transcripts, features computed "
            "beforehand, one clip a forward pass as the job runs on CPU.",
            "",
            "| precision | seconds | audio-s/s | top label as fp32 | largest probability "
            "difference | mean difference |",
            "|---|---|---|---|---|---|",
            f"| fp32 (default) | {fp32_s:.1f} | {audio_s / fp32_s:.2f} | – | – | – |",
            f"| int8 | {int8_s:.1f} | {audio_s / int8_s:.2f} | {agree}/{len(waves)} "
            f"| {diff.max():.4f} | {diff.mean():.5f} |",
            "",
            f"int8 / fp32 speed: **{fp32_s / int8_s:.2f}**. The probabilities of fp32 itself "
            f"range over {fp32.max(axis=1).min():.3f}-{fp32.max(axis=1).max():.3f} for the top "
            "label here.",
        ]
    )
    print(markdown)
    if not args.no_write:
        write_results(markdown, "precision")


if __name__ == "__main__":
    main()
