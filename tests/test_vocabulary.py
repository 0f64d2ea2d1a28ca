"""The project's vocabulary: the file (hostile ones too), the hint, its guard (a real clip), a changed vocabulary
re-transcribing with people's work carried over, words realigned to corrected text (store round trip on SQLite
and PostgreSQL, exports), and the suggestions corrections make (CLI and web)."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections import Counter
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest
from saving import save_transcription
from typer.testing import CliRunner

from pipeline import utils
from pipeline.cli import app as cli_app
from pipeline.config import Config
from pipeline.errors import InvalidInputError
from pipeline.formats.export import gather, to_json
from pipeline.formats.subtitles import cues
from pipeline.realign import realign
from pipeline.records import AudioInfo, CorrectedWord, Segment, Transcript, Word
from pipeline.search.textindex import parse_query
from pipeline.stages import vocabulary as vocabulary_module
from pipeline.stages.codebook import load_codebook
from pipeline.stages.engines import DecodeOptions
from pipeline.stages.transcribe import TranscribeOptions
from pipeline.stages.vocabulary import (
    GUARD,
    Hint,
    Vocabulary,
    add_terms,
    build_hint,
    decode_with_hint,
    failed,
    only_in_closed,
    parse_vocabulary,
    read_vocabulary,
    suggest,
    support,
)

from conftest import REPO, corpus_path

runner = CliRunner()
HISTORY = "zh/k2-fsa_sherpa___static_fun-asr-nano-2025-12-30_rag_history.wav"
FAR = "zh/k2-fsa_sherpa___static_fun-asr-nano-2025-12-30_far_2.wav"
DECOYS = ("微分几何", "肾小球", "挥发性物质", "八宝鸭")


# ------------------------------------------------------------------------------------------- the file


def test_the_file_one_term_a_line_with_comments_each_term_once(tmp_path):
    path = tmp_path / "vocabulary.txt"
    path.write_bytes("\ufeff# people\n张长华\n\n东莞   # a place\n工資\n工资\nHukou  Office\n".encode())
    vocabulary = read_vocabulary(path)
    assert vocabulary.terms == ("张长华", "东莞", "工資", "Hukou Office")
    assert vocabulary.version == read_vocabulary(path).version
    path.write_text("张长华\n东莞\n", encoding="utf-8")
    assert read_vocabulary(path).version != vocabulary.version


def test_the_shipped_vocabulary_reads():
    assert "户口" in read_vocabulary(REPO / "annotations" / "vocabulary.txt").terms


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "1: binary data"),
        ("东莞\n".encode() + b"\xff\xfe bad\n", "2: not UTF-8"),
        (b"ok\n" + b"x" * 5000 + b"\n", "2: line of 5,000 bytes"),
        ("东莞\n" + "长" * 41 + "\n", "2: term of 41 characters"),
        ("东莞\nbell\x07\n", "2: control characters"),
        ("东莞\nright\u202eleft\n", "2: control characters"),
        ("".join(f"term{i}\n" for i in range(5001)), "5001: more than 5,000 terms"),
    ],
)
def test_a_file_that_is_no_vocabulary_is_refused_naming_the_file_and_line(tmp_path, data, cause):
    path = tmp_path / "vocabulary.txt"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    with pytest.raises(InvalidInputError, match=f"^{path}:{cause}"):
        read_vocabulary(path)


def test_a_huge_file_or_a_fifo_is_read_no_further_than_the_limit(tmp_path):
    huge = tmp_path / "huge.txt"
    huge.write_bytes(b"term\n" * 300_000)
    with pytest.raises(InvalidInputError, match=f"^{huge}: cannot read the vocabulary: 1.4 MB is too big for a"):
        read_vocabulary(huge)
    with pytest.raises(InvalidInputError, match="cannot read the vocabulary"):
        read_vocabulary(tmp_path / "missing.txt")
    assert parse_vocabulary(b"", huge).terms == ()


def test_accepting_a_term_appends_it_once_and_never_into_a_bad_file(tmp_path):
    path = tmp_path / "annotations" / "vocabulary.txt"
    assert add_terms(path, ["钦点", " 犹地亚 "]) == [True, True]
    assert add_terms(path, ["欽點"]) == [False]  # the same term in traditional script
    assert path.read_text(encoding="utf-8") == "钦点\n犹地亚\n"
    for bad in ("", "a # b", "x" * 41, "bell\x07"):
        with pytest.raises(InvalidInputError):
            add_terms(path, ["工资", bad])  # nor the good term before it
    assert path.read_text(encoding="utf-8") == "钦点\n犹地亚\n"
    assert add_terms(path, ["two\nlines"]) == [True] and path.read_text(encoding="utf-8").endswith("\ntwo lines\n")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\x00\x01")
    with pytest.raises(InvalidInputError, match="binary"):
        add_terms(binary, ["钦点"])
    assert binary.read_bytes() == b"\x00\x01"


class FullDisk:
    """A file being written on a disk that fills up: half of a write goes down, then ENOSPC."""

    def __init__(self, file) -> None:
        self.file = file

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def write(self, data: bytes) -> int:
        self.file.write(data[: len(data) // 2])
        self.file.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str):
        return getattr(self.file, name)


def test_an_accept_that_fails_mid_write_leaves_the_vocabulary_as_it_was(tmp_path, monkeypatch):
    """The term was appended to the file in place: a disk full (or a crash) mid-write left half a line, cut inside
    a character, and every `ohp run` refused the vocabulary (not UTF-8 text) until someone mended it by hand."""
    path = tmp_path / "vocabulary.txt"
    add_terms(path, ["钦点"])

    def filling(file, mode="r", *args, **kwargs):
        opened = open(file, mode, *args, **kwargs)  # noqa: SIM115  (closed by its caller, as open's are)
        return FullDisk(opened) if set(mode) & set("wax") else opened

    for module in (vocabulary_module, utils):  # the vocabulary's own writes, and the atomic writer's
        monkeypatch.setattr(module, "open", filling, raising=False)
    with pytest.raises(OSError, match="No space left"):
        add_terms(path, ["犹地亚"])
    monkeypatch.undo()
    assert path.read_bytes() == "钦点\n".encode() and [p.name for p in tmp_path.iterdir()] == ["vocabulary.txt"]
    assert add_terms(path, ["犹地亚"]) == [True] and read_vocabulary(path).terms == ("钦点", "犹地亚")
    path.chmod(0o664)  # shared with the project's group
    assert add_terms(path, ["东莞"]) == [True] and stat.S_IMODE(path.stat().st_mode) == 0o664


# ------------------------------------------------------------------------------------------- the hint


def test_the_hint_puts_the_recordings_own_terms_first_each_once_within_whispers_prompt():
    hint = build_hint(("张长华", None, "东莞"), ["东莞", "钦点"], ["工资", "Wages"])
    assert hint is not None and hint.terms == ("张长华", "东莞", "钦点", "工资", "Wages")
    assert hint.text == "张长华 东莞 钦点 工资 Wages"
    assert build_hint((), []) is None
    many = build_hint([f"术语{i}" for i in range(500)])
    assert many is not None and 20 < len(many.terms) < 500
    assert Hint(("钦点", "犹地亚")).found("由羅馬皇帝欽點的犹地亚王") == ["钦点", "犹地亚"]
    assert Hint(("量子纠缠", "红烧狮子头", "钦点")).pieces_found("灯量子 狮子头") == ["量子", "狮子头"]


def test_the_hint_is_part_of_the_settings_only_when_there_is_one():
    plain = TranscribeOptions().settings()
    assert "vocabulary" not in plain and "hint" not in plain["decode"]
    one, other = (TranscribeOptions(hint=Hint(terms)).settings() for terms in (("钦点",), ("钦点", "犹地亚")))
    assert one["vocabulary"] != other["vocabulary"]
    assert {name: value for name, value in one.items() if name != "vocabulary"} == plain


def test_support_is_how_much_the_plain_decode_sounds_like_the_term():
    plain = "由羅馬皇帝清典的遊帝亞王大師律王統治之間"
    assert support("犹地亚", plain) == 1.0  # the same sounds in other characters
    assert support("钦点", plain) > 0.8  # qin dian, heard as qing dian
    for decoy in DECOYS:
        assert support(decoy, plain) < 0.5
    assert support("Sheila", "I met Sheila Brown") == 1.0


def _segment(text: str) -> Segment:
    return Segment(0.0, 3.0, text, text, "zh", words=[Word(0.0, 3.0, text, 0.9)])


def _decoder(hinted: str | Segment, plain: str):
    calls = []

    def decode(options: DecodeOptions, counts: Counter) -> list[Segment]:
        calls.append(options.hint)
        if not options.hint:
            return [_segment(plain)]
        assert options.temperatures == (0.0,)  # the hinted pass never falls back to sampling
        return [hinted if isinstance(hinted, Segment) else _segment(hinted)]

    return decode, calls


def test_a_chunk_that_writes_the_hint_instead_of_the_speech_is_decoded_again_without_it():
    hint = Hint(("微分几何", "肾小球", "挥发性物质", "八宝鸭"))
    decode, calls = _decoder("微分几何肾小球挥发性物质", "根据碰撞理论月面样本缺少会发性物质")
    counts: Counter[str] = Counter()
    kept = decode_with_hint(hint, DecodeOptions(), decode, counts)
    assert [s.text for s in kept] == ["根据碰撞理论月面样本缺少会发性物质"] and counts == {GUARD: 1}
    assert calls == [hint.text, None]


def test_a_hinted_term_the_audio_supports_is_kept_and_a_chunk_without_hint_terms_decoded_once():
    hint = Hint(("钦点", "犹地亚", "八宝鸭"))
    decode, calls = _decoder("由罗马皇帝钦点的犹地亚王", "由羅馬皇帝清典的遊帝亞王")
    counts: Counter[str] = Counter()
    assert [s.text for s in decode_with_hint(hint, DecodeOptions(), decode, counts)] == ["由罗马皇帝钦点的犹地亚王"]
    assert not counts and len(calls) == 2
    decode, calls = _decoder("今天天气很好", "今天天气很好")
    assert [s.text for s in decode_with_hint(hint, DecodeOptions(), decode, counts)] == ["今天天气很好"]
    assert len(calls) == 1


def test_a_hinted_decode_that_stops_early_is_checked_without_hint_terms_in_it():
    decode, calls = _decoder("说不配合就不配合的", "说不配合就不配合的以上的话我们再去八九十三条因为这三条的话比较典型")
    counts: Counter[str] = Counter()
    kept = decode_with_hint(Hint(("钦点",)), DecodeOptions(), decode, counts, speech_seconds=25.0)
    assert kept[0].text.endswith("比较典型") and counts == {GUARD: 1} and len(calls) == 2


def test_an_added_term_is_logged_without_the_term(tmp_path, caplog):
    # A term is what people wrote in corrections, often a person's name; logs go into bug reports.
    path = tmp_path / "vocabulary.txt"
    with caplog.at_level(logging.DEBUG, logger="pipeline"):
        add_terms(path, ["张长华", "东莞"])
    assert [r.getMessage() for r in caplog.records] == [f"wrote {path}", f"{path}: added 2 term(s)"]


def test_a_dropped_hinted_decode_is_logged_without_its_text_or_the_hint_terms(caplog):
    # Logs go into bug reports: what was said (of a closed recording too) and the names the hint holds stay out.
    hint = Hint(("张长华", "东莞"))
    speech = _segment("张长华在东莞")
    looping = replace(speech, text="剧剧剧剧剧剧剧剧剧剧剧剧", compression_ratio=9.0)
    decode, _ = _decoder(looping, "张常华在东莞打工")
    with caplog.at_level(logging.DEBUG, logger="pipeline"):
        decode_with_hint(hint, DecodeOptions(), decode, Counter())
    [record] = [r for r in caplog.records if "hinted decode" in r.getMessage()]
    logged = record.getMessage()
    assert "dropped" in logged
    assert not any(said in logged for said in ("张", "东莞", "剧", "打工"))


def test_a_piece_of_a_term_written_where_the_plain_decode_has_nothing_like_it_is_checked():
    hint = Hint(("量子纠缠", "英国脱欧"))
    decode, calls = _decoder("他一定在家因为灯量子", "他一定在家因为灯亮着")
    counts: Counter[str] = Counter()
    kept = decode_with_hint(hint, DecodeOptions(), decode, counts)
    assert [s.text for s in kept] == ["他一定在家因为灯亮着"] and counts == {GUARD: 1} and len(calls) == 2
    decode, calls = _decoder("英国的产业链", "英国的产业链")  # a piece the audio supports
    assert [s.text for s in decode_with_hint(hint, DecodeOptions(), decode, counts)] == ["英国的产业链"]
    assert len(calls) == 2 and counts == {GUARD: 1}


@pytest.mark.parametrize(
    ("quality", "cause"),
    [
        ({"compression_ratio": 2.9}, "compression ratio 2.90"),
        ({"avg_logprob": -1.4, "no_speech_prob": 0.1}, "average log probability -1.40"),
        ({"avg_logprob": -0.3, "compression_ratio": 1.2}, "a loop"),
    ],
)
def test_a_stretch_of_the_hinted_decode_failing_whispers_checks_is_left_out_unless_the_plain_decode_heard_it(
    quality, cause
):
    """Measured: the hint writes 法院 法院 法院 after 心跳骤停 into what is left of a chunk after its speech."""
    text = "法院法院法院法院法院法院法院法院" if cause == "a loop" else "法院 法院 法院"
    tail = Segment(3.0, 6.0, text, text, "zh", words=[Word(3.0, 6.0, text, 0.3)], **quality)
    assert failed(tail, DecodeOptions()) == [cause]
    speech = _segment("广州医生跑北马中段比赛就心跳骤停")
    hint = Hint(("心跳骤停",))

    def decode(options: DecodeOptions, counts: Counter) -> list[Segment]:
        calls.append(options.hint)
        if options.hint:
            assert options.temperatures == (0.0,)  # the hinted pass never falls back to sampling
            return [speech, tail]
        return plain

    for plain, kept in (([_segment("广州医生跑北马中段比赛就心跳臭停")], [speech]), ([speech, tail], [speech, tail])):
        calls: list[str | None] = []
        counts: Counter[str] = Counter()
        assert decode_with_hint(hint, DecodeOptions(), decode, counts) == (kept if kept == [speech] else plain)
        assert len(calls) == 2 and counts == ({} if kept == [speech] else {GUARD: 1})
    silence = replace(tail, text="法院", avg_logprob=-1.4, no_speech_prob=0.9, compression_ratio=None)
    assert not failed(silence, DecodeOptions())  # improbable text in silence: Whisper would not fall back
    # however it compresses: the engine's fallback rule (engines.failures), which gives such a window no text
    assert not failed(replace(silence, compression_ratio=2.9), DecodeOptions())


@pytest.mark.slow
def test_the_guard_on_a_real_clip_keeps_decoys_out():
    """far_2 (a metro announcement) with a vocabulary of terms said nowhere in it: without the guard base
    writes 挥发性物质 and 八宝鸭 into it (bench/RESULTS.md); with it, none of them."""
    from pipeline.stages.audio import decode
    from pipeline.stages.audio import probe as probe_file
    from pipeline.stages.engines import load_engine
    from pipeline.stages.segment import segment
    from pipeline.stages.transcribe import transcribe

    samples = decode(probe_file(corpus_path(FAR))).samples
    engine = load_engine("faster-whisper", "base", Config.load().home, "cpu")
    transcript = transcribe(samples, segment(samples), engine, TranscribeOptions(language="zh", hint=Hint(DECOYS)))
    text = "".join(s.text for s in transcript.segments)
    assert text and not [d for d in DECOYS if d in text]


# ------------------------------------------------------------------- a changed vocabulary re-transcribes


class FakeEngine:
    """Writes the terms of the hint it is given where the speech has them: a recogniser told what to expect."""

    name = "faster-whisper"
    model = "base"
    device = "cpu"

    def __init__(self) -> None:
        self.hints: list[str | None] = []

    def encode(self, pieces):
        return list(pieces)

    def select(self, encoded, indices):
        return [encoded[i] for i in indices]

    def language_probabilities(self, encoded) -> list[dict[str, float]]:
        return [{"zh": 1.0} for _ in encoded]

    def decode(self, encoded, languages, options: DecodeOptions) -> list[list[Segment]]:
        return [self._decode(language, options) for language in languages]

    def _decode(self, language: str, options: DecodeOptions) -> list[Segment]:
        self.hints.append(options.hint)
        text = "由罗马皇帝清典的游帝亚王"
        for heard, term in (("清典", "钦点"), ("游帝亚", "犹地亚")):
            if options.hint and term in options.hint:
                text = text.replace(heard, term)
        words = [Word(i * 0.5, i * 0.5 + 0.5, c, 0.8) for i, c in enumerate(text)]
        return [Segment(0.0, len(text) * 0.5, text, text, language, words=words, avg_logprob=-0.2, no_speech_prob=0.01)]


def test_a_changed_vocabulary_transcribes_again_keeping_corrections_and_decisions(store, tmp_path, monkeypatch):
    from pipeline import process
    from pipeline.batch import FileRun
    from pipeline.process import RunOptions

    engine = FakeEngine()
    monkeypatch.setattr(process, "load_engine", lambda *args: engine)
    audio = corpus_path(HISTORY)
    options = RunOptions(speakers=None, out_dir=None, home=tmp_path, vocabulary=Vocabulary(("钦点",)))
    assert FileRun(audio, store, options).process().status == "done"
    rid = store.list_recordings()[0].id
    (segment,) = store.segments(rid)
    assert segment.text == "由罗马皇帝钦点的游帝亚王" and engine.hints[0] == "钦点"
    corrected, _ = store.correct_text(segment.stored_id, "由罗马皇帝钦点的犹地亚王大希律王", "mei", segment.version)
    store.add_annotation(corrected.stored_id, "family_separation", "mei", ((0, 4),))
    assert FileRun(audio, store, options).process().status == "skipped"

    changed = RunOptions(speakers=None, out_dir=None, home=tmp_path, vocabulary=Vocabulary(("钦点", "犹地亚")))
    assert FileRun(audio, store, changed).process().status == "done"
    (again,) = store.segments(rid)
    assert again.text == "由罗马皇帝钦点的犹地亚王大希律王" and again.version > 1
    assert "".join(w.text for w in again.words) == again.text
    assert [w.text for w in again.words if w.corrected] == ["大希律王"]
    assert [a.theme for a in store.annotations(rid)] == ["family_separation"]
    hint = process.for_recording(changed, store.recording(rid)).transcribe.hint
    assert hint is not None and store.stage(rid, "transcribe").settings["transcribe"]["vocabulary"] == hint.version


def test_the_recordings_interviewee_and_place_lead_the_hint(store, tmp_path):
    from pipeline.process import RunOptions, for_recording

    info = AudioInfo(tmp_path / "a.wav", "cd" * 32, 10, "wav", "pcm_s16le", 16000, 1, 5.0)
    rid = save_transcription(store, info, Transcript("zh", 1.0, [], "faster-whisper", "base"), {}, "k", {})
    recording = store.set_metadata(rid, interviewee="张长华", place="东莞")
    options = RunOptions(vocabulary=Vocabulary(("钦点",)))
    hint = for_recording(options, recording).transcribe.hint
    assert hint is not None and hint.terms == ("张长华", "东莞", "钦点")
    codebook = load_codebook()
    with_codebook = for_recording(RunOptions(codebook=codebook, vocabulary=Vocabulary(("钦点",))), recording)
    assert with_codebook.transcribe.hint is not None and "工资" in with_codebook.transcribe.hint.terms
    # No vocabulary file: no hint, measured (the metadata or the codebook alone made the error rate worse).
    assert for_recording(RunOptions(codebook=codebook), recording).transcribe.hint is None


# --------------------------------------------------------------------------------- words follow corrections


def _words(*pieces: tuple[str, float, float]) -> list[Word]:
    return [Word(start, end, text, 0.7) for text, start, end in pieces]


def test_chinese_words_realigned_keep_the_times_of_unchanged_words():
    words = _words(("由", 0.0, 0.5), ("罗马", 0.5, 1.2), ("清典", 1.2, 1.8), ("的", 1.8, 2.0), ("游帝亚", 2.0, 2.9))
    new = realign(words, "由罗马钦点的犹地亚王。", 0.0, 4.0)
    assert [(w.text, w.start, w.end, w.corrected) for w in new] == [
        ("由", 0.0, 0.5, False),
        ("罗马", 0.5, 1.2, False),
        ("钦点", 1.2, 1.8, True),
        ("的", 1.8, 2.0, False),
        ("犹地亚", 2.0, 2.9, True),
        ("王。", 2.9, 4.0, True),  # added at the end: between its neighbour and the segment's end
    ]
    assert new[0] is words[0] and new[2].probability == 1.0
    assert realign(words, "由罗马清典的游帝亚", 0.0, 4.0) is words  # nothing changed
    assert realign(words, "由的", 0.0, 4.0) == [words[0], words[3]]  # words taken out go


def test_english_words_realigned_word_by_word():
    words = _words(("I", 0.0, 0.3), ("met", 0.3, 0.6), ("Shayla", 0.6, 1.2), ("yesterday.", 1.2, 2.0))
    new = realign(words, "Yes, I met Sheila yesterday.", 0.0, 2.0)
    assert [(w.text, w.corrected) for w in new] == [
        ("Yes,", True),
        ("I", False),
        ("met", False),
        ("Sheila", True),
        ("yesterday.", False),
    ]
    assert (new[0].start, new[0].end) == (0.0, 0.0)  # inserted before the first word: no time of its own
    assert (new[3].start, new[3].end) == (0.6, 1.2)
    assert realign([], "words where there were none", 3.0, 4.0)[0].start == 3.0


def test_punctuation_a_person_changed_is_on_the_words_that_stay_the_recogniser_s():
    """The words kept the recogniser's punctuation where a person changed only that (or that and other words):
    the JSON's words no longer made the segment's text, and subtitles lost their times for it."""
    words = _words(("东莞", 0.0, 0.5), ("钦州，", 0.5, 1.0), ("宿舍。", 1.0, 1.5))
    new = realign(words, "东莞，钦州宿舍！", 0.0, 1.5)
    assert [(w.text, w.start, w.end, w.probability, w.corrected) for w in new] == [
        ("东莞，", 0.0, 0.5, 0.7, False),
        ("钦州", 0.5, 1.0, 0.7, False),
        ("宿舍！", 1.0, 1.5, 0.7, False),
    ]
    english = _words(("I", 0.0, 0.3), ("met", 0.3, 0.6), ("Shayla", 0.6, 1.2), ("yesterday.", 1.2, 2.0))
    new = realign(english, "I met Sheila yesterday!", 0.0, 2.0)
    assert [(w.text, w.corrected) for w in new][2:] == [("Sheila", True), ("yesterday!", False)]
    assert new[0] is english[0]


def test_a_correction_realigns_the_stored_words_and_exports_read_them(store, tmp_path):
    words = _words(("我们", 0.0, 0.6), ("在", 0.6, 0.8), ("东管", 0.8, 1.5), ("打工", 1.5, 2.0))
    segment = Segment(0.0, 2.0, "我们在东管打工", "我们在东管打工", "zh", words=words)
    info = AudioInfo(tmp_path / "a.wav", "ef" * 32, 10, "wav", "pcm_s16le", 16000, 1, 5.0)
    rid = save_transcription(store, info, Transcript("zh", 1.0, [segment], "faster-whisper", "base"), {}, "k", {})
    (stored,) = store.segments(rid)
    store.correct_text(stored.stored_id, "我们在东莞打工", "mei", stored.version)
    (corrected,) = store.segments(rid)
    assert [(w.text, w.start, w.end, w.corrected) for w in corrected.words] == [
        ("我们", 0.0, 0.6, False),
        ("在", 0.6, 0.8, False),
        ("东莞", 0.8, 1.5, True),
        ("打工", 1.5, 2.0, False),
    ]
    export = gather(store, store.recording(rid))
    words_json = json.loads(to_json(export))["segments"][0]["words"]
    assert [(w["text"], w["corrected"]) for w in words_json][2] == ("东莞", True)
    assert "东莞" in cues(export)[0].lines[0]
    assert store.search(parse_query("东莞")).total == 1
    assert store.corrected_words() == [CorrectedWord("东莞", "我们在东管打工", rid)]
    change = store.history(recording_id=rid)[-1]
    store.revert(change.id, "mei")
    assert "".join(w.text for w in store.segments(rid)[0].words) == "我们在东管打工"


# ------------------------------------------------------------------------------------ corrections that teach


def test_suggestions_are_content_words_the_recogniser_missed_counted_across_the_collection():
    words = [
        CorrectedWord("钦点", "由罗马皇帝清典", 1),
        CorrectedWord("钦点，", "清典", 2),
        CorrectedWord("犹地亚", "游帝亚", 1),
        CorrectedWord("Sheila", "I met Shayla", 3),
        CorrectedWord("的", "得", 1),  # one character: no term
        CorrectedWord("我们", "我门", 1),  # a stop word
        CorrectedWord("the", "a", 3),
        CorrectedWord("罗马", "由罗马皇帝", 1),  # the recogniser wrote it: nothing to teach
        CorrectedWord("大希律王统治期间和以后", "", 1),  # a phrase, not a term
    ]
    found = suggest(words, known=["犹地亚"], ignored=[])
    assert [(s.term, s.count, s.recordings) for s in found] == [("钦点", 2, 2), ("Sheila", 1, 1)]
    assert [s.term for s in suggest(words, known=[], ignored=["欽點", "sheila"])] == ["犹地亚"]


def test_suggestions_read_each_segments_recognised_text_once(monkeypatch):
    """The recogniser's text of a segment was converted to simplified script and folded again for each word a
    person wrote in it: a segment's whole text for every corrected word of a large archive."""
    from pipeline.stages import vocabulary

    heard = "由罗马皇帝清典的游帝亚人，在那个时候"
    words = [CorrectedWord(text, heard, 1) for text in ("钦点", "犹地亚", "Sheila", "罗马")]
    words.append(CorrectedWord("钦点", "清典", 2))
    normalised = []
    normalise = vocabulary.normalise
    monkeypatch.setattr(vocabulary, "normalise", lambda text: normalised.append(text) or normalise(text))
    found = suggest(words, known=[], ignored=[])
    assert [(s.term, s.count, s.recordings) for s in found] == [("钦点", 2, 2), ("Sheila", 1, 1), ("犹地亚", 1, 1)]
    assert normalised.count(heard) == 1


def _cli(*args: str, cwd: Path):
    old = Path.cwd()
    os.chdir(cwd)  # the default vocabulary is annotations/vocabulary.txt in the folder ohp runs in
    try:
        return runner.invoke(cli_app, list(args), env={"COLUMNS": "200", "OHP_USER": "", "OHP_VOCABULARY": ""})
    finally:
        os.chdir(old)


def _corrected_recording(store, tmp_path, *, closed: bool = False) -> int:
    """An interview whose correction puts in 钦点 and 犹地亚; closed: another, whose correction puts in 钦点 and its
    interviewee's name, 秀英 (written nowhere else)."""
    if closed:
        words = _words(("我", 0.0, 0.3), ("叫", 0.3, 0.6), ("秀影", 0.6, 1.2), ("在", 1.2, 1.4), ("清典", 1.4, 2.0))
        heard, said, audio = "我叫秀影在清典", "我叫秀英在钦点", tmp_path / "closed" / "xiuying.wav"
    else:
        words = _words(("由", 0.0, 0.5), ("罗马", 0.5, 1.2), ("清典", 1.2, 1.8), ("的", 1.8, 2.0), ("游帝亚", 2.0, 2.9))
        heard, said, audio = "由罗马清典的游帝亚", "由罗马钦点的犹地亚", tmp_path / "h.wav"
    segment = Segment(0.0, 3.0, heard, heard, "zh", words=words)
    info = AudioInfo(audio, ("34" if closed else "12") * 32, 10, "wav", "pcm_s16le", 16000, 1, 5.0)
    rid = save_transcription(store, info, Transcript("zh", 1.0, [segment], "faster-whisper", "base"), {}, "k", {})
    (stored,) = store.segments(rid)
    store.correct_text(stored.stored_id, said, "mei", stored.version)
    if closed:
        store.set_metadata(rid, consent="closed")
    return rid


def test_ohp_vocabulary_suggest_accept_ignore_and_check(store, db_url, tmp_path):
    _corrected_recording(store, tmp_path)
    db = ("--db", db_url)
    listed = _cli("vocabulary", "suggest", "--json", *db, cwd=tmp_path)
    assert listed.exit_code == 0 and [s["term"] for s in json.loads(listed.output)] == ["犹地亚", "钦点"]
    accepted = _cli("vocabulary", "accept", "钦点", cwd=tmp_path)
    assert accepted.exit_code == 0 and "added to" in accepted.output
    assert (tmp_path / "annotations" / "vocabulary.txt").read_text(encoding="utf-8") == "钦点\n"
    assert _cli("vocabulary", "ignore", "犹地亚", *db, cwd=tmp_path).exit_code == 2  # who?
    assert _cli("vocabulary", "ignore", "犹地亚", "--user", "rita", *db, cwd=tmp_path).exit_code == 0
    assert "no suggestions" in _cli("vocabulary", "suggest", *db, cwd=tmp_path).output
    assert "1 terms" in _cli("vocabulary", "check", cwd=tmp_path).output
    (tmp_path / "bad.txt").write_bytes(b"ok\n\x00\n")
    bad = _cli("vocabulary", "check", "--vocabulary", "bad.txt", cwd=tmp_path)
    assert bad.exit_code == 2 and "bad.txt:2: binary data" in bad.output
    run = _cli("run", str(tmp_path / "none.wav"), "--vocabulary", "bad.txt", *db, cwd=tmp_path)
    assert run.exit_code == 2 and "bad.txt:2" in run.output  # refused before any file is transcribed


def test_the_vocabulary_page_is_for_researchers(store, tmp_path):
    from pipeline.web import create_app

    from test_web_api import PASSWORD, client_for

    for name, role in (("ann", "annotator"), ("rita", "researcher")):
        store.add_user(name, PASSWORD, role)
    _corrected_recording(store, tmp_path)
    path = tmp_path / "vocabulary.txt"
    web = create_app(store, Config(secret="test-secret", vocabulary=path))
    ann, ann_token = client_for(web, "ann")
    assert ann.get("/vocabulary").status_code == 403
    assert ann.post("/vocabulary/accept", data={"term": "钦点", "csrf_token": ann_token}).status_code == 403
    rita, token = client_for(web, "rita")
    page = rita.get("/vocabulary").text
    assert "钦点" in page and "犹地亚" in page and 'href="/vocabulary"' in page
    assert rita.post("/vocabulary/accept", data={"term": "钦点"}).status_code == 403  # no CSRF token
    accepted = rita.post("/vocabulary/accept", data={"term": "钦点", "csrf_token": token}, follow_redirects=False)
    assert accepted.status_code == 303 and path.read_text(encoding="utf-8") == "钦点\n"
    assert rita.post("/vocabulary/ignore", data={"term": "犹地亚", "csrf_token": token}).status_code == 200
    assert "No suggestions" in rita.get("/vocabulary").text
    hostile = rita.post("/vocabulary/accept", data={"term": "x\n# <script>", "csrf_token": token})
    assert hostile.status_code == 400 and path.read_text(encoding="utf-8") == "钦点\n"
    assert rita.post("/vocabulary/ignore", data={"term": "y" * 500, "csrf_token": token}).status_code == 422


# ------------------------------------------------------------------------ suggestions and closed recordings
# The vocabulary file is shared with collaborators and hinted for every recording: a closed interviewee's name
# typed into a correction must not reach it unless a researcher means it to.


def test_the_words_corrected_in_the_recordings_asked_for(store, tmp_path):
    open_id = _corrected_recording(store, tmp_path)
    closed_id = _corrected_recording(store, tmp_path, closed=True)
    everywhere = store.corrected_words()
    assert {w.recording_id for w in everywhere} == {open_id, closed_id}
    assert store.corrected_words([open_id]) == [w for w in everywhere if w.recording_id == open_id]
    assert "秀英" in {w.text for w in store.corrected_words([closed_id])}
    assert store.corrected_words([]) == []


def test_a_suggestion_written_only_in_closed_recordings_says_so():
    words = [
        CorrectedWord("钦点", "清典", 1),
        CorrectedWord("钦点", "清典", 2),
        CorrectedWord("秀英", "秀影", 2),
        CorrectedWord("秀英，", "秀影", 3),
        CorrectedWord("Xiuying", "Shoeing", 3),
    ]
    found = suggest(words, known=[], ignored=[], closed={2, 3})
    assert {s.term: s.closed_only for s in found} == {"钦点": False, "秀英": True, "Xiuying": True}
    assert not any(s.closed_only for s in suggest(words, known=[], ignored=[]))
    asked = ["秀英", "xiuying", "钦点", "欽點", "犹地亚"]
    assert only_in_closed(asked, words, {2, 3}) == [("秀英", None), ("xiuying", None)]


def test_a_term_holding_a_closed_recordings_word_in_another_shape_is_held_too():
    """A researcher accepting a longer term, or the name in full-width letters, would have carried a closed
    interviewee's name into the shared vocabulary file without being asked: only the word itself was held."""
    words = [
        CorrectedWord("秀英", "秀影", 2),
        CorrectedWord("Xiuying", "Shoeing", 3),
        CorrectedWord("钦点", "清典", 1),
        CorrectedWord("张秀英", "张秀影", 1),  # an open recording has the whole of this name
    ]
    asked = ["秀英的家", "Zhang Xiuying", "ＸＩＵＹＩＮＧ", "Xiuying's", "欽點村", "張秀英", "Xiuyingzhang", "Sheila"]
    assert only_in_closed(asked, words, {2, 3}) == [
        ("秀英的家", "秀英"),
        ("Zhang Xiuying", "Xiuying"),
        ("ＸＩＵＹＩＮＧ", None),
        ("Xiuying's", "Xiuying"),
    ]
    assert only_in_closed(asked, words, set()) == []


def _open_and_closed(store, db_url: str, tmp_path) -> tuple[str, str]:
    """An open and a closed recording with corrections, a researcher (rita) and an annotator (ann); the CLI's
    --db option for the store."""
    from test_web_api import PASSWORD

    _corrected_recording(store, tmp_path)
    _corrected_recording(store, tmp_path, closed=True)
    store.add_user("rita", PASSWORD, "researcher")
    store.add_user("ann", PASSWORD, "annotator")
    return ("--db", db_url)


def test_ohp_vocabulary_suggest_leaves_out_closed_recordings_unless_a_researcher_asks(store, db_url, tmp_path):
    db = _open_and_closed(store, db_url, tmp_path)
    shared = _cli("vocabulary", "suggest", "--json", *db, cwd=tmp_path)
    assert shared.exit_code == 0 and "left out 1 closed recording(s): xiuying.wav" in shared.stderr
    assert [s["term"] for s in json.loads(shared.stdout)] == ["犹地亚", "钦点"]
    assert json.loads(shared.stdout)[1]["recordings"] == 1  # the closed recording's 钦点 is not counted either
    assert "秀英" not in _cli("vocabulary", "suggest", *db, cwd=tmp_path).output
    researcher = ("--include-restricted", "--user", "rita")
    asked = _cli("vocabulary", "suggest", "--json", *researcher, *db, cwd=tmp_path)
    assert {s["term"]: s["closed_only"] for s in json.loads(asked.stdout)} == {
        "钦点": False,
        "犹地亚": False,
        "秀英": True,
    }
    table = _cli("vocabulary", "suggest", *researcher, *db, cwd=tmp_path).stdout
    assert [line for line in table.splitlines() if "秀英" in line and "closed only" in line]
    assert not [line for line in table.splitlines() if "钦点" in line and "closed only" in line]
    for who in (("--user", "ann"), ()):
        refused = _cli("vocabulary", "suggest", "--include-restricted", *who, *db, cwd=tmp_path)
        assert refused.exit_code == 2 and "秀英" not in refused.output


def test_ohp_vocabulary_accept_takes_a_closed_recordings_term_only_from_a_researcher(store, db_url, tmp_path):
    db = _open_and_closed(store, db_url, tmp_path)
    path = tmp_path / "annotations" / "vocabulary.txt"
    refused = _cli("vocabulary", "accept", "犹地亚", "秀英", *db, cwd=tmp_path)
    assert refused.exit_code == 2 and "秀英" in refused.output and "--include-restricted" in refused.output
    assert not path.exists()  # the other term neither: all or none
    longer = _cli("vocabulary", "accept", "秀英的家", *db, cwd=tmp_path)
    assert longer.exit_code == 2 and "秀英的家 (its 秀英)" in longer.output and not path.exists()
    assert _cli("vocabulary", "accept", "犹地亚", "欽點", *db, cwd=tmp_path).exit_code == 0  # open ones have them
    refused = _cli("vocabulary", "accept", "秀英", "--include-restricted", "--user", "ann", *db, cwd=tmp_path)
    assert refused.exit_code == 2 and "only a researcher" in refused.output
    assert path.read_text(encoding="utf-8") == "犹地亚\n欽點\n"
    asked = _cli("vocabulary", "accept", "秀英", "--include-restricted", "--user", "rita", *db, cwd=tmp_path)
    assert asked.exit_code == 0 and path.read_text(encoding="utf-8") == "犹地亚\n欽點\n秀英\n"


def test_ohp_vocabulary_accept_counts_the_corrections_once_for_all_its_terms(store, db_url, tmp_path, monkeypatch):
    """Each term given was checked by counting every corrected word of the collection again: hundreds of terms
    accepted at once over a large archive's corrections took minutes (bench/RESULTS.md)."""
    from pipeline.stages import vocabulary

    db = _open_and_closed(store, db_url, tmp_path)
    counted = []

    def counting(*args, **kwargs):
        counted.append(args)
        return suggest(*args, **kwargs)

    monkeypatch.setattr(vocabulary, "suggest", counting)
    refused = _cli("vocabulary", "accept", "犹地亚", "欽點", "秀英", "Sheila", *db, cwd=tmp_path)
    assert refused.exit_code == 2 and "秀英: written only in corrections of closed" in refused.output
    accepted = _cli("vocabulary", "accept", "犹地亚", "欽點", "Sheila", *db, cwd=tmp_path)
    assert accepted.exit_code == 0, accepted.output
    assert (tmp_path / "annotations" / "vocabulary.txt").read_text(encoding="utf-8") == "犹地亚\n欽點\nSheila\n"
    assert len(counted) == 2  # once for each command, not once for each term


def test_ohp_vocabulary_accept_reads_the_file_once_and_adds_every_term_or_none(store, db_url, tmp_path, monkeypatch):
    """Each term was added on its own, the file read again for each (hundreds of terms: hundreds of reads of a
    growing file), and a term that is no term, after others, was refused once those were in the file."""
    from pipeline.stages import vocabulary

    db = _open_and_closed(store, db_url, tmp_path)
    path = tmp_path / "annotations" / "vocabulary.txt"
    researcher = ("--include-restricted", "--user", "rita")
    refused = _cli("vocabulary", "accept", "犹地亚", "秀英", "a # b", *researcher, *db, cwd=tmp_path)
    assert refused.exit_code == 2 and "'a # b' is not a term" in refused.output
    assert not path.exists()
    reads = []
    read_vocabulary = vocabulary.read_vocabulary
    monkeypatch.setattr(vocabulary, "read_vocabulary", lambda file: reads.append(file) or read_vocabulary(file))
    path.parent.mkdir()
    path.write_text("钦点\n", encoding="utf-8")
    terms = ("犹地亚", "欽點", "秀英", "猶地亞", "Sheila")
    accepted = _cli("vocabulary", "accept", *terms, *researcher, *db, cwd=tmp_path)
    assert accepted.exit_code == 0, accepted.output
    assert [line.rsplit(" ", 1)[0] for line in accepted.output.splitlines()] == [
        "犹地亚: added to",
        "欽點: already in",
        "秀英: added to",
        "猶地亞: already in",  # the same as a term given before it
        "Sheila: added to",
    ]
    assert path.read_text(encoding="utf-8") == "钦点\n犹地亚\n秀英\nSheila\n"
    assert len(reads) == 1, reads


def test_the_vocabulary_page_marks_terms_only_closed_recordings_have_and_asks_before_accepting_one(store, tmp_path):
    import re

    from pipeline.web import create_app

    from test_web_api import PASSWORD, client_for

    store.add_user("rita", PASSWORD, "researcher")
    _corrected_recording(store, tmp_path)
    _corrected_recording(store, tmp_path, closed=True)
    path = tmp_path / "vocabulary.txt"
    rita, token = client_for(create_app(store, Config(secret="test-secret", vocabulary=path)), "rita")
    page = rita.get("/vocabulary").text
    rows = {row.split("</td>")[0].split(">")[-1]: row for row in re.findall(r"<tr>\s*<td>.*?</tr>", page, re.S)}
    assert set(rows) == {"钦点", "犹地亚", "秀英"}
    assert [term for term, row in rows.items() if "only in closed recordings" in row] == ["秀英"]
    assert "shared" in page  # why it is marked
    longer = rita.post("/vocabulary/accept", data={"term": "秀英的家", "csrf_token": token}, follow_redirects=False)
    assert longer.status_code == 200 and not path.exists()
    assert "<strong>秀英的家</strong> holds <strong>秀英</strong>" in longer.text
    asked = rita.post("/vocabulary/accept", data={"term": "秀英", "csrf_token": token}, follow_redirects=False)
    assert asked.status_code == 200 and not path.exists()
    assert "秀英" in asked.text and "shared" in asked.text and "holds" not in asked.text  # the confirmation says why
    confirmation = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', asked.text))
    assert confirmation == {"csrf_token": token, "term": "秀英", "confirm_closed": "yes"}
    without_token = {**confirmation, "csrf_token": ""}
    assert rita.post("/vocabulary/accept", data=without_token).status_code == 403 and not path.exists()
    confirmed = rita.post("/vocabulary/accept", data=confirmation, follow_redirects=False)
    assert confirmed.status_code == 303 and path.read_text(encoding="utf-8") == "秀英\n"
    also_open = rita.post("/vocabulary/accept", data={"term": "钦点", "csrf_token": token}, follow_redirects=False)
    assert also_open.status_code == 303 and path.read_text(encoding="utf-8") == "秀英\n钦点\n"


def test_realigning_a_long_segment_diffs_only_what_the_correction_changed(monkeypatch):
    """difflib's matching is quadratic in repeated units: a character fixed in a 10,000-character paragraph (an
    import takes 100,000) diffed the whole of both texts, seconds under the write lock, minutes for the longest. Only
    the middle the correction changed is diffed; the words before and after it keep theirs."""
    import pipeline.realign as realigning

    def bounded(junk, a, b, autojunk=True):
        assert len(a) * len(b) <= realigning.MAX_DIFF, f"{len(a)} × {len(b)} units diffed"
        return matcher(junk, a, b, autojunk=autojunk)

    matcher = realigning.SequenceMatcher
    monkeypatch.setattr(realigning, "SequenceMatcher", bounded)
    paragraph = "我们那时候在东莞打工，一个月工资才八百块。" * 500
    words = [Word(0.0, 600.0, paragraph, 1.0, corrected=True)]
    fixed = paragraph[:5_000] + "七" + paragraph[5_001:]
    realigned = realign(words, fixed, 0.0, 600.0)
    assert "".join(w.text for w in realigned) == fixed
    assert [w.text for w in realigned if "七" in w.text] == ["我们七时候在东莞打工，"]  # the words around it kept
    rewritten = realign(words, "他们" + paragraph[2:-1] + "！", 0.0, 600.0)  # both ends: one replacement between them
    assert "".join(w.text for w in rewritten) == "他们" + paragraph[2:-1] + "！"
    assert all(a.end <= b.start + 1e-9 for a, b in pairwise(rewritten))
