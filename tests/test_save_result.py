"""Store.save_result: a pass's whole result in one write transaction, all of it or nothing, and the export
it returns the same as the store reads back. On SQLite, and on PostgreSQL when OHP_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import contextlib
import wave
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, inspect, text
from typer.testing import CliRunner

from pipeline import process
from pipeline.batch import run_batch, tag_recording
from pipeline.cli import app
from pipeline.formats.export import gather
from pipeline.imports import import_file
from pipeline.process import RunOptions, stored_result, tag_result
from pipeline.records import (
    AudioInfo,
    Entity,
    RecordingResult,
    Segment,
    SpeakerRecord,
    StageRun,
    ThemeSuggestion,
    Transcript,
    Word,
    settings_key,
)
from pipeline.stages import tag
from pipeline.stages.audio import AudioError, probe
from pipeline.stages.codebook import load_codebook
from pipeline.stages.transcribe import TranscribeOptions
from pipeline.store import Store, StoreError

INFO = AudioInfo(Path("/audio/zhang.wav"), "ab" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 20.0)
LINES = [
    ("S1", "你的孩子现在谁在带？"),
    ("S2", "在老家，跟爷爷奶奶住。"),
    ("S2", "工资是计件的，一个月三千块。"),
    ("S1", "好的。"),
]


def segments(offset: float = 0.0, suffix: str = "") -> list[Segment]:
    return [
        Segment(
            i * 5.0 + offset,
            i * 5.0 + 4.0 + offset,
            text + suffix,
            text + suffix,
            "zh",
            [Word(i * 5.0 + offset, i * 5.0 + 1.0 + offset, text[:2], 0.9)],
            speaker=who,
        )
        for i, (who, text) in enumerate(LINES)
    ]


def full_result(offset: float = 0.0, suffix: str = "") -> RecordingResult:
    """A recording as a pass over new audio leaves it: transcribed, speakers found, tagged."""
    return RecordingResult(
        INFO,
        Transcript("zh", 0.97, segments(offset, suffix), "faster-whisper", "base", {"silence": 1}),
        speakers=[
            SpeakerRecord("S1", role="interviewer"),
            SpeakerRecord("S2", "Zhang Changhua", "interviewee", person_id=None),
        ],
        themes={
            1: [ThemeSuggestion("left_behind_children", 0.9, ((1, 3),))],
            2: [ThemeSuggestion("wages", 0.8, ((0, 2),))],
        },
        entities={2: [Entity("MONEY", "三千块", 11, 14)]},
        tagger="1/test",
        stages={
            "transcribe": StageRun({"model": "base"}, "t1", {"segments": 4}),
            "speakers": StageRun({"count": None}, "s1", {"speakers": 2}),
            "tag": StageRun({"tagger": "1"}, "g1", {}),
        },
    )


class WriteCounter:
    """Write transactions on a store's SQLite engine: each starts with BEGIN IMMEDIATE."""

    def __init__(self, store: Store) -> None:
        self.writes = 0
        event.listen(store._engine, "before_cursor_execute", self.seen)

    def seen(self, conn, cursor, statement, *args) -> None:
        self.writes += statement.strip().upper() == "BEGIN IMMEDIATE"


def snapshot(url: str) -> dict[str, list]:
    """Every row of every table (the full-text index as its segment ids), sorted: the database's whole state."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = [t for t in inspect(conn).get_table_names() if not t.startswith("segment_index")]
            state = {t: sorted(map(repr, conn.execute(text(f'SELECT * FROM "{t}"')).all())) for t in tables}
            key = "rowid" if engine.dialect.name == "sqlite" else "segment_id"
            state["segment_index"] = sorted(conn.execute(text(f"SELECT {key} FROM segment_index")).scalars())
            return state
    finally:
        engine.dispose()


def quiet_wav(path: Path) -> Path:
    """A second of quiet: a real file to probe."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000)
    return path


def test_a_whole_result_is_one_write_transaction(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        counter = WriteCounter(store)
        saved = store.save_result(full_result())
        assert counter.writes == 1
        rid = saved.export.recording.id
        assert saved.tag_counts == {"added": 2, "updated": 0, "withdrawn": 0, "kept": 0}
        assert [s.stage for s in store.stages(rid)] == ["speakers", "tag", "transcribe"]
        assert store.stage(rid, "tag").report == saved.tag_counts

        vtt = tmp_path / "li.vtt"
        vtt.write_text(
            "WEBVTT\n\n00:00.500 --> 00:02.000\n<v 采访者>您好。\n\n00:02.000 --> 00:04.000\n<v 李梅>工资是计件的。\n",
            encoding="utf-8",
        )
        counter.writes = 0
        imported = import_file(vtt, store, codebook=load_codebook())
        assert counter.writes == 1  # transcript, speakers, description, themes: one transaction
        assert [s.label for s in store.speakers(imported)] == ["采访者", "李梅"]
        assert store.stage(imported, "tag").status == "done" and store.annotations(imported)

        counter.writes = 0
        assert tag_recording(store, imported, load_codebook(), force=True) == {
            "added": 0,
            "updated": 0,
            "withdrawn": 0,
            "kept": 0,
        }
        assert counter.writes == 1


def test_the_saved_export_is_what_the_store_reads_back(store):
    saved = store.save_result(full_result())
    assert saved.export == gather(store, store.recording(saved.export.recording.id))
    assert [s.name for s in saved.export.speakers] == [None, "Zhang Changhua"]
    assert [a.theme for annotations in saved.export.annotations.values() for a in annotations] == [
        "left_behind_children",
        "wages",
    ]

    # Again, a pass that only tags (the stored segments and their ids kept).
    rid = saved.export.recording.id
    result = stored_result(store.recording(rid), store.transcript(rid))
    tag_result(result, load_codebook())
    again = store.save_result(result)
    assert [s.id for s in again.export.segments] == [s.id for s in saved.export.segments]
    assert again.export == gather(store, store.recording(rid))


def test_a_crash_inside_save_result_leaves_the_database_exactly_as_it_was(store, db_url, monkeypatch):
    saved = store.save_result(full_result())
    rid = saved.export.recording.id
    first, second = store.segments(rid)[:2]
    store.correct_text(first.id, "你的孩子现在谁带着？", "mei", 1)
    store.decide(store.annotations(rid)[0].id, "accepted", "mei")
    store.rename_speaker(rid, "S1", "Wang Fang", "mei")
    store.add_annotation(second.id, "housing", "jun", ((0, 2),))
    before = snapshot(db_url)

    import pipeline.store as store_module

    def crash(*args, **kwargs):
        raise RuntimeError("killed while saving")

    # The last thing save_result does: by then the segments are replaced and everything carried over.
    monkeypatch.setattr(store_module, "_saved_export", crash)
    with pytest.raises(RuntimeError, match="killed while saving"):
        store.save_result(full_result(offset=0.2, suffix="!"))
    assert snapshot(db_url) == before

    monkeypatch.undo()
    after = store.save_result(full_result(offset=0.2, suffix="!")).export
    texts = [s.text for s in after.segments]
    assert texts[0] == "你的孩子现在谁带着？" and texts[1].endswith("!")  # the correction carried, the rest new
    assert {a.theme: a.status for a in store.annotations(rid)} == {
        "left_behind_children": "accepted",
        "wages": "suggested",
        "housing": "accepted",
    }
    assert [s.name for s in store.speakers(rid)] == ["Wang Fang", "Zhang Changhua"]


def test_a_correction_made_while_a_pass_ran_keeps_the_suggestions_on_their_words(store):
    rid = store.save_result(full_result()).export.recording.id
    result = stored_result(store.recording(rid), store.transcript(rid))
    result.themes, result.tagger = {1: [ThemeSuggestion("left_behind_children", 0.9, ((1, 3),))]}, "1/test"
    result.stages["tag"] = StageRun({"tagger": "1"}, "g2", {})
    segment = result.transcript.segments[1]
    store.correct_text(segment.id, "孩子在老家，跟爷爷奶奶住。", "mei", 1)  # while the tagger read the old text
    saved = store.save_result(result).export
    [annotation] = saved.annotations[segment.id]
    corrected = next(s for s in saved.segments if s.id == segment.id)
    assert corrected.text == "孩子在老家，跟爷爷奶奶住。" and [corrected.text[a:b] for a, b in annotation.evidence] == [
        "老家"
    ]


# --- the batch around it ------------------------------------------------------------------------------


def test_a_database_error_on_a_file_is_said_without_a_traceback(tmp_path, store, monkeypatch, caplog):
    """The database locked by another writer past the busy timeout, or gone, while a batch runs: ohp's own
    error, which says what; the file fails with it, and no traceback fills the terminal as if ohp had a bug."""
    audio = tmp_path / "zhang.wav"
    quiet_wav(audio)
    locked = StoreError(f"database error on {store.url}: database is locked")

    def busy(*args, **kwargs):
        raise locked

    monkeypatch.setattr(Store, "recording_by_sha256", busy)
    [failed] = run_batch([audio], store, RunOptions(speakers=None, out_dir=None)).files
    assert (failed.status, failed.stage) == ("failed", "store")
    assert failed.error == f"{audio}: store: {locked}"
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"]


def test_a_failed_stage_is_named_with_its_traceback_in_the_log(tmp_path, store, monkeypatch, caplog):
    """A recording whose transcript is stored, tagged again after a codebook change: the tagger fails."""
    audio = tmp_path / "zhang.wav"
    quiet_wav(audio)
    options = RunOptions(speakers=None, out_dir=None, codebook=load_codebook())
    done = StageRun(options.settings(), settings_key(options.settings()), {"segments": 4})
    rid = store.save_result(
        RecordingResult(
            probe(audio), Transcript("zh", 0.9, segments(), "faster-whisper", "base"), stages={"transcribe": done}
        )
    ).export.recording.id

    def broken(*args, **kwargs):
        raise RuntimeError("the tagger broke")

    monkeypatch.setattr(tag, "tag_segments", broken)  # the tag stage's module, imported by a run that tags
    [failed] = run_batch([audio], store, options).files
    assert (failed.status, failed.stage) == ("failed", "tag")
    assert failed.error == f"{audio}: tag: RuntimeError: the tagger broke (the traceback is in the log)"
    [logged] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert logged.name == "pipeline.batch" and logged.exc_info and "the tagger broke" in str(logged.exc_info[1])
    assert store.stage(rid, "tag").status == "failed" and store.stage(rid, "transcribe").status == "done"
    assert len(store.segments(rid)) == 4  # what was stored stays


@pytest.mark.parametrize(
    "failure",
    [
        AudioError("zhang.wav", "not an audio file ffmpeg can read"),  # the file is bad now
        RuntimeError("the recogniser broke"),
        KeyboardInterrupt(),  # Ctrl-C in the middle of the pass
    ],
    ids=["bad audio", "exception", "ctrl-c"],
)
def test_a_failed_run_keeps_the_last_result_and_its_settings(tmp_path, store, db_url, monkeypatch, failure):
    """A run with new settings that fails leaves the recording's last successful transcript and its settings
    as they were: the same run with the old settings skips it, one with the new settings tries again; the
    failure is recorded and shown."""
    audio = quiet_wav(tmp_path / "zhang.wav")
    old = RunOptions(speakers=None, out_dir=None)
    new = RunOptions(transcribe=TranscribeOptions(language="en"), speakers=None, out_dir=None)
    done = StageRun(old.settings(), settings_key(old.settings()), {"segments": 4})
    rid = store.save_result(
        RecordingResult(
            probe(audio), Transcript("zh", 0.9, segments(), "faster-whisper", "base"), stages={"transcribe": done}
        )
    ).export.recording.id

    decoded = []

    def broken(info, *args, **kwargs):
        decoded.append(info.path)
        raise failure

    monkeypatch.setattr(process, "decode", broken)
    if isinstance(failure, KeyboardInterrupt):  # the batch stops; nothing of the file is recorded
        with pytest.raises(KeyboardInterrupt):
            run_batch([audio], store, new)
    else:
        [failed] = run_batch([audio], store, new).files
        assert (failed.status, failed.stage) == ("failed", "decode")
        assert store.stage(rid, "transcribe").error == failed.error  # recorded, and shown
        shown = CliRunner().invoke(app, ["status", "--db", db_url], env={"COLUMNS": "1000"})
        assert f"transcribe: done; its last run failed: {failed.error}" in shown.stdout
    kept = store.stage(rid, "transcribe")
    assert (kept.status, kept.settings_key, kept.report) == ("done", done.settings_key, done.report)
    assert len(store.segments(rid)) == 4 and len(decoded) == 1

    [skipped] = run_batch([audio], store, old).files
    assert (skipped.status, skipped.segments, len(decoded)) == ("skipped", 4, 1)
    with contextlib.suppress(KeyboardInterrupt):
        run_batch([audio], store, new)
    assert len(decoded) == 2  # the new settings are tried again
