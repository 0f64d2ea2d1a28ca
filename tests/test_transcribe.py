"""The transcribe stage: with a scripted engine for the logic, with the real engines on real speech."""

from __future__ import annotations

import re
import threading
from concurrent.futures import Future
from dataclasses import replace

import numpy as np
import pytest

from pipeline.records import Chunk, Segment, SpeechRegion, Word
from pipeline.stages.audio import decode, probe
from pipeline.stages.engines import DecodeOptions, load_engine
from pipeline.stages.segment import segment
from pipeline.stages.transcribe import (
    ChunkResult,
    TranscribeOptions,
    decoders_of,
    detect_language,
    main_language,
    transcribe,
    transcribe_twice,
)
from pipeline.stages.vocabulary import Hint
from pipeline.utils import HAN_CHAR

from conftest import MODEL_CACHE, corpus_path

SR = 16_000


def seg(start: float, end: float, text: str, words: list[tuple[float, float, str]] | None = None, **kw) -> Segment:
    words = words if words is not None else [(start, end, text)]
    return Segment(
        start,
        end,
        text,
        text,
        "zh",
        [Word(a, b, t, 0.9) for a, b, t in words],
        avg_logprob=-0.2,
        no_speech_prob=0.01,
        **kw,
    )


class ScriptedEngine:
    """Answers each decoded piece from a list, recording what it was asked: each piece's length, the pieces
    encoded together, the languages and options it decoded with."""

    name = "scripted"
    model = "none"
    device = "cpu"

    def __init__(self, answers: list[list[Segment]], languages: list[dict[str, float]] | None = None) -> None:
        self.answers = list(answers)
        self.languages = list(languages or [])
        self.calls: list[int] = []
        self.batches: list[int] = []
        self.decoded_in: list[str] = []
        self.options: list[DecodeOptions] = []

    def encode(self, pieces):
        self.batches.append(len(pieces))
        return [len(p) for p in pieces]

    def select(self, encoded, indices):
        return [encoded[i] for i in indices]

    def language_probabilities(self, encoded) -> list[dict[str, float]]:
        return [self.languages.pop(0) for _ in encoded]

    def decode(self, encoded, languages, options: DecodeOptions) -> list[list[Segment]]:
        found = []
        for length, language in zip(encoded, languages, strict=True):
            self.calls.append(length)
            self.decoded_in.append(language)
            self.options.append(options)
            found.append([replace(s, language=language) for s in self.answers.pop(0)])
        return found


def chunk(*regions: tuple[float, float]) -> Chunk:
    return Chunk(regions[0][0], regions[-1][1], tuple(SpeechRegion(a, b) for a, b in regions))


def test_times_move_into_recording_time():
    engine = ScriptedEngine([[seg(0.5, 2.0, "你好", [(0.5, 1.0, "你"), (1.0, 2.0, "好")])]])
    audio = np.zeros(20 * SR, np.float32)
    result = transcribe(audio, [chunk((10.0, 12.5))], engine, TranscribeOptions(language="zh"))
    [s] = result.segments
    assert (s.start, s.end) == (10.5, 12.0)
    assert [(w.start, w.end) for w in s.words] == [(10.5, 11.0), (11.0, 12.0)]
    assert engine.calls == [int(2.5 * SR)]


def test_speech_skipped_after_an_early_end_is_decoded_again():
    # Whisper stopped after the first region; the stage must decode the second region on its own.
    engine = ScriptedEngine([[seg(0.0, 2.0, "第一句")], [seg(0.1, 3.0, "第二句")]])
    audio = np.zeros(40 * SR, np.float32)
    result = transcribe(audio, [chunk((1.0, 3.0), (8.0, 11.0))], engine, TranscribeOptions(language="zh"))
    assert [s.text for s in result.segments] == ["第一句", "第二句"]
    assert result.segments[1].start == pytest.approx(8.1)
    assert engine.calls == [10 * SR, 3 * SR]


def test_no_second_pass_when_everything_was_decoded():
    engine = ScriptedEngine([[seg(0.0, 2.0, "第一句"), seg(7.0, 10.0, "第二句")]])
    transcribe(
        np.zeros(40 * SR, np.float32), [chunk((1.0, 3.0), (8.0, 11.0))], engine, TranscribeOptions(language="zh")
    )
    assert len(engine.calls) == 1


@pytest.mark.parametrize(
    ("script", "text"), [("simplified", "我儿子在老家"), ("traditional", "我兒子在老家"), ("original", "我兒子在老家")]
)
def test_script_policy_keeps_the_original(script, text):
    original = "我兒子在老家"
    engine = ScriptedEngine([[seg(0.0, 2.0, original, [(0.0, 1.0, "我兒子"), (1.0, 2.0, "在老家")])]])
    result = transcribe(
        np.zeros(3 * SR, np.float32), [chunk((0.0, 2.5))], engine, TranscribeOptions(language="zh", script=script)
    )
    [s] = result.segments
    assert s.text == text
    assert s.original_text == original
    assert "".join(w.text for w in s.words) == text


def test_english_is_not_converted():
    engine = ScriptedEngine(
        [[Segment(0.0, 1.0, "Hello there", "Hello there", "en", [Word(0, 1, "Hello", 1)], -0.1, 0.0)]]
    )
    [s] = transcribe(
        np.zeros(2 * SR, np.float32), [chunk((0.0, 1.5))], engine, TranscribeOptions(language="en")
    ).segments
    assert s.text == s.original_text == "Hello there"


CHUNKS = [chunk((0.0, 1.0)), chunk((5.0, 20.0)), chunk((30.0, 40.0)), chunk((50.0, 52.0)), chunk((60.0, 76.0))]


def test_language_is_one_encoder_pass_over_the_chunk_with_most_speech():
    engine = ScriptedEngine([], languages=[{"zh": 0.95, "en": 0.05}, {"en": 1.0}])
    assert detect_language(engine, np.zeros(80 * SR, np.float32), CHUNKS) == ("zh", 0.95)
    assert engine.batches == [1] and len(engine.languages) == 1  # one probe: the 16 s chunk


def test_a_chunk_fairly_sure_of_a_wrong_language_does_not_settle_it():
    # The dialect long-form's first Sichuanese clip, as Whisper base hears it; the next chunks hear Chinese.
    engine = ScriptedEngine(
        [], languages=[{"bo": 0.79, "my": 0.09, "zh": 0.09}, {"zh": 0.999, "bo": 0.001}, {"zh": 0.66, "my": 0.17}]
    )
    language, probability = detect_language(engine, np.zeros(80 * SR, np.float32), CHUNKS)
    assert language == "zh"
    assert probability == pytest.approx((0.09 + 0.999 + 0.66) / 3)


def test_an_unsure_chunk_has_the_next_longest_chunks_heard_too():
    engine = ScriptedEngine([], languages=[{"zh": 0.45, "en": 0.4}, {"zh": 0.3, "en": 0.7}, {"zh": 0.9, "en": 0.1}])
    language, probability = detect_language(engine, np.zeros(80 * SR, np.float32), CHUNKS)
    assert language == "zh"
    assert probability == pytest.approx((0.45 + 0.3 + 0.9) / 3)
    assert engine.batches == [1, 2] and not engine.languages


def test_chunks_are_decoded_in_batches_of_the_batch_size():
    chunks = [chunk((i * 10.0, i * 10.0 + 2.0)) for i in range(5)]
    engine = ScriptedEngine([[seg(0.0, 1.0, str(i))] for i in range(5)])
    seen = []

    def finished(index, result):
        seen.append((index, len(engine.batches)))  # the batches encoded when the chunk is handed over

    result = transcribe(
        np.zeros(60 * SR, np.float32), chunks, engine, TranscribeOptions(language="zh", batch_size=2), on_chunk=finished
    )
    assert engine.batches == [2, 2, 1]
    assert [s.text for s in result.segments] == ["0", "1", "2", "3", "4"]
    assert seen == [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3)]  # each chunk kept as soon as its batch finishes


def test_the_chunk_the_language_was_heard_from_is_not_encoded_again():
    chunks = [chunk((0.0, 2.0)), chunk((10.0, 18.0)), chunk((20.0, 23.0))]
    answers = [[seg(0.0, c.end - c.start, str(i))] for i, c in enumerate(chunks)]  # whole: no second pass
    engine = ScriptedEngine(answers, languages=[{"zh": 0.9}] * 4)
    result = transcribe(np.zeros(30 * SR, np.float32), chunks, engine, TranscribeOptions(batch_size=1))
    # The 8 s chunk's encoder pass told the language and is decoded; the others are encoded once each.
    assert engine.batches == [1, 1, 1] and engine.calls == [2 * SR, 8 * SR, 3 * SR]
    assert [s.text for s in result.segments] == ["0", "1", "2"]


@pytest.mark.parametrize(("device", "batches"), [("cpu", [1, 1, 1, 1, 1]), ("cuda", [5])])
def test_the_batch_size_by_default_is_the_devices(device, batches):
    # One chunk at a time on the CPU, where a batch gains nothing and costs memory; 8 at once on a GPU.
    chunks = [chunk((i * 10.0, i * 10.0 + 2.0)) for i in range(5)]
    engine = ScriptedEngine([[seg(0.0, 1.0, str(i))] for i in range(5)])
    engine.device = device
    transcribe(np.zeros(60 * SR, np.float32), chunks, engine, TranscribeOptions(language="zh"))
    assert engine.batches == batches


def test_a_chunk_sure_of_another_language_keeps_it():
    # An interpreter: the recording is Mandarin, the second chunk English.
    chunks = [chunk((0.0, 20.0)), chunk((30.0, 35.0)), chunk((40.0, 45.0))]
    engine = ScriptedEngine(
        [[seg(0.0, 19.5, "我们的工资")], [seg(0.0, 4.0, "our wages")], [seg(0.0, 4.0, "工资")]],
        languages=[{"zh": 0.95}, {"zh": 0.95}, {"en": 0.97, "zh": 0.02}, {"en": 0.6, "zh": 0.3}],
    )
    result = transcribe(np.zeros(50 * SR, np.float32), chunks, engine, TranscribeOptions())
    assert engine.decoded_in == ["zh", "en", "zh"]  # the third is unsure: the recording's language
    assert [s.language for s in result.segments] == ["zh", "en", "zh"]
    assert result.language == "zh"  # the main one


def test_a_forced_language_is_not_detected():
    engine = ScriptedEngine([[seg(0.0, 1.0, "hello")]])
    transcribe(np.zeros(5 * SR, np.float32), [chunk((0.0, 2.0))], engine, TranscribeOptions(language="en"))
    assert engine.decoded_in == ["en"] and engine.batches == [1]


@pytest.mark.parametrize(("given", "told"), [(None, "yue"), ("en", "en")])
def test_the_caller_is_told_the_language_before_any_chunk_is_decoded(given, told):
    # So that what the language needs afterwards (jieba's dictionary for doubt) loads while the chunks decode.
    engine = ScriptedEngine([[seg(0.0, 1.0, "一")], [seg(0.0, 1.0, "二")]], languages=[{"yue": 0.95}] * 3)
    heard: list[tuple[str, int]] = []
    transcribe_twice(
        np.zeros(20 * SR, np.float32),
        [chunk((0.0, 2.0)), chunk((10.0, 12.0))],
        engine,
        TranscribeOptions(language=given, batch_size=1),
        on_language=lambda language: heard.append((language, len(engine.calls))),
    )
    assert heard == [(told, 0)]


def test_the_recording_language_is_the_one_most_text_is_in():
    segments = [
        replace(seg(0.0, 2.0, "a"), language="en"),
        seg(2.0, 10.0, "b"),
        replace(seg(10, 12, "c"), language="en"),
    ]
    assert main_language(segments, "en") == "zh"
    assert main_language([], "en") == "en"


def test_the_rest_of_a_region_after_an_early_end_is_decoded_again():
    # Whisper stopped 6 s into a 12 s region: the rest is decoded on its own, not lost.
    engine = ScriptedEngine([[seg(0.0, 6.0, "前半")], [seg(0.0, 5.0, "后半")]])
    result = transcribe(np.zeros(20 * SR, np.float32), [chunk((2.0, 14.0))], engine, TranscribeOptions(language="zh"))
    assert [s.text for s in result.segments] == ["前半", "后半"]
    assert engine.calls == [12 * SR, 6 * SR]
    assert result.segments[1].start == pytest.approx(8.0)


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch size"):
        TranscribeOptions(batch_size=0)


def test_guards_are_counted_in_the_transcript():
    engine = ScriptedEngine([[seg(0.0, 2.0, "我们的工资"), seg(2.0, 4.0, "字幕由Amara.org社群提供")]])
    result = transcribe(np.zeros(6 * SR, np.float32), [chunk((0.0, 5.0))], engine, TranscribeOptions(language="zh"))
    assert [s.text for s in result.segments] == ["我们的工资"]
    assert result.guards == {"phantom": 1}


def test_finished_chunks_are_reused_and_reported():
    # The batch is decoded whole (as an uninterrupted run decodes it); the kept chunk stays.
    engine = ScriptedEngine([[seg(0.0, 1.0, "again")], [seg(0.0, 1.0, "二")]])
    kept = ChunkResult([seg(0.0, 1.0, "一")], {"silence": 2})
    seen = []
    result = transcribe(
        np.zeros(30 * SR, np.float32),
        [chunk((0.0, 2.0)), chunk((10.0, 12.0))],
        engine,
        TranscribeOptions(language="zh", batch_size=2),
        done={0: kept},
        on_chunk=lambda i, r: seen.append(i),
    )
    assert [s.text for s in result.segments] == ["一", "二"]
    assert engine.batches == [2] and seen == [0, 1]
    assert result.guards == {"silence": 2}


class PacedEngine(ScriptedEngine):
    """A scripted engine that decodes only once `after` is set, and sets `finished` when its answers are out."""

    def __init__(self, answers: list[list[Segment]], after: threading.Event | None = None) -> None:
        super().__init__(answers)
        self.after, self.finished = after, threading.Event()

    def decode(self, encoded, languages, options: DecodeOptions) -> list[list[Segment]]:
        assert self.after is None or self.after.wait(timeout=60)  # (the timeout only ends a broken run)
        found = super().decode(encoded, languages, options)
        if not self.answers:
            self.finished.set()
        return found


def test_two_models_decode_alternate_batches_and_hand_the_chunks_over_in_order():
    chunks = [chunk((i * 10.0, i * 10.0 + 2.0)) for i in range(4)]
    second = PacedEngine([[seg(0.0, 1.0, "1")], [seg(0.0, 1.0, "3")]])
    # The first model decodes only once the second has finished both its batches: it still comes first.
    first = PacedEngine([[seg(0.0, 1.0, "0")], [seg(0.0, 1.0, "2")]], after=second.finished)
    kept = []
    result = transcribe(
        np.zeros(40 * SR, np.float32),
        chunks,
        [first, second],
        TranscribeOptions(language="zh", batch_size=1),
        on_chunk=lambda i, r: kept.append((i, r.segments[0].text)),
    )
    assert first.batches == [1, 1] and second.batches == [1, 1]
    assert kept == [(0, "0"), (1, "1"), (2, "2"), (3, "3")]
    assert [s.text for s in result.segments] == ["0", "1", "2", "3"]


def test_side_by_side_models_share_the_batches_by_their_length():
    # The English long-form's chunks (s): every other batch gave one model 45 s of audio and the other 15.
    lengths = [11.1, 2.3, 23.3, 3.1, 5.1, 6.4, 3.2, 2.8, 2.2]
    chunks, at = [], 0.0
    for length in lengths:
        chunks.append(chunk((at, at + length)))
        at += length + 5.0
    batches = [range(i, i + 1) for i in range(len(chunks))]
    chosen = decoders_of(batches, chunks, 2)
    audio = [sum(length for length, d in zip(lengths, chosen, strict=True) if d == model) for model in (0, 1)]
    assert abs(audio[0] - audio[1]) < 3.0, chosen
    assert chosen == decoders_of(batches, chunks, 2)  # the chunks decide, not the timing
    assert decoders_of(batches, chunks, 1) == [0] * len(chunks)
    # Batches of several chunks weigh as much as their chunks together.
    assert decoders_of([range(0, 1), range(1, 9)], chunks, 2) == [1, 0]


def test_a_failing_model_fails_the_transcription_keeping_the_chunks_before_it():
    class FailingEngine(ScriptedEngine):
        def decode(self, encoded, languages, options):
            raise RuntimeError("out of memory")

    first = ScriptedEngine([[seg(0.0, 1.0, str(i))] for i in range(4)])
    kept = []
    with pytest.raises(RuntimeError, match="out of memory"):
        transcribe(
            np.zeros(60 * SR, np.float32),
            [chunk((i * 10.0, i * 10.0 + 2.0)) for i in range(6)],
            [first, FailingEngine([])],
            TranscribeOptions(language="zh", batch_size=1),
            on_chunk=lambda i, r: kept.append(i),
        )
    assert kept == [0]  # what came before the failure was kept


def test_a_model_still_loading_takes_its_batches_once_loaded_while_the_first_decodes():
    chunks = [chunk((i * 10.0, i * 10.0 + 2.0)) for i in range(4)]
    first = PacedEngine([[seg(0.0, 1.0, "0")], [seg(0.0, 1.0, "2")]])
    second = ScriptedEngine([[seg(0.0, 1.0, "1")], [seg(0.0, 1.0, "3")]])
    loading: Future = Future()
    # The second model's load ends only once the first has decoded both its batches: they did not wait for it.
    threading.Thread(target=lambda: first.finished.wait(60) and loading.set_result(second), daemon=True).start()
    result = transcribe(
        np.zeros(40 * SR, np.float32), chunks, [first, loading], TranscribeOptions(language="zh", batch_size=1)
    )
    assert first.batches == [1, 1] and second.batches == [1, 1]
    assert [s.text for s in result.segments] == ["0", "1", "2", "3"]


def test_the_other_models_encode_their_first_batch_while_the_first_tells_the_language():
    class Listening(ScriptedEngine):
        """Tells the language only once the other model has encoded: one model's work at a time would hang."""

        def __init__(self, answers, languages, encoded: threading.Event) -> None:
            super().__init__(answers, languages)
            self.encoded = encoded

        def language_probabilities(self, encoded):
            assert self.encoded.wait(timeout=60)  # (the timeout only ends a broken run)
            return super().language_probabilities(encoded)

    class Encoding(ScriptedEngine):
        def __init__(self, answers, encoded: threading.Event) -> None:
            super().__init__(answers, [{"zh": 0.99}] * 2)
            self.encoded = encoded

        def encode(self, pieces):
            self.encoded.set()
            return super().encode(pieces)

    encoded = threading.Event()
    # Chunk 1 has the most speech: the first model tells the language from it and decodes it from that pass.
    chunks = [chunk((0.0, 2.0)), chunk((10.0, 19.0)), chunk((30.0, 32.0))]
    first = Listening([[seg(0.0, 8.9, "1")]], [{"zh": 0.99}] * 2, encoded)
    second = Encoding([[seg(0.0, 1.0, "0")], [seg(0.0, 1.0, "2")]], encoded)
    told = []
    result = transcribe_twice(
        np.zeros(40 * SR, np.float32),
        chunks,
        [first, second],
        TranscribeOptions(batch_size=1),
        on_language=told.append,
    )[0]
    assert [s.text for s in result.segments] == ["0", "1", "2"] and told == ["zh"]
    assert first.batches == [1] and second.batches == [1, 1]  # the language's chunk was not encoded again


def test_a_language_that_cannot_be_told_fails_the_transcription_without_waiting():
    class Deaf(ScriptedEngine):
        def language_probabilities(self, encoded):
            raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError, match="encoder failed"):
        transcribe(
            np.zeros(40 * SR, np.float32),
            [chunk((i * 10.0, i * 10.0 + 2.0)) for i in range(4)],
            [Deaf([]), ScriptedEngine([[seg(0.0, 1.0, str(i))] for i in range(2)])],
            TranscribeOptions(batch_size=1),
        )


def test_a_model_that_fails_to_load_fails_the_transcription():
    loading: Future = Future()
    loading.set_exception(OSError("model.bin: no space left on device"))
    with pytest.raises(OSError, match="no space left"):
        transcribe(
            np.zeros(40 * SR, np.float32),
            [chunk((i * 10.0, i * 10.0 + 2.0)) for i in range(4)],
            [ScriptedEngine([[seg(0.0, 1.0, str(i))] for i in range(2)]), loading],
            TranscribeOptions(language="zh", batch_size=1),
        )


def test_the_first_model_must_be_loaded():
    loading: Future = Future()
    with pytest.raises(TypeError, match="first engine"):
        transcribe(np.zeros(SR, np.float32), [chunk((0.0, 1.0))], [loading], TranscribeOptions(language="zh"))


def test_unknown_script_is_refused():
    with pytest.raises(ValueError, match="script"):
        TranscribeOptions(script="pinyin")


# --- real engines on real speech --------------------------------------------------------------


@pytest.fixture(scope="module")
def mandarin_clip():
    path = corpus_path("zh/FireRedTeam_FireRedASR__examples_wav_BAC009S0764W0121.wav")  # 甚至出现交易几乎停滞的情况
    samples = decode(probe(path)).samples
    return samples, segment(samples)


@pytest.mark.slow
@pytest.mark.parametrize("engine_name", ["faster-whisper", "openai-whisper"])
def test_real_engines_transcribe_mandarin_in_simplified_with_timed_words(engine_name, mandarin_clip):
    samples, chunks = mandarin_clip
    engine = load_engine(engine_name, "base", MODEL_CACHE)
    result = transcribe(samples, chunks, engine, TranscribeOptions(engine=engine_name))
    text = "".join(s.text for s in result.segments)
    assert result.language == "zh" and result.language_probability > 0.5
    for expected in ("甚至", "出现", "交易", "几乎", "情况"):
        assert expected in text
    duration = len(samples) / SR
    for s in result.segments:
        assert 0 <= s.start < s.end <= duration + 0.1
        assert s.words and all(s.start - 0.05 <= w.start <= w.end <= s.end + 0.05 for w in s.words)


def test_a_loop_is_decoded_again_at_higher_temperature():
    looping = seg(0.0, 3.0, "是不是跟人家做的" + "整" * 20)
    engine = ScriptedEngine([[looping], [seg(0.0, 3.0, "是不是跟人家说的"), seg(3.0, 5.0, "不散的")]])
    result = transcribe(np.zeros(6 * SR, np.float32), [chunk((0.0, 5.5))], engine, TranscribeOptions(language="zh"))
    assert [s.text for s in result.segments] == ["是不是跟人家说的", "不散的"]
    assert engine.options[1].temperatures == DecodeOptions().temperatures[1:]
    assert result.guards == {"repetition": 1}


def test_a_loop_that_persists_is_collapsed():
    looping = seg(0.0, 5.0, "我认为" * 10)
    engine = ScriptedEngine([[looping], [looping]])
    result = transcribe(np.zeros(6 * SR, np.float32), [chunk((0.0, 5.5))], engine, TranscribeOptions(language="zh"))
    assert [s.text for s in result.segments] == ["我认为"]
    assert result.guards == {"repetition": 2}  # the retry, and the collapse


@pytest.mark.slow
def test_an_interview_switching_between_english_and_mandarin_keeps_both(mandarin_clip):
    # An interviewer speaking English, answers in Mandarin (as through an interpreter): clips of the
    # corpus put one after the other with pauses long enough to be chunks of their own.
    pause = np.zeros(3 * SR, np.float32)
    english = [
        decode(probe(corpus_path(f"en/{name}"))).samples
        for name in (
            "k2-fsa_sherpa___static_sense-voice_en.wav",
            "k2-fsa_sherpa___static_fun-asr-nano-2025-12-30_noise_en.wav",
        )
    ]
    samples = np.concatenate([english[0], pause, mandarin_clip[0], pause, english[1], pause, mandarin_clip[0]])
    engine = load_engine("faster-whisper", "base", MODEL_CACHE)
    result = transcribe(samples, segment(samples), engine)
    by_language: dict[str, str] = {}
    for s in result.segments:
        by_language[s.language] = by_language.get(s.language, "") + s.text
    assert result.language == "en"  # the main one: most of the speech
    assert "交易" in by_language["zh"] and "情况" in by_language["zh"]
    assert "gold" in by_language["en"].lower() and not re.search(HAN_CHAR, by_language["en"])


def test_a_suspect_hinted_chunk_is_decoded_again_without_the_hint_from_the_same_encoder_pass():
    hint = Hint(("八宝鸭",))
    plain, other = "今天天气很好我们去公园散步吧", "我们的工资很低一直都没有涨过"
    engine = ScriptedEngine([[seg(0.0, 4.0, "八宝鸭")], [seg(0.0, 4.0, other)], [seg(0.0, 4.0, plain)]])
    chunks = [chunk((0.0, 4.5)), chunk((10.0, 14.5))]
    options = TranscribeOptions(language="zh", hint=hint, batch_size=2)
    result = transcribe(np.zeros(20 * SR, np.float32), chunks, engine, options)
    assert [s.text for s in result.segments] == [plain, other]
    assert result.guards == {"hint": 1}
    assert engine.batches == [2]  # the plain decode reads the batch's encoder pass
    assert [o.hint for o in engine.options] == [hint.text, hint.text, None]


def test_the_hinted_pass_of_a_batch_decodes_at_the_first_temperature_only():
    """The batch's own decode is the hinted pass when there is a hint: no sampling fallbacks on it (the plain
    decode, made only when the hinted text is suspect, keeps them)."""
    said = seg(0.0, 3.0, "广州医生跑北马中段比赛就心跳骤停")
    engine = ScriptedEngine([[said], [said]])  # the hint's term in the text: the plain decode checks it
    options = TranscribeOptions(language="zh", hint=Hint(("心跳骤停",)))
    transcribe(np.zeros(4 * SR, np.float32), [chunk((0.0, 3.5))], engine, options)
    hinted, plain = engine.options
    assert hinted.hint and hinted.temperatures == DecodeOptions().temperatures[:1]
    assert not plain.hint and plain.temperatures == DecodeOptions().temperatures
