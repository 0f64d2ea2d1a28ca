"""The two Whisper engines, faster-whisper and openai-whisper, behind one small interface.

An engine decodes one chunk of audio and answers which language it hears; everything about long-form
audio (chunking, timing, guards, script) is the transcribe stage's business, the same for both.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pipeline.errors import InvalidInputError
from pipeline.records import Segment, Word

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


class EngineName(StrEnum):
    FASTER_WHISPER = "faster-whisper"
    OPENAI_WHISPER = "openai-whisper"


ENGINES = tuple(EngineName)
# 4-5x faster than openai-whisper on CPU at the same accuracy: bench/RESULTS.md
DEFAULT_ENGINE = EngineName.FASTER_WHISPER
SEED = 1234  # sampling at temperature > 0 is seeded per chunk, so a re-run gives the same text


@dataclass(frozen=True)
class DecodeOptions:
    beam_size: int = 5
    best_of: int = 5
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float = 2.4
    log_prob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    # Words to expect (pipeline.stages.vocabulary): faster-whisper takes them as hotwords, openai-whisper
    # as its initial prompt. None: no hint.
    hint: str | None = None


class Engine(Protocol):
    @property
    def name(self) -> str: ...

    model: str

    def language_probabilities(self, samples: np.ndarray) -> dict[str, float]: ...

    def decode(self, samples: np.ndarray, language: str, options: DecodeOptions) -> list[Segment]:
        """Segments with words, times relative to the start of `samples`; text as the model wrote it."""
        ...


def _segment(start, end, text, language, words, avg_logprob, no_speech_prob, compression_ratio) -> Segment:
    text = text.strip()
    return Segment(
        start=float(start),
        end=float(end),
        text=text,
        original_text=text,
        language=language,
        words=[Word(float(s), float(e), w.strip(), float(p)) for s, e, w, p in words if w.strip()],
        avg_logprob=float(avg_logprob),
        no_speech_prob=float(no_speech_prob),
        compression_ratio=float(compression_ratio),
    )


class FasterWhisperEngine:
    name = EngineName.FASTER_WHISPER

    def __init__(
        self, model: str, home: Path, device: str = "auto", compute_type: str = "int8", threads: int | None = None
    ) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel

        from pipeline.weights import resolve_model

        self.model = model
        self._ct2 = ctranslate2
        path = resolve_model(model, self.name, home)
        threads = threads or os.cpu_count() or 1
        # CTranslate2 decides "auto" itself
        log.info("loading faster-whisper model %s on %s (%d CPU threads)", path, device, threads)
        self._model = WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=threads)

    def language_probabilities(self, samples: np.ndarray) -> dict[str, float]:
        _, _, probs = self._model.detect_language(samples)
        return dict(probs)

    def decode(self, samples: np.ndarray, language: str, options: DecodeOptions) -> list[Segment]:
        self._ct2.set_random_seed(SEED)
        segments, _ = self._model.transcribe(
            samples,
            language=language,
            beam_size=options.beam_size,
            best_of=options.best_of,
            temperature=list(options.temperatures),
            compression_ratio_threshold=options.compression_ratio_threshold,
            log_prob_threshold=options.log_prob_threshold,
            no_speech_threshold=options.no_speech_threshold,
            condition_on_previous_text=False,  # chunks are independent: no loop carries over
            word_timestamps=True,
            vad_filter=False,  # the segment stage already did VAD
            hotwords=options.hint,
        )
        return [
            _segment(
                s.start,
                s.end,
                s.text,
                language,
                [(w.start, w.end, w.word, w.probability) for w in s.words or []],
                s.avg_logprob,
                s.no_speech_prob,
                s.compression_ratio,
            )
            for s in segments
        ]


class OpenAIWhisperEngine:
    name = EngineName.OPENAI_WHISPER

    def __init__(self, model: str, home: Path, device: str = "auto", threads: int | None = None) -> None:
        import torch

        from pipeline.config import torch_device
        from pipeline.weights import load_openai_whisper

        threads = threads or os.cpu_count() or 1
        torch.set_num_threads(threads)
        self.model = model
        self._torch = torch
        device = torch_device(device)
        log.info("loading openai-whisper model %s on %s (%d CPU threads)", model, device, threads)
        self._model = load_openai_whisper(model, home, device)

    def language_probabilities(self, samples: np.ndarray) -> dict[str, float]:
        import whisper

        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(samples), self._model.dims.n_mels)
        _, probs = self._model.detect_language(mel.to(self._model.device))
        return dict(probs)

    def decode(self, samples: np.ndarray, language: str, options: DecodeOptions) -> list[Segment]:
        self._torch.manual_seed(SEED)
        result = self._model.transcribe(
            samples,
            language=language,
            beam_size=options.beam_size,
            best_of=options.best_of,
            temperature=options.temperatures,
            compression_ratio_threshold=options.compression_ratio_threshold,
            logprob_threshold=options.log_prob_threshold,
            no_speech_threshold=options.no_speech_threshold,
            condition_on_previous_text=False,
            word_timestamps=True,
            fp16=False,
            verbose=None,
            initial_prompt=options.hint,
        )
        return [
            _segment(
                s["start"],
                s["end"],
                s["text"],
                language,
                [(w["start"], w["end"], w["word"], w["probability"]) for w in s.get("words", [])],
                s["avg_logprob"],
                s["no_speech_prob"],
                s["compression_ratio"],
            )
            for s in result["segments"]
        ]


@cache
def load_engine(name: str, model: str, home: Path, device: str = "auto", threads: int | None = None) -> Engine:
    """One loaded model per (engine, model, model cache, device, threads) in a process: loading takes seconds,
    decoding reuses it. `home` is the model cache; device auto, cpu or cuda; threads on the CPU (None: one per
    core of the machine; a cluster's worker gives the cores it reserved, pipeline.cluster.actors)."""
    if name == EngineName.FASTER_WHISPER:
        return FasterWhisperEngine(model, home, device, threads=threads)
    if name == EngineName.OPENAI_WHISPER:
        return OpenAIWhisperEngine(model, home, device, threads)
    raise InvalidInputError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
