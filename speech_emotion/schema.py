"""The contract: manifest columns in, Arrow schema out, and the names both sides use.

Everything downstream of the manifest reader trusts these columns; everything written to the
output dataset conforms to :data:`OUTPUT_SCHEMA`. Units are in the names.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "SCHEMA_VERSION",
    "STATUS_OK",
    "STATUS_ERROR",
    "SOURCE_MANIFEST",
    "SOURCE_WHISPER",
    "CLIP_IDENTITY",
    "RECORDING_SCHEMA",
    "DECODED_CLIP",
    "DECODED_SCHEMA",
    "OUTPUT_SCHEMA",
    "OUTPUT_COLUMN_DOCS",
    "PARTITION_COLUMN",
    "TABLE_SCHEMA",
]

# 2: clip identity columns (channel, segment_index, segment_count), recording_duration_s.
# 3: model_language (each clip's language picks its models); speaker; start_s/end_s place a
# manifest's span (NeMo, lhotse) in its file.
SCHEMA_VERSION = "3"

STATUS_OK = "ok"
STATUS_ERROR = "error"
SOURCE_MANIFEST = "manifest"
SOURCE_WHISPER = "whisper"

# A recording is one manifest row; the decode stage turns it into the clips it annotates (the whole
# file or span, or its speech segments, per channel where channels are split), each a row of its
# own.
RECORDING_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        # A URI, or a row of a Parquet shard: ``<shard>#row=<n>&column=<name>`` (fetch.py).
        pa.field("audio", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("language", pa.string()),
        # Where the recording lies in its file, seconds: a manifest's span; 0 and null (to the
        # end) for the whole file.
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64()),
        pa.field("attempt", pa.int32(), nullable=False),
        # The channel the manifest names (a lhotse supervision's), written as the rows' channel;
        # null: the file's channels as --channels says.
        pa.field("channel", pa.int32()),
        # Where that channel is in the audio file (a recording's channels may be several files).
        pa.field("file_channel", pa.int32()),
        pa.field("speaker", pa.string()),
    ]
)

CLIP_IDENTITY = ("id", "channel", "segment_index")
"""What identifies an output row: the recording (manifest id) and the clip within it."""

# Between the decode and model stages. A row is a window: what Whisper hears at once, and the
# clips in it (windows.py). A recording that failed in decode is one window holding one clip
# whose error_code/error are set and which has no audio.
DECODED_CLIP = pa.struct(
    [f for f in RECORDING_SCHEMA if f.name not in ("start_s", "end_s", "channel", "file_channel")]
    + [
        pa.field("channel", pa.int32()),
        pa.field("segment_index", pa.int32()),
        pa.field("segment_count", pa.int32()),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64()),
        pa.field("duration_s", pa.float64()),
        pa.field("recording_duration_s", pa.float64()),
        pa.field("sample_rate_hz", pa.int32()),
        pa.field("channels", pa.int32()),
        pa.field("error_code", pa.string()),
        pa.field("error", pa.string()),
        # Where the clip lies in its window, seconds from the window's start.
        pa.field("window_offset_s", pa.float64()),
        # The emotion model's input features [frames, width], row-major; frames null when the
        # decode stage did not compute them (the samples then come instead).
        pa.field("audio_features", pa.large_list(pa.float32()), nullable=False),
        pa.field("audio_feature_frames", pa.int32()),
        pa.field("audio_feature_valid_frames", pa.int32()),
        pa.field("waveform", pa.large_list(pa.float32()), nullable=False),
    ]
)
DECODED_SCHEMA = pa.schema(
    [
        pa.field("clips", pa.large_list(DECODED_CLIP), nullable=False),
        # Whisper's log-mel [mel bins, frames], row-major, for windows up to 30 s; frames null
        # when not computed: the window's samples then come instead, if Whisper hears it.
        pa.field("whisper_features", pa.large_list(pa.float32()), nullable=False),
        pa.field("whisper_feature_frames", pa.int32()),
        pa.field("waveform", pa.large_list(pa.float32()), nullable=False),
        # Its clips were packed from several windows (packing.py).
        pa.field("packed", pa.bool_(), nullable=False),
    ]
)

_OUTPUT_COLUMNS: list[tuple[pa.Field, str]] = [
    (
        pa.field("id", pa.string(), nullable=False),
        "Manifest id, or a stable hash of the audio URI (and span).",
    ),
    (
        pa.field("audio", pa.string(), nullable=False),
        "Resolved URI of the audio file; `<shard>#row=N&column=C` for audio inside a Parquet "
        "dataset.",
    ),
    (pa.field("status", pa.string(), nullable=False), "`ok` or `error`."),
    (
        pa.field("error_code", pa.string()),
        "Stable error code (null when ok), e.g. `missing_object`.",
    ),
    (
        pa.field("error", pa.string()),
        "Human-readable reason, prefixed by the stage (null when ok).",
    ),
    (
        pa.field("channel", pa.int32()),
        "Channel of the file the clip was taken from, 0-based: the manifest's (a lhotse "
        "supervision's), else each channel's with `--channels split`; null when mixed.",
    ),
    (pa.field("speaker", pa.string()), "Speaker the manifest names (lhotse), if any."),
    (
        pa.field("segment_index", pa.int32()),
        "Place of the segment in time among its recording's on the same channel: 0, 1, ... "
        "(0 for a whole file); null on a recording-level error row.",
    ),
    (
        pa.field("segment_count", pa.int32()),
        "How many rows the recording has, all channels together (1 for a whole file); null on "
        "a recording-level error row.",
    ),
    (
        pa.field("start_s", pa.float64(), nullable=False),
        "Clip start within the file, seconds: the manifest span's start (0 without one), plus a "
        "segment's first sample / 16000.",
    ),
    (
        pa.field("end_s", pa.float64()),
        "Clip end within the file, seconds: the span's or segment's end (null if undecoded).",
    ),
    (pa.field("duration_s", pa.float64()), "Decoded duration of the clip, seconds."),
    (
        pa.field("recording_duration_s", pa.float64()),
        "Decoded duration of the recording: the whole file, or the manifest's span of it, "
        "seconds (null if undecoded).",
    ),
    (pa.field("sample_rate_hz", pa.int32()), "Sample rate of the original file."),
    (pa.field("channels", pa.int32()), "Channel count of the original file."),
    (pa.field("language", pa.string()), "Language used: from the manifest, the job, or detected."),
    (
        pa.field("language_probability", pa.float32()),
        "Whisper's detection probability, if detected.",
    ),
    (pa.field("transcript", pa.string()), "Text the emotion model saw."),
    (pa.field("transcript_source", pa.string()), "`manifest` or `whisper`."),
    (
        pa.field("transcript_suppressed", pa.bool_()),
        "True when the silence guard emptied Whisper's text.",
    ),
    (pa.field("emotion", pa.string()), "Top label."),
    (pa.field("emotion_score", pa.float32()), "Probability of the top label."),
    (pa.field("scores", pa.map_(pa.string(), pa.float32())), "Label -> probability; sums to 1."),
    (
        pa.field("mode", pa.string(), nullable=False),
        "Fusion mode: concat, audio, mean, multihead, text.",
    ),
    (
        pa.field("model_language", pa.string()),
        "Language whose models classified the clip: its own, or `--fallback-language`.",
    ),
    (pa.field("emotion_model", pa.string()), "Emotion checkpoint: hub id, folder or URI."),
    (
        pa.field("emotion_model_revision", pa.string()),
        "Hub commit of the emotion checkpoint, if known.",
    ),
    (pa.field("text_encoder", pa.string()), "Text encoder used by fusion modes."),
    (pa.field("text_encoder_revision", pa.string()), "Hub commit of the text encoder, if known."),
    (pa.field("whisper_model", pa.string()), "Whisper model, when it produced the transcript."),
    (pa.field("whisper_model_revision", pa.string()), "Hub commit of the Whisper model, if known."),
    (
        pa.field("whisper_window", pa.string()),
        "The Whisper window the clip was heard in, named by its first clip (`id#channel#segment`): "
        "rows with the same value were heard together (neighbouring segments of a recording, or "
        "short clips packed from several); null where Whisper did not hear the clip.",
    ),
    (pa.field("attempt", pa.int32(), nullable=False), "1 on a row's first run; retries count up."),
    (pa.field("run_id", pa.string(), nullable=False), "Identifier of the run that wrote the row."),
    (
        pa.field("processed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        "When the row was made.",
    ),
]

OUTPUT_SCHEMA = pa.schema(
    [field for field, _ in _OUTPUT_COLUMNS],
    metadata={"speech_emotion.schema_version": SCHEMA_VERSION},
)
OUTPUT_COLUMN_DOCS: dict[str, str] = {field.name: doc for field, doc in _OUTPUT_COLUMNS}

PARTITION_COLUMN = "run_date"
"""The partition of every format: the UTC day the run started. Parquet output has it in folder
names only (``run_date=2026-11-24/``); the tables (Delta, Iceberg) have it as a column."""
TABLE_SCHEMA = OUTPUT_SCHEMA.append(pa.field(PARTITION_COLUMN, pa.date32(), nullable=False))
"""A Delta or Iceberg table's columns: the output's, then the partition."""
