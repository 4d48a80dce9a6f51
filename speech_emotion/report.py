"""A run's report: one self-contained HTML file a person opens in a browser, offline.

Built from the run records (counts, stage figures, models, options) and from aggregates that
pyarrow computes over the runs' committed rows, a few columns at a time, never a Python object per
row. Charts are Bokeh's, with BokehJS inlined (about 1.3 MB), so the file needs no network: it
opens from an air-gapped laptop or an object-store link alike.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .ledger import RunRecord
from .output import Output
from .schema import OUTPUT_SCHEMA, STATUS_OK

__all__ = ["Scan", "build_report", "report_for", "scan_files", "write_report"]

logger = logging.getLogger(__name__)

_WIDTH = 860
_EXAMPLES_PER_ERROR = 3
_TIMELINES = 3  # the longest recordings, and as many whose emotion changes most
_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
# One colour per emotion in every chart, English and Spanish labels alike.
_EMOTION_COLOURS = {
    "angry": "#d62728", "anger": "#d62728", "disgust": "#8c564b", "fear": "#9467bd",
    "happy": "#2ca02c", "joy": "#2ca02c", "neutral": "#7f7f7f", "sad": "#1f77b4",
    "sadness": "#1f77b4", "surprise": "#ff7f0e",
}  # fmt: skip


def _colour(label: object, i: int) -> str:
    return _EMOTION_COLOURS.get(str(label), _PALETTE[i % len(_PALETTE)])


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 920px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
p.note { color: #555; font-size: 0.9em; } details { margin: 0.5em 0; }
pre { font-size: 0.8em; background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
"""
_TEMPLATE = (
    """
{% block postamble %}<style>"""
    + _STYLE
    + """</style>{% endblock %}
{% block contents %}
<h1>{{ heading }}</h1>
{% for section in sections %}
<section><h2>{{ section.title }}</h2>{{ section.lead }}
{% for chart in section.charts %}{{ embed(roots[chart]) }}{% endfor %}{{ section.html }}</section>
{% endfor %}
{% endblock %}
"""
)


@dataclass
class _Section:
    title: str
    html: str = ""
    """After the charts: tables, details."""
    charts: list = field(default_factory=list)
    lead: str = ""
    """Before the charts: what they show."""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{_e(c)}</td>' if isinstance(c, int | float) else f"<td>{_e(c)}</td>"
            for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _n(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


Scan = Callable[[Sequence[str]], Iterator[pa.Table]]
"""``scan(columns)`` yields the runs' committed rows with these columns, a file at a time: every
aggregate is built from partial ones, so memory follows a file, not the run."""


def scan_files(output: Output, files: Sequence[str]) -> Scan:
    return lambda columns: (output.publisher.read([f], columns) for f in files)


def build_report(records: Sequence[RunRecord], scan: Scan) -> str:
    """The report's HTML for these runs and their committed rows."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE
    from markupsafe import Markup

    gathered = _Gathered()
    for table in scan(_COLUMNS):
        gathered.add(table)
    found = [
        _glance(records),
        _time(records),
        _errors(gathered),
        _labels(gathered),
        _timelines(gathered, scan),
    ]
    sections = [s for s in found if s is not None]
    if not any(s.charts for s in sections):
        sections[0].charts.append(_empty_chart())  # Bokeh's page needs a root to render
    heading = f"Run {records[0].run_id}" if len(records) == 1 else f"{len(records)} runs"
    heading = f"{heading} of {records[0].manifest}" if records else "No committed runs"
    return file_html(
        [chart for s in sections for chart in s.charts],
        INLINE,
        title=f"speech_emotion report: {heading}",
        template=_TEMPLATE,
        template_variables={
            "heading": Markup(_e(heading)),
            "sections": [
                {
                    "title": Markup(_e(s.title)),
                    "lead": Markup(s.lead),
                    "html": Markup(s.html),
                    "charts": [c.name for c in s.charts],
                }
                for s in sections
            ],
        },
    )


def _empty_chart():
    from bokeh.models import Div

    return Div(name="empty", text="Nothing to plot: no rows.")


def _glance(records: Sequence[RunRecord]) -> _Section:
    rows = []
    for r in records:
        rate = r.audio_s / r.wall_s if r.wall_s else 0.0
        rows.append(
            [
                r.run_id,
                r.run_date,
                r.recordings if r.recordings is not None else "",
                r.rows,
                r.ok,
                r.rows - r.ok,
                _n(r.audio_s / 3600, 3),
                _n(r.wall_s),
                _n(rate),
                r.skipped_done + r.skipped_exhausted,
            ]
        )
    table = _table(
        [
            "run",
            "date",
            "recordings",
            "rows",
            "ok",
            "error",
            "audio h",
            "wall s",
            "audio-s/s",
            "skipped",
        ],
        rows,
    )
    details = "".join(
        f"<details><summary>Models and options of {_e(r.run_id)}</summary>"
        + _table(["model", "value"], [[k, v] for k, v in r.models.items() if v is not None])
        + f"<pre>{_e(json.dumps(r.options, indent=1, sort_keys=True))}</pre></details>"
        for r in records
    )
    return _Section("The runs at a glance", table + details)


# What each stage's time went on, from the figures the stages sent (tally.py).
_ACTIVITIES = {
    "decode": [("fetch_wait_s", "waiting for reads"), ("decode_s", "decoding"),
               ("segment_s", "voice activity, segments"), ("features_s", "model features")],
    "models": [("whisper_s", "Whisper"), ("emotion_s", "emotion model")],
}  # fmt: skip


def _time(records: Sequence[RunRecord]) -> _Section | None:
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool
    from bokeh.plotting import figure

    stages: dict[str, dict[str, float]] = {}
    for r in records:
        for stage, figures in r.stages.items():
            total = stages.setdefault(stage, {})
            for key, value in figures.items():
                total[key] = total.get(key, 0.0) + value
    if not stages:
        return None
    labels, seconds = [], []
    for stage in ("decode", "models", "write"):
        if stage not in stages:
            continue
        figures = stages[stage]
        named = 0.0
        for key, label in _ACTIVITIES.get(stage, []):
            labels.append(f"{stage}: {label}")
            seconds.append(figures.get(key, 0.0))
            named += figures.get(key, 0.0)
        if stage != "decode":
            labels.append(f"{stage}: other" if stage == "models" else "write")
            seconds.append(max(0.0, figures.get("busy_s", 0.0) - named))
    chart = figure(
        name="time",
        y_range=FactorRange(factors=list(reversed(labels))),
        width=_WIDTH,
        height=40 + 28 * len(labels),
        title="Busy seconds by stage and activity (all workers together)",
        toolbar_location=None,
    )
    source = ColumnDataSource({"activity": labels, "seconds": seconds})
    chart.hbar(y="activity", right="seconds", height=0.7, source=source, color="#1f77b4")
    chart.add_tools(HoverTool(tooltips=[("", "@activity"), ("seconds", "@seconds{0.0}")]))
    workers = _model_workers(records)
    table_rows = []
    for stage, figures in stages.items():
        table_rows.append(_rates(stage, figures.get("busy_s", 0.0), figures))
        if stage == "models":
            for key, label in _ACTIVITIES["models"]:
                table_rows.append(
                    _rates(f"models: {label}", figures.get(key, 0.0), figures, part=True)
                )
    models = stages.get("models", {})
    span = models.get("span_s", 0.0)
    note = ""
    if span and workers:
        share = models.get("busy_s", 0.0) / (span * workers)
        note = (
            f'<p class="note">The model workers ({workers}) were busy {share:.0%} of the time '
            "the model stage ran: the rest they waited for decoded audio (more decode workers, "
            "or a larger <code>--decode-batch-size</code>, feed them) or for the write.</p>"
        )
    table = _table(
        ["stage", "busy s", "CPU s", "span s", "rows", "rows / busy s", "audio-s / busy s"],
        table_rows,
    )
    return _Section("Where time went", table, [chart], lead=note)


def _rates(name: str, busy: float, figures: dict[str, float], part: bool = False) -> list[object]:
    """A stage's (or, ``part``, one of its activities') time and rates in the time table."""
    rows_out = figures.get("clips", figures.get("rows_out", 0.0))
    audio = figures.get("audio_s", 0.0)
    return [
        name,
        _n(busy),
        "" if part else _n(figures.get("cpu_s", 0.0)),
        "" if part else _n(figures.get("span_s", 0.0)),
        int(rows_out),
        _n(rows_out / busy) if busy else "",
        _n(audio / busy) if busy and audio else "",
    ]


def _model_workers(records: Sequence[RunRecord]) -> int:
    """The model pool's size as configured (1 on CPU-only runs, or the maximum asked for)."""
    if not records:
        return 0
    resources = records[-1].options.get("resources", {})
    if resources.get("gpu_workers"):
        return int(resources["gpu_workers"])
    return 1 if resources.get("num_gpus_per_worker", 1) == 0 else 0


def _counts(column: pa.ChunkedArray | pa.Array) -> list[tuple[str, int]]:
    counted = pc.value_counts(column.drop_null()).to_pylist() if len(column) else []
    return sorted(((c["values"], c["counts"]) for c in counted), key=lambda x: -x[1])


def _bars(name: str, title: str, labels: list[str], values: list[float], axis: str):
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool
    from bokeh.plotting import figure

    chart = figure(
        name=name,
        x_range=FactorRange(factors=labels),
        width=_WIDTH,
        height=240,
        title=title,
        toolbar_location=None,
    )
    colors = [_colour(label, i) for i, label in enumerate(labels)]
    source = ColumnDataSource({"label": labels, "value": values, "color": colors})
    chart.vbar(x="label", top="value", width=0.8, color="color", source=source)
    chart.yaxis.axis_label = axis
    chart.add_tools(HoverTool(tooltips=[("", "@label"), (axis, "@value{0.[00]}")]))
    return chart


def _concat(tables: list[pa.Table], columns: Sequence[str]) -> pa.Table:
    """The tables end to end; with none, an empty table of ``columns`` (:data:`OUTPUT_SCHEMA`)."""
    if tables:
        return pa.concat_tables(tables)
    return pa.schema([OUTPUT_SCHEMA.field(c) for c in columns]).empty_table()


def _not_ok(table: pa.Table) -> pa.Table:
    return table.filter(pc.not_equal(table["status"], STATUS_OK))


def _ok(table: pa.Table) -> pa.Table:
    return table.filter(pc.equal(table["status"], STATUS_OK))


# Fixed bin edges, so that histograms of each file add up.
_SCORE_EDGES = np.linspace(0.0, 1.0, 21)
_DURATION_EDGES = np.append(np.arange(0.0, 31.0), np.inf)  # the last bin: 30 s and more
_ERROR_COLUMNS = ["status", "error_code", "id", "audio", "error"]
_TIMELINE_COLUMNS = [
    "status", "id", "channel", "segment_count", "start_s", "end_s", "emotion", "emotion_score",
    "recording_duration_s",
]  # fmt: skip
_COLUMNS = list(
    dict.fromkeys([*_ERROR_COLUMNS, *_TIMELINE_COLUMNS, "duration_s", "language", "emotion_score"])
)


@dataclass
class _Gathered:
    """What one pass over the runs' files leaves: their error rows, and partial aggregates that
    add up to the whole run's."""

    failed: list[pa.Table] = field(default_factory=list)
    emotions: list[pa.Table] = field(default_factory=list)
    by: dict[str, list[pa.Table]] = field(default_factory=lambda: {"language": [], "channel": []})
    scores: np.ndarray = field(default_factory=lambda: np.zeros(len(_SCORE_EDGES) - 1, np.int64))
    durations: np.ndarray = field(
        default_factory=lambda: np.zeros(len(_DURATION_EDGES) - 1, np.int64)
    )
    changes: list[pa.Table] = field(default_factory=list)

    def add(self, table: pa.Table) -> None:
        self.failed.append(_not_ok(table).select(_ERROR_COLUMNS))
        ok = _ok(table)
        self.emotions.append(
            ok.group_by("emotion").aggregate([("duration_s", "sum"), ("emotion", "count")])
        )
        for column, parts in self.by.items():
            parts.append(ok.group_by([column, "emotion"]).aggregate([("duration_s", "sum")]))
        self.scores += _histogram(ok["emotion_score"], _SCORE_EDGES)
        self.durations += _histogram(ok["duration_s"], _DURATION_EDGES)
        segments = _segments(table)
        if segments.num_rows:
            self.changes.append(_changes(segments))


def _errors(gathered: _Gathered) -> _Section:
    failed = _concat(gathered.failed, _ERROR_COLUMNS)
    if failed.num_rows == 0:
        return _Section("Errors", "<p>No error rows.</p>")
    counts = _counts(failed["error_code"])
    chart = _bars(
        "errors",
        "Error rows by code",
        [code for code, _ in counts],
        [float(n) for _, n in counts],
        "rows",
    )
    parts = []
    for code, n in counts:
        examples = failed.filter(pc.equal(failed["error_code"], code)).slice(0, _EXAMPLES_PER_ERROR)
        parts.append(
            f"<h3>{_e(code)} ({n:,} rows)</h3>"
            + _table(
                ["id", "audio", "reason"],
                [[r["id"], r["audio"], r["error"]] for r in examples.to_pylist()],
            )
        )
    return _Section("Errors", "".join(parts), [chart])


def _labels(gathered: _Gathered) -> _Section | None:
    emotions, by = gathered.emotions, gathered.by
    scores, durations = gathered.scores, gathered.durations
    if not emotions:
        return None
    totals = (
        pa.concat_tables(emotions)
        .group_by("emotion")
        .aggregate([("duration_s_sum", "sum"), ("emotion_count", "sum")])
        .rename_columns(["emotion", "seconds", "rows"])
    )
    if totals.num_rows == 0:
        return None
    order = sorted(totals.to_pylist(), key=lambda r: -r["seconds"])
    total = sum(r["seconds"] for r in order) or 1.0
    labels = [r["emotion"] for r in order]
    charts = [
        _bars(
            "emotions",
            "Share of the audio by emotion (clips weighted by their duration)",
            labels,
            [r["seconds"] / total for r in order],
            "share of audio",
        )
    ]
    for column, parts in by.items():
        grouped = (
            pa.concat_tables(parts)
            .group_by([column, "emotion"])
            .aggregate([("duration_s_sum", "sum")])
            .to_pylist()
        )
        if len({g[column] for g in grouped}) > 1:
            charts.append(_stacked(grouped, column, labels))
    charts.append(
        _histogram_chart(
            "emotion_score",
            "How confident the model was: probability of the top label",
            _SCORE_EDGES,
            scores,
        )
    )
    charts.append(
        _histogram_chart(
            "duration_s",
            "Clip durations, seconds (the last bar: 30 s and more)",
            _DURATION_EDGES,
            durations,
        )  # fmt: skip
    )
    table = _table(
        ["emotion", "rows", "audio h", "share"],
        [
            [r["emotion"], r["rows"], _n(r["seconds"] / 3600, 3), f"{r['seconds'] / total:.1%}"]
            for r in order
        ],
    )
    return _Section("Labels", table, charts)


def _histogram(column: pa.ChunkedArray, edges: np.ndarray) -> np.ndarray:
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    return np.histogram(values[np.isfinite(values)], bins=edges)[0]


def _histogram_chart(name: str, title: str, edges: np.ndarray, counts: np.ndarray):
    from bokeh.plotting import figure

    right = np.where(np.isinf(edges[1:]), edges[:-1] + 1.0, edges[1:])
    chart = figure(name=name, width=_WIDTH, height=260, title=title, toolbar_location=None)
    chart.quad(left=edges[:-1], right=right, bottom=0, top=counts, color="#1f77b4", alpha=0.8)
    chart.yaxis.axis_label = "rows"
    return chart


def _stacked(grouped: list[dict], column: str, emotions: list[str]):
    """Each ``column`` value's audio split by emotion, from (value, emotion, seconds) rows."""
    from bokeh.models import FactorRange
    from bokeh.plotting import figure

    groups = sorted({str(g[column]) for g in grouped})
    shares = {emotion: [0.0] * len(groups) for emotion in emotions}
    totals = [0.0] * len(groups)
    for g in grouped:
        totals[groups.index(str(g[column]))] += g["duration_s_sum_sum"]
    for g in grouped:
        i = groups.index(str(g[column]))
        shares[g["emotion"]][i] = g["duration_s_sum_sum"] / (totals[i] or 1.0)
    chart = figure(
        name=f"by-{column}",
        x_range=FactorRange(factors=groups),
        width=_WIDTH,
        height=300,
        title=f"Emotions by {column} (share of each {column}'s audio)",
        toolbar_location=None,
    )
    chart.vbar_stack(
        emotions,
        x="group",
        width=0.7,
        color=[_colour(emotion, i) for i, emotion in enumerate(emotions)],
        source={"group": groups, **shares},
        legend_label=emotions,
    )
    chart.add_layout(chart.legend[0], "right")
    return chart


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """Integer codes of a string column's values (equal values, equal codes)."""
    return column.combine_chunks().dictionary_encode().indices.to_numpy()


def _segments(table: pa.Table) -> pa.Table:
    return table.filter(
        pc.and_(pc.greater(table["segment_count"], 1), pc.equal(table["status"], STATUS_OK))
    )


def _changes(segments: pa.Table) -> pa.Table:
    """Per recording in these segments: how often its emotion changes, and its length."""
    segments = segments.sort_by(
        [("id", "ascending"), ("channel", "ascending"), ("start_s", "ascending")]
    )
    # Codes, not strings: a change is where the emotion differs from the segment before it on
    # the same recording and channel.
    ids = _codes(segments["id"])
    lanes = segments["channel"].fill_null(-1).to_numpy()
    emotions = _codes(segments["emotion"])
    same_lane = np.concatenate([[False], (ids[1:] == ids[:-1]) & (lanes[1:] == lanes[:-1])])
    changed = same_lane & np.concatenate([[False], emotions[1:] != emotions[:-1]])
    return (
        pa.table(
            {
                "id": segments["id"],
                "changes": pa.array(changed.astype(np.int64)),
                "length": segments["recording_duration_s"],
            }
        )
        .group_by("id")
        .aggregate([("changes", "sum"), ("length", "max")])
    )


def _timelines(gathered: _Gathered, scan: Scan) -> _Section | None:
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool
    from bokeh.plotting import figure

    partial = gathered.changes
    if not partial:
        return None
    # A recording whose segments lie in two files counts its changes in each.
    per_recording = (
        pa.concat_tables(partial)
        .group_by("id")
        .aggregate([("changes_sum", "sum"), ("length_max", "max")])
        .to_pylist()
    )
    if not per_recording:
        return None
    longest = sorted(per_recording, key=lambda r: -(r["length_max_max"] or 0))[:_TIMELINES]
    changing = sorted(per_recording, key=lambda r: -r["changes_sum_sum"])
    chosen = [r["id"] for r in longest]
    chosen += [r["id"] for r in changing if r["id"] not in chosen][:_TIMELINES]
    wanted = pa.array(chosen, pa.string())
    segments = pa.concat_tables(
        [_segments(t.filter(pc.is_in(t["id"], value_set=wanted))) for t in scan(_TIMELINE_COLUMNS)]
    )
    labels = sorted(pc.unique(segments["emotion"]).to_pylist())
    colors = {label: _colour(label, i) for i, label in enumerate(labels)}
    charts = []
    for n, recording in enumerate(chosen):
        mine = segments.filter(pc.equal(segments["id"], recording)).to_pylist()
        lanes = ["mixed" if r["channel"] is None else f"channel {r['channel']}" for r in mine]
        lanes_here = sorted(set(lanes))
        source = ColumnDataSource(
            {
                "lane": lanes,
                "start": [r["start_s"] for r in mine],
                "end": [r["end_s"] for r in mine],
                "emotion": [r["emotion"] for r in mine],
                "score": [r["emotion_score"] for r in mine],
                "color": [colors[r["emotion"]] for r in mine],
            }
        )
        chart = figure(
            name=f"timeline-{n}",
            y_range=FactorRange(factors=list(reversed(lanes_here))),
            width=_WIDTH,
            height=120 + 45 * len(lanes_here),
            title=f"{recording}: emotion over time",
            toolbar_location="right",
            tools="xpan,xwheel_zoom,reset",
        )
        chart.hbar(
            y="lane", left="start", right="end", height=0.8, color="color", source=source,
            legend_field="emotion",
        )  # fmt: skip
        chart.xaxis.axis_label = "seconds"
        chart.legend.orientation = "horizontal"
        chart.add_layout(chart.legend[0], "above")
        chart.add_tools(
            HoverTool(tooltips=[("", "@emotion (@score{0.00})"), ("at", "@start{0.0}-@end{0.0} s")])
        )
        charts.append(chart)
    note = (
        '<p class="note">The longest segmented recordings, and those whose emotion changes most '
        "often from one segment to the next; one lane per channel.</p>"
    )
    return _Section("Emotion over time", charts=charts, lead=note)


def report_for(output: Output, run_ids: Sequence[str] | None = None) -> str:
    """The report of these committed runs of ``output`` (default: all of them)."""
    records = output.publisher.runs()
    if run_ids:
        missing = set(run_ids) - {r.run_id for r in records}
        if missing:
            from .errors import ConfigError

            raise ConfigError(
                f"run={sorted(missing)!r} is invalid: no such committed run in {output.config.uri}"
            )
        records = [r for r in records if r.run_id in run_ids]
    return build_report(records, scan_files(output, [f for r in records for f in r.files]))


def write_report(output: Output, record: RunRecord) -> str:
    """Writes a committed run's report next to its record; returns where."""
    path = output.ledger.report_path(record.run_id)
    report = build_report([record], scan_files(output, record.files))
    output.ledger.fs.pipe_file(path, report.encode())
    return path
