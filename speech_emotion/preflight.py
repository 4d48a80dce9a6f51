"""What the driver checks before Ray starts: the mistakes a person must fix, found in seconds.

Each check raises :class:`ConfigError` with the one line that says what to change. Nothing here
creates anything: a missing bucket is an error, never made (its region, encryption and policies
are not this job's to choose).
"""

from __future__ import annotations

import logging
import os
import posixpath

import pyarrow as pa
import pyarrow.compute as pc

from .config import JobConfig, ModelConfig
from .errors import ConfigError
from .fetch import within_prefixes

__all__ = [
    "check_job",
    "check_language",
    "check_languages",
    "check_output",
    "check_prefixes",
    "LANGUAGES",
]

logger = logging.getLogger(__name__)


def _whisper_languages() -> frozenset[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


LANGUAGES = _whisper_languages()
"""The language codes Whisper knows (large-v3's, the widest set)."""


def check_job(config: JobConfig, recordings: pa.Table) -> None:
    check_languages(config.models, recordings)
    output = config.output
    for place in (None if output.format == "iceberg" else output.uri, output.staging):
        if place is not None:  # an Iceberg table is a catalog's name: the catalog checks it
            check_output(place)
    check_prefixes(recordings, config.decode.allowed_prefixes)


def check_language(language: str) -> None:
    if language != "auto" and language not in LANGUAGES:
        raise ConfigError(
            f"language={language!r} is invalid: expected auto or a Whisper language code "
            "(en, es, fr, de, zh, ...)"
        )


def check_languages(models: ModelConfig, recordings: pa.Table) -> None:
    """The job's language, the fallback and each LANG=SOURCE must be Whisper's codes, and rows
    without a language of their own must have models for the job's."""
    check_language(models.language)
    named = {language for language, _ in (*models.emotion_models, *models.text_encoders)}
    for language in sorted(named | {models.fallback_language or "auto"}):
        check_language(language)
    job, sets = models.job_language, models.model_sets
    unnamed = pc.any(pc.is_null(recordings["language"])).as_py()
    if unnamed and job is not None and job not in sets and not models.fallback_language:
        raise ConfigError(
            f"language={job!r} has no emotion model (models exist for "
            f"{', '.join(sorted(sets))}) and rows without a language of their own would all fail; "
            f"add --emotion-model {job}=SOURCE (and --text-encoder {job}=SOURCE in "
            "fusion modes), or --fallback-language"
        )


def check_output(uri: str) -> None:
    """The output must be a folder (or prefix) that can be made: not a file, not under one,
    and in a bucket that exists."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    path = path.rstrip("/")
    if "://" in uri and not uri.startswith("file://"):
        bucket = path.split("/", 1)[0]
        scheme = uri.split("://", 1)[0]
        if not fs.exists(bucket):
            raise ConfigError(
                f"output={uri!r} is invalid: bucket {scheme}://{bucket} does not exist (or these "
                "credentials cannot see it); create it first, the job never creates buckets"
            )
        if path != bucket and fs.isfile(path):
            raise ConfigError(f"output={uri!r} is invalid: it is an object, not a folder")
        return
    place = os.path.abspath(path)
    while not os.path.exists(place):
        place = os.path.dirname(place)
    if not os.path.isdir(place):
        what = "it is a file" if place == os.path.abspath(path) else f"{place} is a file"
        raise ConfigError(f"output={uri!r} is invalid: {what}; give a folder")
    if not os.access(place, os.W_OK | os.X_OK):
        raise ConfigError(f"output={uri!r} is invalid: {place} is not writable")


def check_prefixes(recordings: pa.Table, prefixes: tuple[str, ...] | None) -> None:
    """Refuses a manifest whose audio all lies outside the allowed prefixes (a setting to fix,
    not thousands of error rows); a few rows outside become error rows, said here once."""
    if prefixes is None or recordings.num_rows == 0:
        return
    uris = recordings["audio"].to_pylist()
    outside = [uri for uri in uris if not within_prefixes(uri, prefixes)]
    allowed = ", ".join(prefixes)
    if len(outside) == len(uris):
        raise ConfigError(
            f"every audio file of the manifest is outside the allowed prefixes ({allowed}), "
            f"e.g. {outside[0]}; allow where the audio is with --allowed-prefix "
            f"{_common_folder(outside)}"
        )
    if outside:
        logger.warning(
            "%d of %d recordings are outside the allowed prefixes (%s), e.g. %s: they become "
            "outside_allowed_prefixes error rows (which use up no attempts); allow them with "
            "--allowed-prefix",
            len(outside),
            len(uris),
            allowed,
            outside[0],
        )


def _common_folder(uris: list[str]) -> str:
    """The deepest folder holding every one of ``uris``, or the first one's folder if they
    share none (different buckets)."""
    common = os.path.commonprefix(uris)
    folder = common[: common.rfind("/") + 1]
    if folder.endswith("://") or folder in ("", "/"):
        return posixpath.dirname(uris[0]) + "/"
    return folder
