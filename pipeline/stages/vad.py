"""Silero VAD without torch: its "sequence" ONNX model, and its rule from frame probabilities to speech.

silero-vad ships the model, but its package imports torch on import (its `__init__` and `utils_vad` do, even
for the ONNX path: snakers4/silero-vad#568), which cost every `ohp run` about 2 s of start-up for a library
it does not use. So the weights are read from the installed package without importing it, and the two
pieces of its code ohp needs are here, in numpy: the frames the sequence model reads, and
`speech_timestamps`, which gives what silero's `get_speech_timestamps_from_probs` gives for the options ohp
uses (tests/test_vad.py checks both against silero's own code).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from pipeline.stages.audio import SAMPLE_RATE  # the model's rate too
from pipeline.utils import package_folder

log = logging.getLogger(__name__)

FRAME = 512  # samples a probability is given for: 32 ms
CONTEXT = 64  # samples of the frame before that the model reads with each frame
BLOCK = 512  # frames per ONNX call (16.4 s): one Python step per block, not per frame
STATE_SHAPE = (1, 1, 128)  # the LSTM's hidden and cell state, carried from block to block
MODEL_FILE = "silero_vad_16k_sequence.onnx"


def model_path() -> Path:
    """The sequence model inside the installed silero-vad package, found without importing the package."""
    return package_folder("silero_vad", "its model is ohp's voice activity detector") / "data" / MODEL_FILE


@cache
def load_model(device: str, threads: int):
    """The model's ONNX session, loaded once per device and threads in a process."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    providers = ["CPUExecutionProvider"]
    if device != "cpu" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    log.info("loading the silero-vad model on %s (%d threads)", providers[0], threads)
    return onnxruntime.InferenceSession(str(model_path()), sess_options=options, providers=providers)


def frame_blocks(samples: np.ndarray) -> Iterator[np.ndarray]:
    """The model's input, BLOCK frames at a time: each row a frame after the last CONTEXT samples of the frame
    before it (zeros before the first); the last frame padded with zeros."""
    count = -(-len(samples) // FRAME)
    context = np.zeros(CONTEXT, dtype=np.float32)
    for first in range(0, count, BLOCK):
        frames = np.zeros((min(BLOCK, count - first), FRAME), dtype=np.float32)
        piece = samples[first * FRAME : (first + len(frames)) * FRAME]
        frames.reshape(-1)[: len(piece)] = piece
        contexts = np.concatenate((context[None], frames[:-1, -CONTEXT:]))
        context = frames[-1, -CONTEXT:].copy()
        yield np.concatenate((contexts, frames), axis=1)


def speech_probabilities(samples: np.ndarray, device: str, threads: int) -> np.ndarray:
    """The probability of speech in each FRAME of 16 kHz `samples` (device auto, cpu or cuda)."""
    session = load_model(device, threads)
    hidden = cell = np.zeros(STATE_SHAPE, dtype=np.float32)
    probabilities = [np.zeros(0, dtype=np.float32)]
    for block in frame_blocks(np.ascontiguousarray(samples, dtype=np.float32)):
        values, hidden, cell = session.run(["speech_probs", "hn", "cn"], {"input": block, "h": hidden, "c": cell})
        probabilities.append(np.asarray(values, dtype=np.float32).reshape(-1))
    return np.concatenate(probabilities)


@dataclass(frozen=True)
class TimestampOptions:
    """silero's parameters of the same names, in samples at SAMPLE_RATE."""

    threshold: float  # a frame at or above it starts or continues speech
    min_speech: float  # shorter speech is dropped
    max_speech: float  # longer speech is cut, at its longest pause (silero's use_max_poss_sil_at_max_speech)
    min_silence: float  # a pause must last this long to end speech
    pad: float  # added to both ends of each stretch of speech, or half the pause when it is shorter

    @property
    def negative_threshold(self) -> float:
        """Below it a frame counts as silence; between the two, a frame changes nothing."""
        return max(self.threshold - 0.15, 0.01)

    @property
    def longest_before_cut(self) -> float:
        return self.max_speech - FRAME - 2 * self.pad


# A pause inside speech that is long enough for speech cut at max_speech to be cut there (silero's 98 ms).
MIN_PAUSE_AT_CUT = SAMPLE_RATE * 98 / 1000


def speech_timestamps(probabilities: np.ndarray, length: int, options: TimestampOptions) -> list[tuple[int, int]]:
    """Speech as (start, end) samples from the FRAME probabilities of `length` samples of audio: silero's
    `get_speech_timestamps_from_probs` at 16 kHz, cutting overlong speech at its longest pause."""
    speeches: list[list[int]] = []
    start: int | None = None  # of the speech being read
    pause_start = 0  # where a pause inside it began (0: none)
    pauses: list[tuple[int, int]] = []  # (start, length) of its pauses long enough to cut at
    for index, probability in enumerate(probabilities.tolist()):
        sample = FRAME * index
        if probability >= options.threshold and pause_start:
            if sample - pause_start > MIN_PAUSE_AT_CUT:
                pauses.append((pause_start, sample - pause_start))
            pause_start = 0
        if probability >= options.threshold and start is None:
            start = sample
            continue
        if start is not None and sample - start > options.longest_before_cut:
            if pauses:  # cut at the longest pause; the speech after it goes on
                cut, pause = max(pauses, key=lambda p: p[1])
                speeches.append([start, cut])
                start = cut + pause
            else:  # no pause to cut at: cut here, and speech starts again only above the threshold
                speeches.append([start, sample])
                start = None
            pause_start, pauses = 0, []
            if start is None:
                continue
        if probability < options.negative_threshold and start is not None:
            pause_start = pause_start or sample
            if sample - pause_start < options.min_silence:
                continue
            if pause_start - start > options.min_speech:
                speeches.append([start, pause_start])
            start, pause_start, pauses = None, 0, []
    if start is not None and length - start > options.min_speech:
        speeches.append([start, length])
    return _padded(speeches, length, options.pad)


def _padded(speeches: list[list[int]], length: int, pad: float) -> list[tuple[int, int]]:
    """Each stretch widened by `pad` (within the audio), or by half the pause to the next when that is shorter
    than two pads."""
    for i, speech in enumerate(speeches):
        if i == 0:
            speech[0] = int(max(0, speech[0] - pad))
        if i == len(speeches) - 1:
            speech[1] = int(min(length, speech[1] + pad))
            continue
        after = speeches[i + 1]
        pause = after[0] - speech[1]
        if pause < 2 * pad:
            speech[1] += pause // 2
            after[0] = int(max(0, after[0] - pause // 2))
        else:
            speech[1] = int(min(length, speech[1] + pad))
            after[0] = int(max(0, after[0] - pad))
    return [(start, end) for start, end in speeches]
