"""Speech regions (silero-vad) and chunks: real speech is found, quiet is not, chunks respect their limits."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import corpus_path

from pipeline.audio import SAMPLE_RATE, decode, probe
from pipeline.records import Chunk, SpeechRegion
from pipeline.segment import VadOptions, make_chunks, segment, speech_regions

ZH_CLIP = "zh/FireRedTeam_FireRedASR__examples_wav_BAC009S0764W0121.wav"
EN_CLIP = "en/lhotse-speech_lhotse__test_fixtures_libri_libri-1088-134315-0000.wav"
LONGFORM = "longform_zh_dev"
GAP = (50.417, 75.417)  # the 25 s of quiet room noise between two clips of the longform recording


def load(relative: str) -> np.ndarray:
    return decode(probe(corpus_path(relative))).samples


def covered(chunks: list[Chunk], start: float, end: float) -> float:
    """Seconds of [start, end] inside the chunks' speech regions."""
    return sum(max(0.0, min(end, r.end) - max(start, r.start)) for c in chunks for r in c.regions)


def assert_well_formed(chunks: list[Chunk], duration: float, options: VadOptions = VadOptions()) -> None:
    regions = [r for c in chunks for r in c.regions]
    assert all(0.0 <= r.start < r.end <= duration + 1e-6 for r in regions)
    assert all(a.end <= b.start for a, b in zip(regions, regions[1:])), "regions overlap or are out of order"
    for c in chunks:
        assert (c.start, c.end) == (c.regions[0].start, c.regions[-1].end)
        assert c.duration <= options.max_chunk + 1e-6


# --- real speech -------------------------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.parametrize(("clip", "share"), [(ZH_CLIP, 0.8), (EN_CLIP, 0.9)])
def test_speech_clip_gives_chunks_covering_its_speech(clip, share):
    samples = load(clip)
    duration = len(samples) / SAMPLE_RATE
    chunks = segment(samples)
    assert chunks
    assert_well_formed(chunks, duration)
    # These clips are speech from end to end but for short lead-in and trailing quiet.
    assert covered(chunks, 0.0, duration) >= share * duration
    assert chunks[0].start < 0.5 and chunks[-1].end > duration - 0.5


@pytest.mark.corpus
def test_speech_regions_of_quiet_speech_are_found():
    # Recordings made far from the speaker: the same clip 40 dB down is still speech.
    samples = load(EN_CLIP)
    loud, quiet = speech_regions(samples), speech_regions(samples * 0.01)
    assert quiet
    assert sum(r.duration for r in quiet) >= 0.8 * sum(r.duration for r in loud)


@pytest.mark.corpus
def test_no_state_carries_over_between_recordings():
    # One model serves a whole batch: what it heard before must not change what it hears next.
    samples = load(ZH_CLIP)
    first = speech_regions(samples)
    speech_regions(load(EN_CLIP))
    assert speech_regions(samples) == first


@pytest.fixture(scope="module")
def longform() -> tuple[list[Chunk], list[dict], float]:
    reference = json.loads(corpus_path(f"{LONGFORM}.json").read_text())
    samples = load(f"{LONGFORM}.wav")
    return segment(samples), reference["segments"], len(samples) / SAMPLE_RATE


@pytest.mark.corpus
def test_longform_chunks_cover_every_clip(longform):
    chunks, clips, duration = longform
    assert_well_formed(chunks, duration)
    for clip in clips:
        speech = covered(chunks, clip["start"], clip["end"])
        assert speech > 0.5 * (clip["end"] - clip["start"]), f"clip {clip['start']}-{clip['end']} s: {speech:.1f} s in chunks"


@pytest.mark.corpus
def test_longform_quiet_gaps_give_no_chunks(longform):
    chunks, clips, _ = longform
    assert not [c for c in chunks if c.start >= GAP[0] and c.end <= GAP[1]], "a chunk in the 25 s gap"
    # Nor does any speech region lie wholly in any of the gaps of room noise between clips.
    gaps = [(a["end"], b["start"]) for a, b in zip(clips, clips[1:])]
    assert (50.417, 75.417) in gaps
    for r in (r for c in chunks for r in c.regions):
        assert not any(start <= r.start and r.end <= end for start, end in gaps), f"region {r} in a gap"


# --- quiet -------------------------------------------------------------------------------------------


def noise(seconds: float, dbfs: float, color: str, seed: int = 0) -> np.ndarray:
    """White or pink noise at the given RMS level."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(int(seconds * SAMPLE_RATE))
    if color == "pink":  # 1/f power: scale the spectrum by 1/sqrt(f)
        spectrum = np.fft.rfft(white)
        f = np.fft.rfftfreq(len(white))
        spectrum[1:] /= np.sqrt(f[1:])
        spectrum[0] = 0
        white = np.fft.irfft(spectrum, len(white))
    return (white / np.sqrt(np.mean(white**2)) * 10 ** (dbfs / 20)).astype(np.float32)


@pytest.mark.parametrize("color", ["white", "pink"])
def test_near_silence_gives_no_chunks(color):
    samples = noise(60, -60, color)
    assert np.sqrt(np.mean(samples**2)) == pytest.approx(10 ** (-60 / 20), rel=0.01)
    assert segment(samples) == []


@pytest.mark.parametrize("n", [60 * SAMPLE_RATE, 1, 511, 513])
def test_zeros_give_no_chunks(n):
    assert segment(np.zeros(n, dtype=np.float32)) == []


def test_empty_audio_gives_no_chunks():
    assert segment(np.zeros(0, dtype=np.float32)) == []
    assert speech_regions(np.zeros(0, dtype=np.float32)) == []


# --- make_chunks -------------------------------------------------------------------------------------

OPTIONS = VadOptions(max_chunk=10.0, max_gap=1.0)


def regions(*spans: tuple[float, float]) -> list[SpeechRegion]:
    return [SpeechRegion(s, e) for s, e in spans]


def spans(chunks: list[Chunk]) -> list[list[tuple[float, float]]]:
    return [[(r.start, r.end) for r in c.regions] for c in chunks]


def test_make_chunks_of_nothing():
    assert make_chunks([], OPTIONS) == []


def test_close_regions_share_a_chunk():
    chunks = make_chunks(regions((0, 2), (2.5, 4), (4.9, 6)), OPTIONS)
    assert spans(chunks) == [[(0, 2), (2.5, 4), (4.9, 6)]]
    assert (chunks[0].start, chunks[0].end) == (0, 6)
    assert chunks[0].speech_duration == pytest.approx(4.6)


def test_a_long_gap_ends_a_chunk():
    chunks = make_chunks(regions((0, 2), (3.01, 4), (5, 6)), OPTIONS)
    assert spans(chunks) == [[(0, 2)], [(3.01, 4), (5, 6)]]  # 1.01 s > max_gap; exactly 1 s is not


def test_max_chunk_ends_a_chunk():
    chunks = make_chunks(regions((0, 4), (4.5, 9), (9.5, 10), (10.5, 12)), OPTIONS)
    assert spans(chunks) == [[(0, 4), (4.5, 9), (9.5, 10)], [(10.5, 12)]]  # exactly 10 s fits


def test_a_region_longer_than_max_chunk_is_a_chunk_of_its_own():
    chunks = make_chunks(regions((0, 1), (1.5, 16), (16.2, 17)), OPTIONS)
    assert spans(chunks) == [[(0, 1)], [(1.5, 16)], [(16.2, 17)]]


@pytest.mark.parametrize("seed", range(20))
def test_make_chunks_keeps_order_and_coverage_within_limits(seed):
    rnd = random.Random(seed)
    spans_in, t = [], 0.0
    for _ in range(rnd.randint(1, 60)):
        t += rnd.choice([0.0, rnd.uniform(0, 0.8), rnd.uniform(0, 3)])
        length = rnd.choice([rnd.uniform(0.2, 4), rnd.uniform(4, 14)])
        spans_in.append((t, t + length))
        t += length
    chunks = make_chunks(regions(*spans_in), OPTIONS)
    assert [s for c in spans(chunks) for s in c] == spans_in  # every region once, in order
    for c in chunks:
        assert (c.start, c.end) == (c.regions[0].start, c.regions[-1].end)
        assert c.duration <= OPTIONS.max_chunk or len(c.regions) == 1
        assert all(b.start - a.end <= OPTIONS.max_gap for a, b in zip(c.regions, c.regions[1:]))
    for a, b in zip(chunks, chunks[1:]):
        # A chunk ends only for a reason: a long gap, or the next region would not fit.
        assert b.start - a.end > OPTIONS.max_gap or b.regions[0].end - a.start > OPTIONS.max_chunk
