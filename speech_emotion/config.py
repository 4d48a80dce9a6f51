"""One frozen configuration, built in one place (the command line) and passed down.

Nothing below this module reads the environment or globals for settings. Object-storage
credentials and endpoints are the exception by design: fsspec/s3fs and pyarrow read them from the
standard environment and config files, so they never pass through flags, logs or output rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from dataclasses import dataclass, field

from .errors import ConfigError
from .languages import MIN_LANGUAGE_PROBABILITY, ModelSet, Routes

__all__ = [
    "MODES",
    "PRECISIONS",
    "OUTPUT_FORMATS",
    "FUSION_MODES",
    "TEXT_MODES",
    "AUDIO_MODES",
    "DEFAULT_EMOTION_MODELS",
    "DEFAULT_TEXT_ENCODERS",
    "DEFAULT_WHISPER_MODEL",
    "MANIFEST_FORMATS",
    "ManifestConfig",
    "OutputConfig",
    "SegmentConfig",
    "DecodeConfig",
    "ModelConfig",
    "ResourceConfig",
    "JobConfig",
    "require",
    "new_run_id",
]

MODES = ("concat", "audio", "mean", "multihead", "text")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
FUSION_MODES = ("concat", "mean", "multihead")
TEXT_MODES = (*FUSION_MODES, "text")
AUDIO_MODES = (*FUSION_MODES, "audio")

# The published checkpoints (emotion-model.md); Spanish where the job language is Spanish.
DEFAULT_EMOTION_MODELS = {
    "en": {
        "concat": "UMUTeam/w2v-bert-beto-concat-emotion-en",
        "audio": "UMUTeam/w2v-bert-emotion-en",
        "mean": "UMUTeam/w2v-bert-beto-mean-emotion-en",
        "multihead": "UMUTeam/w2v-bert-beto-multihead-emotion-en",
        "text": "UMUTeam/roberta-emotion-en",
    },
    "es": {
        "concat": "UMUTeam/w2v-bert-beto-concat-emotion-es",
        "audio": "UMUTeam/w2v-bert-emotion-es",
        "mean": "UMUTeam/w2v-bert-beto-mean-emotion-es",
        "multihead": "UMUTeam/w2v-bert-beto-multihead-emotion-es",
        "text": "UMUTeam/MarIA-emotion-es",
    },
}
# The toolkit's code (not its model card) uses stock BERT [CLS] features.
DEFAULT_TEXT_ENCODERS = {
    "en": "google-bert/bert-base-uncased",
    "es": "dccuchile/bert-base-spanish-wwm-uncased",
}
DEFAULT_WHISPER_MODEL = "large-v3-turbo"

# Wav2Vec2-BERT stacks pairs of 25 ms / 10 ms fbank frames: fewer than two frames (35 ms) breaks
# the feature extractor, which the toolkit does not guard against.
MODEL_MIN_DURATION_S = 0.035


def require(ok: bool, name: str, value: object, expected: str) -> None:
    """Raises ConfigError naming the setting and the bad value unless ``ok``."""
    if not ok:
        raise ConfigError(f"{name}={value!r} is invalid: expected {expected}")


MANIFEST_FORMATS = ("auto", "table", "hf", "nemo", "lhotse")


@dataclass(frozen=True)
class ManifestConfig:
    """Where the manifest is, in which format, and what its columns are called."""

    uri: str
    """A manifest file, or a folder/prefix of them, at any fsspec URI (.gz, .zst, .bz2 read as
    such)."""
    format: str = "auto"
    """table: JSONL/CSV/Parquet with named columns; hf: Parquet shards with the audio inside;
    nemo: NeMo JSON lines; lhotse: recordings + supervisions, or cuts; auto: from the files."""
    audio_column: str = "audio"
    """Column holding the audio URI or a path relative to the manifest file (hf: the struct
    holding the audio's bytes)."""
    id_column: str = "id"
    """Optional column with a unique id; when absent, ids are hashes of the audio URI."""
    text_column: str = "text"
    """Optional column with a transcript; non-empty values skip Whisper."""
    language_column: str = "language"
    """Optional column with a per-row language code."""
    offset_column: str = "offset_s"
    """Optional column: where the row's span of the file starts, seconds."""
    duration_column: str = "duration_s"
    """Optional column: how long the row's span is, seconds; empty: to the end of the file."""

    def __post_init__(self) -> None:
        require(
            self.format in MANIFEST_FORMATS,
            "manifest_format",
            self.format,
            f"one of {', '.join(MANIFEST_FORMATS)}",
        )


OUTPUT_FORMATS = ("parquet", "delta", "iceberg")


@dataclass(frozen=True)
class OutputConfig:
    """Where the annotated rows go and in which format."""

    uri: str
    """parquet, delta: a folder/prefix at any fsspec URI; iceberg: the table, NAMESPACE.TABLE."""
    format: str = "parquet"
    """parquet: files plus commit records; delta, iceberg: a table with one commit per run."""
    catalog: str | None = None
    """iceberg: the pyiceberg catalog's name (.pyiceberg.yaml, PYICEBERG_CATALOG__<NAME>__*);
    None: pyiceberg's default one, or, where none is configured, an embedded SQLite catalog."""
    staging: str | None = None
    """delta, iceberg: where runs stage their rows and keep records and reports (any fsspec URI);
    None: OUTPUT for delta, the table's location for iceberg."""

    def __post_init__(self) -> None:
        require(bool(self.uri), "output", self.uri, "a folder or URI")
        require(
            self.format in OUTPUT_FORMATS,
            "format",
            self.format,
            f"one of {', '.join(OUTPUT_FORMATS)}",
        )
        if self.format == "iceberg":
            namespace, _, table = self.uri.rpartition(".")
            require(
                bool(namespace and table) and "/" not in self.uri,
                "output",
                self.uri,
                "NAMESPACE.TABLE with --format iceberg",
            )
        else:
            require(
                self.catalog is None, "catalog", self.catalog, "none (it names an Iceberg catalog)"
            )
        if self.format == "parquet":
            require(
                self.staging is None,
                "staging",
                self.staging,
                "none with parquet (its runs stage under OUTPUT)",
            )


SEGMENT_MODES = ("off", "auto", "always")
CHANNEL_MODES = ("mix", "split")
# Whisper's window: no segment may be longer.
MAX_SEGMENT_S = 30.0


@dataclass(frozen=True)
class SegmentConfig:
    """Whether and how recordings are cut into speech segments (docs/segments.md)."""

    mode: str = "auto"
    """off: one row per recording; always: every recording in segments; auto: those longer than
    ``over_s`` in segments, shorter ones whole."""
    over_s: float = 30.0
    """In auto mode, recordings longer than this are segmented."""
    min_segment_s: float = 1.0
    """Shorter speech joins a neighbouring segment, or takes in the silence around it."""
    max_segment_s: float = 15.0
    """Longer speech is cut at its longest pauses; at most 30 s (Whisper's window)."""

    def __post_init__(self) -> None:
        require(self.mode in SEGMENT_MODES, "segment", self.mode, ", ".join(SEGMENT_MODES))
        require(self.over_s >= 0, "segment_over_s", self.over_s, ">= 0")
        require(
            MODEL_MIN_DURATION_S <= self.min_segment_s < self.max_segment_s,
            "min_segment_s",
            self.min_segment_s,
            f">= {MODEL_MIN_DURATION_S} and < max_segment_s ({self.max_segment_s})",
        )
        require(
            1.0 <= self.max_segment_s <= MAX_SEGMENT_S,
            "max_segment_s",
            self.max_segment_s,
            f"between 1 and {MAX_SEGMENT_S:g} (Whisper's window)",
        )


@dataclass(frozen=True)
class DecodeConfig:
    """How audio is fetched, decoded and cut into clips (CPU stage)."""

    min_duration_s: float = 0.1
    """Shorter recordings become `too_short` error rows (the model cannot take under 0.035 s)."""
    max_duration_s: float | None = None
    """Longer files become `too_long` error rows, found without decoding the whole file. None:
    30 minutes when recordings are kept whole (Whisper hears all of one in one go), 4 hours when
    long ones are segmented (a decode worker holds one recording: 230 MB an hour a channel)."""
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    channels: str = "mix"
    """mix: channels averaged, as the toolkit does; split: each channel annotated on its own."""
    whisper_packing: bool = True
    """Short windows of several recordings share one of Whisper's 30 s windows (:mod:`packing`)."""
    fetch_threads: int = 8
    """Concurrent object reads per decode actor; reads are latency-bound, not CPU-bound."""
    allowed_prefixes: tuple[str, ...] | None = None
    """Audio outside these URI prefixes becomes an error row; None: the manifest's location."""

    def __post_init__(self) -> None:
        require(
            self.min_duration_s >= MODEL_MIN_DURATION_S,
            "min_duration_s",
            self.min_duration_s,
            f">= {MODEL_MIN_DURATION_S} (the shortest clip the emotion model can take)",
        )
        require(
            self.longest_s > self.min_duration_s,
            "max_duration_s",
            self.max_duration_s,
            f"> min_duration_s ({self.min_duration_s})",
        )
        require(self.fetch_threads >= 1, "fetch_threads", self.fetch_threads, ">= 1")
        require(self.channels in CHANNEL_MODES, "channels", self.channels, "mix or split")

    @property
    def longest_s(self) -> float:
        """The length limit in force: ``max_duration_s``, or its default for the segment mode."""
        if self.max_duration_s is not None:
            return self.max_duration_s
        return 1800.0 if self.segment.mode == "off" else 4 * 3600.0


@dataclass(frozen=True)
class ModelConfig:
    """Which models run, on what device, at what precision (model stage)."""

    mode: str = "concat"
    """Fusion mode: concat, audio, mean, multihead or text."""
    language: str = "en"
    """Job language (en, es, ... or auto to detect); a manifest row's language wins."""
    emotion_model: str | None = None
    """Hub id, local folder or object-storage URI of the job language's emotion checkpoint (en
    with auto); default: the published checkpoint for mode and language."""
    emotion_models: tuple[tuple[str, str], ...] = ()
    """(language, source) pairs replacing or adding one language's emotion checkpoint."""
    text_encoder: str | None = None
    """The job language's frozen text encoder for fusion modes; default: the toolkit's BERT."""
    text_encoders: tuple[tuple[str, str], ...] = ()
    """(language, source) pairs replacing or adding one language's text encoder."""
    fallback_language: str | None = None
    """Language whose models classify clips of a language without models (or of an unsure
    detection); None: such clips are error rows."""
    min_language_probability: float = MIN_LANGUAGE_PROBABILITY
    """A language Whisper detects picks the models from this probability up."""
    whisper_model: str = DEFAULT_WHISPER_MODEL
    """faster-whisper size name, hub id, local folder or object-storage URI."""
    device: str = "auto"
    """auto (CUDA when the worker has a GPU), cpu or cuda."""
    precision: str = "auto"
    """Emotion model precision: auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16, or
    int8 (CPU only: Linear layers dynamically quantised; fp32 matches the toolkit)."""
    whisper_compute_type: str = "auto"
    """CTranslate2 compute type: auto (float16 on CUDA, int8 on CPU) or any CTranslate2 type."""
    beam_size: int = 5
    """Whisper beam size (the toolkit's and faster-whisper's default)."""
    cache_dir: str | None = None
    """Local cache for models copied from object storage; default ~/.cache/speech_emotion."""

    def __post_init__(self) -> None:
        require(self.mode in MODES, "mode", self.mode, f"one of {', '.join(MODES)}")
        require(bool(self.language), "language", self.language, "a language code or auto")
        require(self.device in ("auto", "cpu", "cuda"), "device", self.device, "auto, cpu, cuda")
        require(
            self.precision in PRECISIONS,
            "precision",
            self.precision,
            ", ".join(PRECISIONS),
        )
        require(
            not (self.precision == "int8" and self.device == "cuda"),
            "precision",
            self.precision,
            "a CUDA precision (auto, bf16, fp16, fp32) with --device cuda: int8 is for CPU",
        )
        require(self.beam_size >= 1, "beam_size", self.beam_size, ">= 1")
        require(
            0 <= self.min_language_probability <= 1,
            "min_language_probability",
            self.min_language_probability,
            "between 0 and 1",
        )
        sets = self.model_sets
        for language, _ in self.text_encoders:
            require(
                language in sets,
                "text_encoder",
                f"{language}=...",
                f"a language that has an emotion model ({', '.join(sorted(sets))}); "
                f"add --emotion-model {language}=SOURCE",
            )
        if self.fallback_language is not None:
            require(
                self.fallback_language in sets,
                "fallback_language",
                self.fallback_language,
                f"a language that has models: {', '.join(sorted(sets))}",
            )

    @property
    def model_language(self) -> str:
        """The language a plain --emotion-model / --text-encoder is for: the job's (English
        with auto)."""
        return "en" if self.language == "auto" else self.language

    @property
    def job_language(self) -> str | None:
        """The language forced on clips that do not name one; None to detect it."""
        return None if self.language == "auto" else self.language

    @property
    def model_sets(self) -> dict[str, ModelSet]:
        """Each language that has models, and its models: the published sets (en, es), the job
        language's from the plain options, then each LANG=SOURCE."""
        emotion = {lang: models[self.mode] for lang, models in DEFAULT_EMOTION_MODELS.items()}
        encoders = dict(DEFAULT_TEXT_ENCODERS)
        if self.emotion_model:
            emotion[self.model_language] = self.emotion_model
        if self.text_encoder:
            encoders[self.model_language] = self.text_encoder
        emotion.update(self.emotion_models)
        encoders.update(self.text_encoders)
        sets = {}
        for language, source in emotion.items():
            encoder = encoders.get(language) if self.mode in FUSION_MODES else None
            require(
                encoder is not None or self.mode not in FUSION_MODES,
                "text_encoder",
                None,
                f"a text encoder for language {language!r} in mode {self.mode} "
                f"(--text-encoder {language}=SOURCE)",
            )
            sets[language] = ModelSet(language, source, encoder)
        return sets

    @property
    def routes(self) -> Routes:
        return Routes(
            frozenset(self.model_sets),
            fallback=self.fallback_language,
            min_probability=self.min_language_probability,
        )

    def model_set(self, language: str | None = None) -> ModelSet:
        """The models of ``language`` (default: the job's), or a ConfigError naming the choices."""
        language = language or self.model_language
        sets = self.model_sets
        require(
            language in sets,
            "language",
            language,
            f"one with models ({', '.join(sorted(sets))}), or --emotion-model {language}=SOURCE",
        )
        return sets[language]

    @property
    def needs_text(self) -> bool:
        return self.mode in TEXT_MODES

    @property
    def needs_audio(self) -> bool:
        return self.mode in AUDIO_MODES


@dataclass(frozen=True)
class ResourceConfig:
    """How much of the cluster the job asks for."""

    batch_size: int = 16
    """Whisper windows per model-stage batch: a short clip, or up to 30 s of a recording's
    segments, each."""
    decode_batch_size: int = 16
    """Recordings per decode-stage batch; small, because decoded audio is ~230 MB per hour."""
    cpu_workers: int | None = None
    """Maximum decode actors; None: as many as the cluster has CPUs for (Ray Data adds them
    while the models wait for input)."""
    gpu_workers: int | None = None
    """Maximum model actors; None: one per GPU the cluster has, growing as an autoscaling
    cluster adds GPUs (CPU-only runs: one)."""
    num_gpus_per_worker: float = 1.0
    """GPUs per model actor; 0 for CPU-only runs."""
    cpus_per_gpu_worker: float | None = None
    """CPUs Ray reserves for each model actor, and its torch and CTranslate2 threads; None: 1
    reserved, and on CPU-only runs the models' threads on every core of the node (decoding is
    a few per cent of the work next to real models: docs/benchmarks.md)."""
    ray_address: str = "local"
    """Ray cluster to join (e.g. ray://head:10001, auto); "local" starts a Ray for this run."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "decode_batch_size", "cpu_workers", "gpu_workers"):
            value = getattr(self, name)
            if value is None and name.endswith("_workers"):
                continue
            require(isinstance(value, int) and value >= 1, name, value, "an integer >= 1")
        require(
            self.num_gpus_per_worker >= 0, "num_gpus_per_worker", self.num_gpus_per_worker, ">= 0"
        )
        require(
            self.cpus_per_gpu_worker is None or self.cpus_per_gpu_worker > 0,
            "cpus_per_gpu_worker",
            self.cpus_per_gpu_worker,
            "> 0, or auto",
        )


def new_run_id() -> str:
    """Sortable and unique enough for concurrent runs: UTC time plus random hex."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class JobConfig:
    """Everything one annotation run needs."""

    manifest: ManifestConfig
    output: OutputConfig
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    models: ModelConfig = field(default_factory=ModelConfig)
    resources: ResourceConfig = field(default_factory=ResourceConfig)
    run_id: str | None = None
    """None: resume the run that did not finish, else start a new one."""
    max_attempts: int = 3
    """A row that failed this many times is not tried again (raise it to retry)."""
    progress_every_s: float = 30.0
    """Seconds between progress lines."""
    lease_timeout_s: float = 300.0
    """A run holds its output while it runs, renewing a lease every third of this; a run that
    crashed loses it after this long, and the next run takes over (:mod:`lease`)."""
    max_error_fraction: float | None = None
    """A run whose share of failed recordings is above this is committed but reported as failed
    (its exit code); None: only a run where nothing succeeded is."""
    verbose: bool = False
    """Ray's, the workers' and the models' own logs too; without it, only this job's lines."""

    @property
    def row_settings(self) -> dict:
        """The settings a run's rows depend on; a run is resumed only with the same."""
        models, decode = self.models, self.decode
        return {
            "mode": models.mode,
            "language": models.language,
            "models": {
                language: [chosen.emotion_model, chosen.text_encoder]
                for language, chosen in sorted(models.model_sets.items())
            },
            "fallback_language": models.fallback_language,
            "min_language_probability": models.min_language_probability,
            "whisper_model": models.whisper_model,
            "beam_size": models.beam_size,
            "segment": dataclasses.asdict(decode.segment),
            "channels": decode.channels,
            "whisper_packing": decode.whisper_packing,
            "min_duration_s": decode.min_duration_s,
            "max_duration_s": decode.longest_s,
        }

    def __post_init__(self) -> None:
        require(self.max_attempts >= 1, "max_attempts", self.max_attempts, ">= 1")
        if self.max_error_fraction is not None:
            require(
                0 <= self.max_error_fraction <= 1,
                "max_error_fraction",
                self.max_error_fraction,
                "between 0 and 1",
            )
        require(self.progress_every_s > 0, "progress_every_s", self.progress_every_s, "> 0")
        require(self.lease_timeout_s >= 1, "lease_timeout_s", self.lease_timeout_s, ">= 1")
        if self.run_id is not None:
            require(
                bool(self.run_id) and "/" not in self.run_id and not self.run_id.startswith("_"),
                "run_id",
                self.run_id,
                "a non-empty name without '/' that does not start with '_'",
            )
