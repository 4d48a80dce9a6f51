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


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


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
    with pytest.raises(ManifestError, match="1 rows have no audio path \\(first at row 2\\)"):
        read_manifest(ManifestConfig(uri=uri))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("m.jsonl", "{not json", "not a readable json manifest"),
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
