"""Regenerate the small example corpus in ``examples/corpus/``.

The corpus is committed, so nothing here is needed to *use* it. Regenerating it needs the
``espeak-ng`` speech synthesiser on PATH, which is not a Python package::

    apt-get install espeak-ng
    python examples/make_corpus.py            # or: --output-dir /somewhere/else

espeak-ng speaks six short English sentences; each is stored in a different format, sample rate
and channel count, so that one run of the pipeline over the corpus exercises every decoder path:

==========  =======  =========  ========  ===============================================
clip        format   rate       channels  encoder
==========  =======  =========  ========  ===============================================
neutral     wav      16 kHz     1         soundfile, PCM 16-bit (already at model rate)
angry       flac     44.1 kHz   2         soundfile, PCM 16-bit
happy       mp3      44.1 kHz   1         PyAV libmp3lame
sad         opus     48 kHz     1         PyAV libopus, in an Ogg container
surprised   m4a      22.05 kHz  2         PyAV aac (MPEG-4 audio, read by PyAV not soundfile)
fearful     wav      22.05 kHz  1         soundfile, PCM 16-bit (espeak-ng's own rate)
==========  =======  =========  ========  ===============================================

``manifest.jsonl`` lists them with paths relative to itself. One row carries a ``text``
transcript, to show transcripts taken from the manifest instead of from Whisper, and one row
points at ``clips/missing.wav``, which deliberately does not exist, to show an error row.

The emotion in each clip's name is only what the sentence suggests: espeak-ng's prosody is flat,
so this corpus is for plumbing, not for judging a model.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

__all__ = ["CLIPS", "Clip", "main", "make_corpus"]

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parent / "corpus"
MISSING_CLIP = "clips/missing.wav"


@dataclass(frozen=True)
class Clip:
    id: str
    sentence: str
    fmt: str  # wav | flac | mp3 | opus (Ogg Opus) | m4a; also the file extension
    sample_rate_hz: int
    channels: int
    espeak_args: tuple[str, ...] = ()  # speed/pitch tweaks so the clips do not all sound alike
    transcript_in_manifest: bool = False

    @property
    def relative_path(self) -> str:
        return f"clips/{self.id}.{self.fmt}"


CLIPS = (
    Clip("neutral", "The meeting is at three o'clock.", "wav", 16000, 1),
    Clip(
        "angry", "I can't believe you did that again!", "flac", 44100, 2, ("-s", "190", "-p", "35")
    ),
    Clip("happy", "This is the best day of my life.", "mp3", 44100, 1, ("-s", "185", "-p", "75")),
    Clip("sad", "Please leave me alone.", "opus", 48000, 1, ("-s", "120", "-p", "25")),
    Clip("surprised", "Wait, you actually won?", "m4a", 22050, 2, ("-p", "80")),
    Clip(
        "fearful",
        "Did you hear that noise downstairs?",
        "wav",
        22050,
        1,
        ("-s", "200", "-p", "60"),
        transcript_in_manifest=True,
    ),
)

# The PyAV-encoded formats: (container format, codec, bit rate); modest rates keep the repo small.
_PYAV_FORMATS = {
    "mp3": ("mp3", "libmp3lame", 64_000),
    "opus": ("ogg", "libopus", 32_000),
    "m4a": ("ipod", "aac", 64_000),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        print(
            "error: espeak-ng is not installed (or not on PATH); it is only needed to regenerate "
            "the example corpus. Install it with `apt-get install espeak-ng` "
            "(or `brew install espeak-ng`) and run this script again.",
            file=sys.stderr,
        )
        return 2
    make_corpus(args.output_dir, espeak)
    return 0


def make_corpus(output_dir: Path, espeak: str) -> None:
    clips_dir = output_dir / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    for clip in CLIPS:
        speech, rate = synthesise(espeak, clip.sentence, clip.espeak_args)
        samples = _to_layout(speech, rate, clip.sample_rate_hz, clip.channels)
        path = output_dir / clip.relative_path
        path.write_bytes(encode(samples, clip.sample_rate_hz, clip.fmt))
        logger.info(
            "%-28s %5.2f s  %6d Hz  %d ch  %7d bytes",
            clip.relative_path,
            samples.shape[0] / clip.sample_rate_hz,
            clip.sample_rate_hz,
            clip.channels,
            path.stat().st_size,
        )
    manifest = output_dir / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in manifest_rows()))
    logger.info("wrote %s", manifest)


def manifest_rows() -> list[dict[str, str]]:
    rows = []
    for clip in CLIPS:
        row = {"audio": clip.relative_path, "id": clip.id}
        if clip.transcript_in_manifest:
            row["text"] = clip.sentence
        rows.append(row)
    rows.append({"audio": MISSING_CLIP, "id": "missing"})
    return rows


def synthesise(espeak: str, sentence: str, extra_args: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """Speak ``sentence`` with espeak-ng; returns mono float32 samples and their rate."""
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "speech.wav"
        subprocess.run(
            [espeak, "-v", "en-us", *extra_args, "-w", str(wav_path), sentence],
            check=True,
            capture_output=True,
        )
        speech, rate = sf.read(wav_path, dtype="float32")
    return _trim_silence(speech, rate), rate


def encode(samples: np.ndarray, sample_rate_hz: int, fmt: str) -> bytes:
    """Encode [samples, channels] float32 audio as a whole file."""
    if fmt in ("wav", "flac"):
        buffer = io.BytesIO()
        sf.write(buffer, samples, sample_rate_hz, format=fmt.upper(), subtype="PCM_16")
        return buffer.getvalue()
    return _encode_with_pyav(samples, sample_rate_hz, *_PYAV_FORMATS[fmt])


def _encode_with_pyav(
    samples: np.ndarray, sample_rate_hz: int, container_format: str, codec: str, bit_rate: int
) -> bytes:
    channels = samples.shape[1]
    layout = "mono" if channels == 1 else "stereo"
    buffer = io.BytesIO()
    # bitexact keeps encoder version strings and random Ogg serial numbers out of the files, so
    # regenerating the corpus does not churn the repository.
    with av.open(
        buffer, mode="w", format=container_format, options={"fflags": "+bitexact"}
    ) as container:
        stream = container.add_stream(
            codec, rate=sample_rate_hz, layout=layout, options={"flags": "+bitexact"}
        )
        stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples.reshape(1, -1)), format="flt", layout=layout
        )
        frame.sample_rate = sample_rate_hz
        frame.pts = 0
        frame.time_base = Fraction(1, sample_rate_hz)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _to_layout(speech: np.ndarray, rate: int, target_hz: int, channels: int) -> np.ndarray:
    """Resample mono speech and spread it over ``channels`` as [samples, channels] float32."""
    if rate != target_hz:
        speech = soxr.resample(speech, rate, target_hz, quality="HQ")
    speech = np.clip(speech, -1.0, 1.0).astype(np.float32)
    if channels == 1:
        return speech[:, None]
    # Not identical channels, so a decoder that kept only one channel would be noticeable.
    gains = np.linspace(1.0, 0.6, channels, dtype=np.float32)
    return speech[:, None] * gains[None, :]


def _trim_silence(speech: np.ndarray, rate: int, pad_s: float = 0.1) -> np.ndarray:
    """Drop espeak-ng's leading and trailing silence, keeping a short pad either side."""
    loud = np.flatnonzero(np.abs(speech) > 1e-3)
    if loud.size == 0:
        return speech
    pad = int(pad_s * rate)
    return speech[max(0, loud[0] - pad) : loud[-1] + pad]


if __name__ == "__main__":
    sys.exit(main())
