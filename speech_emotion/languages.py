"""Which language's models classify a clip.

The published emotion checkpoints are per language (English and Spanish sets, each with its own
labels and its own text encoder), so a clip's language picks its models: the manifest row's
language, else the job's ``--language``, else what Whisper detected. A language without models is
an error row, unless the job names a fallback language whose models take it; a detection too
unsure to trust is one too. No Ray, no models loaded here: the model stage hands in how to load a
language's classifier, and :class:`Classifiers` loads it the first time a clip needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ErrorCode, RowError

if TYPE_CHECKING:
    from .annotator import Classifier

__all__ = ["ModelSet", "Routes", "Classifiers", "MIN_LANGUAGE_PROBABILITY"]

MIN_LANGUAGE_PROBABILITY = 0.5
"""faster-whisper's own bar (``language_detection_threshold``) for trusting a detection; below
it the language Whisper names is less likely than all the others together."""


@dataclass(frozen=True)
class ModelSet:
    """The models that classify one language's clips."""

    language: str
    emotion_model: str
    """Hub id, local folder or object-storage URI of the emotion checkpoint."""
    text_encoder: str | None
    """The frozen text encoder of fusion modes; None in the other modes."""


@dataclass(frozen=True)
class Routes:
    """The rule that picks a clip's models from its language."""

    languages: frozenset[str] | None
    """Languages that have models; None: one set of models takes every language (one-file API)."""
    fallback: str | None = None
    """Language whose models take clips of a language without models, or of an unknown one."""
    min_probability: float = MIN_LANGUAGE_PROBABILITY
    """A detected language is trusted from this probability up."""

    def pick(self, language: str | None, probability: float | None = None) -> str | None:
        """The language whose models classify a clip in ``language`` (detected with
        ``probability``, None when it was given), or a :class:`RowError` saying why none does."""
        if self.languages is None:
            return None
        if probability is not None and probability < self.min_probability:
            return self._fall_back(
                ErrorCode.UNCERTAIN_LANGUAGE,
                f"Whisper detected {language!r} with probability {probability:.2f}, below "
                f"--min-language-probability {self.min_probability:g}; give the row a language "
                "in the manifest, or --fallback-language",
            )
        if language is None:
            return self._fall_back(
                ErrorCode.UNSUPPORTED_LANGUAGE,
                "the clip's language is unknown (no manifest language, --language auto and no "
                "Whisper to detect it); give a language, or --fallback-language",
            )
        if language in self.languages:
            return language
        detected = (
            f" (detected with probability {probability:.2f})" if probability is not None else ""
        )
        return self._fall_back(
            ErrorCode.UNSUPPORTED_LANGUAGE,
            f"no emotion model for language {language!r}{detected}; models exist for "
            f"{', '.join(sorted(self.languages))}: add --emotion-model {language}=SOURCE "
            f"(and --text-encoder {language}=SOURCE in fusion modes), or --fallback-language",
        )

    def _fall_back(self, code: ErrorCode, reason: str) -> str:
        if self.fallback is not None:
            return self.fallback
        raise RowError(code, reason)


class Classifiers:
    """Each language's classifier, loaded the first time a clip of that language comes."""

    def __init__(
        self,
        load: Callable[[str | None], Classifier],
        routes: Routes,
        *,
        needs_text: bool,
        needs_audio: bool,
    ) -> None:
        self._load = load
        self._loaded: dict[str | None, Classifier] = {}
        self.routes = routes
        self.needs_text = needs_text
        self.needs_audio = needs_audio

    @classmethod
    def single(cls, classifier: Classifier) -> Classifiers:
        """One classifier for every clip, whatever its language."""
        return cls(
            lambda language: classifier,
            Routes(None),
            needs_text=classifier.needs_text,
            needs_audio=classifier.needs_audio,
        )

    @property
    def routing(self) -> bool:
        """Whether a clip's language decides its models (so it must be known)."""
        return self.routes.languages is not None

    def load(self, language: str | None) -> Classifier:
        """The classifier of ``language``'s models, loaded now if it is not yet."""
        if language not in self._loaded:
            self._loaded[language] = self._load(language)
        return self._loaded[language]

    @property
    def loaded(self) -> dict[str | None, Classifier]:
        """The classifiers loaded so far, by language."""
        return self._loaded
