"""Speech regions with silero-vad, grouped into chunks of at most ~30 s for the recogniser.

Only chunks reach Whisper, so the quiet between turns is never transcribed: that is the first and
best defence against Whisper writing text into silence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from pipeline.records import Chunk, SpeechRegion
from pipeline.stages.audio import SAMPLE_RATE
from pipeline.stages.vad import FRAME, TimestampOptions, speech_probabilities, speech_timestamps
from pipeline.utils import usable_cores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VadOptions:
    threshold: float = 0.5  # speech probability above which a frame is speech
    min_speech: float = 0.25  # shorter bursts are dropped (clicks, coughs)
    min_silence: float = 0.3  # shorter pauses do not split a region
    pad: float = 0.3  # added to both ends of a region so word onsets and endings survive
    max_chunk: float = 28.0  # Whisper's window is 30 s; keep a margin for the padding
    max_gap: float = 2.0  # a longer pause ends a chunk: quiet inside a chunk invites invented text
    # Silero misses the quiet onset of distant (far-field) speech; a region grows over neighbouring
    # audio that stays this far above the recording's noise floor, by at most max_extend seconds.
    energy_margin_db: float = 15.0
    max_extend: float = 2.0


def frame_levels(samples: np.ndarray) -> np.ndarray:
    """Level of each 32 ms frame in dB (RMS), computed a block at a time to keep memory flat."""
    n = len(samples) // FRAME
    levels = np.empty(n, dtype=np.float32)
    block = 4096  # frames
    for first in range(0, n, block):
        frames = samples[first * FRAME : min(n, first + block) * FRAME].reshape(-1, FRAME)
        levels[first : first + len(frames)] = 10 * np.log10(
            np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12
        )
    return levels


def extend_by_energy(regions: list[SpeechRegion], levels: np.ndarray, options: VadOptions) -> list[SpeechRegion]:
    """Grow regions over adjacent loud frames (see VadOptions), then merge any that now touch."""
    if not regions or not len(levels):
        return regions
    loud = levels > np.percentile(levels, 10) + options.energy_margin_db
    frame_seconds = FRAME / SAMPLE_RATE
    limit = int(options.max_extend / frame_seconds)
    grown: list[SpeechRegion] = []
    for region in regions:
        first, last = int(region.start / frame_seconds), min(len(loud), int(np.ceil(region.end / frame_seconds)))
        start = first
        while start > 0 and first - start < limit and loud[start - 1]:
            start -= 1
        end = last
        while end < len(loud) and end - last < limit and loud[end]:
            end += 1
        new = SpeechRegion(min(region.start, start * frame_seconds), max(region.end, end * frame_seconds))
        if new.duration > options.max_chunk:
            new = region  # growing must not undo silero's split of speech longer than max_chunk
        if grown and new.start <= grown[-1].end:
            previous = grown[-1]
            if max(new.end, previous.end) - previous.start <= options.max_chunk:
                grown.pop()
                new = SpeechRegion(previous.start, max(new.end, previous.end))
            else:  # they touch, but together they would not fit Whisper's window: keep both, apart
                new = SpeechRegion(previous.end, new.end)
        grown.append(new)
    return grown


def speech_regions(
    samples: np.ndarray, options: VadOptions = VadOptions(), device: str = "auto", threads: int | None = None
) -> list[SpeechRegion]:
    """Where silero-vad hears speech (device auto, cpu or cuda; threads None: every core the process may use),
    grown by `extend_by_energy`."""
    if len(samples) == 0:
        return []
    probabilities = speech_probabilities(samples, device, threads or usable_cores())
    rule = TimestampOptions(
        threshold=options.threshold,
        min_speech=options.min_speech * SAMPLE_RATE,
        max_speech=options.max_chunk * SAMPLE_RATE,
        min_silence=options.min_silence * SAMPLE_RATE,
        pad=options.pad * SAMPLE_RATE,
    )
    stamps = speech_timestamps(probabilities, len(samples), rule)
    regions = [SpeechRegion(start / SAMPLE_RATE, end / SAMPLE_RATE) for start, end in stamps]
    return extend_by_energy(regions, frame_levels(samples), options)


def make_chunks(regions: list[SpeechRegion], options: VadOptions = VadOptions()) -> list[Chunk]:
    """Group consecutive regions into chunks no longer than max_chunk, ending a chunk at long pauses."""
    chunks: list[Chunk] = []
    current: list[SpeechRegion] = []
    for region in regions:
        if current and (
            region.start - current[-1].end > options.max_gap or region.end - current[0].start > options.max_chunk
        ):
            chunks.append(Chunk(current[0].start, current[-1].end, tuple(current)))
            current = []
        current.append(region)
    if current:
        chunks.append(Chunk(current[0].start, current[-1].end, tuple(current)))
    return chunks


def segment(
    samples: np.ndarray, options: VadOptions = VadOptions(), device: str = "auto", threads: int | None = None
) -> list[Chunk]:
    """The stage: audio in, chunks of speech out. Silence gives no chunks."""
    return make_chunks(speech_regions(samples, options, device, threads), options)
