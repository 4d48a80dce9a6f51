"""A newcomer's first hour: a mistake a person must fix is one line and exit 2 before Ray starts,
with nothing left behind; a run without a GPU runs on CPU and says so; the output is this job's
lines only; exit codes say whether the run did any good."""

from __future__ import annotations

import inspect
import os
from dataclasses import replace

import pytest

import speech_emotion
from speech_emotion.cli import EXIT_NOTHING_OK, EXIT_TOO_MANY_ERRORS, build_parser, main
from speech_emotion.console import quiet_native_stderr
from speech_emotion.errors import ConfigError
from speech_emotion.manifest import read_manifest
from speech_emotion.output import open_output
from speech_emotion.pipeline import run
from speech_emotion.predict import Predictor
from speech_emotion.resources import gpu_verdict
from speech_emotion.runs import select_recordings

from .factories import Corpus, job_config, tiny_model_config, tiny_model_flags, wav
from .test_cli import assert_clean_failure
from .test_cli import speech_emotion as cli


@pytest.fixture
def corpus(tmp_path) -> Corpus:
    return Corpus(str(tmp_path / "corpus"))


# -- refused before anything starts ------------------------------------------------------------


def test_a_manifest_whose_audio_is_all_outside_the_allowed_prefixes_is_refused(tmp_path, corpus):
    corpus.add("a", missing=True, path="s3://another-bucket/a.wav")
    out = tmp_path / "labels"
    result = cli("annotate", corpus.manifest, str(out))
    assert_clean_failure(result, "outside the allowed prefixes (/)", "--allowed-prefix")
    assert not out.exists()


def test_audio_anywhere_on_the_local_disk_is_allowed_for_a_local_manifest(tmp_path, corpus):
    elsewhere = tmp_path / "elsewhere" / "a.wav"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(wav())
    corpus.add("a", missing=True, path=str(elsewhere))
    # Gets as far as the models (the hub is unreachable here): the prefix rule let it through.
    result = cli("annotate", corpus.manifest, str(tmp_path / "labels"))
    assert_clean_failure(result, "UMUTeam/")


def test_an_unknown_language_is_refused_before_ray_starts(tmp_path, corpus):
    corpus.add("a")
    result = cli("annotate", corpus.manifest, str(tmp_path / "labels"), "--language", "xx")
    assert_clean_failure(result, "language='xx' is invalid", "auto")


@pytest.mark.parametrize("where", ["is", "under"])
def test_an_output_that_is_a_file_is_refused_in_one_line(tmp_path, corpus, where):
    corpus.add("a")
    (tmp_path / "labels").write_text("not a folder")
    out = tmp_path / "labels" if where == "is" else tmp_path / "labels" / "2026"
    result = cli("annotate", corpus.manifest, str(out))
    assert_clean_failure(result, "is a file")


def test_a_missing_output_bucket_is_refused_and_never_created(s3, tmp_path, corpus):
    import boto3

    corpus.add("a")
    result = cli("annotate", corpus.manifest, "s3://no-such-bucket/labels/")
    assert_clean_failure(result, "bucket s3://no-such-bucket does not exist", "never creates")
    names = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    assert "no-such-bucket" not in names


def test_a_checkpoint_that_does_not_fit_the_mode_is_refused_from_its_header_alone(
    tmp_path, corpus, tiny_models
):
    corpus.add("a")
    out = tmp_path / "labels"
    flags = ["--emotion-model", str(tiny_models.emotion["concat"]), "--num-gpus-per-worker", "0"]
    result = cli("annotate", corpus.manifest, str(out), "--mode", "audio", *flags)
    assert_clean_failure(result, "emotion model", "mode 'audio'")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (out / "_staging").exists()  # no "crashed, re-run to resume" entry
    speech_checkpoint_as_text = cli("annotate", corpus.manifest, str(out), "--mode", "text", *flags)
    assert_clean_failure(speech_checkpoint_as_text, "speech (Wav2Vec2-BERT) checkpoint")


def test_runs_on_a_path_without_an_output_says_so_and_fails(tmp_path):
    result = cli("runs", str(tmp_path / "labelz"))
    assert_clean_failure(result, "no output at", "labelz")
    assert not (tmp_path / "labelz").exists()  # looking creates nothing


def test_a_run_resumed_with_other_settings_is_refused(tmp_path, corpus, tiny_models):
    corpus.add("a")
    out = tmp_path / "labels"
    first = job_config(corpus, out, tiny_models, mode="concat")
    open_output(str(out)).ledger.start("crashed", first.row_settings)
    with pytest.raises(ConfigError, match=r"mode 'concat' then, 'audio' now.*_staging/crashed"):
        run(job_config(corpus, out, tiny_models, mode="audio"))


# -- what a person sees ------------------------------------------------------------------------


def test_help_shows_every_default_and_describes_the_manifest_and_prefixes():
    [commands] = [a for a in build_parser()._actions if a.dest == "command"]
    annotate = commands.choices["annotate"]
    formatter = annotate._get_formatter()
    for action in annotate._actions:
        if not action.option_strings or action.dest in ("help", "verbose"):
            continue
        text = formatter._get_help_string(action) or ""
        assert "default" in text, f"{action.option_strings[0]} does not say its default"
    epilog = annotate.epilog or ""
    assert "`audio` (required" in epilog and "--allowed-prefix" in epilog
    assert "--num-gpus-per-worker 0" in epilog


def test_verbose_is_taken_before_or_after_the_subcommand():
    parse = build_parser().parse_args
    assert parse(["-v", "runs", "out"]).verbose
    assert parse(["runs", "out", "-v"]).verbose
    assert not parse(["runs", "out"]).verbose


def test_ray_core_lines_are_dropped_from_stderr_and_nothing_else(capfd):
    with quiet_native_stderr():
        os.write(2, b"[2026-12-02 02:47:01,592 E 28119 28119] core_worker.cc:2465: Actor ...\n")
        os.write(2, b"a line of another library\n")
    os.write(2, b"[2026-12-02 02:47:01,592 E 1 1] core_worker.cc:1: after the block\n")
    lines = capfd.readouterr().err.splitlines()
    assert sorted(lines) == sorted(
        [
            "a line of another library",
            "[2026-12-02 02:47:01,592 E 1 1] core_worker.cc:1: after the block",
        ]
    )


@pytest.mark.parametrize(
    ("need", "nodes", "node_types", "own_ray", "verdict"),
    [
        (1, [0.0], None, True, "cpu"),  # the job's own Ray on a laptop
        (0, [0.0], None, False, "run"),
        (1, [0.0, 1.0], None, False, "run"),
        (1, [0.0], [0.0, 4.0], False, "wait"),  # the autoscaler has a GPU type
        (2, [1.0], [0.0, 1.0], False, "never"),  # no type can ever have 2
        (1, [0.0], None, False, "wait"),  # no autoscaler's node types: cannot tell
    ],
)
def test_a_gpu_request_is_run_moved_to_cpu_waited_for_or_refused(
    need, nodes, node_types, own_ray, verdict
):
    assert gpu_verdict(need, nodes, node_types, own_ray) == verdict


def test_predict_emotion_shows_the_toolkits_signature_and_documents_its_keywords():
    signature = inspect.signature(speech_emotion.predict_emotion)
    assert list(signature.parameters)[:7] == [
        "audio_path",
        "text",
        "model_id",
        "mode",
        "language",
        "device",
        "model_config_path",
    ]
    assert signature.parameters["mode"].default == "text"
    assert signature.parameters["language"].default == "es"
    doc = inspect.getdoc(speech_emotion.predict_emotion) or ""
    for keyword in signature.parameters:
        assert f"{keyword}:" in doc
    assert "--emotion-model" in doc


def test_the_predictor_returns_the_transcript_it_used(tiny_models, tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav(0.8))
    predictor = Predictor(tiny_model_config(tiny_models))
    heard = predictor.predict(str(clip))
    assert heard["transcript_source"] == "whisper" and isinstance(heard["transcript"], str)
    given = predictor.predict(str(clip), text="I can't believe it!")
    assert (given["transcript"], given["transcript_source"]) == ("I can't believe it!", "manifest")
    assert given["top_label"] in given["scores"]


# -- runs --------------------------------------------------------------------------------------


@pytest.mark.slow  # two runs, each on a local Ray of its own
def test_the_headline_command_runs_without_a_gpu_quietly_and_a_rerun_records_nothing(
    tmp_path, corpus, tiny_models
):
    corpus.add_tones(["a", "b"])
    out = str(tmp_path / "labels")
    flags = tiny_model_flags(tiny_models, job=False)  # no --num-gpus-per-worker 0
    first = cli("annotate", corpus.manifest, out, *flags)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [first.stdout.strip()]  # the summary, alone
    assert first.stdout.startswith("speech-emotion: run ") and "2 ok" in first.stdout
    notice = first.stderr.strip().splitlines()
    assert len(notice) == 1 and "no GPU on this machine: the models run on CPU" in notice[0]

    again = cli("annotate", corpus.manifest, out, *flags)
    assert again.returncode == 0, again.stderr
    assert "nothing to do: 2 recordings already ok" in again.stdout
    assert again.stderr == ""  # nothing ran: no Ray, no notice
    listed = cli("runs", out).stdout.strip().splitlines()
    assert len(listed) == 2  # the header and the one run that did something


@pytest.mark.slow
def test_exit_codes_say_whether_a_committed_run_did_any_good(
    tmp_path, corpus, tiny_models, ray_cluster, capsys
):
    corpus.add("a").add("gone", missing=True)
    out = str(tmp_path / "labels")
    args = ["annotate", corpus.manifest, out, *tiny_model_flags(tiny_models)]
    assert main([*args, "--max-error-fraction", "0.25"]) == EXIT_TOO_MANY_ERRORS
    assert "1 of 2 recordings failed" in capsys.readouterr().err
    # The next night only the missing file is tried again, and fails again.
    assert main(args) == EXIT_NOTHING_OK
    assert "no recording succeeded" in capsys.readouterr().err
    assert len(open_output(out).publisher.runs()) == 2  # both committed all the same


@pytest.mark.slow
def test_rows_outside_the_allowed_prefixes_are_error_rows_that_use_up_no_attempts(
    tmp_path, corpus, tiny_models, ray_cluster
):
    (tmp_path / "elsewhere.wav").write_bytes(wav())
    corpus.add("a").add("sneaky", missing=True, path=str(tmp_path / "elsewhere.wav"))
    out = tmp_path / "labels"
    config = job_config(corpus, out, tiny_models, max_attempts=1)
    folder_only = replace(config, decode=replace(config.decode, allowed_prefixes=(corpus.root,)))
    run(folder_only)
    [sneaky] = [r for r in open_output(str(out)).read().to_pylist() if r["id"] == "sneaky"]
    assert sneaky["error_code"] == "outside_allowed_prefixes"
    assert "--allowed-prefix" in sneaky["error"]
    # With one attempt allowed, the next run still tries it: the failure was not its own.
    output = open_output(str(out))
    again = select_recordings(read_manifest(folder_only.manifest), output.history(), 1)
    assert again.todo["id"].to_pylist() == ["sneaky"] and again.todo["attempt"][0].as_py() == 2
