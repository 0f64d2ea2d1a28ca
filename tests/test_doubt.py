"""The doubt stage (which words to check, segment confidence, recording warnings) on hand-made records; what
the store keeps of it (SQLite, and PostgreSQL when OHP_TEST_POSTGRES_URL is set), through corrections and
re-runs; and where it shows: JSON, ELAN, search, `ohp status`, `ohp review --doubtful`, the run summary."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.batch import FileResult
from pipeline.cli import app, keys
from pipeline.cli.output import file_line
from pipeline.formats.elan import to_eaf
from pipeline.formats.export import gather, to_json
from pipeline.imports import import_file
from pipeline.process import RunOptions, process_recording
from pipeline.records import (
    AudioInfo,
    Chunk,
    DecodeMark,
    RecordingResult,
    SearchFilters,
    Segment,
    SpeechRegion,
    StageRun,
    Transcript,
    Word,
)
from pipeline.search.textindex import parse_query
from pipeline.stages.audio import ffmpeg_exe
from pipeline.stages.doubt import (
    by_risk,
    confidence,
    disputed,
    doubtful_passages,
    doubtful_share,
    mark_doubt,
    mark_segment,
    prepare_doubt,
    recording_warnings,
)
from pipeline.store import Store

from conftest import corpus_path

runner = CliRunner()


def words(*pieces: tuple[str, float], start: float = 0.0) -> list[Word]:
    return [Word(start + i * 0.5, start + i * 0.5 + 0.4, text, p) for i, (text, p) in enumerate(pieces)]


def segment(pieces: list[tuple[str, float]], language: str = "zh", start: float = 0.0, **fields) -> Segment:
    ws = words(*pieces, start=start)
    joiner = "" if language == "zh" else " "
    text = joiner.join(w.text for w in ws)
    return Segment(start, ws[-1].end, text, text, language, ws, **fields)


def doubted(seg: Segment, language: str | None = None) -> list[str]:
    return [w.text for w in mark_segment(seg, language or seg.language).words if w.doubtful]


# ------------------------------------------------------------------------------------------- the rule


def test_a_word_the_recogniser_was_unsure_of_is_doubtful_and_a_sure_one_is_not():
    assert doubted(segment([("wages", 0.95), ("were", 0.9), ("owed", 0.1)], "en")) == ["owed"]


def test_rare_lone_characters_are_doubtful_where_a_word_as_unsure_is_not():
    # 清典 (钦点 misheard) makes no word with its neighbours; 罗马 is a word: both as unsure.
    seg = segment([("由", 0.9), ("罗马", 0.6), ("皇帝", 0.9), ("清", 0.6), ("典", 0.6), ("的", 0.9)])
    assert doubted(seg) == ["清", "典"]


def test_a_segment_decoding_touched_makes_its_unsure_words_doubtful():
    pieces = [("the", 0.9), ("brand", 0.3)]
    assert doubted(segment(pieces, "en")) == []
    assert doubted(segment(pieces, "en", marks=(DecodeMark.REDECODED,))) == ["brand"]


def test_words_in_a_language_the_recording_is_not_in_are_doubtful():
    assert doubted(segment([("工资", 0.99), ("Thanks", 0.99)]), "zh") == ["Thanks"]
    assert doubted(segment([("my", 0.99), ("工资", 0.99)], "en"), "en") == ["工资"]
    # a segment in another language than the recording's: every word of it
    assert doubted(segment([("gracias", 0.99)], "es"), "en") == ["gracias"]


def test_words_a_second_decode_wrote_differently_are_more_doubtful():
    first = Transcript(
        "en", 0.9, [segment([("the", 0.95), ("wages", 0.35), ("were", 0.99), ("owed", 0.99)], "en")], "", ""
    )
    second = Transcript(
        "en", 0.9, [segment([("the", 0.9), ("fees", 0.5), ("where", 0.6), ("owed", 0.9)], "en")], "", ""
    )
    assert [w.text for s in mark_doubt(first).segments for w in s.words if w.doubtful] == []
    # "wages" was unsure and the second decode wrote it otherwise; "were" was sure, whatever the second wrote.
    assert [w.text for s in mark_doubt(first, second=second).segments for w in s.words if w.doubtful] == ["wages"]
    assert disputed(first, second) == [[0.0, pytest.approx(0.6), 0.0, 0.0]]  # "es" kept; "where" holds "were"


def test_a_segment_a_person_corrected_is_never_doubtful():
    corrected = mark_segment(segment([("owed", 0.05), ("清", 0.2)], "zh", version=2, corrected=True), "zh")
    assert not any(w.doubtful for w in corrected.words)
    assert corrected.confidence == 1.0


def test_confidence_falls_with_probability_and_doubt():
    sure = mark_segment(segment([("wages", 0.95), ("owed", 0.9)], "en"), "en")
    unsure = mark_segment(segment([("wages", 0.95), ("owed", 0.1)], "en"), "en")
    assert sure.confidence is not None and unsure.confidence is not None
    assert 0 < unsure.confidence < sure.confidence <= 1
    assert confidence(Segment(0, 1, "", "", "en")) is None


def test_a_poor_recording_gets_warnings_and_a_good_one_none():
    good = mark_doubt(Transcript("en", 0.98, [segment([("wages", 0.95), ("owed", 0.9)], "en")], "e", "m"))
    assert good.quality_warnings == []
    unsure = [segment([("是", 0.3), ("品", 0.2), ("狂", 0.4), ("呀", 0.3)])]
    poor = mark_doubt(Transcript("zh", 0.67, unsure, "e", "m", guards={"repetition": 2}))
    assert poor.quality_warnings == [
        "language unsure (zh at 67%, a dialect?)",
        "recogniser unsure (mean word probability 0.30)",
        "much doubtful text (100%)",
        "recogniser looped 2 time(s), text may be missing",
    ]
    assert all(": " not in w for w in poor.quality_warnings)  # the run's summary line cuts at the first ": "
    assert recording_warnings(Transcript(None, 0.0, [], "e", "m")) == []


def test_passages_join_consecutive_doubtful_words_and_come_by_risk():
    seg = replace(
        segment([("I", 0.9), ("met", 0.9), ("Mr", 0.2), ("Sheen", 0.1), ("at", 0.9), ("Tesco", 0.25)], "en"), id=7
    )
    marked = mark_segment(seg, "en")
    passages = doubtful_passages([marked])
    assert [(p.text, p.words, marked.text[p.chars[0] : p.chars[1]]) for p in passages if p.chars] == [
        ("Mr Sheen", (2, 4), "Mr Sheen"),
        ("Tesco", (5, 6), "Tesco"),
    ]
    assert passages[0].start == marked.words[2].start and passages[0].end == marked.words[3].end
    assert [p.text for p in by_risk(passages)] == ["Mr Sheen", "Tesco"]  # mean 0.15 before 0.25
    assert doubtful_share([marked]) == pytest.approx(len("MrSheenTesco") / len("ImetMrSheenatTesco"))


# ------------------------------------------------------------------------------------------- context marks


def test_transcribing_notes_what_decoding_and_the_guards_did():
    from pipeline.stages.guards import guard
    from pipeline.stages.transcribe import TranscribeOptions, transcribe

    from test_transcribe import SR, ScriptedEngine, chunk, seg

    options = TranscribeOptions(language="zh")
    audio = np.zeros(40 * SR, np.float32)
    # Whisper stopped after the first region: the second, decoded again, is marked so.
    engine = ScriptedEngine([[seg(0.0, 2.0, "第一句")], [seg(0.1, 3.0, "第二句")]])
    result = transcribe(audio, [chunk((1.0, 3.0), (8.0, 11.0))], engine, options)
    assert [s.marks for s in result.segments] == [(), (DecodeMark.REDECODED,)]
    # A loop decoded again at higher temperature; one that persists and is cut out.
    # (The retry's text reaches the region's end: no speech is left to decode again.)
    engine = ScriptedEngine([[seg(0.0, 3.0, "是不是跟人家做的" + "整" * 20)], [seg(0.0, 5.0, "是不是跟人家说的")]])
    assert transcribe(audio, [chunk((0.0, 5.5))], engine, options).segments[0].marks == (DecodeMark.LOOP,)
    [collapsed] = guard([seg(0.0, 3.0, "我认为" * 10)], chunk((0.0, 5.5)), Counter())
    assert collapsed.marks == (DecodeMark.LOOP,)
    [stripped] = guard([seg(0.0, 3.0, "我们回家了。谢谢观看。")], chunk((0.0, 5.5)), Counter())
    assert stripped.marks == (DecodeMark.PHANTOM,) and stripped.text == "我们回家了。"


# ------------------------------------------------------------------------------------------- stored

INFO = AudioInfo(Path("/audio/li.wav"), "cd" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 20.0)


WARNINGS = ("language unsure (en at 55%)", "recogniser unsure (mean word probability 0.60)")


def doubtful_result() -> RecordingResult:
    segments = [
        segment([("I", 0.95), ("met", 0.9), ("Mr", 0.2), ("Sheen", 0.1)], "en"),
        segment([("wages", 0.95), ("were", 0.9), ("owed", 0.9)], "en", start=5.0),
        segment([("at", 0.9), ("Tesco", 0.05)], "en", start=10.0),
    ]
    transcript = mark_doubt(Transcript("en", 0.55, segments, "faster-whisper", "base"))
    return RecordingResult(INFO, transcript, stages={"transcribe": StageRun({}, "t1", {})})


def test_doubt_is_stored_and_read_back(store: Store):
    saved = store.save_result(doubtful_result()).export
    rid = saved.recording.id
    for segments in (saved.segments, store.segments(rid), store.transcript(rid).segments):
        assert [[w.text for w in s.words if w.doubtful] for s in segments] == [["Mr", "Sheen"], [], ["Tesco"]]
        assert segments[1].confidence == pytest.approx(0.919, abs=1e-3)
    recording = store.recording(rid)
    assert recording.warnings == WARNINGS
    assert recording.doubtful == pytest.approx(len("MrSheenTesco") / len("ImetMrSheenwageswereowedatTesco"))
    assert [r.doubtful for r in store.list_recordings()] == [recording.doubtful]


def test_a_correction_clears_the_doubt_now_and_after_a_rerun(store: Store):
    rid = store.save_result(doubtful_result()).export.recording.id
    first = store.segments(rid)[0]
    store.correct_text(first.stored_id, "I met Mr Sheehan", "mei", first.version)
    [corrected, _, last] = store.segments(rid)
    assert not any(w.doubtful for w in corrected.words) and corrected.confidence == 1.0
    # The corrected segment's words are realigned to its new text (pipeline.realign), so they count as it reads.
    assert store.recording(rid).doubtful == pytest.approx(len("Tesco") / len("ImetMrSheehanwageswereowedatTesco"))
    # Re-run: the new transcript's segment under the correction takes it, and no doubt with it.
    again = store.save_result(doubtful_result()).export
    assert again.segments[0].text == "I met Mr Sheehan"
    assert not any(w.doubtful for w in again.segments[0].words)
    assert (
        [w.text for w in store.segments(rid)[2].words if w.doubtful]
        == ["Tesco"]
        == [w.text for w in last.words if w.doubtful]
    )


def test_search_finds_only_segments_with_doubtful_words_when_asked(store: Store):
    store.save_result(doubtful_result())
    query = parse_query("met OR wages")
    assert store.search(query, SearchFilters()).total == 2
    assert [h.text for h in store.search(query, SearchFilters(doubtful=True)).hits] == ["I met Mr Sheen"]


def test_json_and_elan_show_the_doubt(store: Store):
    rid = store.save_result(doubtful_result()).export.recording.id
    export = gather(store, store.recording(rid))
    document = json.loads(to_json(export))
    assert document["recording"]["warnings"] == list(WARNINGS)
    assert [w["doubtful"] for w in document["segments"][0]["words"]] == [False, False, True, True]
    assert document["segments"][1]["confidence"] == pytest.approx(0.919, abs=1e-3)
    root = ET.fromstring(to_eaf(export).encode())
    tier = root.find("TIER[@TIER_ID='doubtful']")
    assert tier is not None and tier.get("LINGUISTIC_TYPE_REF") == "doubtful"
    assert [v.text for v in tier.iter("ANNOTATION_VALUE")] == ["Mr Sheen", "Tesco"]


def test_an_imported_ohp_json_with_probabilities_gets_its_doubt(tmp_path, store: Store):
    source = tmp_path / "li.json"
    transcript = {"segments": [{"start": 0, "end": 2, "text": "wages owed", "words": []}]}
    transcript["segments"][0]["words"] = [
        {"start": 0, "end": 1, "text": "wages", "probability": 0.95},
        {"start": 1, "end": 2, "text": "owed", "probability": 0.05},
    ]
    source.write_text(json.dumps(transcript))
    rid = import_file(source, store)
    assert [w.doubtful for w in store.segments(rid)[0].words] == [False, True]


def test_status_shows_and_sorts_by_doubt_and_review_walks_the_passages(db_url):
    with Store(db_url) as store:
        poor = store.save_result(doubtful_result()).export.recording.id
        good = doubtful_result()
        good.info = replace(INFO, path=Path("/audio/wang.wav"), sha256="ef" * 32)
        good.transcript = mark_doubt(replace(good.transcript, language_probability=0.99, segments=[]))
        store.save_result(good)
    result = runner.invoke(app, ["status", "--by-doubt", "--db", db_url], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "li.wav" in line or "wang.wav" in line]
    assert "li.wav" in lines[0] and "39%" in lines[0] and "language unsure (en at 55%)" in lines[0]
    # review: the riskiest passage first, with the moment to listen from; skip it, correct the next
    answers = "s\nc\nI met Mr Sheehan\n"
    result = runner.invoke(app, ["review", str(poor), "--doubtful", "--user", "mei", "--db", db_url], input=answers)
    assert result.exit_code == 0, result.output
    assert "2 doubtful passages" in result.output
    tesco, sheen = result.output.index("00:00:10.5-00:00:10.9"), result.output.index("00:00:01.0-00:00:01.9")
    assert "listen from 00:00:09.0" in result.output and tesco < sheen  # Tesco (0.05) before Mr Sheen (0.15)
    assert "1 corrected" in result.output
    with Store(db_url) as store:
        assert store.segments(poor)[0].text == "I met Mr Sheehan"


def test_review_of_doubtful_passages_takes_a_key_without_enter_in_a_terminal(db_url, monkeypatch):
    """As the review of themes does: it asked for a line (the key and Enter)."""
    with Store(db_url) as store:
        poor = store.save_result(doubtful_result()).export.recording.id
    pressed = iter("sq")
    monkeypatch.setattr(keys, "sys", SimpleNamespace(stdin=SimpleNamespace(isatty=lambda: True)))
    monkeypatch.setattr(click, "getchar", lambda: next(pressed))
    result = runner.invoke(app, ["review", str(poor), "--doubtful", "--user", "mei", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "c/s/q: s" in result.output and "c/s/q: q" in result.output and "0 corrected" in result.output


def test_the_run_summary_says_how_much_is_doubtful():
    line = file_line(FileResult(Path("li.wav"), "done", 1, 60.0, 12, "zh", seconds=3.0, doubtful=0.25))
    assert "zh, 25% doubtful, 3.0 s" in line


# ------------------------------------------------------------------------------------------- real audio


class WaveringEngine:
    """Hears "wages" unsure in a beam search, and "fees" when decoding greedily."""

    name = "faster-whisper"
    model = "base"
    device = "cpu"

    def __init__(self) -> None:
        self.beams: list[int] = []
        self.encoded = 0  # pieces through the encoder

    def encode(self, pieces):
        self.encoded += len(pieces)
        return list(pieces)

    def select(self, encoded, indices):
        return [encoded[i] for i in indices]

    def language_probabilities(self, encoded) -> list[dict[str, float]]:
        return [{"en": 0.9} for _ in encoded]

    def decode(self, encoded, languages, options) -> list[list[Segment]]:
        self.beams.append(options.beam_size)
        middle = ("fees", 0.6) if options.beam_size == 1 else ("wages", 0.35)
        return [[segment([("the", 0.95), middle, ("were", 0.99), ("owed", 0.99)], "en")] for _ in encoded]


def test_a_run_with_a_second_decode_doubts_what_it_heard_otherwise(tmp_path, monkeypatch):
    from pipeline import process

    engine = WaveringEngine()
    monkeypatch.setattr(process, "load_engine", lambda *args: engine)
    clip = tmp_path / "tone.wav"
    tone = "sine=frequency=220:duration=3"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", tone, str(clip)], check=True)
    monkeypatch.setattr(process, "segment", lambda samples, *vad: [Chunk(0.0, 3.0, (SpeechRegion(0.0, 3.0),))])
    once = process_recording(clip, RunOptions(speakers=None, out_dir=None, home=tmp_path))
    assert engine.beams == [5] and [w.text for w in once.transcript.segments[0].words if w.doubtful] == []
    assert engine.encoded == 1  # the chunk's language is read from the pass that decodes it
    twice = process_recording(clip, RunOptions(speakers=None, out_dir=None, home=tmp_path, second_decode=True))
    assert engine.beams == [5, 5, 1]
    assert engine.encoded == 2  # the second decode reads the first's encoder pass: no pass of its own
    assert [w.text for w in twice.transcript.segments[0].words if w.doubtful] == ["wages"]
    # Part of the settings, so a run asking for it transcribes again; only then: older settings stay as they were.
    assert twice.stages["transcribe"].settings["second_decode"] is True
    assert "second_decode" not in once.stages["transcribe"].settings


def test_a_checkpoint_keeps_a_chunks_second_decode_and_its_marks(tmp_path):
    # A run with the second decode killed part-way resumes with both decodes of the chunks it finished.
    from pipeline.process import Checkpoint
    from pipeline.stages.audio import probe
    from pipeline.stages.transcribe import ChunkResult

    clip = tmp_path / "tone.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", str(clip)], check=True)
    checkpoint = Checkpoint(probe(clip), "key", tmp_path)
    looped = replace(segment([("the", 0.95), ("wages", 0.35)], "en"), marks=(DecodeMark.LOOP,))
    both = ChunkResult([looped], {"repetition": 1}, second=[segment([("the", 0.9), ("fees", 0.6)], "en")])
    checkpoint.add(0, both)
    checkpoint.add(1, ChunkResult([looped], {}))
    assert checkpoint.load() == {0: both, 1: ChunkResult([looped], {})}


def test_ohp_run_second_decode_asks_for_it(monkeypatch, tmp_path):
    from pipeline import batch

    seen = []

    def run_batch(paths, store, options, progress):
        seen.append(options.second_decode)
        return batch.BatchReport([])

    monkeypatch.setattr(batch, "run_batch", run_batch)  # the command imports it when it runs
    for given in ([], ["--second-decode"]):
        runner.invoke(app, ["run", "a.wav", "--no-tag", "--db", f"sqlite:///{tmp_path / 'ohp.db'}", *given])
    assert seen == [False, True]


@pytest.mark.slow
def test_the_dialect_long_form_is_warned_about(tmp_path, own_ohp_home):
    # Its first 18 s (two Sichuanese clips), to spare the machine: the recogniser is as lost on them. The first
    # is heard as Tibetan at 0.78, the second as Chinese at 0.999: the recording is Chinese, and unsure. The
    # session's home keeps the checkpoint this run leaves, out of the user's.
    source = corpus_path("longform_dialect_dev.wav")
    clip = tmp_path / "dialect.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(source), "-t", "18", str(clip)], check=True)
    result = process_recording(clip, RunOptions(speakers=None, out_dir=None, home=own_ohp_home))
    warnings = result.transcript.quality_warnings
    assert any(w.startswith("language unsure (zh") for w in warnings), warnings
    assert result.stages["transcribe"].report["quality_warnings"] == warnings
    assert doubtful_share(result.transcript.segments) > 0.3


def test_doubt_prepares_jieba_for_chinese_only(monkeypatch):
    import threading

    started: list[str] = []
    monkeypatch.setattr(threading.Thread, "start", lambda thread: started.append(thread.name))
    prepare_doubt("en")
    prepare_doubt("zh")
    assert started == ["jieba-dictionary"]


def test_jiebas_dictionary_read_from_its_cache_is_the_one_jieba_reads(tmp_path):
    """ohp reads jieba's cache of its dictionary whole before unmarshalling it (jieba's own reading took 1.5 s of
    every process that marks Chinese words): the same words and counts; where the cache is missing or holds no
    dictionary, jieba's own initialize() is left to build it."""
    import marshal
    import shutil
    import tempfile

    import jieba

    from pipeline.stages.doubt import _read_jieba_cache, jieba_dictionary

    jieba_dictionary()  # the machine's cache, made by jieba if it was not there
    shutil.copy(Path(tempfile.gettempdir()) / "jieba.cache", tmp_path / "jieba.cache")

    def tokenizer() -> jieba.Tokenizer:
        made = jieba.Tokenizer()
        made.tmp_dir = str(tmp_path)
        return made

    theirs, ours = tokenizer(), tokenizer()
    theirs.initialize()
    assert _read_jieba_cache(ours) and ours.initialized
    assert (ours.FREQ, ours.total) == (theirs.FREQ, theirs.total) and len(ours.FREQ) > 300_000
    assert ours.lcut("老板拖欠工资三个月", HMM=False) == theirs.lcut("老板拖欠工资三个月", HMM=False)
    for garbage in (b"", b"not marshal", marshal.dumps(("wages", 1)), marshal.dumps(({}, 0))):
        (tmp_path / "jieba.cache").write_bytes(garbage)
        left = tokenizer()
        assert not _read_jieba_cache(left) and not left.initialized
    (tmp_path / "jieba.cache").unlink()
    assert not _read_jieba_cache(tokenizer())
