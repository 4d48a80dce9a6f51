"""torch and CTranslate2 share a process without spinning threads, unless told otherwise."""

from __future__ import annotations

import os

from speech_emotion.threads import SLEEPING_OPENMP, quiet_openmp


def test_openmp_threads_are_asked_to_sleep_when_idle(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    quiet_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" == SLEEPING_OPENMP["OMP_WAIT_POLICY"]


def test_a_wait_policy_the_environment_chose_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    quiet_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
