"""Regenerate the spoken sentences in ``tests/data/speech/`` (committed; tests never run this).

    apt-get install espeak-ng
    .venv/bin/python tests/data/make_speech.py

espeak-ng says each sentence of :data:`SENTENCES` in two voices (a US English male and a British
English female voice), and each of :data:`SPANISH` in a Spanish voice, stored as 16 kHz mono
16-bit FLAC with the synthesiser's leading and trailing silence trimmed, so a test that puts
sentences end to end knows where each one is. ``sentences.json`` lists the files with their
language and text. Tests build multi-sentence recordings, calls and silences from these
(``tests/factories.py``).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

OUT = Path(__file__).resolve().parent / "speech"
VOICES = {"a": "en-us", "b": "en-gb+f3"}
SENTENCES = [
    "I have been waiting on the phone for over an hour.",
    "Could you please tell me why my order has not arrived yet?",
    "Thank you so much, that is exactly what I needed.",
    "The package was supposed to be delivered on Monday morning.",
    "I am really sorry to hear about the trouble you had.",
    "Let me check the status of your account right now.",
    "This is the third time I have called about the same problem.",
    "We can send a replacement to your home address tomorrow.",
    "Is there anything else I can help you with today?",
    "No, that will be all for now, goodbye.",
    "The weather in the mountains changes very quickly in spring.",
    "She opened the window and listened to the birds outside.",
    "Our meeting has been moved to half past three.",
    "Please remember to bring your ticket and a photo card.",
]
SPANISH_VOICE = ("s", "es")
SPANISH = [
    "He estado esperando al teléfono durante más de una hora.",
    "Muchas gracias, eso es exactamente lo que necesitaba.",
    "El paquete tenía que llegar el lunes por la mañana.",
    "Esta es la tercera vez que llamo por el mismo problema.",
]
# Below this level (about -54 dBFS) a sample counts as the synthesiser's silence.
SILENCE = 2e-3


def say(text: str, voice: str) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", wav.name, text], check=True)
        samples, rate = sf.read(wav.name, dtype="float32")
    samples = soxr.resample(samples, rate, 16000, quality="HQ").astype(np.float32)
    loud = np.flatnonzero(np.abs(samples) > SILENCE)
    return samples[loud[0] : loud[-1] + 1]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    index = []
    said = [(key, voice, "en", SENTENCES) for key, voice in VOICES.items()]
    said.append((*SPANISH_VOICE, "es", SPANISH))
    for key, voice, language, sentences in said:
        for i, text in enumerate(sentences):
            name = f"{key}{i:02d}.flac"
            sf.write(OUT / name, say(text, voice), 16000, subtype="PCM_16")
            index.append({"file": name, "voice": voice, "language": language, "text": text})
    (OUT / "sentences.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
