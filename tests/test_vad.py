"""ohp's torch-free silero-vad gives what silero's own code gives: the same frame probabilities from the same
model, the same speech from the same probabilities (silero's code is imported here only to compare)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from pipeline.stages import vad
from pipeline.stages.audio import decode, probe
from pipeline.stages.vad import FRAME, SAMPLE_RATE, TimestampOptions, speech_probabilities, speech_timestamps

from conftest import corpus_path

LONGFORM = "longform_dialect_dev.wav"


def silero_timestamps(probabilities: np.ndarray, length: int, ms: dict[str, float]) -> list[tuple[int, int]]:
    from silero_vad import get_speech_timestamps_from_probs

    stamps = get_speech_timestamps_from_probs(
        probabilities.tolist(),
        sampling_rate=SAMPLE_RATE,
        threshold=ms["threshold"],
        min_speech_duration_ms=ms["min_speech"],
        max_speech_duration_s=ms["max_speech"],
        min_silence_duration_ms=ms["min_silence"],
        speech_pad_ms=ms["pad"],
        audio_length_samples=length,
    )
    return [(s["start"], s["end"]) for s in stamps]


def ours(probabilities: np.ndarray, length: int, ms: dict[str, float]) -> list[tuple[int, int]]:
    options = TimestampOptions(
        threshold=ms["threshold"],
        min_speech=SAMPLE_RATE * ms["min_speech"] / 1000,
        max_speech=SAMPLE_RATE * ms["max_speech"],
        min_silence=SAMPLE_RATE * ms["min_silence"] / 1000,
        pad=SAMPLE_RATE * ms["pad"] / 1000,
    )
    return speech_timestamps(probabilities, length, options)


def talk(rng: random.Random, frames: int) -> np.ndarray:
    """Probabilities like a VAD's on speech: runs of high and low, with frames between the two thresholds and
    single dips, so every rule of the state machine is met."""
    values, speaking = [], rng.random() < 0.5
    while len(values) < frames:
        run = rng.randint(1, 120 if speaking else 40)
        for _ in range(run):
            if rng.random() < 0.08:  # a frame in the band between the thresholds, or a lone dip or peak
                values.append(rng.uniform(0.0, 1.0))
            else:
                values.append(rng.uniform(0.6, 1.0) if speaking else rng.uniform(0.0, 0.3))
        speaking = not speaking
    return np.asarray(values[:frames], dtype=np.float32)


OPTION_SETS = [
    {"threshold": 0.5, "min_speech": 250, "max_speech": 28.0, "min_silence": 300, "pad": 300},  # ohp's VadOptions
    {"threshold": 0.5, "min_speech": 250, "max_speech": 3.0, "min_silence": 800, "pad": 300},  # cuts long speech
    {"threshold": 0.4, "min_speech": 100, "max_speech": 1.5, "min_silence": 2000, "pad": 30},  # cuts with no pause
    {"threshold": 0.7, "min_speech": 1000, "max_speech": float("inf"), "min_silence": 100, "pad": 600},
]


@pytest.mark.parametrize("ms", OPTION_SETS, ids=["ohp", "cut-at-pause", "cut-anywhere", "long-pad"])
def test_speech_timestamps_are_silero_s_on_random_talk(ms):
    rng = random.Random(7)
    for _ in range(60):
        frames = rng.randint(0, 3000)
        probabilities = talk(rng, frames)
        length = frames * FRAME - rng.randint(0, FRAME - 1) if frames else 0
        assert ours(probabilities, length, ms) == silero_timestamps(probabilities, length, ms)


def test_the_random_talk_meets_both_ways_of_cutting_long_speech():
    # Without this, the comparison above could pass without ever cutting: a cut stretch ends within max_speech
    # and the next starts at or after it (silero pads both), where speech never paused long enough to end.
    rng = random.Random(7)
    cuts = 0
    for ms in OPTION_SETS[1:3]:
        for _ in range(20):
            probabilities = talk(rng, 3000)
            stamps = ours(probabilities, 3000 * FRAME, ms)
            cuts += sum(1 for (_, end), (start, _) in itertools.pairwise(stamps) if start - end < FRAME)
    assert cuts > 20


def test_edges():
    options = OPTION_SETS[0]
    for probabilities in ([], [0.9], [0.9] * 5, [0.1] * 100, [0.9] * 100, [0.9] * 50 + [0.1] * 50 + [0.9] * 50):
        values = np.asarray(probabilities, dtype=np.float32)
        length = len(values) * FRAME
        assert ours(values, length, options) == silero_timestamps(values, length, options)


@pytest.mark.parametrize("length", [1, FRAME - 1, FRAME, FRAME + 1, vad.BLOCK * FRAME, vad.BLOCK * FRAME + 7])
def test_frame_probabilities_are_silero_s_at_block_edges(length):
    from silero_vad import load_silero_vad

    samples = np.random.default_rng(length).normal(0, 0.1, length).astype(np.float32)
    expected = load_silero_vad(sequence=True).audio_forward(samples)
    np.testing.assert_allclose(speech_probabilities(samples, "cpu", 1), expected, atol=1e-5)


@pytest.mark.corpus
def test_a_recording_gets_silero_s_probabilities_and_speech():
    from silero_vad import load_silero_vad

    samples = decode(probe(corpus_path(LONGFORM))).samples
    probabilities = speech_probabilities(samples, "cpu", 2)
    np.testing.assert_allclose(probabilities, load_silero_vad(sequence=True).audio_forward(samples), atol=1e-5)
    stamps = ours(probabilities, len(samples), OPTION_SETS[0])
    assert len(stamps) > 5
    assert stamps == silero_timestamps(probabilities, len(samples), OPTION_SETS[0])


def test_the_model_is_found_without_importing_silero_vad_s_package(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "silero_vad", raising=False)
    assert vad.model_path().is_file()
    assert "silero_vad" not in sys.modules
