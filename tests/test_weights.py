"""Offline Whisper "base" weights: assembly, checksum, locking, conversion, and equal transcripts."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import whisper

from pipeline import weights

from conftest import MODEL_CACHE as CACHE
from conftest import corpus_path

REPO = Path(__file__).resolve().parents[1]
BASE_DIMS = dict(
    n_mels=80,
    n_audio_ctx=1500,
    n_audio_state=512,
    n_audio_head=8,
    n_audio_layer=6,
    n_vocab=51865,
    n_text_ctx=448,
    n_text_state=512,
    n_text_head=8,
    n_text_layer=6,
)
CLIPS = [
    ("en/lhotse-speech_lhotse__test_fixtures_libri_libri-1088-134315-0000.wav", "en"),
    ("zh/FireRedTeam_FireRedASR__examples_wav_BAC009S0764W0121.wav", "zh"),
]


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_wav(path: Path) -> np.ndarray:
    """16 kHz mono 16-bit WAV as float32 in [-1, 1] (no ffmpeg on the test machines)."""
    with wave.open(str(path)) as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16).astype(np.float32) / 32768


@pytest.fixture(scope="session")
def ct2_dir() -> Path:
    return weights.faster_whisper_base_dir(CACHE)


@pytest.fixture(scope="session")
def checkpoint(ct2_dir) -> Path:
    return weights.openai_whisper_checkpoint(CACHE)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh model cache, with two small parts in place of the real ones."""
    parts = [tmp_path / "part1", tmp_path / "part2"]
    parts[0].write_bytes(b"not a model, ")
    parts[1].write_bytes(b"just bytes")
    monkeypatch.setattr(weights, "_model_parts", lambda: parts)
    return tmp_path / "home"


def test_assembled_model_has_the_published_hash(ct2_dir, monkeypatch):
    assert sha256(ct2_dir / "model.bin") == weights.MODEL_SHA256
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (ct2_dir / name).stat().st_size > 0
    # A second call trusts the marker: it must not even look at the parts again.
    monkeypatch.setattr(weights, "_model_parts", lambda: pytest.fail("re-assembled a verified model"))
    assert weights.faster_whisper_base_dir(CACHE) == ct2_dir


def test_corrupt_part_raises_and_leaves_no_model(home):
    with pytest.raises(weights.WeightsError) as error:
        weights.faster_whisper_base_dir(home)
    target = home / "models" / "whisper-base-ct2"
    message = str(error.value)
    assert str(target / "model.bin") in message and weights.MODEL_SHA256 in message
    assert hashlib.sha256(b"not a model, just bytes").hexdigest() in message
    assert sorted(p.name for p in target.iterdir()) == [".lock"]  # no model.bin, no temp file


def test_changed_model_bin_is_reassembled(home, monkeypatch):
    monkeypatch.setattr(weights, "MODEL_SHA256", hashlib.sha256(b"not a model, just bytes").hexdigest())
    model = weights.faster_whisper_base_dir(home) / "model.bin"
    assert json.loads(model.with_name("model.bin.sha256").read_text())["sha256"] == weights.MODEL_SHA256
    model.write_bytes(b"tampered")  # new size and mtime: the marker no longer vouches for it
    weights.faster_whisper_base_dir(home)
    assert model.read_bytes() == b"not a model, just bytes"


def test_concurrent_assembly(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "import sys, pathlib, pipeline.weights as w; print(w.faster_whisper_base_dir(pathlib.Path(sys.argv[1])))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    target = tmp_path / "models" / "whisper-base-ct2"
    assert outputs == [str(target)] * 2
    names = [".lock", "config.json", "model.bin", "model.bin.sha256", "tokenizer.json", "vocabulary.txt"]
    assert sorted(p.name for p in target.iterdir()) == names
    assert sha256(target / "model.bin") == weights.MODEL_SHA256


def test_checkpoint_loads_strict_with_base_dims(checkpoint, ct2_dir):
    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert data["dims"] == BASE_DIMS
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**data["dims"]))
    model.load_state_dict(data["model_state_dict"], strict=True)  # every key, no extras, same shapes
    assert {t.dtype for t in data["model_state_dict"].values()} == {torch.float16}
    config = json.loads((ct2_dir / "config.json").read_text())
    assert data["alignment_heads"] == config["alignment_heads"]


def test_load_openai_whisper_sets_alignment_heads(checkpoint, ct2_dir):
    model = weights.load_openai_whisper(str(checkpoint), CACHE)
    heads = json.loads((ct2_dir / "config.json").read_text())["alignment_heads"]
    assert model.alignment_heads.is_sparse
    assert model.alignment_heads.shape == (6, 8)
    assert sorted(model.alignment_heads.to_dense().nonzero().tolist()) == sorted(heads)


def test_resolve_model(ct2_dir, checkpoint, tmp_path):
    assert weights.resolve_model("base", "faster-whisper", CACHE) == str(ct2_dir)
    assert weights.resolve_model("base", "openai-whisper", CACHE) == str(checkpoint)
    for name in ("tiny", "small", "large-v3", "turbo", str(tmp_path)):
        assert weights.resolve_model(name, "faster-whisper", CACHE) == name
        assert weights.resolve_model(name, "openai-whisper", CACHE) == name
    with pytest.raises(ValueError, match="engine"):
        weights.resolve_model("base", "whisper.cpp", CACHE)


@pytest.fixture(scope="module")
def faster_model(ct2_dir):
    from faster_whisper import WhisperModel

    # float32, like openai-whisper on CPU: int8 would differ for reasons unrelated to the conversion.
    return WhisperModel(str(ct2_dir), device="cpu", compute_type="float32")


@pytest.fixture(scope="module")
def openai_model(checkpoint):
    return weights.load_openai_whisper(str(checkpoint), CACHE)


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.parametrize("relative, language", CLIPS, ids=["en", "zh"])
def test_converted_model_transcribes_like_faster_whisper(relative, language, request):
    audio = read_wav(corpus_path(relative))
    # Models are fetched after the corpus check, so a skip does not first load them.
    faster_model, openai_model = request.getfixturevalue("faster_model"), request.getfixturevalue("openai_model")
    segments, _ = faster_model.transcribe(audio, beam_size=1, temperature=0.0, language=language)
    expected = "".join(s.text for s in segments)
    result = openai_model.transcribe(
        audio,
        temperature=0.0,
        beam_size=None,
        best_of=None,
        condition_on_previous_text=False,
        fp16=False,
        language=language,
    )
    print(f"{language}: faster-whisper {expected!r} / openai-whisper {result['text']!r}")
    assert expected.strip()
    assert result["text"].strip() == expected.strip()
