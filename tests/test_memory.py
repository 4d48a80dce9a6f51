"""A model batch that runs out of accelerator memory is split and tried again, down to one
window; a clip that does not fit even alone is an ``out_of_memory`` error row naming its length,
and the rest of the batch is annotated as if nothing happened. Caused on CPU by a classifier that
raises torch's own out-of-memory error above a batch size or clip length, in the model stage."""

from __future__ import annotations

import pytest
import torch

from speech_emotion.config import DecodeConfig
from speech_emotion.stages import DecodeStage

from .test_stages import decode, model_stage, recordings


class OutOfMemoryAbove:
    """The real classifier, on a device that holds at most ``clips`` clips at once, and no clip
    longer than ``seconds``."""

    def __init__(self, classifier, *, clips: int, seconds: float) -> None:
        self.inner = classifier
        self.max_clips, self.max_samples = clips, int(seconds * 16000)
        self.served: list[int] = []
        """The sizes of the batches it classified."""

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def classify(self, waveforms, texts, *, features=None):
        count = len(waveforms)  # the decode stage here computes no features: waveforms come
        longest = max(len(w) for w in waveforms)
        if count > self.max_clips or longest > self.max_samples:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.served.append(count)
        return self.inner.classify(waveforms, texts, features=features)


@pytest.fixture
def batch(tmp_path):
    seconds = [0.5, 0.6, 3.0, 0.7, 0.8]
    table = recordings(tmp_path, [(f"c{i}", s, None, None) for i, s in enumerate(seconds)])
    # A window per clip: a batch splits down to one window, and packed clips share theirs.
    return decode(DecodeStage(DecodeConfig(), packing=False), table)


def test_a_batch_too_big_is_split_and_every_clip_gets_the_labels_it_gets_alone(tiny_models, batch):
    expected = model_stage(tiny_models, mode="audio")(batch).to_pylist()
    stage = model_stage(tiny_models, mode="audio")
    loaded = stage.annotator.classifiers.loaded
    fault = loaded["en"] = OutOfMemoryAbove(loaded["en"], clips=2, seconds=60)
    rows = stage(batch).to_pylist()
    assert max(fault.served) <= 2 and sum(fault.served) == 5
    assert [r["status"] for r in rows] == ["ok"] * 5
    for got, want in zip(rows, expected, strict=True):
        assert dict(got["scores"]) == pytest.approx(dict(want["scores"]), abs=1e-5)


def test_a_clip_that_never_fits_is_an_error_row_naming_its_length(tiny_models, batch):
    stage = model_stage(tiny_models, mode="audio")
    loaded = stage.annotator.classifiers.loaded
    loaded["en"] = OutOfMemoryAbove(loaded["en"], clips=16, seconds=2.0)
    rows = stage(batch).to_pylist()
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "ok", "ok"]
    failed = rows[2]
    assert failed["error_code"] == "out_of_memory"
    assert "3.0 s clip" in failed["error"] and failed["error"].startswith("models:")
    assert failed["emotion"] is None and failed["scores"] is None
