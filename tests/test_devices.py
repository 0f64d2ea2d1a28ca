"""Device, compute type, threads and batch size reach every model ohp loads: the recogniser, the VAD and the
speaker encoder. No GPU here: the models' constructors are replaced by recorders of what they were given."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pipeline import process
from pipeline.process import RunOptions, SpeakerOptions
from pipeline.records import Segment, settings_key
from pipeline.stages import engines, speakers, vad
from pipeline.stages.audio import SAMPLE_RATE
from pipeline.stages.transcribe import TranscribeOptions
from pipeline.utils import usable_cores

from conftest import corpus_path


class Recorder:
    """Stands in for a model class: keeps the arguments of every construction."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple, dict]] = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self


def test_threads_are_the_cores_the_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert usable_cores() == 1


@pytest.mark.parametrize(
    ("device", "compute_type", "expected"),
    [
        ("cuda", None, "float16"),
        ("cpu", None, "int8"),
        ("cuda", "int8_float16", "int8_float16"),
        ("auto", None, "int8"),
    ],
)
def test_the_recogniser_gets_device_compute_type_and_threads(monkeypatch, tmp_path, device, compute_type, expected):
    import faster_whisper

    import pipeline.weights

    model = Recorder()
    monkeypatch.setattr(faster_whisper, "WhisperModel", model)
    monkeypatch.setattr(pipeline.weights, "resolve_model", lambda name, engine, home: "weights")
    monkeypatch.setattr(engines, "usable_cores", lambda: 3)
    engines.load_engine.__wrapped__("faster-whisper", "base", tmp_path, device, compute_type)
    assert model.calls == [(("weights",), {"device": device, "compute_type": expected, "cpu_threads": 3})]


def test_the_vad_gets_the_threads_and_the_gpu_when_onnxruntime_has_one(monkeypatch):
    import onnxruntime

    session = Recorder()
    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    vad.load_model.__wrapped__("cuda", 3)
    vad.load_model.__wrapped__("cpu", 2)
    (_, on_gpu), (_, on_cpu) = session.calls  # one session each
    assert on_gpu["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert on_gpu["sess_options"].intra_op_num_threads == 3
    assert on_cpu["providers"] == ["CPUExecutionProvider"] and on_cpu["sess_options"].intra_op_num_threads == 2


def test_the_speaker_encoder_gets_the_device_and_threads(monkeypatch):
    import resemblyzer
    import torch

    encoder, threads = Recorder(), Recorder()
    monkeypatch.setattr(resemblyzer, "VoiceEncoder", encoder)
    monkeypatch.setattr(torch, "set_num_threads", threads)
    speakers.load_encoder.__wrapped__("cuda")
    assert encoder.calls == [(("cuda",), {"verbose": False})]
    monkeypatch.setattr(speakers, "load_encoder", lambda device: None)  # not the cached one: no windows to encode
    speakers._embed([], "cpu", 3)
    assert threads.calls == [((3,), {})]


class OneAnswerEngine:
    name, model, device = "scripted", "none", "cuda"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def encode(self, pieces):
        self.batches.append(len(pieces))
        return pieces

    def select(self, encoded, indices):
        return [encoded[i] for i in indices]

    def language_probabilities(self, encoded):
        return [{"zh": 1.0} for _ in encoded]

    def decode(self, encoded, languages, options):
        # A segment over each whole piece, so no second pass follows.
        return [[Segment(0.0, len(piece) / SAMPLE_RATE, "好", "好", "zh")] for piece in encoded]


def test_a_run_hands_device_compute_type_threads_and_batch_size_to_its_models(monkeypatch, tmp_path):
    path = corpus_path("longform_zh_dev.wav")
    loaded, vad, voice, engine = [], [], [], OneAnswerEngine()
    monkeypatch.setattr(process, "load_engine", lambda *args: loaded.append(args) or engine)
    real_segment, real_embed = process.segment, speakers._embed
    monkeypatch.setattr(process, "segment", lambda *args: vad.append(args[2:]) or real_segment(*args))
    # The speaker encoder is told what it was given, and runs on the CPU here.
    monkeypatch.setattr(
        speakers,
        "_embed",
        lambda mels, device, threads: voice.append((device, threads)) or real_embed(mels, "cpu", threads),
    )
    monkeypatch.setattr(speakers, "usable_cores", lambda: 5)  # not what the run gives
    options = RunOptions(
        transcribe=TranscribeOptions(batch_size=3, compute_type="float16"),
        speakers=SpeakerOptions(),
        out_dir=None,
        home=tmp_path,
        device="cuda",
        threads=1,
    )
    result = process.process_recording(path, options)
    assert loaded == [("faster-whisper", "base", tmp_path, "cuda", "float16", 1, 0)]
    assert vad == [("cuda", 1)]
    assert set(voice) == {("cuda", 1)}
    chunks = result.stages["transcribe"].report["chunks"]
    assert engine.batches[1:] == [3] * (chunks // 3) + ([chunks % 3] if chunks % 3 else [])  # after the language
    # The compute type decides the text, so it is stored with it (another transcribes again); the batch not.
    settings = result.stages["transcribe"].settings["transcribe"]
    assert settings["compute_type"] == "float16" and "batch_size" not in settings
    assert np.isclose(result.transcript.language_probability, 1.0)


# The settings key of every transcript main made on the CPU before the compute type could be chosen.
MAIN_SETTINGS_KEY = "bfe2971d5835b316"


@pytest.mark.parametrize(
    "options",
    [
        RunOptions(device="cpu"),
        RunOptions(device="auto"),  # no GPU here
        RunOptions(device="cpu", transcribe=TranscribeOptions(compute_type="int8", batch_size=8), threads=1),
    ],
)
def test_the_default_arithmetic_on_the_cpu_keeps_the_settings_of_stored_transcripts(options):
    # Nothing stored is transcribed again for the new options: int8 was what every transcript was made with.
    assert settings_key(options.settings()) == MAIN_SETTINGS_KEY
    assert "compute_type" not in options.settings()["transcribe"]


@pytest.mark.parametrize(("device", "compute_type"), [("cpu", "float32"), ("cuda", None), ("cuda", "int8_float16")])
def test_another_arithmetic_joins_the_settings(device, compute_type):
    options = RunOptions(device=device, transcribe=TranscribeOptions(compute_type=compute_type))
    assert options.settings()["transcribe"]["compute_type"] == (compute_type or "float16")
    assert settings_key(options.settings()) != MAIN_SETTINGS_KEY


@pytest.mark.parametrize(
    ("engine_name", "device", "threads", "chunks", "batch_size", "expected"),
    [
        ("faster-whisper", "cpu", 3, 12, None, [("cpu", "int8", 2, 0), ("cpu", "int8", 1, 1)]),
        ("faster-whisper", "cpu", 3, 2, None, [("cpu", "int8", 2, 0), ("cpu", "int8", 1, 1)]),
        ("faster-whisper", "cpu", 3, 1, None, [("cpu", "int8", 3, 0)]),  # one batch: nothing for a second model
        ("faster-whisper", "cpu", 2, 4, 4, [("cpu", "int8", 2, 0)]),  # 1 batch of 4
        ("faster-whisper", "cpu", 1, 12, None, [("cpu", "int8", 1, 0)]),
        ("faster-whisper", "cuda", 4, 12, None, [("cuda", "float16", 4, 0)]),
        ("openai-whisper", "cpu", 2, 12, None, [("cpu", "int8", 2, 0)]),
    ],
)
def test_two_models_share_the_threads_on_the_cpu_for_a_recording_of_many_batches(
    monkeypatch, tmp_path, engine_name, device, threads, chunks, batch_size, expected
):
    # Two recognisers decode side by side on a CPU, each with its share of the threads the run may use, once a
    # recording has enough batches for both to stay busy.
    import subprocess

    from pipeline.records import Chunk, SpeechRegion
    from pipeline.stages.audio import ffmpeg_exe

    loaded, engine = [], OneAnswerEngine()
    monkeypatch.setattr(process, "load_engine", lambda *args: loaded.append(args[3:]) or engine)
    cut = [Chunk(2.0 * i, 2.0 * i + 1.5, (SpeechRegion(2.0 * i, 2.0 * i + 1.5),)) for i in range(chunks)]
    monkeypatch.setattr(process, "segment", lambda *args: cut)
    clip = tmp_path / "tone.wav"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"sine=duration={2 * chunks}", str(clip)], check=True
    )
    options = RunOptions(
        transcribe=TranscribeOptions(engine=engine_name, batch_size=batch_size),
        speakers=None,
        out_dir=None,
        home=tmp_path,
        device=device,
        threads=threads,
    )
    segments = process.process_recording(clip, options).transcript.segments
    assert [s.text for s in segments] == ["好"] * chunks
    assert sorted(loaded, key=lambda args: args[-1]) == expected  # by replica: they load side by side
