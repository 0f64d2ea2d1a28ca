"""Speech regions with silero-vad, grouped into chunks of at most ~30 s for the recogniser.

Only chunks reach Whisper, so the quiet between turns is never transcribed: that is the first and
best defence against Whisper writing text into silence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

import numpy as np

from pipeline.records import Chunk, SpeechRegion
from pipeline.stages.audio import SAMPLE_RATE
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


@cache
def _model(device: str, threads: int):
    # The "sequence" model gives the stock model's probabilities frame for frame, but runs a block of
    # 512 frames per ONNX call instead of one Python call per 32 ms frame (about 8x faster).
    from importlib.resources import files

    import onnxruntime
    from silero_vad.sequence_vad import DEFAULT_MAX_FRAMES, SileroVADSequence

    class Sequence(SileroVADSequence):
        """silero's sequence model on a session of ours: its own constructor opens one on one CPU thread, which
        would be opened for nothing and then again with the process's cores, or on the GPU."""

        def __init__(self, session: onnxruntime.InferenceSession) -> None:
            self.session, self.sampling_rate, self.max_frames = session, SAMPLE_RATE, DEFAULT_MAX_FRAMES

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    providers = ["CPUExecutionProvider"]
    if device != "cpu" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    log.info("loading the silero-vad model on %s (%d threads)", providers[0], threads)
    path = str(files("silero_vad.data") / "silero_vad_16k_sequence.onnx")  # what load_silero_vad(sequence=True) opens
    return Sequence(onnxruntime.InferenceSession(path, sess_options=options, providers=providers))


def speech_probabilities(samples: np.ndarray, device: str = "auto", threads: int | None = None) -> np.ndarray:
    """Per-frame (32 ms) speech probability; device auto, cpu or cuda; threads None: every core the process
    may use."""
    model = _model(device, threads or usable_cores())
    return model.audio_forward(np.ascontiguousarray(samples, dtype=np.float32), sampling_rate=SAMPLE_RATE)


_FRAME = 512  # samples: silero's frame, 32 ms


def frame_levels(samples: np.ndarray) -> np.ndarray:
    """Level of each 32 ms frame in dB (RMS), computed a block at a time to keep memory flat."""
    n = len(samples) // _FRAME
    levels = np.empty(n, dtype=np.float32)
    block = 4096  # frames
    for first in range(0, n, block):
        frames = samples[first * _FRAME : min(n, first + block) * _FRAME].reshape(-1, _FRAME)
        levels[first : first + len(frames)] = 10 * np.log10(
            np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12
        )
    return levels


def extend_by_energy(regions: list[SpeechRegion], levels: np.ndarray, options: VadOptions) -> list[SpeechRegion]:
    """Grow regions over adjacent loud frames (see VadOptions), then merge any that now touch."""
    if not regions or not len(levels):
        return regions
    loud = levels > np.percentile(levels, 10) + options.energy_margin_db
    frame_seconds = _FRAME / SAMPLE_RATE
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
    from silero_vad import get_speech_timestamps_from_probs

    if len(samples) == 0:
        return []
    stamps = get_speech_timestamps_from_probs(
        speech_probabilities(samples, device, threads).tolist(),
        sampling_rate=SAMPLE_RATE,
        threshold=options.threshold,
        min_speech_duration_ms=int(options.min_speech * 1000),
        max_speech_duration_s=options.max_chunk,
        min_silence_duration_ms=int(options.min_silence * 1000),
        speech_pad_ms=int(options.pad * 1000),
        audio_length_samples=len(samples),
    )
    regions = [SpeechRegion(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]
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
