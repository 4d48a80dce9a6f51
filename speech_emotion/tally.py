"""What the stages did while a run goes: sums they send, read by the progress line and written
into the run record; and the marks of work in hand that find poison inputs (:mod:`crashes`).

Each stage sends its figures after every block it makes (``tally(stage, figures)``); the sums live
in one small Ray actor of the run, so the driver can read them at any time. Ray Data's own
per-operator statistics (busy and CPU time, rows, span) join them at the end
(:func:`operator_figures`); what only the stages know (audio seconds, Whisper's share of the
model stage, recordings done) comes from here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["Report", "Tally", "TallyClient", "operator_figures"]

Report = Callable[[str, Mapping[str, float]], None]
"""How a stage reports: ``report(stage, figures)``, figures to add to the stage's sums."""

# Ray Data's operator names for our stages.
_OPERATORS = {
    "MapBatches(DecodeStage)": "decode",
    "MapBatches(ModelStage)": "models",
    "Write": "write",
}


class Tally:
    """Sums of figures by stage (a Ray actor in a run, a plain object in tests)."""

    def __init__(self) -> None:
        self._sums: defaultdict[str, Counter] = defaultdict(Counter)
        self._held: Counter[str] = Counter()

    def add(self, stage: str, figures: Mapping[str, float]) -> None:
        self._sums[stage].update(figures)

    def enter(self, keys: Sequence[str]) -> list[int]:
        """Work in hand (:mod:`crashes`): returns how many earlier marks of each were never
        cleared, then marks it once more."""
        earlier = [self._held[key] for key in keys]
        self._held.update(keys)
        return earlier

    def leave(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._held.pop(key, None)

    def totals(self) -> dict[str, dict[str, float]]:
        return {stage: dict(sums) for stage, sums in self._sums.items()}


class TallyClient:
    """A stage's way to a run's tally actor: fire and forget, never waits for the actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def __call__(self, stage: str, figures: Mapping[str, float]) -> None:
        self.actor.add.remote(stage, dict(figures))

    def enter(self, keys: Sequence[str]) -> list[int]:
        """Waited for: the mark must be set before the work it guards can kill the worker."""
        import ray

        return ray.get(self.actor.enter.remote(list(keys)))

    def leave(self, keys: Sequence[str]) -> None:
        """Waited for too: a worker that dies next must not take the clearing with it."""
        import ray

        ray.get(self.actor.leave.remote(list(keys)))


def operator_figures(dataset: Dataset) -> dict[str, dict[str, float]]:
    """Busy (remote wall) time, CPU time, rows out, tasks and span of each of our stages, from Ray
    Data's statistics of the executed (written) dataset."""
    summary = dataset.get_stats_summary()
    figures: dict[str, dict[str, float]] = {}
    todo = [summary]
    while todo:
        current = todo.pop()
        todo.extend(current.parents)
        for op in current.operators_stats:
            stage = _OPERATORS.get(op.operator_name)
            if stage is None or op.wall_time is None:
                continue
            figures[stage] = {
                "busy_s": round(op.wall_time.sum, 3),
                "cpu_s": round(op.cpu_time.sum, 3) if op.cpu_time else 0.0,
                "rows_out": int(op.output_num_rows.sum) if op.output_num_rows else 0,
                "tasks": int(op.wall_time.count),
                "span_s": round(op.latest_end_time - op.earliest_start_time, 3)
                if op.latest_end_time and op.earliest_start_time
                else 0.0,
            }
    return figures
