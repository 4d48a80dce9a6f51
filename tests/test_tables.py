"""Delta and Iceberg outputs, on a local disk and in S3 (moto's server): every run is one commit
that carries its id, readers see only whole committed runs, and no run is ever committed twice,
whether it is run again, resumed after a crash right after its commit, or loses a race.

Rows are read back with each format's own reader (deltalake, pyiceberg) and with DuckDB over the
data files the table lists (DuckDB's own table extensions cannot be installed offline)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from speech_emotion.config import OutputConfig
from speech_emotion.errors import ConfigError
from speech_emotion.ledger import RunLedger, RunRecord
from speech_emotion.output import Output, open_output
from speech_emotion.pipeline import run
from speech_emotion.schema import OUTPUT_SCHEMA, TABLE_SCHEMA

from .factories import Corpus, clip_rows, error_row, job_config, table

RUN_DATE = "2026-11-24"


@dataclass
class Target:
    """One table to write: where, in which format, and how its own readers see it."""

    config: OutputConfig
    s3: bool

    def open(self) -> Output:
        return open_output(self.config, create=True)

    def rows(self) -> pa.Table:
        """Every row, read by the format's own reader."""
        if self.config.format == "delta":
            from deltalake import DeltaTable

            return pa.table(DeltaTable(self.config.uri).to_pyarrow_table())
        return self._iceberg().scan().to_arrow()

    def commits(self) -> list[str | None]:
        """Per commit (version, snapshot), oldest first, the run it carries: Delta's application
        transaction, Iceberg's summary; None for a table's creation or a schema change."""
        if self.config.format == "delta":
            fs, root = fsspec.core.url_to_fs(f"{self.config.uri}/_delta_log")
            fs.invalidate_cache(root)  # delta-rs wrote it, not fsspec
            found = []
            for path in sorted(p for p in fs.ls(root, detail=False) if p.endswith(".json")):
                actions = [json.loads(line) for line in fs.cat_file(path).splitlines()]
                txns = [a["txn"]["appId"] for a in actions if "txn" in a]
                found.append(txns[0].removeprefix("speech-emotion:") if txns else None)
            return found
        snapshots = self._iceberg().snapshots()
        return [s.summary["speech-emotion.run-id"] for s in snapshots]

    def data_files(self) -> list[str]:
        if self.config.format == "delta":
            from deltalake import DeltaTable

            return DeltaTable(self.config.uri).file_uris()
        return [task.file.file_path for task in self._iceberg().scan().plan_files()]

    def _iceberg(self):
        from speech_emotion.iceberg import open_catalog

        return open_catalog(self.config.catalog).load_table(self.config.uri)


@pytest.fixture(params=["delta-local", "delta-s3", "iceberg-local", "iceberg-s3"])
def target(request, tmp_path, monkeypatch) -> Target:
    fmt, where = request.param.split("-")
    s3 = where == "s3"
    key = uuid.uuid4().hex[:8]
    if s3:
        bucket = request.getfixturevalue("s3")
        # delta-rs takes the endpoint from the AWS environment, but plain HTTP only when told.
        monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    if fmt == "delta":
        uri = bucket.url(f"tables-{key}/labels") if s3 else str(tmp_path / "labels")
        return Target(OutputConfig(uri=uri, format="delta"), s3)
    name = f"t{key}"
    prefix = f"PYICEBERG_CATALOG__{name.upper()}__"
    monkeypatch.setenv(prefix + "URI", f"sqlite:///{tmp_path / 'catalog.db'}")
    if s3:
        monkeypatch.setenv(prefix + "WAREHOUSE", bucket.url(f"warehouse-{key}"))
        monkeypatch.setenv(prefix + "S3__ENDPOINT", bucket.endpoint)
        monkeypatch.setenv(prefix + "S3__REGION", "us-east-1")
        monkeypatch.setenv(prefix + "S3__ACCESS_KEY_ID", "testing")
        monkeypatch.setenv(prefix + "S3__SECRET_ACCESS_KEY", "testing")
    else:
        monkeypatch.setenv(prefix + "WAREHOUSE", (tmp_path / "warehouse").as_uri())
    return Target(OutputConfig(uri="speech.labels", format="iceberg", catalog=name), s3)


# -- a run's steps, as the job takes them, without Ray ------------------------------------------


def stage(output: Output, run_id: str, rows: list[dict]) -> list[str]:
    """What the job's stages leave: the run started, its rows staged."""
    output.ledger.start(run_id)
    path = f"{output.ledger.staging(run_id)}/part-0.parquet"
    pq.write_table(table(OUTPUT_SCHEMA, rows), path, filesystem=output.ledger.fs)
    return output.ledger.staged_files(run_id)


def record(run_id: str, files: list[str], rows: int) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        run_date=RUN_DATE,
        started_at=f"{RUN_DATE}T00:00:00+00:00",
        finished_at=f"{RUN_DATE}T00:01:00+00:00",
        wall_s=60.0,
        manifest="manifest.jsonl",
        schema_version="2",
        rows=rows,
        ok=rows,
        errors={},
        skipped_done=0,
        skipped_exhausted=0,
        audio_s=1.0,
        files=files,
        models={},
    )


def commit(output: Output, run_id: str, rows: list[dict]) -> RunRecord:
    """Stage, prepare, check and commit one run, then tidy up: the job's last steps."""
    files = output.publisher.prepare(run_id, RUN_DATE, stage(output, run_id, rows))
    assert output.publisher.read(files, ["id"]).num_rows == len(rows)
    done = record(run_id, files, len(rows))
    output.publisher.commit(done)
    output.ledger.discard(run_id)
    return done


def ids(rows: pa.Table) -> list[str]:
    return sorted(rows["id"].to_pylist())


def test_a_run_is_one_commit_carrying_its_id_and_readers_see_its_rows(target):
    output = target.open()
    commit(
        output, "run-1", clip_rows("a", 2, scores={"happy": 0.75, "sad": 0.25}) + [error_row("b")]
    )

    rows = target.rows()
    assert ids(rows) == ["a", "a", "b"]
    assert pa.types.is_map(rows.schema.field("scores").type)  # a real map, not a struct
    happy = [dict(s)["happy"] for s in rows["scores"].to_pylist() if s]
    assert happy == [0.75, 0.75]
    assert [c for c in target.commits() if c] == ["run-1"]
    assert [r.run_id for r in output.publisher.runs()] == ["run-1"]
    assert output.publisher.is_committed("run-1") and not output.publisher.is_committed("run")
    assert ids(output.read(["id"])) == ["a", "a", "b"]
    assert output.ledger.is_committed("run-1")  # the ledger's copy, for the report
    if not target.s3:  # DuckDB over the files the table lists (httpfs cannot load offline)
        files = [f.removeprefix("file://") for f in target.data_files()]
        assert duckdb.sql(f"SELECT count(*) FROM read_parquet({files!r})").fetchall() == [(3,)]


def test_a_run_committed_already_is_not_committed_again(target):
    output = target.open()
    first = commit(output, "run-1", clip_rows("a"))
    output.publisher.commit(first)
    assert target.commits().count("run-1") == 1
    with pytest.raises(ConfigError, match="already committed"):
        from speech_emotion.runs import choose_run_id

        choose_run_id("run-1", output.ledger, output.publisher.is_committed)


def test_a_driver_killed_right_after_the_table_commit_makes_no_second_commit(target, monkeypatch):
    output = target.open()
    commit(output, "run-1", clip_rows("a"))
    files = output.publisher.prepare("run-2", RUN_DATE, stage(output, "run-2", clip_rows("b")))

    def killed(self, record):
        raise SystemExit("killed after the table's commit")

    with monkeypatch.context() as patch:
        patch.setattr(RunLedger, "write_record", killed)
        with pytest.raises(SystemExit):
            output.publisher.commit(record("run-2", files, 1))
    assert [c for c in target.commits() if c] == ["run-1", "run-2"]
    assert output.ledger.uncommitted() == ["run-2"]  # staged, no record: looks crashed

    again = target.open()  # the job run again
    assert again.uncommitted() == [] and again.settle() == ["run-2"]
    assert again.ledger.uncommitted() == [] and again.ledger.is_committed("run-2")
    # Even a resume that got as far as committing finds the commit and makes none.
    assert again.publisher.prepare("run-2", RUN_DATE, []) == files
    again.publisher.commit(record("run-2", files, 1))
    assert [c for c in target.commits() if c] == ["run-1", "run-2"]
    assert ids(target.rows()) == ["a", "b"]


def test_a_run_killed_before_its_commit_leaves_nothing_visible(target):
    output = target.open()
    commit(output, "run-1", clip_rows("a"))
    output.publisher.prepare("run-2", RUN_DATE, stage(output, "run-2", clip_rows("b")))
    assert ids(target.rows()) == ["a"] and ids(output.read(["id"])) == ["a"]
    assert [r.run_id for r in output.publisher.runs()] == ["run-1"]
    assert target.open().uncommitted() == ["run-2"]


def test_a_commit_that_loses_a_race_to_the_same_run_is_not_applied_twice(target, monkeypatch):
    """Two drivers commit the same run: the one that loaded the table before the other's
    commit fails its commit, reloads, finds the run, and stops."""
    output = target.open()
    commit(output, "run-1", clip_rows("a"))
    files = output.publisher.prepare("run-2", RUN_DATE, stage(output, "run-2", clip_rows("b")))
    publisher = output.publisher
    method = "_create" if target.config.format == "delta" else "_table"
    stale = getattr(publisher, method)()  # loaded before the other driver's commit
    target.open().publisher.commit(record("run-2", files, 1))

    loads = iter([stale])
    original = getattr(type(publisher), method)
    monkeypatch.setattr(
        type(publisher), method, lambda self, *a, **k: next(loads, None) or original(self, *a, **k)
    )
    publisher.commit(record("run-2", files, 1))
    assert [c for c in target.commits() if c] == ["run-1", "run-2"]
    assert ids(target.rows()) == ["a", "b"]


def test_a_commit_that_loses_a_race_to_another_run_is_retried(target, monkeypatch):
    output = target.open()
    commit(output, "run-1", clip_rows("a"))
    files = output.publisher.prepare("run-2", RUN_DATE, stage(output, "run-2", clip_rows("b")))
    publisher = output.publisher
    method = "_create" if target.config.format == "delta" else "_table"
    stale = getattr(publisher, method)()
    commit(target.open(), "run-3", clip_rows("c"))

    loads = iter([stale])
    original = getattr(type(publisher), method)
    monkeypatch.setattr(
        type(publisher), method, lambda self, *a, **k: next(loads, None) or original(self, *a, **k)
    )
    publisher.commit(record("run-2", files, 1))
    assert [c for c in target.commits() if c] == ["run-1", "run-3", "run-2"]
    assert ids(target.rows()) == ["a", "b", "c"]


def test_a_run_with_no_rows_makes_no_commit(target):
    output = target.open()
    commit(output, "run-1", clip_rows("a"))
    before = target.commits()
    output.publisher.commit(record("empty", [], 0))
    assert target.commits() == before


def test_a_table_of_an_older_schema_gains_the_new_columns_in_place(target):
    """A table made before the segment columns existed: the next run adds them, and the older
    rows read back with them null."""
    older = pa.schema([f for f in TABLE_SCHEMA if f.name not in ("segment_count", "channel")])
    old_rows = table(OUTPUT_SCHEMA, [error_row("old")]).append_column(
        TABLE_SCHEMA.field("run_date"), pa.array([None], pa.date32()).fill_null(0)
    )
    old_rows = old_rows.select(older.names).cast(older)
    if target.config.format == "delta":
        from deltalake import write_deltalake

        write_deltalake(target.config.uri, old_rows, partition_by=["run_date"])
    else:
        from speech_emotion.iceberg import open_catalog

        catalog = open_catalog(target.config.catalog)
        catalog.create_namespace_if_not_exists("speech")
        catalog.create_table("speech.labels", older).append(old_rows)
    output = target.open()
    commit(output, "run-1", clip_rows("a", 2, channels=[1]))

    rows = target.rows()
    assert set(TABLE_SCHEMA.names) <= set(rows.column_names)
    by_id = {(r["id"], r["segment_index"]): r for r in rows.to_pylist()}
    assert by_id[("old", None)]["segment_count"] is None
    assert by_id[("a", 1)]["segment_count"] == 2 and by_id[("a", 1)]["channel"] == 1
    assert ids(output.read(["id", "segment_count"])) == ["a", "a", "old"]


# -- the job, on Ray ----------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["delta-s3", "iceberg-s3"], indirect=True)
def test_nightly_runs_add_each_recording_once_in_one_commit_per_run(
    target, tmp_path, tiny_models, ray_cluster, s3
):
    """On Ray, in S3 (the publishers' own tests cover local disks too)."""
    root = s3.url(f"corpus-{uuid.uuid4().hex[:8]}") if target.s3 else str(tmp_path / "corpus")
    corpus = Corpus(root).add_tones(["a", "b"])

    def job():
        config = job_config(corpus, "unused", tiny_models, mode="audio")
        return run(dataclasses.replace(config, output=target.config))

    first = job()
    rows = target.rows()
    assert ids(rows) == ["a", "b"] == sorted(corpus.ids)
    assert rows.num_rows == first.rows
    assert [c for c in target.commits() if c] == [first.run_id]

    again = job()  # the same manifest: nothing to do, no commit
    assert (again.rows, again.skipped_done) == (0, 2)
    assert [c for c in target.commits() if c] == [first.run_id]

    corpus.add("c")
    grown = job()  # only the new recording, in one more commit
    assert (grown.rows, grown.skipped_done) == (1, 2)
    assert [c for c in target.commits() if c] == [first.run_id, grown.run_id]
    rows = target.rows()
    assert ids(rows) == ["a", "b", "c"]
    assert rows.filter(pa.compute.equal(rows["run_id"], grown.run_id))["id"].to_pylist() == ["c"]
    listed = [r.run_id for r in open_output(target.config).publisher.runs()]
    assert listed == [first.run_id, grown.run_id]


# -- choosing and listing -----------------------------------------------------------------------


@pytest.mark.parametrize("target", ["delta-local", "iceberg-local"], indirect=True)
def test_the_runs_command_lists_the_runs_from_the_tables_history(target, capsys):
    from speech_emotion.cli import main

    output = target.open()
    commit(output, "run-1", clip_rows("a"))
    commit(output, "run-2", clip_rows("b"))
    stage(output, "run-3", clip_rows("c"))
    for path in output.ledger.fs.glob(f"{output.ledger.root}/_runs/*.json"):
        output.ledger.fs.rm(path)  # the ledger's copies are not what is listed
    flags = ["--format", target.config.format]
    if target.config.catalog:
        flags += ["--catalog", target.config.catalog]
    assert main(["runs", target.config.uri, *flags]) == 0
    listing = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[0] for line in listing] == ["run-1", "run-2", "run-3"]
    assert "not committed" in listing[2]


def test_with_no_catalog_configured_iceberg_uses_an_embedded_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    output = open_output(OutputConfig(uri="speech.labels", format="iceberg"), create=True)
    commit(output, "run-1", clip_rows("a"))
    assert (tmp_path / ".speech_emotion" / "iceberg" / "catalog.db").is_file()
    assert output.ledger.root.startswith(str(tmp_path / ".speech_emotion" / "iceberg"))
    assert ids(output.read(["id"])) == ["a"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"uri": "labels", "format": "iceberg"}, "NAMESPACE.TABLE"),
        ({"uri": "out", "format": "delta", "catalog": "x"}, "names an Iceberg catalog"),
        ({"uri": "out", "staging": "s3://b/s"}, "its runs stage under OUTPUT"),
        ({"uri": "out", "format": "orc"}, "one of parquet, delta, iceberg"),
    ],
)
def test_output_settings_that_cannot_work_are_refused_by_name(settings, message):
    with pytest.raises(ConfigError, match=message):
        OutputConfig(**settings)


def test_a_named_catalog_that_is_not_configured_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="PYICEBERG_CATALOG__NOPE__"):
        open_output(OutputConfig(uri="a.b", format="iceberg", catalog="nope"))
    with pytest.raises(ConfigError, match="no such table"):
        open_output(OutputConfig(uri="a.b", format="iceberg"))
