"""The transcribe stage: chunks of speech in, a timed transcript out.

Each chunk is decoded on its own (no text carried from one chunk to the next, so a loop cannot spread),
its times moved into the recording's own time, checked by the guards, and put in the script the
project asked for, keeping the engine's original text beside it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from pipeline.records import Chunk, DecodeMark, Segment, Transcript
from pipeline.script import CHINESE_LANGUAGES, Script, check_script, convert, convert_pieces
from pipeline.stages.audio import SAMPLE_RATE
from pipeline.stages.engines import DEFAULT_ENGINE, DecodeOptions, Engine
from pipeline.stages.guards import GuardOptions, guard, has_loop, marked
from pipeline.stages.vocabulary import Hint, decode_with_hint

LANGUAGE_PROBES = 3  # chunks listened to when detecting a recording's language
RESUME_TOLERANCE = 0.3  # s: a region starting this close before the last segment's end counts as skipped


@dataclass(frozen=True)
class TranscribeOptions:
    engine: str = DEFAULT_ENGINE
    model: str = "base"
    language: str | None = None  # None: detect once per recording
    script: str = Script.SIMPLIFIED
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    guards: GuardOptions = field(default_factory=GuardOptions)
    hint: Hint | None = None  # words to expect (pipeline.stages.vocabulary), handed to the engine on every chunk

    def __post_init__(self) -> None:
        check_script(self.script)

    def settings(self) -> dict:
        """What decides the result: stored with it, so a re-run with the same settings is skipped. The hint
        counts by its version (a hash of its terms), and only when there is one: settings made before hints
        existed stay the same."""
        settings = asdict(self)
        del settings["decode"]["hint"]  # set per chunk from `hint`
        del settings["hint"]
        if self.hint:
            settings["vocabulary"] = self.hint.version
        return settings


def _samples(samples: np.ndarray, chunk: Chunk) -> np.ndarray:
    return samples[int(chunk.start * SAMPLE_RATE) : int(chunk.end * SAMPLE_RATE)]


def detect_language(engine: Engine, samples: np.ndarray, chunks: list[Chunk]) -> tuple[str, float]:
    """The recording's language: probabilities summed over the chunks with the most speech."""
    probes = sorted(chunks, key=lambda c: c.speech_duration, reverse=True)[:LANGUAGE_PROBES]
    total: Counter[str] = Counter()
    for chunk in probes:
        total.update(engine.language_probabilities(_samples(samples, chunk)))
    language, score = total.most_common(1)[0]
    return language, score / len(probes)


def _shift(segment: Segment, offset: float) -> Segment:
    return replace(
        segment,
        start=segment.start + offset,
        end=segment.end + offset,
        words=[replace(w, start=w.start + offset, end=w.end + offset) for w in segment.words],
    )


def _apply_script(segment: Segment, script: str) -> Segment:
    if segment.language not in CHINESE_LANGUAGES:
        return replace(segment, original_text=segment.text)
    words = convert_pieces([w.text for w in segment.words], script)
    return replace(
        segment,
        text=convert(segment.text, script),
        original_text=segment.text,
        words=[replace(w, text=t) for w, t in zip(segment.words, words, strict=True)],
    )


@dataclass
class ChunkResult:
    segments: list[Segment]
    guards: dict[str, int]  # what the guards removed from this chunk, by kind


def _decode_without_loops(
    engine: Engine, samples: np.ndarray, language: str, options: DecodeOptions, counts: Counter
) -> list[Segment]:
    """Decode; if the text loops, decode again sampling at the next temperatures.

    Whisper falls back to sampling only when a whole window compresses too well (ratio > 2.4); a loop
    in part of a window slips under that, and collapsing it afterwards loses the rest of the speech.
    """
    decoded = engine.decode(samples, language, options)
    if not any(has_loop(s) for s in decoded) or len(options.temperatures) < 2:
        return decoded
    counts["repetition"] += 1
    retry = engine.decode(samples, language, replace(options, temperatures=options.temperatures[1:]))
    return [marked(s, DecodeMark.LOOP) for s in (decoded if any(has_loop(s) for s in retry) else retry)]


def _decode_all(
    engine: Engine, samples: np.ndarray, chunk: Chunk, language: str, options: DecodeOptions, counts: Counter
) -> list[Segment]:
    """Decode a chunk, and decode again what the model skipped.

    After a pause or a change of voice Whisper often ends its output early and skips the rest of its
    30 s window; speech regions that start after the last decoded segment are decoded once more.
    """
    segments: list[Segment] = []
    pending = list(chunk.regions)
    while pending:
        part = Chunk(pending[0].start, pending[-1].end, tuple(pending))
        decoded = _decode_without_loops(engine, _samples(samples, part), language, options, counts)
        decoded = [
            _shift(s, part.start) if not segments else marked(_shift(s, part.start), DecodeMark.REDECODED)
            for s in decoded
        ]
        if not decoded:
            break
        segments.extend(decoded)
        covered = decoded[-1].end
        skipped = [r for r in pending if r.start >= covered - RESUME_TOLERANCE]
        if len(skipped) == len(pending):
            break
        pending = skipped
    return segments


def transcribe_chunk(
    engine: Engine, samples: np.ndarray, chunk: Chunk, language: str, options: TranscribeOptions
) -> ChunkResult:
    counts: Counter[str] = Counter()

    def decode(decode_options: DecodeOptions, decode_counts: Counter) -> list[Segment]:
        return _decode_all(engine, samples, chunk, language, decode_options, decode_counts)

    if options.hint:
        decoded = decode_with_hint(options.hint, options.decode, decode, counts, chunk.speech_duration)
    else:
        decoded = decode(options.decode, counts)
    kept = guard(decoded, chunk, counts, options.guards)
    return ChunkResult([_apply_script(s, options.script) for s in kept], dict(counts))


def transcribe(
    samples: np.ndarray,
    chunks: list[Chunk],
    engine: Engine,
    options: TranscribeOptions = TranscribeOptions(),
    *,
    done: Mapping[int, ChunkResult] | None = None,
    on_chunk: Callable[[int, ChunkResult], None] | None = None,
) -> Transcript:
    """Transcribe a recording's chunks. `done` holds chunks finished by an interrupted run (by index),
    which are reused; `on_chunk` is told of each chunk as it finishes, so a caller can keep them."""
    done = done or {}
    counts: Counter[str] = Counter()
    if options.language:
        language, probability = options.language, 1.0
    elif chunks:
        language, probability = detect_language(engine, samples, chunks)
    else:
        language, probability = None, 0.0
    segments: list[Segment] = []
    for index, chunk in enumerate(chunks):
        assert language is not None  # given, or detected from the chunks
        result = done.get(index) or transcribe_chunk(engine, samples, chunk, language, options)
        if on_chunk:
            on_chunk(index, result)
        segments.extend(result.segments)
        counts.update(result.guards)
    return Transcript(
        language=language,
        language_probability=probability,
        segments=segments,
        engine=engine.name,
        model=engine.model,
        guards=dict(counts),
    )
