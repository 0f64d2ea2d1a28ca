"""The store: schema migrations, transcripts round trip, the one-transaction guarantee, lookups.

Runs on a temporary SQLite file; also on PostgreSQL (a fresh schema per test) when
OHP_TEST_POSTGRES_URL is set, e.g. postgresql+psycopg://user:pw@localhost/ohp_test.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from saving import save_transcription
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.pool import Pool

from pipeline.records import AudioInfo, Segment, Transcript, Word, settings_key
from pipeline.store import (
    Base,
    Store,
    StoreError,
    alembic_config,
    database,
    headscript,
    in_models,
    recordings,
    transcripts,
)

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"engine": "faster-whisper", "model": "base", "beam_size": 5}
KEY = settings_key(SETTINGS)


def audio(name: str = "a.wav", sha: str = "ab" * 32, folder: str = "/audio", duration: float = 61.5) -> AudioInfo:
    return AudioInfo(
        path=Path(folder) / name,
        sha256=sha,
        size_bytes=1_234_567,
        format="wav",
        codec="pcm_s16le",
        sample_rate=44_100,
        channels=2,
        duration=duration,
    )


def transcript(segments: int = 3, words: int = 4, tag: str = "t", language: str = "zh") -> Transcript:
    segs = []
    for i in range(segments):
        start = i * 2.5 + 1 / 3  # floats that are not exact in binary: must come back bit for bit
        ws = [Word(start + j * 0.1, start + j * 0.1 + 0.07, f"{tag}w{i}.{j}", 0.9 - j / 97) for j in range(words)]
        segs.append(
            Segment(
                start=start,
                end=start + 2.2,
                text=f"{tag} 段{i}",
                original_text=f"{tag} 段{i} orig",
                language=language,
                words=ws,
                avg_logprob=-0.123456789 * (i + 1),
                no_speech_prob=None if i % 2 else 0.0123,
                compression_ratio=1.5 + i / 7,
                speaker="A" if i % 2 else None,
            )
        )
    return Transcript(
        language=language, language_probability=0.97, segments=segs, engine="faster-whisper", model="base"
    )


def count(db_url: str, table: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------ schema


def test_migrates_to_head_and_schema_matches_models(db_url):
    Store(db_url).close()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": in_models})
            assert context.get_current_revision() == head
            assert compare_metadata(context, Base.metadata) == []
            tables = set(inspect(conn).get_table_names())
            assert {t for t in tables if not t.startswith("segment_index_")} == {
                "alembic_version",
                "recordings",
                "segments",
                "words",
                "stages",
                "annotations",
                "decisions",
                "entities",
                "history",
                "users",
                "people",
                "voice_origins",
                "speakers",
                "segment_index",
                "ignored_terms",
            }
    finally:
        engine.dispose()


def test_reopening_an_up_to_date_database_does_not_upgrade(db_url, monkeypatch):
    with Store(db_url) as first:
        first.start_stage(audio(), "transcribe", SETTINGS, KEY)

    def no_upgrade(*args, **kwargs):
        raise AssertionError("upgrade ran on a database already at head")

    import alembic.command

    monkeypatch.setattr(alembic.command, "upgrade", no_upgrade)
    with Store(db_url) as again:
        assert [r.path for r in again.list_recordings()] == ["/audio/a.wav"]


def test_the_head_revision_from_the_file_names_is_alembics():
    assert database.head_revision() == database._revisions()[0]


def _unordered(sql: str) -> str:
    """A CREATE TABLE statement with its columns and constraints in a fixed order: the migrations' table rebuilds
    write constraints in the order of a set, which changes from process to process."""
    head, paren, body = sql.partition("(")
    if not sql.startswith("CREATE TABLE") or not paren:
        return sql
    inner, _, tail = body.rpartition(")")
    return head + "(" + ", ".join(sorted(item.strip() for item in inner.split(", \n"))) + ")" + tail


def _schema_and_rows(path: Path) -> tuple[list, dict]:
    with closing(sqlite3.connect(path)) as conn:
        objects = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
        schema = sorted((kind, name, table, sql and _unordered(sql)) for kind, name, table, sql in objects)
        tables = [name for kind, name, _, _ in schema if kind == "table"]
        return schema, {t: sorted(conn.execute(f'SELECT * FROM "{t}"')) for t in tables}


def test_a_new_sqlite_database_made_by_the_head_script_is_the_migrated_one(tmp_path, monkeypatch):
    Store(f"sqlite:///{tmp_path / 'made.db'}").close()
    monkeypatch.setattr(headscript, "head_script", lambda: None)  # as for a script at another revision: migrated
    Store(f"sqlite:///{tmp_path / 'migrated.db'}").close()
    made, migrated = _schema_and_rows(tmp_path / "made.db"), _schema_and_rows(tmp_path / "migrated.db")
    assert made == migrated
    assert any(name == "segment_index" for _, name, _, _ in made[0]) and made[1]["alembic_version"]


def test_the_recorded_head_script_is_what_the_migrations_make_now():
    recorded, now = json.loads(headscript.HEAD_SCRIPT.read_text(encoding="utf-8")), headscript.migrated_script()
    assert recorded["revision"] == now["revision"], "a migration was added: python -m pipeline.store.headscript"
    assert list(map(_unordered, recorded["statements"])) == list(map(_unordered, now["statements"])), (
        "a migration changed the schema: python -m pipeline.store.headscript"
    )


def test_a_head_script_of_another_revision_is_not_used(tmp_path, monkeypatch):
    stale = tmp_path / "head_sqlite.json"
    stale.write_text(json.dumps({"revision": "0001", "statements": ["CREATE TABLE wrong (x)"]}), encoding="utf-8")
    monkeypatch.setattr(headscript, "HEAD_SCRIPT", stale)
    headscript.head_script.cache_clear()
    try:
        assert headscript.head_script() is None
        Store(f"sqlite:///{tmp_path / 'new.db'}").close()
    finally:
        headscript.head_script.cache_clear()
    _, rows = _schema_and_rows(tmp_path / "new.db")
    assert "wrong" not in rows and rows["alembic_version"] == [(database.head_revision(),)]


def test_an_sqlite_file_of_another_program_is_refused_and_left_as_it_was(tmp_path):
    """A file that holds tables but no ohp schema revision is another program's database (a wrong --db): ohp's
    tables were written into it beside the program's own. It is refused, and nothing in it changes."""
    path = tmp_path / "places.sqlite"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
        conn.execute("INSERT INTO moz_places (url) VALUES ('https://example.org')")
    before = _schema_and_rows(path)
    with pytest.raises(StoreError, match=r"places\.sqlite holds tables but no ohp schema revision"):
        Store(f"sqlite:///{path}")
    assert _schema_and_rows(path) == before


def test_a_new_database_whose_making_fails_half_way_is_left_empty(tmp_path, monkeypatch):
    """The head script runs in one transaction: a statement failing half way (a full disk, a killed process) leaves
    no table behind, so the next open makes the database whole instead of finding it half made."""
    statements = headscript.head_script()
    assert statements
    half = len(statements) // 2
    monkeypatch.setattr(headscript, "head_script", lambda: [*statements[:half], "CREATE TABLE broken (", *statements])
    path = tmp_path / "new.db"
    with pytest.raises(StoreError):
        Store(f"sqlite:///{path}")
    assert _schema_and_rows(path) == ([], {})
    monkeypatch.undo()
    Store(f"sqlite:///{path}").close()
    assert _schema_and_rows(path)[1]["alembic_version"] == [(database.head_revision(),)]


def test_a_database_from_a_newer_version_is_refused(db_url):
    Store(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"schema revision '9999'.*newer ohp"):
        Store(db_url)


def test_a_store_open_while_a_newer_ohp_migrates_the_database_stops_using_it(db_url):
    """A web app left running while a newer ohp migrated its database (`ohp run` of the new version) went on
    reading and writing it as the schema it opened: on SQLite a closed recording's segments went to the index
    every viewer's ranking counts (revision 0018 split them out), and it searched none of the closed ones."""
    with Store(db_url) as running:
        rid = running.start_stage(audio(), "transcribe", SETTINGS, KEY)
        engine = create_engine(db_url)
        with engine.begin() as conn:  # what a newer ohp's migration leaves
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        engine.dispose()
        refused = r"schema revision '9999' since this process opened it at '\d+': a newer ohp"
        with pytest.raises(StoreError, match=refused):
            running.set_metadata(rid, place="Dongguan")
        with pytest.raises(StoreError, match="newer ohp"):
            running.list_recordings()
    assert count(db_url, "recordings WHERE place IS NULL") == 1


def test_sqlite_connections_get_the_pragmas(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'p.db'}") as s, s._engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert (pragma("foreign_keys"), pragma("journal_mode"), pragma("synchronous"), pragma("busy_timeout")) == (
            1,
            "wal",
            1,
            30000,
        )


def test_sqlite_file_in_a_missing_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match=r"no/such/dir/x\.db.*folder .*no/such/dir does not exist"):
        Store("sqlite:///no/such/dir/x.db")


def test_errors_mask_the_password():
    # Port 1: nothing listens; without psycopg installed the driver import fails instead. Either way, no password.
    with pytest.raises(StoreError) as caught:
        Store("postgresql+psycopg://ohp:s3cret@127.0.0.1:1/ohp")
    assert "s3cret" not in str(caught.value) and "ohp:***@127.0.0.1:1/ohp" in str(caught.value)


def test_errors_mask_a_password_given_in_the_query():
    # libpq (so psycopg) also takes the password, and a client key's, as query parameters.
    with pytest.raises(StoreError) as caught:
        Store("postgresql+psycopg://ohp@127.0.0.1:1/ohp?password=s3cret&sslpassword=k3y&sslmode=disable")
    assert "s3cret" not in str(caught.value) and "k3y" not in str(caught.value)
    assert "ohp@127.0.0.1:1/ohp?password=***&sslmode=disable&sslpassword=***" in str(caught.value)


def test_a_url_whose_port_is_not_a_number_is_refused_without_its_password():
    # The host left out: SQLAlchemy reads the password as the port, and its ValueError quoted it.
    for url in ("postgresql+psycopg://ohp:s3cret/ohp", "postgresql+psycopg://ohp:pw@localhost:s3cret/ohp"):
        with pytest.raises(StoreError, match=r"not a database URL: its port is not a number") as caught:
            Store(url)
        assert "s3cret" not in str(caught.value)


def test_settings_key_is_canonical():
    assert settings_key({"a": 1, "b": [1, 2]}) == settings_key({"b": [1, 2], "a": 1})
    assert settings_key({"a": 1}) != settings_key({"a": 2})
    assert len(KEY) == 16 and int(KEY, 16) >= 0


# -------------------------------------------------------------------------------- transcripts


def test_save_and_read_back_a_transcript(store):
    saved = transcript()
    saved.segments.reverse()  # stored in list order, read back by start
    rid = save_transcription(store, audio(), saved, SETTINGS, KEY, {"segments": 3, "guards": {"silence": 1}})
    back = store.segments(rid)
    assert without_ids(back) == sorted(saved.segments, key=lambda seg: seg.start)
    assert back[0].words[1].start == 1 / 3 + 0.1 and back[1].avg_logprob == -0.123456789 * 2

    rec = store.recording_by_sha256("ab" * 32)
    assert (rec.id, rec.path, rec.language, rec.duration, rec.size_bytes, rec.format) == (
        rid,
        "/audio/a.wav",
        "zh",
        61.5,
        1_234_567,
        "wav",
    )
    stage = store.stage(rid, "transcribe")
    assert (stage.status, stage.settings, stage.settings_key, stage.report, stage.error) == (
        "done",
        SETTINGS,
        KEY,
        {"segments": 3, "guards": {"silence": 1}},
        None,
    )
    started, finished = datetime.fromisoformat(stage.started_at), datetime.fromisoformat(stage.finished_at)
    assert started.utcoffset().total_seconds() == 0 and started <= finished
    assert store.stages(rid) == [stage]


def test_saving_again_replaces_the_transcript(store, db_url):
    rid = save_transcription(store, audio(), transcript(5, 3, "old"), SETTINGS, KEY, {})
    other = save_transcription(store, audio("b.wav", "cd" * 32), transcript(2, 2, "b"), SETTINGS, KEY, {})
    again = save_transcription(store, audio(), transcript(4, 2, "new", "en"), {"model": "small"}, "k2", {"n": 4})
    assert again == rid
    assert [seg.text for seg in store.segments(rid)] == [f"new 段{i}" for i in range(4)]
    assert len(store.segments(other)) == 2
    assert count(db_url, "segments") == 4 + 2 and count(db_url, "words") == 4 * 2 + 2 * 2
    assert store.recording_by_sha256("ab" * 32).language == "en"
    assert store.stage(rid, "transcribe").settings_key == "k2"


def test_empty_transcript(store):
    rid = save_transcription(store, audio(), transcript(0), SETTINGS, KEY, {})
    assert store.segments(rid) == [] and store.stage(rid, "transcribe").status == "done"


def test_a_moved_file_keeps_its_recording(store):
    rid = save_transcription(store, audio(folder="/old"), transcript(), SETTINGS, KEY, {})
    store.set_metadata(rid, interviewee="Ms Li")
    moved = store.start_stage(audio("renamed.wav", folder="/new", duration=99.0), "tag", {}, "t")
    assert moved == rid
    (rec,) = store.list_recordings()
    assert (rec.path, rec.duration, rec.interviewee, rec.language) == ("/new/renamed.wav", 61.5, "Ms Li", "zh")
    assert len(store.segments(rid)) == 3


def without_ids(segments: list[Segment]) -> list[Segment]:
    """Segments as saved: the store gives them their ids."""
    assert all(seg.id is not None for seg in segments)
    return [replace(seg, id=None) for seg in segments]


class Crash(Exception):
    pass


@pytest.mark.parametrize("failure", ["word with no text", "report not JSON", "crash before commit"])
def test_a_failed_save_leaves_the_database_as_it_was(store, db_url, monkeypatch, failure):
    first = transcript(3, 4, "first")
    rid = save_transcription(store, audio(), first, SETTINGS, KEY, {"run": 1})
    before = (store.list_recordings(), store.stages(rid), count(db_url, "segments"), count(db_url, "words"))

    second, report = transcript(40, 30, "second", "en"), {"run": 2}
    if failure == "word with no text":
        second.segments[25].words[10].text = None  # NOT NULL: the words insert fails part-way
        expected = StoreError
    elif failure == "report not JSON":
        report = {"run": object()}
        expected = TypeError
    else:

        def crash(*args, **kwargs):
            raise Crash("killed")

        monkeypatch.setattr(recordings, "set_stage", crash)
        expected = Crash
    with pytest.raises(expected):
        save_transcription(store, audio("moved.wav", duration=70.0), second, {"other": True}, "k2", report)

    assert without_ids(store.segments(rid)) == first.segments
    assert (store.list_recordings(), store.stages(rid), count(db_url, "segments"), count(db_url, "words")) == before


def test_large_transcript_round_trip(store):
    big = transcript(2000, 12)
    rid = save_transcription(store, audio(), big, SETTINGS, KEY, {})
    back = store.segments(rid)
    assert len(back) == 2000 and sum(len(seg.words) for seg in back) == 24_000
    assert without_ids(back) == big.segments


def test_deleting_a_recording_cascades(store, db_url):
    rid = save_transcription(store, audio(), transcript(), SETTINGS, KEY, {})
    engine = create_engine(db_url)
    if engine.dialect.name == "sqlite":
        from sqlalchemy import event

        event.listen(engine, "connect", lambda c, _: c.execute("PRAGMA foreign_keys=ON"))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM recordings WHERE id = :id"), {"id": rid})
    engine.dispose()
    assert [count(db_url, t) for t in ("segments", "words", "stages")] == [0, 0, 0]


# -------------------------------------------------------------------------------------- stages


def test_start_fail_and_finish_a_stage(store):
    assert store.stage(1, "transcribe") is None
    rid = store.start_stage(audio(), "transcribe", SETTINGS, KEY)
    running = store.stage(rid, "transcribe")
    assert (running.status, running.settings, running.settings_key, running.finished_at) == (
        "running",
        SETTINGS,
        KEY,
        None,
    )
    store.fail_stage(audio(), "transcribe", SETTINGS, KEY, "Traceback: boom")
    failed = store.stage(rid, "transcribe")
    assert (failed.status, failed.error, failed.started_at) == ("failed", "Traceback: boom", running.started_at)
    assert datetime.fromisoformat(failed.finished_at) >= datetime.fromisoformat(failed.started_at)

    store.start_stage(audio(), "transcribe", SETTINGS, KEY)
    save_transcription(store, audio(), transcript(), SETTINGS, KEY, {"ok": True})
    done = store.stage(rid, "transcribe")
    assert (done.status, done.error, done.report) == ("done", None, {"ok": True})
    assert datetime.fromisoformat(done.started_at) > datetime.fromisoformat(failed.started_at)

    store.fail_stage(audio(), "tag", {"x": 1}, "kt", "no model")
    assert [s.stage for s in store.stages(rid)] == ["tag", "transcribe"]
    assert len(store.segments(rid)) == 3  # a failed stage keeps what an earlier run stored


# ------------------------------------------------------------------------------------- lookups


def test_find_recordings(store):
    a = store.start_stage(audio("interview-01.wav", "ab" * 32, "/audio/2024"), "transcribe", {}, "k")
    b = store.start_stage(audio("interview-01.mp3", "abcdef" + "00" * 29, "/audio/2025"), "transcribe", {}, "k")
    c = store.start_stage(audio("walk.m4a", "1234567890" + "ff" * 27, "/audio"), "transcribe", {}, "k")

    def ids(*refs):
        return [rec.id for rec in store.find_recordings(list(refs))]

    assert ids(str(c)) == [c]
    assert ids("abab" * 16) == [a] and ids("ababab") == [a] and ids("ABCDEF00") == [b]
    assert ids("walk.m4a", "walk", "/audio/walk.m4a") == [c]  # each recording once
    assert ids("interview-01.mp3", "/audio/2024/interview-01.wav") == [b, a]
    assert [rec.path for rec in store.list_recordings()] == [
        "/audio/2024/interview-01.wav",
        "/audio/2025/interview-01.mp3",
        "/audio/walk.m4a",
    ]

    with pytest.raises(LookupError) as caught:
        store.find_recordings(["walk", "nothing-here", "interview-01", "abcd"])
    message = str(caught.value)
    assert "'nothing-here' matches no recording" in message
    assert "'interview-01' matches 2 recordings" in message and "/audio/2025/interview-01.mp3" in message
    assert "'abcd' matches no recording" in message  # under 6 hex chars is no sha256 prefix
    assert "'walk'" not in message


def test_set_metadata(store):
    rid = store.start_stage(audio(), "transcribe", {}, "k")
    rec = store.set_metadata(rid, interviewee="Chen Wei", place="Tainan", recorded_on="1998-05-02", tape="B2")
    assert (rec.interviewee, rec.place, rec.recorded_on, rec.metadata) == (
        "Chen Wei",
        "Tainan",
        "1998-05-02",
        {"tape": "B2"},
    )
    rec = store.set_metadata(rid, place="", decade="1990s", tape=None)  # "" clears, None removes a key
    assert (rec.interviewee, rec.place, rec.recorded_on, rec.metadata) == (
        "Chen Wei",
        None,
        "1998-05-02",
        {"decade": "1990s"},
    )
    assert store.recording_by_sha256("ab" * 32) == rec
    with pytest.raises(ValueError, match="ISO date"):
        store.set_metadata(rid, recorded_on="May 1998")
    with pytest.raises(LookupError, match="no recording with id 999"):
        store.set_metadata(999, place="x")


def test_who_opened_or_closed_a_recording_is_kept_in_its_history_and_names_are_not(store):
    rid = store.start_stage(audio(), "transcribe", {}, "k")
    store.set_metadata(rid, consent="closed", release_on="2999-01-01", changed_by="rita")
    store.set_metadata(rid, consent="closed", release_on="2999-01-01", changed_by="rita")  # no change: no entry
    store.set_metadata(rid, interviewee="Li Xiuying", place="Dongguan")  # a name: not kept in the history
    store.set_metadata(rid, interviewee="L.", consent="restricted", release_on="", changed_by="ann")
    changes = [(c.action, c.changed_by, c.before, c.after) for c in store.history(recording_id=rid)]
    assert changes == [
        ("consent", "rita", {"consent": "open", "release_on": None}, {"consent": "closed", "release_on": "2999-01-01"}),
        (
            "consent",
            "ann",
            {"consent": "closed", "release_on": "2999-01-01"},
            {"consent": "restricted", "release_on": None},
        ),
    ]
    assert "Li Xiuying" not in repr(store.history(recording_id=rid))
    with pytest.raises(ValueError, match="cannot be reverted"):
        store.revert(store.history(recording_id=rid)[0].id, "rita")


# ----------------------------------------------------------------------------- several writers


def test_two_stores_on_one_file_write_in_turn(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = Store(url), Store(url)
    try:
        assert first.segments(first.start_stage(audio(), "transcribe", {}, "k")) == []  # keeps a pooled connection
        rid = save_transcription(second, audio(), transcript(2), SETTINGS, KEY, {})
        save_transcription(first, audio("b.wav", "cd" * 32), transcript(3), SETTINGS, KEY, {})
        second.set_metadata(rid, place="Hsinchu")
        assert len(first.segments(rid)) == 2 and first.recording_by_sha256("ab" * 32).place == "Hsinchu"
        assert [r.path for r in second.list_recordings()] == ["/audio/a.wav", "/audio/b.wav"]
    finally:
        first.close()
        second.close()


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, "tests")
    from saving import save_transcription
    from tests.test_store import SETTINGS, KEY, audio, transcript
    from pipeline.store import Store
    url, name = sys.argv[1], sys.argv[2]
    print("ready", flush=True)
    sys.stdin.readline()  # the writers open the new file at the same moment: one migrates, the others wait
    with Store(url) as store:
        for i in range(5):
            info = audio(f"{name}{i}.wav", (name + format(i, "x")).ljust(64, "0"))
            store.start_stage(info, "transcribe", SETTINGS, KEY)
            save_transcription(store, info, transcript(20, 10, name), SETTINGS, KEY, {})
    """
)


def test_processes_write_to_one_new_file_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, name],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in "abcd"
    ]
    for writer in writers:
        writer.stdout.readline()  # imported: ready to open the store (or failed, as its stderr will say)
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.flush()
    errors = [w.communicate(timeout=120)[1] for w in writers]
    assert [w.returncode for w in writers] == [0] * len(writers), errors
    with Store(url) as s:
        recordings = s.list_recordings()
        assert len(recordings) == 20
        assert all(len(s.segments(r.id)) == 20 for r in recordings)


def test_a_new_file_another_process_is_writing_is_waited_for(tmp_path):
    """The race behind a flaky multi-writer run, made certain: a store opening a new SQLite file switches it to
    WAL, which reads the file and then writes it; another process holding the write lock meanwhile (as it does
    while switching the new file itself) makes SQLite refuse the write at once, busy timeout or not. The store
    must wait for that lock, not fail with "database is locked"."""
    path = tmp_path / "new.db"
    rival = sqlite3.connect(path, isolation_level=None)  # the other process: SQLite locks its connections alike
    rival.execute("BEGIN IMMEDIATE")
    for statement in headscript.head_script() or []:  # another ohp, making the new database
        rival.execute(statement)
    waiting = threading.Event()

    def trace(dbapi_connection, _record):
        dbapi_connection.set_trace_callback(lambda sql: sql == "BEGIN IMMEDIATE" and waiting.set())

    event.listen(Pool, "connect", trace)  # before the store's own connect hook (class listeners come first)
    try:
        with ThreadPoolExecutor(1) as pool:
            opening = pool.submit(Store, f"sqlite:///{path}")
            opening.add_done_callback(lambda _: waiting.set())  # failed at once (the bug): nothing to wait for
            assert waiting.wait(120)
            rival.execute("COMMIT")
            with opening.result() as store:
                assert store.list_recordings() == []
    finally:
        event.remove(Pool, "connect", trace)
    # the other process's write is there
    assert rival.execute("SELECT version_num FROM alembic_version").fetchall() == [(database.head_revision(),)]
    rival.close()
    with closing(sqlite3.connect(path)) as again:
        assert again.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_two_processes_saving_one_recording_at_once_store_it_once(db_url, monkeypatch):
    """Two `ohp run`s on one folder save the same recording at nearly the same moment, each from a store of its
    own: both saves read what is stored before either writes. The second must see the first's whole save, as
    one after the other would: one recording, its segments once, and no failure. (On PostgreSQL the second
    insert of the new recording failed on its unique hash: the file failed, and its failure was recorded over
    the transcript the other run had just saved.)"""
    first, second = Store(db_url), Store(db_url)
    met = threading.Barrier(2)
    replace_segments = transcripts.replace_segments

    def meeting(*args, **kwargs):
        # Both inside their transactions, having read; or one waits for the other's whole save.
        with suppress(threading.BrokenBarrierError):
            met.wait(timeout=2)
        return replace_segments(*args, **kwargs)

    monkeypatch.setattr(transcripts, "replace_segments", meeting)
    try:
        for round in ("new", "again"):
            met.reset()
            with ThreadPoolExecutor(2) as pool:
                saves = [
                    pool.submit(save_transcription, store, audio(), transcript(tag=round), SETTINGS, KEY, {})
                    for store in (first, second)
                ]
                [a, b] = [save.result() for save in saves]
            assert a == b and [r.id for r in first.list_recordings()] == [a]
            assert [s.text for s in first.segments(a)] == [s.text for s in transcript(tag=round).segments]
    finally:
        first.close()
        second.close()


def test_a_write_waiting_for_a_writer_stuck_elsewhere_gives_up_with_an_error(store, db_url, monkeypatch):
    """A writer holding the lock (a hung process, an open psql transaction) held every later write up for ever
    on PostgreSQL; SQLite's busy timeout gives up. Both now give up after LOCK_WAIT_MS."""
    monkeypatch.setattr(database, "LOCK_WAIT_MS", 300)
    with database.session(store._engine, store.url, write=True) as holding, pytest.raises(StoreError, match="lock"):
        holding.execute(text("SELECT 1"))
        with Store(db_url) as other:
            save_transcription(other, audio(), transcript(), SETTINGS, KEY, {})


def test_a_read_sees_one_snapshot_while_another_writes(store):
    """Everything a read session reads in several statements (a page, a report's tables) comes from one moment:
    a recording saved meanwhile by another connection shows in the next session, not half-way through this
    one."""
    save_transcription(store, audio("first.wav", "aa" * 32), transcript(), SETTINGS, KEY, {})
    with database.session(store._engine, store.url) as s:
        assert len(recordings.list_recordings(s)) == 1
        # another connection saves a recording and commits
        save_transcription(store, audio("second.wav", "bb" * 32), transcript(), SETTINGS, KEY, {})
        assert len(recordings.list_recordings(s)) == 1
    assert len(store.list_recordings()) == 2


def test_a_read_session_cannot_write_on_postgresql(store):
    if store.dialect != "postgresql":
        pytest.skip("SQLite has no read-only transactions; its reads take no write lock")
    with pytest.raises(StoreError, match="read-only"), database.session(store._engine, store.url) as s:
        s.execute(text("DELETE FROM recordings"))
