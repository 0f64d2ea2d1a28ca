"""The transcribe stage: chunks of speech in, a timed transcript out.

Chunks are decoded in batches (on a CPU by two models side by side, batches taken in turn), each on its own
(no text carried from one chunk to the next, so a loop cannot spread), their times moved into the recording's
own time, checked by the guards, and put in the script the project asked for, keeping the engine's original
text beside it. A recording's language is detected once, and a chunk sure of another language (an
interpreter, a switch to English) keeps its own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from pipeline.errors import InvalidInputError
from pipeline.records import Chunk, DecodeMark, Segment, SpeechRegion, Transcript
from pipeline.script import CHINESE_LANGUAGES, Script, check_script, convert, convert_pieces
from pipeline.stages.audio import SAMPLE_RATE
from pipeline.stages.engines import DEFAULT_ENGINE, DecodeOptions, Encoded, Engine, default_batch_size
from pipeline.stages.guards import GuardOptions, guard, has_loop, marked
from pipeline.stages.vocabulary import Hint, decode_with_hint, hinted_options

LANGUAGE_PROBES = 3  # chunks listened to when the one with most speech leaves the recording's language unsure
# A chunk this sure of its top language is sure of it: it settles the recording's language alone, and it is
# decoded in a language other than the recording's (mixed-language interviews; the monolingual dev recordings
# never reach it). Whisper base hears Sichuanese as Tibetan at 0.79, which is not sure (bench/RESULTS.md).
LANGUAGE_SURE = 0.9
RESUME_TOLERANCE = 0.3  # s: a region starting this close before the last segment's end counts as skipped
MIN_SKIPPED = 1.5  # s: speech left in a region after the decoded text ends that is decoded again
MAX_PASSES = 4  # decodes of one chunk at most (the first and the second passes over what it skipped)


@dataclass(frozen=True)
class TranscribeOptions:
    engine: str = DEFAULT_ENGINE
    model: str = "base"
    language: str | None = None  # None: detected per recording, and per chunk where a chunk is sure of another
    script: str = Script.SIMPLIFIED
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    guards: GuardOptions = field(default_factory=GuardOptions)
    hint: Hint | None = None  # words to expect (pipeline.stages.vocabulary), handed to the engine on every chunk
    # The recogniser's arithmetic decides the text (int8 and float16 give slightly different words), so it is a
    # setting; None: the device's default (engines.default_compute_type), which RunOptions.settings resolves.
    compute_type: str | None = None
    # Not a setting: beam search writes a chunk's text the same in any batch (a sampled fallback draws from
    # its model's seeded generator, README). None: the device's default (engines.DEFAULT_BATCH_SIZES).
    batch_size: int | None = None

    def __post_init__(self) -> None:
        check_script(self.script)
        if self.batch_size is not None and self.batch_size < 1:
            raise InvalidInputError(f"batch size {self.batch_size}: must be at least 1")

    def settings(self) -> dict:
        """What decides the result: stored with it, so a re-run with the same settings is skipped. The hint
        counts by its version (a hash of its terms), and only when there is one: settings made before hints
        existed stay the same."""
        settings = asdict(self)
        del settings["decode"]["hint"]  # set per chunk from `hint`
        # The compute type joins the settings in RunOptions.settings, which resolves the device's default.
        del settings["hint"], settings["batch_size"], settings["compute_type"]
        if self.hint:
            settings["vocabulary"] = self.hint.version
        return settings


def _samples(samples: np.ndarray, chunk: Chunk) -> np.ndarray:
    return samples[int(chunk.start * SAMPLE_RATE) : int(chunk.end * SAMPLE_RATE)]


def _top(probabilities: dict[str, float]) -> tuple[str, float]:
    return max(probabilities.items(), key=lambda item: item[1])


def by_speech(chunks: list[Chunk]) -> list[int]:
    """The chunks' indices, the one with the most speech first (equals in order): the first tells the language."""
    return sorted(range(len(chunks)), key=lambda i: -chunks[i].speech_duration)


def detect_language(
    engine: Engine, samples: np.ndarray, chunks: list[Chunk], heard: dict[int, Encoded] | None = None
) -> tuple[str, float]:
    """The recording's language: one encoder pass over the chunk with the most speech; when that chunk is
    unsure, probabilities summed over the LANGUAGE_PROBES chunks with the most speech. That first encoder pass
    goes into `heard` by the chunk's index, for decoding it."""
    ranked = by_speech(chunks)
    encoded = engine.encode([_samples(samples, chunks[ranked[0]])])
    if heard is not None:
        heard[ranked[0]] = encoded
    [first] = engine.language_probabilities(encoded)
    language, probability = _top(first)
    if probability >= LANGUAGE_SURE or len(ranked) == 1:
        return language, probability
    total: Counter[str] = Counter(first)
    more = [_samples(samples, chunks[i]) for i in ranked[1:LANGUAGE_PROBES]]
    for found in engine.language_probabilities(engine.encode(more)):
        total.update(found)
    language, score = total.most_common(1)[0]
    return language, score / min(len(ranked), LANGUAGE_PROBES)


def chunk_language(probabilities: dict[str, float], recording_language: str) -> str:
    """A chunk's language: the recording's, unless the chunk is sure it hears another."""
    language, probability = _top(probabilities)
    return language if probability >= LANGUAGE_SURE else recording_language


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
    second: list[Segment] | None = None  # the second decode's segments, when one was asked for


def _undecoded(pending: list[SpeechRegion], covered: float) -> list[SpeechRegion]:
    """The speech after the decoded text's end: regions starting after it, and the rest of a region it ends
    inside when that rest is long enough to hold words."""
    rest = []
    for region in pending:
        if region.start >= covered - RESUME_TOLERANCE:
            rest.append(region)
        elif region.end - covered >= MIN_SKIPPED:
            rest.append(SpeechRegion(covered, region.end))
    return rest


@dataclass
class _Decoding:
    """A chunk being decoded: its language, the speech still to decode, the text and guard counts so far."""

    chunk: Chunk
    language: str
    pending: list[SpeechRegion]
    segments: list[Segment] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def part(self) -> Chunk:
        return Chunk(self.pending[0].start, self.pending[-1].end, tuple(self.pending))


def _decode_without_loops(
    engine: Engine, encoded: Encoded, work: list[_Decoding], options: DecodeOptions
) -> list[list[Segment]]:
    """Decode a batch; the pieces whose text loops are decoded again (from the same encoder pass), sampling at
    the next temperatures.

    Whisper falls back to sampling only when a whole window compresses too well (ratio > 2.4); a loop
    in part of a window slips under that, and collapsing it afterwards loses the rest of the speech.
    """
    decoded = engine.decode(encoded, [w.language for w in work], options)
    looping = [i for i, segments in enumerate(decoded) if any(has_loop(s) for s in segments)]
    if not looping or len(options.temperatures) < 2:
        return decoded
    retry = engine.decode(
        engine.select(encoded, looping),
        [work[i].language for i in looping],
        replace(options, temperatures=options.temperatures[1:]),
    )
    for i, segments in zip(looping, retry, strict=True):
        work[i].counts["repetition"] += 1
        kept = decoded[i] if any(has_loop(s) for s in segments) else segments
        decoded[i] = [marked(s, DecodeMark.LOOP) for s in kept]
    return decoded


def _decode_passes(
    engine: Engine, samples: np.ndarray, work: list[_Decoding], options: DecodeOptions, encoded: Encoded
) -> None:
    """Decode the chunks of `work` (in place) as one batch, `encoded` their encoder pass; then what Whisper
    skipped, in a batch of the chunks with speech left.

    After a pause or a change of voice Whisper often ends its output early and skips the rest of its
    30 s window; the speech after a chunk's last decoded segment is decoded once more.
    """
    active = work
    for attempt in range(MAX_PASSES):
        parts = [item.part for item in active]
        if attempt:
            encoded = engine.encode([_samples(samples, part) for part in parts])
        still = []
        decoded = _decode_without_loops(engine, encoded, active, options)
        for item, part, segments in zip(active, parts, decoded, strict=True):
            segments = [_shift(s, part.start) for s in segments]
            if not segments:
                continue
            item.segments.extend(marked(s, DecodeMark.REDECODED) if attempt else s for s in segments)
            rest = _undecoded(item.pending, segments[-1].end)
            if rest and rest != item.pending:
                item.pending = rest
                still.append(item)
        active = still
        if not active:
            break


def _decode_batch(
    engine: Engine,
    samples: np.ndarray,
    chunks: list[Chunk],
    languages: list[str],
    encoded: Encoded,
    options: TranscribeOptions,
    decode_options: DecodeOptions,
) -> list[ChunkResult]:
    """The chunks of a batch decoded with `decode_options` from their encoder pass `encoded`, each guarded and
    put in the project's script. With a hint, a chunk whose hinted text is suspect is decoded again without it
    from the same encoder pass (vocabulary.decode_with_hint)."""
    hint = options.hint
    first = hinted_options(hint, decode_options) if hint else decode_options
    work = [_Decoding(c, lang, list(c.regions)) for c, lang in zip(chunks, languages, strict=True)]
    _decode_passes(engine, samples, work, first, encoded)
    results = []
    for index, item in enumerate(work):

        def decode(decode_options: DecodeOptions, counts: Counter, index: int = index, item: _Decoding = item):
            if decode_options == first:  # the batch's decode, made above with these options
                counts.update(item.counts)
                return item.segments
            again = _Decoding(item.chunk, item.language, list(item.chunk.regions))
            _decode_passes(engine, samples, [again], decode_options, engine.select(encoded, [index]))
            counts.update(again.counts)
            return again.segments

        if hint:
            counts: Counter[str] = Counter()
            decoded = decode_with_hint(hint, decode_options, decode, counts, item.chunk.speech_duration)
        else:
            decoded, counts = item.segments, item.counts
        kept = guard(decoded, item.chunk, counts, options.guards)
        results.append(ChunkResult([_apply_script(s, options.script) for s in kept], dict(counts)))
    return results


def transcribe_chunks(
    engine: Engine,
    samples: np.ndarray,
    chunks: list[Chunk],
    language: str,
    options: TranscribeOptions,
    second: DecodeOptions | None = None,
    encoded: Encoded | None = None,
) -> list[ChunkResult]:
    """Chunks decoded as one batch (one encoder pass, or `encoded` when it was made already), each guarded and
    put in the project's script; `language` is the recording's. Unless `options` gives the language, a chunk
    sure of another keeps its own (read from the encoder pass that decodes it). With `second`, each chunk is
    decoded a second time with those decoding options, in the same language, from the same encoder pass."""
    if encoded is None:
        encoded = engine.encode([_samples(samples, c) for c in chunks])
    if options.language:
        languages = [options.language] * len(chunks)
    else:
        languages = [chunk_language(p, language) for p in engine.language_probabilities(encoded)]
    results = _decode_batch(engine, samples, chunks, languages, encoded, options, options.decode)
    if second is not None:
        again = _decode_batch(engine, samples, chunks, languages, encoded, options, second)
        results = [replace(result, second=other.segments) for result, other in zip(results, again, strict=True)]
    return results


def batches(chunks: int, batch_size: int) -> list[range]:
    """The indices of a recording's `chunks` in batches of `batch_size`, in order."""
    return [range(first, min(first + batch_size, chunks)) for first in range(0, chunks, batch_size)]


# What a batch costs to decode, in seconds of audio: its chunks' audio and, for each chunk, what every decode costs
# whatever its length (on the English long-form a chunk took 0.05 s + 0.08 s per second of its audio).
DECODE_OVERHEAD = 0.6


def decoders_of(in_batches: list[range], chunks: list[Chunk], decoders: int) -> list[int]:
    """Which of `decoders` side-by-side models decodes each batch: the costliest batch first to the model with the
    least to do (LPT scheduling), each model then taking its batches in order. It depends on the chunks alone, not
    on timing, so neither does which model draws a sampled fallback. Every other batch in turn left a model idle
    for 1.9-2.5 s on the dialect and English long-forms, whose long chunks fell to one of them (bench/RESULTS.md)."""
    cost = [sum(chunks[i].end - chunks[i].start + DECODE_OVERHEAD for i in batch) for batch in in_batches]
    load = [0.0] * decoders
    chosen = [0] * len(in_batches)
    for k in sorted(range(len(in_batches)), key=lambda k: (-cost[k], k)):
        chosen[k] = min(range(decoders), key=lambda d: (load[d], d))
        load[chosen[k]] += cost[k]
    return chosen


def main_language(segments: list[Segment], default: str | None) -> str | None:
    """The language most of the text's time is in."""
    time: defaultdict[str, float] = defaultdict(float)
    for s in segments:
        time[s.language] += s.end - s.start
    return max(time, key=time.__getitem__) if time else default


def transcribe_twice(
    samples: np.ndarray,
    chunks: list[Chunk],
    engine: Engine | Sequence[Engine | Future[Engine]],
    options: TranscribeOptions = TranscribeOptions(),
    second: DecodeOptions | None = None,
    *,
    done: Mapping[int, ChunkResult] | None = None,
    on_chunk: Callable[[int, ChunkResult], None] | None = None,
    on_language: Callable[[str], None] | None = None,
) -> tuple[Transcript, Transcript | None]:
    """Transcribe a recording's chunks, `options.batch_size` at a time (None: the engine's device's default),
    and with `second` decode each chunk a second time with those options from the same encoder pass: the
    transcript and the second decode's (None without `second`). `engine` is one engine, or several models of
    the same recogniser (engines.decoder_count) that decode batches side by side, the first also telling the
    language while the others encode their first batch; the others may still be loading (futures), each waited
    for by its first batch. `done` holds
    chunks finished by an interrupted run (by index), which are reused; `on_chunk` is told of each chunk, in
    the chunks' order, as its batch and those before it finish, so a caller can keep them. A batch with any
    chunk left is decoded whole, so a resumed run writes what an uninterrupted one would. `on_language` is told
    the recording's language once it is known, as the chunks' decoding begins, so a caller can prepare what the
    language needs meanwhile."""
    engines = list(engine) if isinstance(engine, Sequence) else [engine]
    first = engines[0]
    if isinstance(first, Future):
        raise TypeError("the first engine tells the language: it must be loaded")
    done = done or {}
    batch_size = options.batch_size or default_batch_size(first.device)
    counts: Counter[str] = Counter()
    heard: dict[int, Encoded] = {}  # the chunk the language was heard from: its batch of one is not encoded again

    def tell_language() -> tuple[str | None, float]:
        if options.language:
            return options.language, 1.0
        if chunks:
            return detect_language(first, samples, chunks, heard)
        return None, 0.0

    heard_index = by_speech(chunks)[0] if chunks and not options.language else None
    told: Future[tuple[str | None, float]]
    segments: list[Segment] = []
    seconds: list[Segment] = []

    def finished(index: int) -> bool:
        return index in done and (second is None or done[index].second is not None)

    def decode(indices: range, engine: Engine | Future[Engine]) -> list[ChunkResult]:
        """A batch's chunks: those an interrupted run finished as it kept them, the others decoded. A batch
        other than the language's chunk is encoded before the language is waited for: an encoder pass needs
        none, so a second model works while the first tells it."""
        if all(finished(i) for i in indices):
            return [done[i] for i in indices]
        if isinstance(engine, Future):
            engine = engine.result()
        in_batch = [chunks[i] for i in indices]
        heard_here = len(indices) == 1 and indices[0] == heard_index
        encoded = None if heard_here else engine.encode([_samples(samples, c) for c in in_batch])
        language = told.result()[0]
        assert language is not None  # given, or detected from the chunks
        if heard_here:
            encoded = heard[indices[0]]
        batch = transcribe_chunks(engine, samples, in_batch, language, options, second, encoded)
        return [done[i] if finished(i) else result for i, result in zip(indices, batch, strict=True)]

    in_batches = batches(len(chunks), batch_size)
    with ExitStack() as stack:
        if len(engines) == 1:  # in this thread, a batch at a time
            told = Future()
            told.set_result(tell_language())
            results: Iterable[list[ChunkResult]] = (decode(indices, first) for indices in in_batches)
        else:
            # Each model decodes its share of the batches (decoders_of), in order, on a thread of its own
            # (CTranslate2 lets go of the GIL while it computes): which model decodes a chunk does not depend on
            # timing, and so neither does a sampled fallback's text (each model draws from its own random
            # generator, in its own order). The first model tells the language on its thread, first.
            decoders = [ThreadPoolExecutor(1, f"decoder{i}") for i in range(len(engines))]
            for decoder in decoders:  # on leaving (the last first): no queued batch starts, the running ones end
                stack.callback(decoder.shutdown)
            for decoder in decoders:
                stack.callback(decoder.shutdown, wait=False, cancel_futures=True)
            told = decoders[0].submit(tell_language)
            futures = [
                decoders[d].submit(decode, indices, engines[d])
                for d, indices in zip(decoders_of(in_batches, chunks, len(engines)), in_batches, strict=True)
            ]
            results = (future.result() for future in futures)
        language, probability = told.result()
        if on_language and language:
            on_language(language)
        for indices, batch in zip(in_batches, results, strict=True):
            for index, result in zip(indices, batch, strict=True):
                if on_chunk:
                    on_chunk(index, result)
                segments.extend(result.segments)
                seconds.extend(result.second or [])
                counts.update(result.guards)

    def made(segments: list[Segment], guards: dict[str, int]) -> Transcript:
        return Transcript(
            language=main_language(segments, language),
            language_probability=probability,
            segments=segments,
            engine=first.name,
            model=first.model,
            guards=guards,
        )

    return made(segments, dict(counts)), made(seconds, {}) if second is not None else None


def transcribe(
    samples: np.ndarray,
    chunks: list[Chunk],
    engine: Engine | Sequence[Engine | Future[Engine]],
    options: TranscribeOptions = TranscribeOptions(),
    *,
    done: Mapping[int, ChunkResult] | None = None,
    on_chunk: Callable[[int, ChunkResult], None] | None = None,
) -> Transcript:
    """Transcribe a recording's chunks (transcribe_twice without a second decode)."""
    return transcribe_twice(samples, chunks, engine, options, done=done, on_chunk=on_chunk)[0]
