"""Speech regions (silero-vad) and chunks: real speech is found, quiet is not, chunks respect their limits."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest

from pipeline.records import Chunk, SpeechRegion
from pipeline.stages.audio import SAMPLE_RATE, decode, probe
from pipeline.stages.segment import VadOptions, extend_by_energy, frame_levels, make_chunks, segment, speech_regions

from conftest import corpus_path

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
    assert all(a.end <= b.start for a, b in itertools.pairwise(regions)), "regions overlap or are out of order"
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
        assert speech > 0.5 * (clip["end"] - clip["start"]), (
            f"clip {clip['start']}-{clip['end']} s: {speech:.1f} s in chunks"
        )


@pytest.mark.corpus
def test_longform_quiet_gaps_give_no_chunks(longform):
    chunks, clips, _ = longform
    assert not [c for c in chunks if c.start >= GAP[0] and c.end <= GAP[1]], "a chunk in the 25 s gap"
    # Nor does any speech region lie wholly in any of the gaps of room noise between clips.
    gaps = [(a["end"], b["start"]) for a, b in itertools.pairwise(clips)]
    assert (50.417, 75.417) in gaps
    for r in (r for c in chunks for r in c.regions):
        assert not any(start <= r.start and r.end <= end for start, end in gaps), f"region {r} in a gap"


@pytest.mark.corpus
def test_continuous_speech_longer_than_a_chunk_is_split(longform):
    # 68 s of speech without a pause (one clip six times): silero splits it at max_chunk, and the
    # energy extension must not join the pieces again into one chunk longer than Whisper's window.
    samples = load(f"{LONGFORM}.wav")
    clip = samples[int(4.7 * SAMPLE_RATE) : int(16.0 * SAMPLE_RATE)]
    speech = np.concatenate([clip] * 6)
    duration = len(speech) / SAMPLE_RATE
    chunks = segment(speech)
    assert len(chunks) >= 3
    assert_well_formed(chunks, duration)
    assert covered(chunks, 0.0, duration) >= 0.95 * duration


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
        assert all(b.start - a.end <= OPTIONS.max_gap for a, b in itertools.pairwise(c.regions))
    for a, b in itertools.pairwise(chunks):
        # A chunk ends only for a reason: a long gap, or the next region would not fit.
        assert b.start - a.end > OPTIONS.max_gap or b.regions[0].end - a.start > OPTIONS.max_chunk


# --- energy extension --------------------------------------------------------------------------------

FRAME = 512 / SAMPLE_RATE  # 32 ms


def test_frame_levels():
    t = np.arange(10 * 512 + 100) / SAMPLE_RATE
    sine = (0.1 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)
    levels = frame_levels(sine)
    assert len(levels) == 10  # the partial frame at the end is left out
    assert levels == pytest.approx(20 * np.log10(0.1 / np.sqrt(2)), abs=0.2)
    assert frame_levels(np.zeros(2048, np.float32)) == pytest.approx(-120.0)
    assert len(frame_levels(np.zeros(100, np.float32))) == 0


def levels(n: int, *loud: tuple[int, int]) -> np.ndarray:
    """A -60 dB floor with loud (-30 dB) frames in the given [first, last) ranges (loud is relative to
    the 10th percentile: the floor must stay more than a tenth of the frames)."""
    out = np.full(n, -60.0, dtype=np.float32)
    for first, last in loud:
        out[first:last] = -30.0
    return out


def test_a_region_grows_over_loud_neighbours_only():
    region = SpeechRegion(100 * FRAME, 150 * FRAME)
    assert extend_by_energy([region], levels(400), VadOptions()) == [region]
    (grown,) = extend_by_energy([region], levels(400, (90, 160)), VadOptions())
    assert (grown.start, grown.end) == pytest.approx((90 * FRAME, 160 * FRAME))


def test_a_region_grows_by_at_most_max_extend():
    (grown,) = extend_by_energy(
        [SpeechRegion(100 * FRAME, 150 * FRAME)], levels(400, (0, 300)), VadOptions(max_extend=1.0)
    )
    assert grown.start == pytest.approx(100 * FRAME - int(1.0 / FRAME) * FRAME)
    assert grown.end == pytest.approx(150 * FRAME + int(1.0 / FRAME) * FRAME)


def test_regions_that_grow_together_merge():
    a, b = SpeechRegion(50 * FRAME, 100 * FRAME), SpeechRegion(120 * FRAME, 170 * FRAME)
    assert extend_by_energy([a, b], levels(400), VadOptions()) == [a, b]
    (merged,) = extend_by_energy([a, b], levels(400, (100, 120)), VadOptions())
    assert (merged.start, merged.end) == (a.start, b.end)


def test_growing_and_merging_stay_within_max_chunk():
    options = VadOptions(max_chunk=5.0)
    loud = levels(1000, (0, 800))  # the quiet fifth is the noise floor
    # silero's split of long speech: two regions that touch, 3 s each.
    a, b = SpeechRegion(100 * FRAME, 100 * FRAME + 3.0), SpeechRegion(100 * FRAME + 3.0, 100 * FRAME + 6.0)
    grown = extend_by_energy([a, b], loud, options)
    assert len(grown) == 2
    assert grown[0].end <= grown[1].start
    assert all(r.duration <= options.max_chunk for r in grown)
    # A region that cannot grow without passing max_chunk stays as it was.
    long = SpeechRegion(100 * FRAME, 100 * FRAME + 4.9)
    assert extend_by_energy([long], loud, options) == [long]
