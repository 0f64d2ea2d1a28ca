"""The two Whisper engines, faster-whisper and openai-whisper, behind one small interface.

An engine encodes a batch of pieces of audio (each at most Whisper's 30 s window), answers which language
it hears in each and decodes them; everything about long-form audio (chunking, timing, guards, second
passes, script) is the transcribe stage's business, the same for both.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.errors import InvalidInputError
from pipeline.records import DecodeMark, Segment, Word
from pipeline.utils import one_blas_thread, usable_cores

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


class EngineName(StrEnum):
    FASTER_WHISPER = "faster-whisper"
    OPENAI_WHISPER = "openai-whisper"


ENGINES = tuple(EngineName)


class ComputeType(StrEnum):
    """CTranslate2's compute types; openai-whisper computes in float16 (on CUDA) or float32 whatever is asked."""

    INT8 = "int8"
    INT8_FLOAT16 = "int8_float16"
    INT8_FLOAT32 = "int8_float32"
    INT8_BFLOAT16 = "int8_bfloat16"
    INT16 = "int16"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT32 = "float32"


# 4-5x faster than openai-whisper on CPU at the same accuracy: bench/RESULTS.md
DEFAULT_ENGINE = EngineName.FASTER_WHISPER
# Chunks decoded at once, by device. On a GPU 8, faster-whisper's batched pipeline's default (a batch keeps it
# busy); on the CPU one: a batch gained nothing there and cost memory (bench/RESULTS.md).
DEFAULT_BATCH_SIZES = {"cpu": 1, "cuda": 8}
SEED = 1234  # sampling at temperature > 0 is seeded, so a re-run gives the same text


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


# Pieces of audio as an engine holds them after its encode(): their language is read and their text decoded
# (again, at other temperatures or without the hint) from the same encoder pass. What it is is the engine's.
Encoded = Any


class Engine(Protocol):
    @property
    def name(self) -> str: ...

    model: str

    @property
    def device(self) -> str:
        """Where the model runs: cpu or cuda."""
        ...

    def encode(self, pieces: Sequence[np.ndarray]) -> Encoded:
        """Pieces of at most 30 s each, encoded together (one batch)."""
        ...

    def select(self, encoded: Encoded, indices: Sequence[int]) -> Encoded:
        """Some of an encoded batch's pieces, as a batch of their own, without encoding them again."""
        ...

    def language_probabilities(self, encoded: Encoded) -> list[dict[str, float]]:
        """Each piece's language probabilities."""
        ...

    def decode(self, encoded: Encoded, languages: Sequence[str], options: DecodeOptions) -> list[list[Segment]]:
        """Each piece's segments with words, times relative to the piece's start; text as the model wrote it."""
        ...


def _segment(start, end, text, language, words, avg_logprob, no_speech_prob, compression_ratio, marks=()) -> Segment:
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
        marks=tuple(marks),
    )


def ctranslate2_device(device: str) -> str:
    """The recogniser's device for a configured one: "auto" is CUDA when CTranslate2 sees a GPU."""
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def default_compute_type(device: str) -> str:
    """int8 on the CPU (fastest there, and base's accuracy holds: bench/RESULTS.md), float16 on a GPU."""
    return "float16" if ctranslate2_device(device) == "cuda" else "int8"


def default_batch_size(device: str) -> int:
    """Chunks decoded at once on a device (cpu or cuda): DEFAULT_BATCH_SIZES."""
    return DEFAULT_BATCH_SIZES.get(device, 1)


# Batches a recording must have before a second model decodes beside the first on the CPU. Since the second loads
# while the first decodes (pipeline.process), two pay from two batches on: recordings of 2-5 chunks were as fast
# or faster with two than with one, the three long-forms (7-9 chunks) 11% faster, the text the same
# (bench/RESULTS.md).
MIN_BATCHES_SIDE_BY_SIDE = 2


def decoder_count(engine: str, device: str, threads: int, batches: int) -> int:
    """Models of the recogniser decoding a recording's `batches` side by side, each with its share of the threads:
    two on a CPU given two threads or more, for a recording of MIN_BATCHES_SIDE_BY_SIDE batches or more (two
    one-thread models decode more in the same time than one two-thread model, which leaves cores waiting on
    its steps: bench/RESULTS.md); one on a GPU (batches keep it busy) and for openai-whisper."""
    if engine != EngineName.FASTER_WHISPER or threads < 2 or batches < MIN_BATCHES_SIDE_BY_SIDE:
        return 1
    return 2 if ctranslate2_device(device) == "cpu" else 1


def silent(avg_logprob: float | None, no_speech_prob: float | None, options: DecodeOptions) -> bool:
    """Whisper's own silence rule: a window it finds silent and is unsure of gives no text."""
    if avg_logprob is None or no_speech_prob is None:
        return False
    return no_speech_prob > options.no_speech_threshold and avg_logprob < options.log_prob_threshold


def failures(
    compression_ratio: float | None, avg_logprob: float | None, no_speech_prob: float | None, options: DecodeOptions
) -> list[str]:
    """Why text fails Whisper's checks, those that make faster-whisper's and openai-whisper's transcribe() fall
    back to the next temperature: text too repetitive (its compression ratio) or too unlikely, unless the window
    is `silent` (which gives no text, however it compresses); empty: it passes. ohp's own fallback takes only
    the first (FasterWhisperEngine._failed); the hint's check takes both."""
    if silent(avg_logprob, no_speech_prob, options):
        return []
    problems = []
    if compression_ratio is not None and compression_ratio > options.compression_ratio_threshold:
        problems.append(f"compression ratio {compression_ratio:.2f}")
    if avg_logprob is not None and avg_logprob < options.log_prob_threshold:
        problems.append(f"average log probability {avg_logprob:.2f}")
    return problems


MAX_INITIAL_TIMESTAMP = 1.0  # s: the first timestamp may not come later (as in faster-whisper's transcribe)
# Tokens a second of audio may take (text and timestamp tokens; the prompt is not among them). Measured on the
# corpus (bench/token_rate.py: the long-forms and every clip, bench/RESULTS.md), speech took at most 9.9 a second
# (a Mandarin clip read fast; English at most 6.4); twice that is a piece's budget. Speech never reaches it, and a
# decode that does is looping: it stops there instead of at Whisper's limit of 224 tokens whatever the piece's
# length (a loop in a 7 s piece took 3.5-3.9 s to reach it), and counts as too repetitive.
MAX_TOKENS_PER_SECOND = 20
TOKEN_MARGIN = 10  # tokens more in every budget: a short piece's timestamps (a 1 s piece wrote 8 tokens)


def token_budget(seconds: float) -> int:
    """The tokens a decode of a piece of `seconds` of audio may write: MAX_TOKENS_PER_SECOND."""
    return math.ceil(MAX_TOKENS_PER_SECOND * seconds) + TOKEN_MARGIN


# A piece's encoder window: its audio and WINDOW_MARGIN of padding after it, in steps of WINDOW_STEP, at most
# Whisper's 30 s. Whisper pads every window to 30 s, but its encoder takes a shorter one (whisper.cpp's
# audio_ctx) and costs in proportion; measured on the corpus (bench/RESULTS.md, "Encoder windows cut to the
# speech"): Mandarin and the dialect no worse than in 30 s windows, English a point worse on its clips, nothing
# in the gaps, in half the time. The margin is the silence Whisper sees after the last word; with 1-2 s the
# English long-form came out worse.
WINDOW_MARGIN = 500  # frames (100 a second): 5 s
WINDOW_STEP = 100  # frames: an even number, as the encoder halves the frames


def encoder_window(frames: int, limit: int) -> int:
    """The frames of the encoder window for pieces of at most `frames` frames: see WINDOW_MARGIN."""
    return min(limit, math.ceil((frames + WINDOW_MARGIN) / WINDOW_STEP) * WINDOW_STEP)


# faster-whisper's default punctuation merged into the next word, and into the previous one.
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


@dataclass
class _Attempt:
    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    cut_off: bool = False  # stopped by its token budget (a loop), not by Whisper's own limit or its end


@dataclass
class _FasterEncoded:
    features: np.ndarray  # (pieces, mels, frames), each padded to the 30 s window
    frames: list[int]  # each piece's frames of audio, before padding
    output: object  # the encoder's output, a ctranslate2.StorageView

    def __len__(self) -> int:
        return len(self.frames)


class FasterWhisperEngine:
    """faster-whisper's model driven batch-wise: CTranslate2 encodes and generates a batch of pieces at once
    (as faster-whisper's BatchedInferencePipeline does), while the decoding rules are those of its one-piece
    transcribe(): beam search, temperature fallback per piece (for text too repetitive only: _failed), Whisper's
    silence rule, first timestamp within a second, hotwords, word timestamps from the cross-attention alignment."""

    name = EngineName.FASTER_WHISPER

    def __init__(self, model: str, home: Path, device: str, compute_type: str, threads: int) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel

        from pipeline.weights import resolve_model

        self.model = model
        self._ct2 = ctranslate2
        path = resolve_model(model, self.name, home)
        log.info("loading faster-whisper model %s on %s (%s, %d threads)", path, device, compute_type, threads)
        # CTranslate2 seeds a worker's random generator once, at its first draw (a later seed does not reseed it):
        # a model's fallbacks draw in the order its chunks come, the same in every run with the same chunks.
        ctranslate2.set_random_seed(SEED)
        one_blas_thread()  # the mel filters' product rounded alike in every process
        self._model = WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=threads)
        self._tokenizers: dict[str, Any] = {}

    @property
    def device(self) -> str:
        return self._model.model.device

    def _tokenizer(self, language: str):
        from faster_whisper.tokenizer import Tokenizer

        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(self._model.hf_tokenizer, True, "transcribe", language)
        return self._tokenizers[language]

    def encode(self, pieces: Sequence[np.ndarray]) -> _FasterEncoded:
        import numpy as np
        from faster_whisper.audio import pad_or_trim

        extractor = self._model.feature_extractor
        features = [extractor(piece)[..., :-1] for piece in pieces]  # as transcribe() cuts the last frame
        frames = [min(f.shape[-1], extractor.nb_max_frames) for f in features]
        window = encoder_window(max(frames), extractor.nb_max_frames)
        stacked = np.stack([pad_or_trim(f, window) for f in features])
        if self.device != "cpu":
            return _FasterEncoded(stacked, frames, self._model.encode(stacked))
        # On the CPU a piece at a time and the outputs put together: a batch's activations outgrow the caches,
        # and encoding 8 pieces together costs 20-30% more CPU time than one by one (bench/RESULTS.md).
        outputs = [np.asarray(self._model.encode(piece[None])) for piece in stacked]
        return _FasterEncoded(stacked, frames, self._ct2.StorageView.from_array(np.concatenate(outputs)))

    def select(self, encoded: _FasterEncoded, indices: Sequence[int]) -> _FasterEncoded:
        """Taken from the batch's encoder output on the CPU; encoded again on a GPU (a CUDA StorageView
        cannot be sliced)."""
        import numpy as np

        indices = list(indices)
        if indices == list(range(len(encoded))):
            return encoded
        features = encoded.features[indices]
        if getattr(encoded.output, "device", "cpu") == "cpu":
            output = self._ct2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded.output)[indices]))
        else:
            output = self._model.encode(features)
        return _FasterEncoded(features, [encoded.frames[i] for i in indices], output)

    def language_probabilities(self, encoded: _FasterEncoded) -> list[dict[str, float]]:
        # One decoder step on the encoder's output: the language costs no pass of its own.
        results = self._model.model.detect_language(encoded.output)
        return [{token[2:-2]: probability for token, probability in result} for result in results]

    def _generate(
        self, encoded: _FasterEncoded, languages: Sequence[str], temperature: float, options: DecodeOptions
    ) -> list[_Attempt]:
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        tokenizers = [self._tokenizer(language) for language in languages]
        if temperature > 0:
            kwargs = {"beam_size": 1, "num_hypotheses": options.best_of, "sampling_topk": 0}
        else:
            kwargs = {"beam_size": options.beam_size}
        prompts = [self._model.get_prompt(t, [], hotwords=options.hint) for t in tokenizers]
        budget = token_budget(max(encoded.frames) / self._model.frames_per_second)
        # CTranslate2 writes at most min(max_length / 2, max_length - the prompt's tokens before its last one):
        # the max_length that allows `budget`, at most the model's own (448, the budget then not reached).
        before = max(len(prompt) for prompt in prompts) - 1
        max_length = min(self._model.max_length, max(2 * budget, budget + before))
        results = self._model.model.generate(
            encoded.output,
            prompts,
            sampling_temperature=temperature,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizers[0], [-1]),
            max_initial_timestamp_index=round(MAX_INITIAL_TIMESTAMP / self._model.time_precision),
            **kwargs,
        )
        attempts = []
        for tokenizer, result in zip(tokenizers, results, strict=True):
            tokens = result.sequences_ids[0]
            text = tokenizer.decode(tokens).strip()
            # The score is the length-normalised sum of log probabilities (length penalty 1).
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            cut_off = max_length < self._model.max_length and len(tokens) >= budget
            attempts.append(_Attempt(tokens, avg_logprob, result.no_speech_prob, get_compression_ratio(text), cut_off))
        return attempts

    def decode(self, encoded: _FasterEncoded, languages: Sequence[str], options: DecodeOptions) -> list[list[Segment]]:
        chosen = self._decode_with_fallback(encoded, languages, options)
        pieces = [
            [] if self._silent(a, options) else self._split(a.tokens, language, frames)
            for a, language, frames in zip(chosen, languages, encoded.frames, strict=True)
        ]
        self._add_words(encoded, pieces, languages)
        return [
            [
                _segment(
                    s["start"],
                    s["end"],
                    s["text"],
                    language,
                    [(w["start"], w["end"], w["word"], w["probability"]) for w in s["words"]],
                    a.avg_logprob,
                    a.no_speech_prob,
                    a.compression_ratio,
                    (DecodeMark.LOOP,) if a.cut_off else (),  # it looped until its budget stopped it
                )
                for s in piece
            ]
            for piece, language, a in zip(pieces, languages, chosen, strict=True)
        ]

    @staticmethod
    def _silent(attempt: _Attempt, options: DecodeOptions) -> bool:
        return silent(attempt.avg_logprob, attempt.no_speech_prob, options)

    @staticmethod
    def _too_repetitive(attempt: _Attempt, options: DecodeOptions) -> bool:
        """Text that compresses too well, or a decode its token budget stopped (a loop cut short may not)."""
        return attempt.cut_off or attempt.compression_ratio > options.compression_ratio_threshold

    def _failed(self, attempt: _Attempt, options: DecodeOptions) -> bool:
        """Text too repetitive, in a window not found silent: sampling at the next temperature may break the loop.
        Text that is only unlikely (average log probability under the threshold) is kept from the beam search,
        unlike Whisper's transcribe(): on the dialect long-form the sampled draws that replaced such text made it
        worse (CER 0.564 with them, 0.548 without) for 2 s of sampling, and of the corpus's clips one unreadable
        clip changed (bench/RESULTS.md, "Unlikely text kept from the beam search"). faster-whisper's batched
        pipeline has no fallback at all. The doubt stage still reads the low probabilities."""
        return self._too_repetitive(attempt, options) and not self._silent(attempt, options)

    def _decode_with_fallback(
        self, encoded: _FasterEncoded, languages: Sequence[str], options: DecodeOptions
    ) -> list[_Attempt]:
        """Each piece decoded at the first temperature that gives text that does not fail (_failed), as
        faster-whisper's generate_with_fallback does. Beam search (temperature 0) takes the batch at once; sampling
        takes a piece at a time, in order, so that its draws, and so its text, do not depend on the batch it came
        in."""
        attempts: list[list[_Attempt]] = [[] for _ in languages]
        temperatures = options.temperatures
        todo = list(range(len(languages)))
        if temperatures[0] == 0:
            for i, attempt in enumerate(self._generate(encoded, languages, 0.0, options)):
                attempts[i].append(attempt)
            todo = [i for i in todo if self._failed(attempts[i][-1], options)]
            temperatures = temperatures[1:]
        for i in todo:
            one = self.select(encoded, [i])
            for temperature in temperatures:
                [attempt] = self._generate(one, [languages[i]], temperature, options)
                attempts[i].append(attempt)
                if not self._failed(attempt, options):
                    break
        # Where every temperature looped, the likeliest draw, as faster-whisper keeps it.
        return [
            tried[-1] if not self._failed(tried[-1], options) else max(tried, key=lambda a: a.avg_logprob)
            for tried in attempts
        ]

    def _split(self, tokens: list[int], language: str, frames: int) -> list[dict]:
        """A piece's tokens cut into segments at its timestamp tokens (an unfinished last one left out, as
        transcribe() leaves it for its next window: the transcribe stage decodes that speech again)."""
        tokenizer = self._tokenizer(language)
        segments, _, _ = self._model._split_segments_by_timestamps(
            tokenizer=tokenizer,
            tokens=tokens,
            time_offset=0.0,
            segment_size=frames,
            segment_duration=frames / self._model.frames_per_second,
            seek=0,
        )
        kept = []
        for s in segments:
            s["text"] = tokenizer.decode(s["tokens"])
            if s["text"].strip() and s["start"] != s["end"]:  # as transcribe() skips them
                kept.append(s)
        return kept

    def _add_words(self, encoded: _FasterEncoded, pieces: list[list[dict]], languages: Sequence[str]) -> None:
        """Word timestamps, aligned for all the pieces of a language at once."""
        for language in dict.fromkeys(languages):
            indices = [i for i, piece in enumerate(pieces) if piece and languages[i] == language]
            if indices:
                self._model.add_word_timestamps(
                    [pieces[i] for i in indices],
                    self._tokenizer(language),
                    self.select(encoded, indices).output,
                    [encoded.frames[i] for i in indices],
                    PREPEND_PUNCTUATION,
                    APPEND_PUNCTUATION,
                    0.0,
                )
        for piece in pieces:
            for s in piece:
                s.setdefault("words", [])


class OpenAIWhisperEngine:
    """openai-whisper decodes one piece at a time (its transcribe() has no batch), behind the same interface:
    its "encoded" pieces are the pieces themselves."""

    name = EngineName.OPENAI_WHISPER

    def __init__(self, model: str, home: Path, device: str, compute_type: str, threads: int) -> None:
        import torch

        from pipeline.config import torch_device
        from pipeline.weights import load_openai_whisper

        torch.set_num_threads(threads)
        self.model = model
        self._torch = torch
        device = torch_device(device)
        # openai-whisper computes in float16 or float32; int8 is CTranslate2's alone.
        self._fp16 = compute_type == "float16" and device == "cuda"
        log.info("loading openai-whisper model %s on %s (%d threads)", model, device, threads)
        self._model = load_openai_whisper(model, home, device)
        self._device = device

    @property
    def device(self) -> str:
        return self._device

    def encode(self, pieces: Sequence[np.ndarray]) -> list[np.ndarray]:
        return list(pieces)

    def select(self, encoded: list[np.ndarray], indices: Sequence[int]) -> list[np.ndarray]:
        return [encoded[i] for i in indices]

    def language_probabilities(self, encoded: list[np.ndarray]) -> list[dict[str, float]]:
        import whisper

        found = []
        for samples in encoded:
            mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(samples), self._model.dims.n_mels)
            _, probs = self._model.detect_language(mel.to(self._model.device))
            found.append(dict(probs))
        return found

    def decode(
        self, encoded: list[np.ndarray], languages: Sequence[str], options: DecodeOptions
    ) -> list[list[Segment]]:
        return [self._decode(piece, language, options) for piece, language in zip(encoded, languages, strict=True)]

    def _decode(self, samples: np.ndarray, language: str, options: DecodeOptions) -> list[Segment]:
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
            fp16=self._fp16,
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
def load_engine(
    name: str,
    model: str,
    home: Path,
    device: str = "auto",
    compute_type: str | None = None,
    threads: int | None = None,
    replica: int = 0,
) -> Engine:
    """One loaded model per (engine, model, model cache, device, compute type, threads, replica) in a process:
    loading takes seconds, decoding reuses it. `home` is the model cache; device auto, cpu or cuda; compute type
    None for the device's default (default_compute_type); threads None for every core the process may use (a
    cluster's worker gives the CPUs it reserved, pipeline.cluster.actors); replica: which of the models decoding
    side by side (decoder_count), each a model of its own."""
    compute_type = compute_type or default_compute_type(device)
    threads = threads or usable_cores()
    if name == EngineName.FASTER_WHISPER:
        return FasterWhisperEngine(model, home, device, compute_type, threads)
    if name == EngineName.OPENAI_WHISPER:
        return OpenAIWhisperEngine(model, home, device, compute_type, threads)
    raise InvalidInputError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
