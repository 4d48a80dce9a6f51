"""Manifests in any supported format and place come out as clean clips, or fail at once with a
message that names the file and the problem."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from speech_emotion.config import ManifestConfig
from speech_emotion.errors import ManifestError
from speech_emotion.manifest import derive_id, read_manifest
from speech_emotion.schema import RECORDING_SCHEMA

from .manifests import hf_shard, lhotse_recording, mono_cut, spoil_column, supervision
from .manifests import write_jsonl as write_lines


def write_jsonl(path, rows) -> str:
    return write_lines(path, rows)


def test_jsonl_paths_are_resolved_relative_to_the_manifest(tmp_path):
    (tmp_path / "sub").mkdir()
    uri = write_jsonl(
        tmp_path / "sub" / "m.jsonl",
        [
            {"audio": "a.wav"},
            {"audio": "../b.flac"},
            {"audio": "/abs/c.mp3"},
            {"audio": "s3://x/d"},
        ],
    )
    clips = read_manifest(ManifestConfig(uri=uri))
    assert clips.schema == RECORDING_SCHEMA
    assert clips["audio"].to_pylist() == [
        str(tmp_path / "sub" / "a.wav"),
        str(tmp_path / "b.flac"),
        "/abs/c.mp3",
        "s3://x/d",
    ]


def test_ids_are_derived_from_the_audio_uri_when_absent_and_stay_stable(tmp_path):
    uri = write_jsonl(tmp_path / "m.jsonl", [{"audio": "a.wav"}, {"audio": "b.wav"}])
    first = read_manifest(ManifestConfig(uri=uri))["id"].to_pylist()
    again = read_manifest(ManifestConfig(uri=uri))["id"].to_pylist()
    assert (
        first == again == [derive_id(str(tmp_path / "a.wav")), derive_id(str(tmp_path / "b.wav"))]
    )


def test_csv_ids_keep_their_leading_zeros_and_blank_text_becomes_null(tmp_path):
    (tmp_path / "m.csv").write_text("id,audio,text,language\n007,a.wav,,EN\n008,b.wav, hi ,\n")
    clips = read_manifest(ManifestConfig(uri=str(tmp_path / "m.csv")))
    assert clips["id"].to_pylist() == ["007", "008"]
    assert clips["text"].to_pylist() == [None, "hi"]
    assert clips["language"].to_pylist() == ["en", None]


def test_languages_become_whisper_codes_whether_tagged_with_a_region_or_named(tmp_path):
    said = ["en-US", "es_ES", "Spanish", "pt-BR", "fr", "klingon"]
    uri = write_jsonl(
        tmp_path / "m.jsonl", [{"audio": f"{i}.wav", "language": v} for i, v in enumerate(said)]
    )
    languages = read_manifest(ManifestConfig(uri=uri))["language"].to_pylist()
    assert languages == ["en", "es", "es", "pt", "fr", "klingon"]


def test_parquet_manifests_with_renamed_columns_are_read(tmp_path):
    table = pa.table({"audio_filepath": ["x.wav"], "utt": [42], "transcript": ["hello"]})
    pq.write_table(table, tmp_path / "m.parquet")
    config = ManifestConfig(
        uri=str(tmp_path / "m.parquet"),
        audio_column="audio_filepath",
        id_column="utt",
        text_column="transcript",
    )
    clips = read_manifest(config)
    assert clips.to_pylist()[0] == {
        "id": "42",
        "audio": str(tmp_path / "x.wav"),
        "text": "hello",
        "language": None,
        "start_s": 0.0,
        "end_s": None,
        "attempt": 1,
        "channel": None,
        "file_channel": None,
        "speaker": None,
    }


def test_a_folder_of_manifests_is_read_in_name_order(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [{"audio": "2.wav"}])
    write_jsonl(tmp_path / "a.jsonl", [{"audio": "1.wav"}])
    (tmp_path / "notes.txt").write_text("ignored")
    clips = read_manifest(ManifestConfig(uri=str(tmp_path)))
    assert [a.rsplit("/", 1)[1] for a in clips["audio"].to_pylist()] == ["1.wav", "2.wav"]


def test_manifests_are_read_from_s3_and_keep_s3_uris(s3):
    s3.put("manifests/m.jsonl", b'{"audio": "clips/a.wav", "id": "a"}\n')
    clips = read_manifest(ManifestConfig(uri=s3.url("manifests/m.jsonl")))
    assert clips["audio"].to_pylist() == [s3.url("manifests/clips/a.wav")]


def test_a_manifest_without_the_audio_column_names_the_file_and_the_column(tmp_path):
    uri = write_jsonl(tmp_path / "m.jsonl", [{"path": "a.wav"}])
    with pytest.raises(ManifestError, match=r"m\.jsonl: no 'audio' column \(columns: path\)"):
        read_manifest(ManifestConfig(uri=uri))


def test_duplicate_ids_fail_with_examples(tmp_path):
    uri = write_jsonl(
        tmp_path / "m.jsonl", [{"audio": "a.wav", "id": "x"}, {"audio": "b", "id": "x"}]
    )
    with pytest.raises(ManifestError, match="1 ids appear more than once.*'x'"):
        read_manifest(ManifestConfig(uri=uri))


def test_the_same_audio_twice_without_ids_is_a_duplicate(tmp_path):
    uri = write_jsonl(tmp_path / "m.jsonl", [{"audio": "a.wav"}, {"audio": "./a.wav"}])
    with pytest.raises(ManifestError, match="appear more than once"):
        read_manifest(ManifestConfig(uri=uri))


def test_rows_without_audio_fail_with_the_row_number(tmp_path):
    uri = write_jsonl(tmp_path / "m.jsonl", [{"audio": "a.wav"}, {"audio": ""}])
    with pytest.raises(ManifestError, match="1 rows have no audio path \\(first at line 2\\)"):
        read_manifest(ManifestConfig(uri=uri))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("m.jsonl", "{not json", r"line 1: not JSON"),
        ("m.parquet", "not parquet", "not a readable parquet manifest"),
        ("m.txt", "a.wav", "unknown manifest format '.txt'"),
    ],
)
def test_unreadable_manifests_fail_naming_the_file(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ManifestError, match=message) as raised:
        read_manifest(ManifestConfig(uri=str(tmp_path / name)))
    assert name in str(raised.value)


def test_a_missing_manifest_says_so(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(ManifestConfig(uri=str(tmp_path / "nope.jsonl")))


# -- compression ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["m.jsonl.gz", "m.jsonl.zst", "m.json.bz2", "m.csv.gz"])
def test_compressed_manifests_are_read_as_the_plain_ones(tmp_path, name):
    rows = [{"id": "007", "audio": "a.wav", "text": "hi"}, {"id": "008", "audio": "b.wav"}]
    if ".csv" in name:
        text = b"id,audio,text\n007,a.wav,hi\n008,b.wav,\n"
        with pa.CompressedOutputStream(str(tmp_path / name), "gzip") as out:
            out.write(text)
    else:
        write_jsonl(tmp_path / name, rows)
    clips = read_manifest(ManifestConfig(uri=str(tmp_path / name)))
    assert clips.select(["id", "audio", "text"]).to_pylist() == [
        {"id": "007", "audio": str(tmp_path / "a.wav"), "text": "hi"},
        {"id": "008", "audio": str(tmp_path / "b.wav"), "text": None},
    ]


def test_a_damaged_compressed_manifest_names_the_file_and_the_compression(tmp_path):
    (tmp_path / "m.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(ManifestError, match=r"m\.jsonl\.gz: not a readable gzip-compressed json"):
        read_manifest(ManifestConfig(uri=str(tmp_path / "m.jsonl.gz")))


# -- spans ---------------------------------------------------------------------------------------


def test_span_columns_place_each_row_in_its_file_and_rows_of_a_file_come_together(tmp_path):
    uri = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"audio": "call.wav", "offset_s": 12.5, "duration_s": 2.25, "text": "later"},
            {"audio": "other.wav"},
            {"audio": "call.wav", "offset_s": 0.1, "duration_s": 0.2, "text": "first"},
            {"audio": "call.wav", "offset_s": 30.0},
        ],
    )
    clips = read_manifest(ManifestConfig(uri=uri)).to_pylist()
    call = str(tmp_path / "call.wav")
    assert [(c["audio"], c["start_s"], c["end_s"]) for c in clips] == [
        (call, 0.1, 0.3),
        (call, 12.5, 14.75),
        (call, 30.0, None),
        (str(tmp_path / "other.wav"), 0.0, None),
    ]
    # Ids without a column come from the audio and the span: three spans, three ids, stable.
    assert [c["id"] for c in clips] == [
        derive_id(call, 0.1, 0.3),
        derive_id(call, 12.5, 14.75),
        derive_id(call, 30.0, None),
        derive_id(str(tmp_path / "other.wav")),
    ]
    assert len({c["id"] for c in clips}) == 4


def test_span_columns_can_be_named(tmp_path):
    (tmp_path / "m.csv").write_text("path,from,length\na.wav,1.5,2\n")
    config = ManifestConfig(
        uri=str(tmp_path / "m.csv"),
        audio_column="path",
        offset_column="from",
        duration_column="length",
    )
    [clip] = read_manifest(config).to_pylist()
    assert (clip["start_s"], clip["end_s"]) == (1.5, 3.5)


# -- NeMo ----------------------------------------------------------------------------------------


def test_a_nemo_manifest_is_recognised_and_its_offsets_and_durations_are_spans(tmp_path):
    uri = write_jsonl(
        tmp_path / "train_manifest.json",
        [
            {"audio_filepath": "wav/a.wav", "duration": 3.2, "text": "whole", "lang": "EN"},
            {"audio_filepath": "wav/long.wav", "offset": 61.0, "duration": 4.5, "text": "span"},
            {"audio_filepath": "wav/long.wav", "offset": 70.25, "duration": 2.0, "text": ""},
        ],
    )
    clips = read_manifest(ManifestConfig(uri=uri)).to_pylist()
    long = str(tmp_path / "wav" / "long.wav")
    assert [(c["audio"], c["start_s"], c["end_s"], c["text"], c["language"]) for c in clips] == [
        (str(tmp_path / "wav" / "a.wav"), 0.0, 3.2, "whole", "en"),
        (long, 61.0, 65.5, "span", None),
        (long, 70.25, 72.25, None, None),
    ]
    assert clips[1]["id"] == derive_id(long, 61.0, 65.5)


# -- lhotse --------------------------------------------------------------------------------------


def lhotse_corpus(folder) -> None:
    """A stereo call in one file, and a meeting whose two channels are two mono files."""
    write_jsonl(
        folder / "corpus_recordings_dev.jsonl.gz",
        [
            lhotse_recording("call", [("audio/call.flac", [0, 1])], seconds=20.0),
            lhotse_recording(
                "meeting", [("audio/mic0.wav", [0]), ("audio/mic1.wav", [1])], seconds=9.0
            ),
        ],
    )
    write_jsonl(
        folder / "corpus_supervisions_dev.jsonl.gz",
        [
            supervision("call-agent", "call", 0.5, 2.0, 0, text="hello", speaker="agent"),
            supervision("call-caller", "call", 3.0, 1.5, 1, text="hi", speaker="caller"),
            supervision("call-both", "call", 6.0, 1.0, [0, 1], language="English"),
            supervision("meet-1", "meeting", 1.0, 2.0, 1, language="Spanish", speaker="ana"),
        ],
    )


def test_lhotse_supervisions_are_rows_on_their_channel_with_their_speaker(tmp_path):
    lhotse_corpus(tmp_path)
    clips = read_manifest(ManifestConfig(uri=str(tmp_path))).to_pylist()
    got = {
        c["id"]: (
            c["audio"].rsplit("/", 2)[-2:],
            c["start_s"],
            c["end_s"],
            c["channel"],
            c["file_channel"],
            c["speaker"],
            c["language"],
        )
        for c in clips
    }
    assert got == {
        "call-agent": (["audio", "call.flac"], 0.5, 2.5, 0, 0, "agent", None),
        "call-caller": (["audio", "call.flac"], 3.0, 4.5, 1, 1, "caller", None),
        # Every channel of a one-file recording: the file, mixed or split as the job says.
        "call-both": (["audio", "call.flac"], 6.0, 7.0, None, None, None, "en"),
        # Channel 1 of the meeting is the second file's only channel.
        "meet-1": (["audio", "mic1.wav"], 1.0, 3.0, 1, None, "ana", "es"),
    }


def test_a_lone_supervisions_file_finds_its_recordings_by_name(tmp_path):
    lhotse_corpus(tmp_path)
    uri = str(tmp_path / "corpus_supervisions_dev.jsonl.gz")
    assert read_manifest(ManifestConfig(uri=uri, format="lhotse")).num_rows == 4
    (tmp_path / "corpus_recordings_dev.jsonl.gz").unlink()
    with pytest.raises(ManifestError, match="expected corpus_recordings_dev.jsonl.gz next to it"):
        read_manifest(ManifestConfig(uri=uri))


def test_lhotse_cuts_place_their_supervisions_from_the_cut_start(tmp_path):
    recording = lhotse_recording("rec", [("rec.wav", [0])], seconds=60.0)
    uri = write_jsonl(
        tmp_path / "cuts_train.jsonl.gz",
        [
            mono_cut(
                "cut-1",
                recording,
                40.0,
                10.0,
                [supervision("sup-1", "rec", 1.0, 2.0, text="one", speaker="s")],
            ),
            mono_cut("cut-2", recording, 10.0, 5.0),
        ],
    )
    clips = read_manifest(ManifestConfig(uri=uri)).to_pylist()
    assert [(c["id"], c["start_s"], c["end_s"], c["text"], c["channel"]) for c in clips] == [
        # Ordered by place in the file.
        ("cut-2", 10.0, 15.0, None, 0),
        ("sup-1", 41.0, 43.0, "one", 0),
    ]


# -- Hugging Face --------------------------------------------------------------------------------


def test_a_hub_shard_is_read_without_its_audio_bytes(tmp_path):
    shard = tmp_path / "data" / "train-00000-of-00001.parquet"
    shard.parent.mkdir()
    hf_shard(
        shard,
        [
            {"audio": {"bytes": b"\0" * 50_000, "path": f"{i}.wav"}, "id": f"u{i}", "text": f"t{i}"}
            for i in range(5)
        ],
    )
    # Pages of audio no reader could parse: the driver must never read that column.
    spoil_column(shard, "audio.bytes")
    clips = read_manifest(ManifestConfig(uri=str(tmp_path / "data"))).to_pylist()
    assert [(c["id"], c["audio"], c["text"]) for c in clips] == [
        (f"u{i}", f"{shard}#row={i}&column=audio", f"t{i}") for i in range(5)
    ]


def test_a_hub_shard_without_ids_gets_ids_from_its_rows(tmp_path):
    shard = hf_shard(tmp_path / "s.parquet", [{"audio": {"bytes": b"x", "path": None}}] * 2)
    ids = read_manifest(ManifestConfig(uri=shard))["id"].to_pylist()
    assert ids == [derive_id(f"{shard}#row={i}&column=audio") for i in range(2)]


# -- malformed manifests -------------------------------------------------------------------------


MALFORMED = [
    (
        "m.json",
        [{"audio_filepath": "a.wav", "duration": 1}, "{broken", {"audio_filepath": "b.wav"}],
        "auto",
        r"m\.json: line 2: not JSON",
    ),
    (
        "m.jsonl",
        [{"audio": "a.wav"}, {"audio": "b.wav", "offset_s": -1.0}],
        "auto",
        r"m\.jsonl: line 2: a span cannot start before the file",
    ),
    (
        "m.jsonl",
        [{"audio": "a.wav", "duration_s": 0}],
        "auto",
        r"m\.jsonl: line 1: a span must last longer than 0 s",
    ),
    (
        "m.jsonl",
        [{"audio": "a.wav", "offset_s": "soon"}],
        "auto",
        r"m\.jsonl: line 1: 'offset_s' is 'soon'; expected a number of seconds",
    ),
    (
        "m.json",
        [{"audio_filepath": ["a.wav"], "duration": 1}],
        "nemo",
        r"m\.json: line 1: 'audio_filepath' is list",
    ),
    (
        "m.jsonl",
        [{"audio": "a.wav"}],
        "hf",
        r"an hf manifest is Parquet shards, not json",
    ),
    (
        "supervisions.jsonl",
        [supervision("s", "nowhere", 0.0, 1.0)],
        "lhotse",
        "expected recordings.jsonl next to it",
    ),
    (
        "cuts.jsonl",
        [{"id": "c", "type": "MixedCut", "tracks": []}],
        "auto",
        r"cuts\.jsonl: line 1: a MixedCut is not supported",
    ),
    (
        "cuts.jsonl",
        [
            mono_cut(
                "c",
                {
                    **lhotse_recording("r", [("x", [0])], seconds=1.0),
                    "sources": [
                        {"type": "command", "channels": [0], "source": "sox x.wav -t wav -"}
                    ],
                },
                0.0,
                1.0,
            )
        ],
        "auto",
        r"cuts\.jsonl: line 1: recording 'r' has a 'command' source",
    ),
]


@pytest.mark.parametrize(("name", "lines", "fmt", "message"), MALFORMED)
def test_a_malformed_manifest_names_the_file_the_line_and_the_problem(
    tmp_path, name, lines, fmt, message
):
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (tmp_path / name).write_text(text)
    with pytest.raises(ManifestError, match=message):
        read_manifest(ManifestConfig(uri=str(tmp_path / name), format=fmt))


def test_a_supervision_of_an_unknown_recording_is_named(tmp_path):
    write_jsonl(
        tmp_path / "recordings.jsonl", [lhotse_recording("r", [("r.wav", [0])], seconds=1.0)]
    )
    write_jsonl(
        tmp_path / "supervisions.jsonl", [supervision("s", "r", 0, 1), supervision("t", "q", 0, 1)]
    )
    with pytest.raises(
        ManifestError, match=r"supervisions\.jsonl: line 2: supervision 't' is of recording 'q'"
    ):
        read_manifest(ManifestConfig(uri=str(tmp_path)))


def test_lines_are_counted_as_written_with_blank_lines_and_a_header(tmp_path):
    (tmp_path / "m.jsonl").write_text(
        '{"audio": "a.wav"}\n\n\n{"audio": "b.wav", "duration_s": 0}\n'
    )
    with pytest.raises(ManifestError, match=r"m\.jsonl: line 4: a span must last"):
        read_manifest(ManifestConfig(uri=str(tmp_path / "m.jsonl")))
    (tmp_path / "m.csv").write_text('audio,text,offset_s\na.wav,"two\nlines",1\nb.wav,,-2\n')
    with pytest.raises(ManifestError, match=r"m\.csv: line 4: a span cannot start before"):
        read_manifest(ManifestConfig(uri=str(tmp_path / "m.csv")))


def test_a_csv_line_with_too_many_values_is_named(tmp_path):
    (tmp_path / "m.csv").write_text("id,audio\na,a.wav\nb,b.wav,c,d\n")
    with pytest.raises(ManifestError, match=r"m\.csv: line 3: not as many values as the header"):
        read_manifest(ManifestConfig(uri=str(tmp_path / "m.csv")))
