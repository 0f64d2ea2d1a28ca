"""The faster-whisper engine's decoding rules, around CTranslate2's generate: the real model's tokenizer and
prompts, with a spy standing in for the generation (no recogniser runs)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.records import DecodeMark
from pipeline.stages.engines import DecodeOptions, _FasterEncoded, encoder_window, load_engine, token_budget

from conftest import MODEL_CACHE

FRAMES_PER_SECOND = 100  # Whisper's mel frames


class SpyGenerator:
    """Stands in for CTranslate2's Whisper model: keeps each generate call's max_length and answers with text of
    `tokens` distinct tokens a piece (no more than max_length lets CTranslate2 write), plain enough to pass
    the compression check. `tokens` and `scores` are each call's in turn, the last for every call after."""

    def __init__(self, tokens: tuple[int, ...], scores: tuple[float, ...] = (-0.1,)) -> None:
        self.tokens = tokens
        self.scores = scores
        self.calls: list[dict] = []

    def generate(self, features, prompts, **kwargs):
        self.calls.append({"prompts": [len(p) for p in prompts], **kwargs})
        length = kwargs["max_length"]
        allowed = min(length // 2, length - (max(len(p) for p in prompts) - 1))  # CTranslate2's own rule
        count = min(self._turn(self.tokens), allowed)
        return [
            SimpleNamespace(
                sequences_ids=[list(range(1000, 1000 + count))], scores=[self._turn(self.scores)], no_speech_prob=0.0
            )
        ]

    def _turn(self, values: tuple):
        return values[min(len(self.calls), len(values)) - 1]


@pytest.fixture(scope="module")
def engine():
    return load_engine.__wrapped__("faster-whisper", "base", MODEL_CACHE, "cpu", None, 1)


def spied(engine, monkeypatch, tokens: int | tuple[int, ...], scores: tuple[float, ...] = (-0.1,)) -> SpyGenerator:
    spy = SpyGenerator(tokens if isinstance(tokens, tuple) else (tokens,), scores)
    monkeypatch.setattr(engine._model, "model", spy)
    monkeypatch.setattr(engine._model, "add_word_timestamps", lambda *args: None)  # nothing was encoded to align
    return spy


def piece(seconds: float) -> _FasterEncoded:
    return _FasterEncoded(features=None, frames=[int(seconds * FRAMES_PER_SECOND)], output=None)


def test_a_short_piece_may_write_fewer_tokens_than_a_long_one(engine, monkeypatch):
    spy = spied(engine, monkeypatch, tokens=5)
    for seconds in (1.0, 6.0, 30.0):
        engine.decode(piece(seconds), ["zh"], DecodeOptions())
    short, middle, whole = (call["max_length"] for call in spy.calls)
    assert short == 2 * token_budget(1.0) < middle == 2 * token_budget(6.0) < whole
    assert whole == engine._model.max_length  # a 30 s window: Whisper's own limit, as before the budget


def test_a_long_prompt_leaves_the_budget_whole(engine, monkeypatch):
    # CTranslate2 counts the prompt in max_length: a hint's tokens are added to it, not taken from the budget.
    spy = spied(engine, monkeypatch, tokens=5)
    hint = " ".join(["工资", "户口", "东莞", "深圳", "留守儿童", "打工", "老家", "春节", "工厂", "加班"] * 3)
    engine.decode(piece(2.0), ["zh"], DecodeOptions(hint=hint))
    [call] = spy.calls
    before = call["prompts"][0] - 1
    assert before > token_budget(2.0)
    assert call["max_length"] == token_budget(2.0) + before


def test_a_decode_its_budget_stops_is_a_loop_that_falls_back(engine, monkeypatch):
    # Plain text as long as the budget allows: only the budget tells it from speech, and every temperature fails.
    spy = spied(engine, monkeypatch, tokens=1000)
    [segments] = engine.decode(piece(3.0), ["zh"], DecodeOptions())
    assert len(spy.calls) == len(DecodeOptions().temperatures)
    assert segments and all(DecodeMark.LOOP in s.marks for s in segments)
    assert all(s.compression_ratio <= DecodeOptions().compression_ratio_threshold for s in segments)


def test_a_decode_within_its_budget_is_kept_at_the_first_temperature(engine, monkeypatch):
    spy = spied(engine, monkeypatch, tokens=token_budget(3.0) - 1)
    [segments] = engine.decode(piece(3.0), ["zh"], DecodeOptions())
    assert len(spy.calls) == 1
    assert segments and not any(s.marks for s in segments)


def avg_logprob(score: float, tokens: int = 5) -> float:
    return score * tokens / (tokens + 1)  # the engine's length normalisation of CTranslate2's score


def test_text_only_too_unlikely_is_kept_from_the_beam_search(engine, monkeypatch):
    # Readable but under Whisper's log probability threshold: no sampling (Whisper's transcribe() would sample
    # five temperatures), the beam's text and its low probability kept for the doubt stage.
    spy = spied(engine, monkeypatch, tokens=5, scores=(-1.3, -0.5))
    [segments] = engine.decode(piece(5.0), ["zh"], DecodeOptions())
    assert [call["sampling_temperature"] for call in spy.calls] == [0.0]
    assert segments and segments[0].avg_logprob == pytest.approx(avg_logprob(-1.3))


def test_a_loops_sampling_stops_at_its_first_readable_draw_however_unlikely(engine, monkeypatch):
    # The beam search loops (cut off by its budget); the draw at 0.2 is readable, unlikely as it is: kept.
    spy = spied(engine, monkeypatch, tokens=(1000, 5), scores=(-0.1, -1.6, -0.5))
    [segments] = engine.decode(piece(3.0), ["zh"], DecodeOptions())
    assert [call["sampling_temperature"] for call in spy.calls] == [0.0, 0.2]
    assert segments and not any(DecodeMark.LOOP in s.marks for s in segments)
    assert segments[0].avg_logprob == pytest.approx(avg_logprob(-1.6))


def test_a_pieces_encoder_window_is_its_audio_and_a_margin_at_most_30_s():
    assert encoder_window(230, 3000) == 800  # a 2.3 s piece: 2.3 s, 5 s of margin, rounded up to the second
    assert encoder_window(2700, 3000) == 3000  # never more than Whisper's 30 s
    assert all(encoder_window(frames, 3000) % 2 == 0 for frames in range(1, 3001))  # the encoder halves them


def test_a_short_piece_is_encoded_in_a_short_window(engine):
    import numpy as np

    encoded = engine.encode([np.zeros(16000 * 3, dtype=np.float32), np.zeros(16000 * 2, dtype=np.float32)])
    window = encoder_window(300, 3000)
    assert encoded.features.shape[-1] == window and encoded.frames == [300, 200]
    assert np.asarray(encoded.output).shape[:2] == (2, window // 2)


def test_loading_the_recogniser_holds_numpys_blas_to_one_thread():
    # OpenBLAS rounds the mel filters' product otherwise on one thread than on two on some CPUs (an AMD EPYC
    # here), and a cluster's worker runs on one (Ray's OMP_NUM_THREADS): word times then differed.
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(2, user_api="blas"):
        load_engine.__wrapped__("faster-whisper", "base", MODEL_CACHE, "cpu", None, 2)
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {1}
