"""Throughput harness: how close the pipeline gets to the models' own cost, in one run.

    .venv/bin/python benchmarks/throughput.py --clips 300
    .venv/bin/python benchmarks/throughput.py --corpus speech --whisper base --clips 60
    .venv/bin/python benchmarks/throughput.py --corpus speech --emotion full --transcripts

On one corpus (``--corpus``: tones and noise; espeak-ng speech clips of the test sentences; long
recordings of them) and the same models (tiny random ones, or the real-size ones of
``real_models.py``: ``--whisper base|turbo``, ``--emotion full``), measures audio-seconds per
second for:

- floor: the model stage alone on in-memory batches the decode stage made beforehand (audio
  decoded, recordings cut into segments, Whisper's windows planned, both models' features
  computed): the best the job could do here, with the same windows as the pipeline;
- floor-audio: the same from decoded audio, the models' features computed in the loop (the
  split of work the toolkit has);
- pipeline: the full job, manifest in a local S3 endpoint (moto, loopback) to Parquet out in S3;
- naive: one file at a time from S3, models kept loaded (what a toolkit user would write);
- naive-tuned: the same loop with every library on one thread, as nobody does by default;
- toolkit-style: one file at a time, models reloaded per call, as the toolkit does (small N);
- toolkit: the authors' own ``predict_emotion`` loop (``benchmarks/toolkit_loop.py``), in the
  toolkit's environment (``--toolkit-python``, made by ``benchmarks/toolkit_env.sh``);

plus peak resident memory of the driver and of each kind of Ray worker, sampled from /proc. Prints
the figures and the ratios pipeline/floor and pipeline/naive, and writes them into
docs/benchmarks.md between the result markers. Without model options it builds tiny random models
(CPU scale); pass real model folders or hub ids and --num-gpus-per-worker 1 on a GPU machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from speech_emotion.config import (  # noqa: E402
    DecodeConfig,
    JobConfig,
    ManifestConfig,
    ModelConfig,
    OutputConfig,
    ResourceConfig,
)

RESULTS = ROOT / "docs" / "benchmarks.md"
# The toolkit's commit benchmarks/toolkit_env.sh installs: its "toolkit" run.
TOOLKIT = "NLP-UMUTeam/umuteam-speech-emotion@3859029"
SENTENCE_PAUSES_S = (0.2, 0.8)  # between sentences inside a short clip
TURN_PAUSES_S = (0.3, 1.6)  # between utterances in a long recording, as benchmarks/segments.py


# -- corpus and models -----------------------------------------------------------------------


def make_corpus(folder: Path, clips: int, min_s: float, max_s: float, seed: int) -> list[float]:
    """Writes clips and a manifest under ``folder``; returns each clip's seconds, in order."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    rows, seconds_each = [], []
    (folder / "clips").mkdir(parents=True)
    for i in range(clips):
        seconds = float(rng.uniform(min_s, max_s))
        rate = int(rng.choice([16000, 22050, 44100]))
        t = np.arange(int(seconds * rate)) / rate
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 800) * t)
        signal = (tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
        name = f"clips/{i:06d}.{'flac' if i % 2 else 'wav'}"
        sf.write(folder / name, signal, rate)
        rows.append({"id": f"{i:06d}", "audio": name})
        seconds_each.append(seconds)
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return seconds_each


def make_speech_corpus(
    folder: Path, clips: int, min_s: float, max_s: float, seed: int, *, long: bool = False
) -> tuple[list[float], list[str]]:
    """espeak-ng sentences (tests/data/speech) said one after another, in WAV and FLAC at 16,
    22.05 and 44.1 kHz; returns each file's seconds and what it says.

    Short clips are cut to a length drawn in [min_s, max_s] (the last sentence may be cut
    short); long recordings (``long``) hold utterances with conversation-like pauses between
    them, ``min_s`` to ``max_s`` long, which the job cuts into speech segments."""
    import soundfile as sf
    import soxr

    from tests.factories import SENTENCES, speech

    rng = np.random.default_rng(seed)
    names = sorted(SENTENCES)
    rows, seconds_each, texts = [], [], []
    (folder / "clips").mkdir(parents=True)
    pauses = TURN_PAUSES_S if long else SENTENCE_PAUSES_S
    for i in range(clips):
        target = float(rng.uniform(min_s, max_s))
        said: list[str] = []
        while len(said) * 2.3 < target:  # the shortest sentence is 2.3 s
            said.append(names[int(rng.integers(len(names)))])
        gaps = [float(g) for g in rng.uniform(*pauses, size=len(said))]
        samples = speech(said, gaps, lead_s=float(rng.uniform(*pauses))).samples
        samples = samples[: int(target * 16000)]
        rate = int(rng.choice([16000, 22050, 44100]))
        if rate != 16000:
            samples = soxr.resample(samples, 16000, rate).astype(np.float32)
        name = f"clips/{i:06d}.{'flac' if i % 2 else 'wav'}"
        sf.write(folder / name, samples, rate)
        text = " ".join(SENTENCES[n] for n in said)
        rows.append({"id": f"{i:06d}", "audio": name, "text": text})
        seconds_each.append(len(samples) / rate)
        texts.append(text)
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return seconds_each, texts


def tiny_models(folder: Path, mode: str) -> dict[str, str]:
    from speech_emotion.tiny_models import (
        build_tiny_emotion_model,
        build_tiny_text_encoder,
        build_tiny_whisper,
    )

    return {
        "emotion_model": str(
            build_tiny_emotion_model(folder / "emotion", mode=mode, projection_dim=16)
        ),
        "text_encoder": str(build_tiny_text_encoder(folder / "bert", hidden_size=16)),
        "whisper_model": str(build_tiny_whisper(folder / "whisper")),
    }


def start_s3() -> subprocess.Popen:
    """A moto S3 server on loopback, configured through the AWS environment.

    It runs in its own process, so that the memory it holds (every object) and the CPU it spends
    serving reads are measured apart from the driver's.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    server = subprocess.Popen(
        # Lowest priority: it stands for a remote service. Ray starts its workers at nice 15, so
        # at the default 0 the server outranked the model worker whenever both wanted a core.
        ["nice", "-n", "19", sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # one log line per request otherwise
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        server.kill()
        raise RuntimeError(f"moto S3 server did not start on {endpoint}")
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    return server


def prepare(work: Path, args: argparse.Namespace, tiny: bool) -> tuple[list[float], dict[str, str]]:
    """Corpus made and uploaded, tiny models built; returns each clip's seconds and model folders.

    Runs in a child process: uploading leaves about a gigabyte per thousand clips in s3fs's
    process, which would otherwise be counted as the driver's memory.
    """
    import fsspec

    corpus = work / "corpus"
    if args.corpus == "tones":
        seconds = make_corpus(corpus, args.clips, args.min_s, args.max_s, args.seed)
    else:
        seconds, _ = make_speech_corpus(
            corpus, args.clips, args.min_s, args.max_s, args.seed, long=args.corpus == "long"
        )
        if not args.transcripts:  # every clip goes through Whisper
            manifest = corpus / "manifest.jsonl"
            rows = [json.loads(line) for line in manifest.read_text().splitlines()]
            manifest.write_text("".join(json.dumps({**r, "text": None}) + "\n" for r in rows))
    fs = fsspec.filesystem("s3")
    fs.mkdir("bench")
    fs.put(str(corpus) + "/", "bench/corpus/", recursive=True)
    return seconds, tiny_models(work / "models", args.mode) if tiny else {}


def real_models(args: argparse.Namespace) -> dict[str, str]:
    """The real-size models asked for (built once, then cached: real_models.py)."""
    import real_models as real

    root = real.models_dir(args.models_dir)
    chosen = {}
    if args.whisper == "base":
        chosen["whisper_model"] = str(real.whisper_base(root))
    elif args.whisper == "turbo":
        chosen["whisper_model"] = str(real.whisper_turbo(root))
    if args.emotion == "full":
        chosen["emotion_model"] = str(real.emotion_model(root, args.mode))
        chosen["text_encoder"] = str(real.text_encoder(root))
    return chosen


def manifest_rows(manifest: str) -> list[tuple[str, str]]:
    """(audio URI, text or "") for each row, read the way the job reads the manifest."""
    from speech_emotion.manifest import read_manifest

    clips = read_manifest(ManifestConfig(uri=manifest))
    audio, text = clips["audio"].to_pylist(), clips["text"].to_pylist()
    return [(a, t or "") for a, t in zip(audio, text, strict=True)]


# -- memory and CPU by process -----------------------------------------------------------------


class ProcessSampler:
    """Samples memory and CPU time of the driver, the S3 server and Ray's processes, by kind.

    Memory is reported two ways: resident (VmRSS) and private (RssAnon). A Ray worker's RSS also
    counts the pages of the shared object store it has mapped (RssShmem), which Ray bounds on its
    own; private memory is what grows if a process leaks. Besides CPU time, the time its threads
    were ready to run but waited for a core (the kernel's schedstat): where the model worker
    waits, the machine has more work than cores.
    """

    # Most specific first: every worker's title starts with "ray::".
    _KINDS = [
        re.compile(r"MapBatches\(\w+\)"),
        re.compile(r"(?<=ray::)Write"),
        re.compile(r"raylet|gcs_server"),
        re.compile(r"ray::"),
    ]

    def __init__(self, s3_pid: int | None, interval_s: float = 0.2) -> None:
        self.s3_pid = s3_pid
        self.rss: dict[str, float] = defaultdict(float)
        self.private: dict[str, float] = defaultdict(float)
        self._cpu_by_pid: dict[int, tuple[str, float, float]] = {}
        self._not_ours: set[int] = set()  # kernel threads and other programs: never read again
        self.own_cpu_s = 0.0  # the sampling thread's, which the driver's figure leaves out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_seconds(self) -> dict[str, tuple[float, float]]:
        """CPU time (user + system) each kind used while sampled, and the time its threads
        waited for a core, each summed over its processes."""
        totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for kind, cpu, waited in self._cpu_by_pid.values():
            totals[kind][0] += cpu
            totals[kind][1] += waited
        if "driver" in totals:
            totals["driver"][0] -= self.own_cpu_s
        return {kind: (cpu, waited) for kind, (cpu, waited) in totals.items()}

    def _run(self, interval_s: float) -> None:
        # CPU and waiting before sampling began (the driver, the S3 server).
        baseline: dict[int, tuple[float, float]] = {}
        passes = 0
        while not self._stop.wait(interval_s):
            passes += 1
            waits = passes % 5 == 1  # every second: the wait only grows, its last value counts
            for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
                kind = self._kind(pid)
                if not kind:
                    continue
                known = pid in self._cpu_by_pid
                rss, private, cpu, waited = _usage(pid, waits or not known)
                if rss == 0.0:
                    continue
                earlier = kind in ("driver", "S3 server")
                cpu0, waited0 = baseline.setdefault(
                    pid, (cpu, waited or 0.0) if earlier else (0.0, 0.0)
                )
                self.rss[kind] = max(self.rss[kind], rss)
                self.private[kind] = max(self.private[kind], private)
                waited_s = self._cpu_by_pid[pid][2] if waited is None else waited - waited0
                self._cpu_by_pid[pid] = (kind, cpu - cpu0, waited_s)
            self.own_cpu_s = time.thread_time()

    def _kind(self, pid: int) -> str | None:
        if pid == os.getpid():
            return "driver"
        if pid == self.s3_pid:
            return "S3 server"
        if pid in self._not_ours:
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        # A process forked by Python or Ray may still show its parent's command line: read it
        # again next time. Anything else never becomes one of ours.
        if "python" not in cmdline and "ray" not in cmdline:
            self._not_ours.add(pid)
            return None
        for pattern in self._KINDS:
            match = pattern.search(cmdline)
            if match:
                return "other Ray workers" if match.group() == "ray::" else match.group()
        return None


_TICKS = os.sysconf("SC_CLK_TCK")


def _usage(pid: int, waits: bool = True) -> tuple[float, float, float, float | None]:
    """(resident MB, private MB, CPU seconds, seconds waiting for a core) of a process; zeros
    if it is gone. The wait is read thread by thread, the dearest part: None without ``waits``."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f)
        with open(f"/proc/{pid}/stat") as f:
            # Fields after the parenthesised name; utime and stime are the 14th and 15th overall.
            stat = f.read().rsplit(")", 1)[1].split()
        waited_ns = 0
        for thread in os.listdir(f"/proc/{pid}/task") if waits else ():
            # Time on a core, time runnable but waiting in the run queue, slices (ns).
            with open(f"/proc/{pid}/task/{thread}/schedstat") as f:
                waited_ns += int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0, 0.0, 0.0
    mb = {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "RssAnon")}
    cpu = (int(stat[11]) + int(stat[12])) / _TICKS
    return mb["VmRSS"], mb["RssAnon"], cpu, waited_ns / 1e9 if waits else None


# -- the measurements -------------------------------------------------------------------------


@dataclass(frozen=True)
class Floor:
    """What the model stage did alone."""

    seconds: float
    windows: int
    """Windows Whisper's encoder ran on (packed ones, and clips heard again alone, included)."""
    unpacked_windows: int
    """The windows it would have heard with ``--whisper-packing off``."""
    whisper_s: float
    """Of ``seconds``, in Whisper's calls."""
    emotion_s: float
    """Of ``seconds``, in the emotion model's calls."""


def run_floor(config: JobConfig, rows: list[tuple[str, str]]) -> Floor:
    """The model stage alone, on what the decode stage made of every recording beforehand
    (decoded, segmented, windows planned, both models' features computed), in batches of the
    job's batch size: the same stages, windows and glue as the pipeline, without Ray, S3 or a
    second stage beside it.

    Decoding runs batch by batch just before the model stage's calls, outside the timed part,
    so that memory does not grow with the corpus."""
    import pyarrow as pa

    from speech_emotion.manifest import read_manifest
    from speech_emotion.pipeline import (
        decode_stage_kwargs,
        model_stage_kwargs,
        with_default_prefixes,
    )
    from speech_emotion.plan import plan_models
    from speech_emotion.stages import DecodeStage, ModelStage

    config = with_default_prefixes(config)
    recordings = read_manifest(config.manifest).slice(0, len(rows))
    plan = plan_models(config, recordings, "floor")
    decode = DecodeStage(**decode_stage_kwargs(config, plan))
    models = ModelStage(**model_stage_kwargs(config, plan))
    res = config.resources
    unpacked = DecodeStage(**decode_stage_kwargs(config, plan), packing=False)
    timed, unpacked_windows, pending = 0.0, 0, []
    for start in range(0, recordings.num_rows, res.decode_batch_size):
        some = recordings.slice(start, res.decode_batch_size)
        pending += decode(some)
        unpacked_windows += sum(heard_windows(table) for table in unpacked(some))
        table = pa.concat_tables(pending)
        last = start + res.decode_batch_size >= recordings.num_rows
        usable = table.num_rows if last else table.num_rows - table.num_rows % res.batch_size
        for at in range(0, usable, res.batch_size):
            batch = table.slice(at, res.batch_size)
            started = time.perf_counter()
            models(batch)
            timed += time.perf_counter() - started
        pending = [table.slice(usable)]
    spent = models.annotator.take_figures()
    return Floor(
        timed,
        int(spent.get("whisper_windows", 0)),
        unpacked_windows,
        spent.get("whisper_s", 0.0),
        spent.get("emotion_s", 0.0),
    )


def heard_windows(decoded) -> int:
    """Rows of a decoded batch Whisper hears: those with a log-mel, or samples (past 30 s)."""
    import pyarrow.compute as pc

    with_mel = pc.is_valid(decoded["whisper_feature_frames"])
    with_samples = pc.greater(pc.list_value_length(decoded["waveform"]), 0)
    return int(pc.sum(pc.or_(with_mel, with_samples)).as_py() or 0)


def run_floor_audio(config: JobConfig, rows: list[tuple[str, str]]) -> float:
    """Models only, batches as the model stage makes them, every clip decoded beforehand, the
    loop computing both models' features itself, as the toolkit does. Short clips only: each is
    one window of its own (no packing).

    Each batch is read and decoded just before its model calls, outside the timed part, so that
    memory does not grow with the corpus; the figure is the sum of the annotator's time."""
    import torch

    from speech_emotion.annotator import Annotator, ClipInput
    from speech_emotion.audio import decode_audio
    from speech_emotion.fetch import read_bytes
    from speech_emotion.models import load_classifier, load_transcriber, resolve_device

    device = resolve_device(config.models)
    batch = config.resources.batch_size
    threads = worker_threads(config)
    torch.set_num_threads(threads)
    classifier, _, _ = load_classifier(config.models, device, batch_size=batch)
    transcriber = None
    if config.models.needs_text:
        transcriber, _ = load_transcriber(
            config.models, device, batch_size=batch, cpu_threads=threads, windows_at_once=True
        )
    annotator = Annotator(classifier, transcriber, language=config.models.job_language)
    timed = 0.0
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        clips = []
        for uri, text in chunk:
            wave = decode_audio(read_bytes(uri)).waveform
            clips.append(ClipInput(wave, text=text or None))
        started = time.perf_counter()
        annotator.annotate(clips)
        timed += time.perf_counter() - started
    return timed


def worker_threads(config: JobConfig) -> int:
    """The model actor's torch and CTranslate2 threads on this machine (pipeline.py)."""
    from speech_emotion.pipeline import model_threads

    return model_threads(config.resources, len(os.sched_getaffinity(0)))


def reserved_cpus(config: JobConfig) -> int:
    """The CPUs Ray reserves for a model actor, and so its ``OMP_NUM_THREADS``."""
    return max(1, int(config.resources.cpus_per_gpu_worker or 1))


def in_a_process(threads: int | None, measure, *args, **kwargs):
    """``measure(*args, **kwargs)`` in a fresh process whose BLAS has ``threads`` threads (None:
    its default, one per core), started with the model actors' environment (threads.py).

    Ray sets ``OMP_NUM_THREADS`` to an actor's CPUs, and numpy's OpenBLAS reads it at import.
    Without it, OpenBLAS (Whisper's log-mel) runs a thread on every core: measured, the floor
    then used 7.0 CPU-s in 3.6 s of wall time, a second core the model worker does not have,
    and lost half its speed whenever anything else ran on that core.
    """
    from speech_emotion.threads import SLEEPING_OPENMP

    env: dict[str, str | None] = {
        **SLEEPING_OPENMP,
        "OMP_NUM_THREADS": None if threads is None else str(threads),
    }
    before = {name: os.environ.get(name) for name in env}
    _set_environment(env)  # read when the child imports numpy, torch, CTranslate2
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
            return child.submit(measure, *args, **kwargs).result()
    finally:
        _set_environment(before)


def _set_environment(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def run_pipeline(config: JobConfig) -> float:
    from speech_emotion.pipeline import run

    started = time.perf_counter()
    summary = run(config)
    print(f"  pipeline: {summary}")
    return time.perf_counter() - started


def run_one_at_a_time(
    config: JobConfig, rows: list[tuple[str, str]], reload: bool, long: bool = False
) -> float:
    """The loop a toolkit user writes: read, decode, transcribe, classify, file by file."""
    from speech_emotion.predict import Predictor

    predictor = Predictor(config.models)
    if not reload:  # load outside the timed loop
        predictor.classifier  # noqa: B018
        if config.models.needs_text:
            predictor.transcriber  # noqa: B018
    started = time.perf_counter()
    for uri, text in rows:
        if reload:
            predictor = Predictor(config.models)
        one_file(predictor, uri, text, long)
    return time.perf_counter() - started


def run_toolkit(python: str, config: JobConfig, rows: list[tuple[str, str]]) -> float:
    """The authors' own loop (toolkit_loop.py) run by ``python``, the toolkit's environment, on
    the files copied from S3 to a local folder beforehand: the toolkit reads paths."""
    from speech_emotion.fetch import read_bytes

    models = config.models
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for i, (uri, text) in enumerate(rows):
            path = Path(folder) / f"{i:06d}{Path(uri).suffix}"
            path.write_bytes(read_bytes(uri))
            files.append([str(path), text])
        listing = Path(folder) / "files.json"
        listing.write_text(json.dumps(files))
        command = [python, str(ROOT / "benchmarks" / "toolkit_loop.py"), "--files", str(listing)]
        command += ["--model", str(models.emotion_model), "--bert", str(models.text_encoder)]
        # Its package is also called speech_emotion: a PYTHONPATH naming ours would shadow it.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the toolkit's loop failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def one_file(predictor, uri: str, text: str, long: bool) -> None:
    """A short clip as the toolkit classifies it; a long recording segment by segment, as the
    job annotates it (``Predictor.timeline``), so both give the same rows."""
    if long:
        predictor.timeline(uri)
    else:
        predictor.predict(uri, text or None)


def run_tuned_loop(config: JobConfig, rows: list[tuple[str, str]], long: bool = False) -> float:
    """The one-file loop tuned by hand: every library on one thread (torch, CTranslate2 and,
    through :func:`in_a_process`, BLAS), so that their thread pools do not fight over the cores
    as they do with default threads."""
    import torch

    from speech_emotion.predict import Predictor

    torch.set_num_threads(1)
    predictor = Predictor(config.models, cpu_threads=1)
    predictor.classifier  # noqa: B018
    if config.models.needs_text:
        predictor.transcriber  # noqa: B018
    started = time.perf_counter()
    for uri, text in rows:
        one_file(predictor, uri, text, long)
    return time.perf_counter() - started


# -- report ------------------------------------------------------------------------------------


def write_results(markdown: str, section: str = "results") -> None:
    """Puts ``markdown`` between the ``section`` markers of docs/benchmarks.md (added if absent)."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    if start not in text:
        text = f"{text.rstrip()}\n\n{start}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    RESULTS.write_text(f"{head}{start}\n{markdown}\n{end}{tail}")


def process_table(processes: ProcessSampler, wall_s: float) -> list[str]:
    cpu = processes.cpu_seconds()
    lines = [
        f"During the pipeline ({wall_s:.1f} s wall, so {wall_s * os.cpu_count():.0f} CPU-s "
        f"available), by process, sampled every 0.2 s (the sampling's own "
        f"{processes.own_cpu_s:.1f} CPU-s left out of the driver's):",
        "",
        "| process | peak RSS MB | peak private MB | CPU s | waited for a core s |",
        "|---|---|---|---|---|",
    ]
    for kind in sorted(processes.rss, key=lambda k: -cpu.get(k, (0.0, 0.0))[0]):
        used, waited = cpu.get(kind, (0.0, 0.0))
        lines.append(
            f"| {kind} | {processes.rss[kind]:.0f} | {processes.private[kind]:.0f} "
            f"| {used:.1f} | {waited:.1f} |"
        )
    return lines


def cpu_name() -> str:
    """The CPU's model and the vector extensions that decide its fp32 and int8 speed: the same
    run on another machine of the same name can differ by 2x (docs/benchmarks.md)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    name = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    have = set(flags.group(1).split()) if flags else set()
    wide = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in have]
    model = name.group(1).strip() if name else platform.machine()
    return f"{model} ({', '.join(wide) or 'no AVX2'})"


def describe_models(args, tiny: bool) -> str:
    if tiny:
        return "tiny random models"
    whisper = {"base": "Whisper base (int8)", "turbo": "random large-v3-turbo-shaped Whisper"}
    precision = "int8, the toolkit loops fp32" if args.precision == "int8" else "fp32"
    emotion = {"full": f"random w2v-bert-2.0 + bert-base at the published sizes ({precision})"}
    heard = not args.transcripts or args.corpus == "long"  # segments are always transcribed
    named = [
        whisper.get(args.whisper, "given Whisper" if args.whisper_model else "tiny Whisper")
        if heard and args.mode != "audio"
        else "no Whisper (transcripts given)",
        emotion.get(args.emotion, "given emotion model" if args.emotion_model else "tiny emotion"),
    ]
    return "; ".join(named)


def describe_corpus(args, audio_s: float) -> str:
    kind = {
        "tones": f"{args.clips} clips of tones and noise, {args.min_s:g}-{args.max_s:g} s",
        "speech": f"{args.clips} clips of espeak-ng speech, {args.min_s:g}-{args.max_s:g} s",
        "long": f"{args.clips} recordings of espeak-ng speech, {args.min_s:g}-{args.max_s:g} s, "
        "cut into speech segments by the job (`--segment auto`)",
    }[args.corpus]
    text = "transcripts given" if args.transcripts else "no transcripts (Whisper hears all)"
    if args.mode == "audio":
        text = "no text"
    return f"{kind}; {audio_s / 60:.1f} min of audio, mode {args.mode}, {text}"


def report(
    args,
    tiny: bool,
    audio_s: float,
    timings: dict[str, tuple[float, int, float]],
    processes: ProcessSampler | None,
    windows: dict[str, int] | None = None,
    threads: int = 1,
    reserved: int = 1,
) -> str:
    """``timings``: for each run, (seconds, clips, audio seconds of those clips); ``windows``:
    Whisper windows the pipeline and the floor ran."""
    rates = {name: audio / seconds for name, (seconds, _, audio) in timings.items()}
    command = "python benchmarks/throughput.py " + " ".join(sys.argv[1:])
    lines = [
        f"Latest run: `{command}` on {time.strftime('%Y-%m-%d')}, {cpu_name()}, "
        f"{os.cpu_count()} CPUs, {describe_models(args, tiny)}; batch size {args.batch_size}, "
        f"model worker: {threads} threads for torch and CTranslate2, {reserved} CPU reserved "
        f"(the floors run in a process like it, `OMP_NUM_THREADS={reserved}`).",
        "",
        f"Corpus: {describe_corpus(args, audio_s)}.",
        "",
        "| run | files | wall s | audio-s/s |",
        "|---|---|---|---|",
    ]
    labels = {
        "floor": "floor: the model stage alone on batches the decode stage made beforehand",
        "floor-audio": "floor from audio: models alone on decoded in-memory audio, features "
        "computed in the loop, a Whisper window per clip",
        "pipeline": "pipeline: S3 manifest to Parquet in S3, actor start-up and loading included",
        "naive": "plain loop: one file at a time from S3 (`Predictor`), models kept loaded, "
        "default threads",
        "naive-tuned": "plain loop, tuned: the same with every library on one thread",
        "toolkit-style": "toolkit-style: one file at a time (`Predictor`), models reloaded per "
        "call, as the toolkit's `predict_emotion` does",
        "toolkit": "the toolkit itself: the authors' `predict_emotion`, one file per call, in "
        f"its own environment, default threads ({TOOLKIT})",
    }
    for name, label in labels.items():
        if name in timings:
            seconds, clips, _ = timings[name]
            lines.append(f"| {label} | {clips} | {seconds:.1f} | {rates[name]:.2f} |")
    ratios = [
        f"pipeline / {other} **{rates['pipeline'] / rates[other]:.2f}**"
        for other in ("floor", "floor-audio", "naive", "naive-tuned", "toolkit-style", "toolkit")
        if "pipeline" in rates and other in rates
    ]
    if ratios:
        lines += ["", "Ratios: " + ", ".join(ratios) + "."]
    if {"pipeline", "naive", "naive-tuned"} <= rates.keys():
        # Which loop is faster depends on the CPU (2026-12-02: one thread each won on one
        # machine, default threads on another), and a user would run the faster one.
        best = max(("naive", "naive-tuned"), key=rates.__getitem__)
        lines += [
            "",
            f"The faster plain loop here is {best}: pipeline / it "
            f"**{rates['pipeline'] / rates[best]:.2f}**.",
        ]
    if windows and any(windows.values()):
        lines += ["", windows_line(args, audio_s, windows)]
    if any(clips < args.clips for name, (_, clips, _) in timings.items()):
        lines += [
            "",
            "A run over fewer files than the corpus timed its first ones; its rate is per "
            "audio-second of those files.",
        ]
    if processes is not None and "pipeline" in timings:
        lines += ["", *process_table(processes, timings["pipeline"][0])]
    return "\n".join(lines)


def windows_line(args, audio_s: float, windows: dict[str, int]) -> str:
    """Encoder windows per audio hour, run by run, and what packing saved."""
    hours = audio_s / 3600
    per_hour = ", ".join(f"{name} {count / hours:.0f}" for name, count in windows.items())
    line = (
        f"Whisper's encoder windows per audio hour (the ideal is 120, one per 30 s), "
        f"`--whisper-packing {args.whisper_packing}`: {per_hour}"
    )
    unpacked, floor = windows.get("with packing off"), windows.get("floor")
    if unpacked and floor and args.whisper_packing == "on":
        line += f"; packing ran **{unpacked / floor:.2f}x** fewer windows than packing off"
    return line + "."


def pipeline_windows() -> int:
    """Whisper windows of the run just committed, from its record's model-stage figures."""
    import fsspec

    fs = fsspec.filesystem("s3")
    (record,) = fs.glob("bench/labels/_runs/*.json")
    return int(json.loads(fs.cat(record))["stages"]["models"]["whisper_windows"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument(
        "--naive-clips",
        type=int,
        help="time the naive loops on the first N clips (default: all); rates are per audio-second",
    )
    parser.add_argument("--toolkit-clips", type=int, default=10)
    parser.add_argument(
        "--toolkit-python",
        help="the toolkit's environment's python (benchmarks/toolkit_env.sh): the toolkit run",
    )
    parser.add_argument("--min-s", type=float, default=1.0)
    parser.add_argument("--max-s", type=float, default=20.0)
    parser.add_argument(
        "--corpus",
        choices=("tones", "speech", "long"),
        default="tones",
        help="tones and noise; espeak-ng speech clips; long espeak-ng recordings "
        "(--min-s/--max-s are then their lengths)",
    )
    parser.add_argument("--transcripts", action="store_true", help="speech: the manifest has text")
    parser.add_argument("--whisper", choices=("tiny", "base", "turbo"), default="tiny")
    parser.add_argument("--emotion", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--models-dir", help="real_models.py's cache")
    parser.add_argument("--section", default="results", help="docs/benchmarks.md block")
    parser.add_argument("--emotion-model")
    parser.add_argument("--text-encoder")
    parser.add_argument("--whisper-model")
    parser.add_argument("--num-gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--cpu-workers", type=int, default=1)
    parser.add_argument("--gpu-workers", type=int, default=1)
    parser.add_argument("--cpus-per-gpu-worker", type=float, help="default: the job's (auto)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--mode", default="concat", help="audio: no Whisper, no text encoder")
    parser.add_argument(
        "--precision",
        default="auto",
        help="the emotion model's (int8: quantised on CPU); the toolkit loops stay fp32",
    )
    parser.add_argument(
        "--whisper-packing",
        choices=("on", "off"),
        default="on",
        help="the job's --whisper-packing (pipeline and floor)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--runs",
        default="floor,floor-audio,pipeline,naive,naive-tuned,toolkit-style,toolkit",
        help="which measurements, comma-separated (scale runs: --runs pipeline)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    import ray

    work = Path(tempfile.mkdtemp(prefix="se-bench-"))
    server = None
    try:
        server = start_s3()
        given = {
            "emotion_model": args.emotion_model,
            "text_encoder": args.text_encoder,
            "whisper_model": args.whisper_model,
        }
        real = real_models(args)
        tiny = not any(given.values()) and not real
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as child:
            seconds_each, built = child.submit(
                prepare, work, args, not all(given.values())
            ).result()
        audio_s = sum(seconds_each)
        models = {**built, **real, **{k: v for k, v in given.items() if v}}
        manifest = "s3://bench/corpus/manifest.jsonl"
        config = JobConfig(
            manifest=ManifestConfig(uri=manifest),
            output=OutputConfig(uri="s3://bench/labels"),
            decode=DecodeConfig(whisper_packing=args.whisper_packing == "on"),
            models=ModelConfig(mode=args.mode, precision=args.precision, **models),
            resources=ResourceConfig(
                batch_size=args.batch_size,
                cpu_workers=args.cpu_workers,
                gpu_workers=args.gpu_workers,
                num_gpus_per_worker=args.num_gpus_per_worker,
                cpus_per_gpu_worker=args.cpus_per_gpu_worker,
            ),
        )
        rows = manifest_rows(manifest)
        print(f"corpus: {describe_corpus(args, audio_s)}; {describe_models(args, tiny)}")
        long = args.corpus == "long"
        wanted = set(args.runs.split(","))
        if long:
            wanted.discard("floor-audio")  # it hears each file whole: not the job's work
            wanted -= {"toolkit", "toolkit-style"}  # the toolkit has no segments to compare with
        if "toolkit" in wanted and not (args.toolkit_python and args.transcripts):
            # Without transcripts it would fetch its Whisper (transformers) from the hub.
            print("toolkit: skipped, it needs --toolkit-python (toolkit_env.sh) and --transcripts")
            wanted.discard("toolkit")
        timings: dict[str, tuple[float, int, float]] = {}
        windows: dict[str, int] = {}

        def timed(name: str, count: int, measure) -> None:
            if name in wanted:
                timings[name] = (measure(rows[:count]), count, sum(seconds_each[:count]))

        processes = None
        if "pipeline" in wanted:
            with ProcessSampler(s3_pid=server.pid) as processes:
                ray.init(include_dashboard=False, log_to_driver=False)
                timed("pipeline", len(rows), lambda _: run_pipeline(config))
                ray.shutdown()
            windows["pipeline"] = pipeline_windows()
        threads = reserved_cpus(config)

        def floor(some: list[tuple[str, str]]) -> float:
            done = in_a_process(threads, run_floor, config, some)
            windows["floor"] = done.windows
            windows["with packing off"] = done.unpacked_windows
            return done.seconds

        timed("floor", len(rows), floor)
        timed(
            "floor-audio",
            len(rows),
            lambda some: in_a_process(threads, run_floor_audio, config, some),
        )
        naive_clips = min(args.naive_clips or len(rows), len(rows))
        timed(
            "naive",
            naive_clips,
            lambda some: in_a_process(None, run_one_at_a_time, config, some, False, long),
        )
        timed(
            "naive-tuned",
            naive_clips,
            lambda some: in_a_process(1, run_tuned_loop, config, some, long),
        )
        # The toolkit has no --precision: its loop runs the models as published.
        toolkit = replace(config, models=replace(config.models, precision="auto"))
        timed(
            "toolkit-style",
            args.toolkit_clips,
            lambda some: run_one_at_a_time(toolkit, some, reload=True),
        )
        timed(
            "toolkit",
            args.toolkit_clips,
            lambda some: run_toolkit(args.toolkit_python, toolkit, some),
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)

    markdown = report(
        args,
        tiny,
        audio_s,
        timings,
        processes,
        windows,
        worker_threads(config),
        reserved_cpus(config),
    )
    print(markdown)
    if not args.no_write:
        write_results(markdown, args.section)
        print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
