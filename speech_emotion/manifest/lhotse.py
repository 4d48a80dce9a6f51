"""The ``lhotse`` format: lhotse's manifests, read as JSON lines (lhotse itself is not needed).

- *Recordings* (``…recordings….jsonl.gz``): an ``id``, the audio ``sources`` (a file or a URL,
  each holding some of the recording's channels) and the ``channel_ids``.
- *Supervisions* (``…supervisions….jsonl.gz``): what to annotate, each a span of a recording:
  ``id``, ``recording_id``, ``start``, ``duration``, ``channel``, ``text``, ``language``,
  ``speaker``.
- *Cuts* (``…cuts….jsonl.gz``): each holds its recording and its supervisions, whose ``start``
  counts from the cut's.

A row is a supervision (a cut without any: the cut itself), with its id. Its ``channel`` is the
row's channel in the output, taken from whichever source file holds it; a supervision over every
channel of a one-file recording is the whole file, mixed or split as the job says. Given one
supervisions (or recordings) file, its partner is the file of the same name with ``recordings``
(``supervisions``) in its place; given a folder, every recording in it is known to every
supervision in it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa

from ..config import ManifestConfig
from ..errors import ManifestError
from .entries import Entries, seconds, text, whole_number
from .files import ManifestFile

__all__ = ["role", "claims", "read_lhotse"]

logger = logging.getLogger(__name__)

RECORDINGS, SUPERVISIONS, CUTS = "recordings", "supervisions", "cuts"
# Source types that are a file or an object to read; lhotse's others run a command, hold the
# bytes in the manifest, or point into a Shar archive.
_READABLE_SOURCES = ("file", "url")
_CUT_TYPES = ("MonoCut", "MultiCut")


def role(record: dict | None) -> str | None:
    """Which lhotse manifest a first JSON line is from, if any."""
    if record is None:
        return None
    if "sources" in record and "sampling_rate" in record:
        return RECORDINGS
    if "recording_id" in record and "start" in record:
        return SUPERVISIONS
    if str(record.get("type", "")).endswith("Cut") or "supervisions" in record:
        return CUTS
    return None


def claims(record: dict | None) -> bool:
    return role(record) is not None


@dataclass(frozen=True)
class _Source:
    uri: str
    channels: tuple[int, ...]


@dataclass(frozen=True)
class _Recording:
    id: str
    sources: tuple[_Source, ...]

    def place(self, channel: object, where: str) -> tuple[str, int | None, int | None]:
        """(audio URI, the row's channel, the channel in that file) of a supervision on
        ``channel`` (an index, or a list of them)."""
        channels = channel if isinstance(channel, list) else [channel]
        channels = [whole_number(c, where, "channel") for c in channels]
        if len(channels) > 1:
            if len(self.sources) == 1 and sorted(channels) == sorted(self.sources[0].channels):
                return self.sources[0].uri, None, None
            raise ManifestError(
                f"{where}: channels {channels} of recording {self.id!r}: a span over several "
                "channels can be annotated only where they are all those of one file"
            )
        (wanted,) = channels
        for source in self.sources:
            if wanted in source.channels:
                inside = None if len(source.channels) == 1 else source.channels.index(wanted)
                return source.uri, wanted, inside
        held = sorted(c for source in self.sources for c in source.channels)
        raise ManifestError(
            f"{where}: channel {wanted} is not one of recording {self.id!r}'s channels {held}"
        )


def _recording(record: dict, file: ManifestFile, where: str) -> _Recording:
    """A recording's sources, as URIs (files relative to the manifest's folder)."""
    rec_id = text(record.get("id"), where, "id")
    if not rec_id:
        raise ManifestError(f"{where}: a recording without an 'id'")
    transforms = [t.get("name") for t in record.get("transforms") or [] if isinstance(t, dict)]
    if any(name != "Resample" for name in transforms):
        raise ManifestError(
            f"{where}: recording {rec_id!r} has transforms {transforms} (speed or volume "
            "perturbation) the job does not apply; annotate the original recordings"
        )
    sources = record.get("sources")
    if not isinstance(sources, list) or not sources:
        raise ManifestError(f"{where}: recording {rec_id!r} has no 'sources'")
    return _Recording(rec_id, tuple(_source(s, rec_id, file, where) for s in sources))


def _source(source: object, rec_id: str, file: ManifestFile, where: str) -> _Source:
    if not isinstance(source, dict):
        raise ManifestError(f"{where}: recording {rec_id!r}: a source is {source!r}")
    kind = source.get("type")
    if kind not in _READABLE_SOURCES:
        raise ManifestError(
            f"{where}: recording {rec_id!r} has a {kind!r} source; this job reads audio from "
            f"files and URLs only ({', '.join(_READABLE_SOURCES)})"
        )
    path = text(source.get("source"), where, "source")
    if not path:
        raise ManifestError(f"{where}: recording {rec_id!r} has a source without a path")
    channels = source.get("channels")
    if not isinstance(channels, list) or not channels:
        raise ManifestError(f"{where}: recording {rec_id!r}: a source without 'channels'")
    return _Source(
        file.resolve(path) if kind == "file" else path,
        tuple(whole_number(c, where, "channels") for c in channels),
    )


def _read_recordings(files: list[ManifestFile]) -> dict[str, _Recording]:
    recordings: dict[str, _Recording] = {}
    for file in files:
        for line, record in file.records():
            found = _recording(record, file, file.where(line))
            if found.id in recordings:
                raise ManifestError(f"{file.where(line)}: recording {found.id!r} appears twice")
            recordings[found.id] = found
    return recordings


def _add(entries: Entries, line: int, where: str, place: tuple, span: tuple, sup: dict) -> None:
    audio, channel, file_channel = place
    entries.add(
        line,
        audio=audio,
        id=text(sup.get("id"), where, "id"),
        text=text(sup.get("text"), where, "text"),
        language=text(sup.get("language"), where, "language"),
        speaker=text(sup.get("speaker"), where, "speaker"),
        offset_s=span[0],
        duration_s=span[1],
        channel=channel,
        file_channel=file_channel,
    )


def _span(record: dict, where: str) -> tuple[float, float]:
    start = seconds(record.get("start"), where, "start")
    duration = seconds(record.get("duration"), where, "duration")
    if start is None or duration is None:
        raise ManifestError(f"{where}: 'start' and 'duration' are both needed")
    return start, duration


def _read_supervisions(
    file: ManifestFile, recordings: dict[str, _Recording], used: set
) -> pa.Table:
    entries = Entries()
    for line, sup in file.records():
        where = file.where(line)
        rec_id = text(sup.get("recording_id"), where, "recording_id")
        recording = recordings.get(rec_id or "")
        if recording is None:
            raise ManifestError(
                f"{where}: supervision {sup.get('id')!r} is of recording {rec_id!r}, which no "
                "recordings manifest given holds"
            )
        used.add(recording.id)
        place = recording.place(sup.get("channel", 0), where)
        _add(entries, line, where, place, _span(sup, where), sup)
    return entries.table()


def _read_cuts(file: ManifestFile) -> pa.Table:
    entries = Entries()
    for line, cut in file.records():
        where = file.where(line)
        kind = cut.get("type", "MonoCut")
        if kind not in _CUT_TYPES:
            raise ManifestError(
                f"{where}: a {kind} is not supported: a cut must be a span of one recording "
                f"({', '.join(_CUT_TYPES)})"
            )
        if not isinstance(cut.get("recording"), dict):
            raise ManifestError(f"{where}: cut {cut.get('id')!r} has no recording")
        recording = _recording(cut["recording"], file, where)
        start, duration = _span(cut, where)
        supervisions = cut.get("supervisions") or []
        if not supervisions:  # the cut itself is what to annotate
            place = recording.place(cut.get("channel", 0), where)
            _add(entries, line, where, place, (start, duration), {"id": cut.get("id")})
        for sup in supervisions:
            offset, length = _span(sup, where)
            place = recording.place(sup.get("channel", cut.get("channel", 0)), where)
            _add(entries, line, where, place, (start + offset, length), sup)
    return entries.table()


def _with_partners(files: list[ManifestFile], roles: dict[str, str]) -> list[ManifestFile]:
    """A lone supervisions or recordings file with the partner its name gives."""
    if len(files) != 1 or roles[files[0].path] == CUTS:
        return files
    (file,) = files
    have = roles[file.path]
    want = SUPERVISIONS if have == RECORDINGS else RECORDINGS
    partner = file.sibling(file.name.replace(have, want)) if have in file.name else None
    if partner is None:
        raise ManifestError(
            f"{file.uri}: lhotse {have} without {want}: expected "
            f"{file.name.replace(have, want) if have in file.name else f'a {want} file'} next to "
            "it, or give the folder holding both"
        )
    roles[partner.path] = want
    return [*files, partner]


def read_lhotse(
    files: list[ManifestFile], config: ManifestConfig
) -> list[tuple[ManifestFile, pa.Table]]:
    """(file, entries) of each supervisions or cuts file."""
    roles = {}
    for file in files:
        found = role(file.first_record()) if file.kind == "json" else None
        if found is None:
            raise ManifestError(
                f"{file.uri}: not a lhotse manifest (recordings, supervisions or cuts, as JSON "
                "lines)"
            )
        roles[file.path] = found
    files = _with_partners(files, roles)
    by_role = {
        r: [f for f in files if roles[f.path] == r] for r in (RECORDINGS, SUPERVISIONS, CUTS)
    }
    if by_role[CUTS] and (by_role[RECORDINGS] or by_role[SUPERVISIONS]):
        raise ManifestError(
            f"{config.uri}: holds both cuts and recordings/supervisions manifests, which would "
            "annotate the same speech twice; give the one to read"
        )
    recordings = _read_recordings(by_role[RECORDINGS])
    used: set[str] = set()
    out = [(f, _read_supervisions(f, recordings, used)) for f in by_role[SUPERVISIONS]]
    out += [(f, _read_cuts(f)) for f in by_role[CUTS]]
    unused = len(recordings) - len(used)
    if unused:
        logger.warning(
            "%s: %d of %d recordings have no supervision and are not annotated",
            config.uri,
            unused,
            len(recordings),
        )
    return out
