"""What the store keeps of people's work through re-transcription and migrations, alike on SQLite and
PostgreSQL: ids that name what is gone stay gone, and upgrading a database changes none of its rows."""

from __future__ import annotations

from dataclasses import replace

import pytest
from alembic import command
from saving import save_tags, save_transcription
from sqlalchemy import create_engine, inspect, text

from pipeline.errors import InvalidInputError, NotFoundError
from pipeline.records import SearchFilters, ThemeSuggestion
from pipeline.search.textindex import parse_query
from pipeline.store import Store, alembic_config

from conftest import SQLITE_ONLY
from test_store import KEY, SETTINGS, audio, transcript


def later(tag: str, shift: float = 100.0):
    """A new transcript of the same recording: other segments, later in the audio."""
    made = transcript(tag=tag)
    return replace(made, segments=[replace(s, start=s.start + shift, end=s.end + shift) for s in made.segments])


def rows(db_url: str) -> dict[str, list[dict]]:
    """Every row of every table and of the full-text index (but Alembic's and SQLite's own), in key order, each
    by column name."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            own = ("alembic_version", "sqlite_sequence")
            tables = [t for t in inspect(conn).get_table_names() if not t.startswith("segment_index") and t not in own]
            found = {
                t: [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2"))] for t in tables
            }
            index = "rowid, terms" if conn.dialect.name == "sqlite" else "segment_id, vector::text"
            indexed = conn.execute(text(f"SELECT {index} FROM segment_index ORDER BY 1"))
            found["segment_index"] = [dict(r._mapping) for r in indexed]
            return found
    finally:
        engine.dispose()


def columns_of(before: dict[str, list[dict]], after: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """`after`'s rows with only the tables and columns `before`'s have: those later revisions added
    (segments.corrected, 0014; voice_origins, 0015) are tested with their revision."""
    return {
        table: [{column: row[column] for column in before[table][0]} if before[table] else row for row in found]
        for table, found in after.items()
        if table in before
    }


def test_ids_of_replaced_segments_and_annotations_are_never_given_again(store):
    """SQLite gave the largest id + 1: a re-transcription's segments and the tagger's new suggestions took the ids
    of those just deleted, and a correction or decision meant for what was gone changed its new namesake."""
    rid = save_transcription(store, audio(), transcript(tag="a"), SETTINGS, KEY, {})
    first = store.segments(rid)
    save_tags(store, rid, {first[0].id: [ThemeSuggestion("war", 0.9, ())]}, {}, "t", {}, "k1")
    (suggested,) = store.annotations(rid)
    save_transcription(store, audio(), later("b"), SETTINGS, KEY, {})  # a web page still shows the first ones
    second = store.segments(rid)
    save_tags(store, rid, {second[0].id: [ThemeSuggestion("family", 0.9, ())]}, {}, "t", {}, "k2")
    assert not {s.id for s in first} & {s.id for s in second}
    assert suggested.id not in {a.id for a in store.annotations(rid)}
    with pytest.raises(NotFoundError):
        store.correct_text(first[0].id, "meant for the first transcript", "ann", first[0].version)
    with pytest.raises(NotFoundError):
        store.decide(suggested.id, "accepted", "ann", version=suggested.version)
    assert [s.text for s in store.segments(rid)] == [s.text for s in second]
    assert [(a.theme, a.status) for a in store.annotations(rid)] == [("family", "suggested")]


def test_upgrading_from_0012_keeps_every_row_and_ids_are_not_given_again(db_url):
    with Store(db_url) as store:
        rid = save_transcription(store, audio(), transcript(tag="a"), SETTINGS, KEY, {})
        segs = store.segments(rid)
        store.correct_text(segs[1].id, "a corrected", "ann", segs[1].version)
        store.add_annotation(segs[2].id, "family", "ann", ((0, 1),))
        save_tags(store, rid, {segs[0].id: [ThemeSuggestion("war", 0.5, ((0, 1),))]}, {}, "t", {}, "k1")
        (war,) = store.annotations(rid, segment_id=segs[0].id)
        store.decide(war.id, "rejected", "bob", version=war.version)
        store.rename_speaker(rid, "A", "Mrs Li", "ann")
        hits = store.search(parse_query("corrected"), SearchFilters()).total
    command.downgrade(alembic_config(db_url), "0012")
    engine = create_engine(db_url)
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            made = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'segments'")).scalar_one()
            assert "AUTOINCREMENT" not in made
    engine.dispose()
    before = rows(db_url)
    with Store(db_url) as store:  # upgrades to the newest revision
        after = columns_of(before, rows(db_url))
        assert after == before
        assert store.search(parse_query("corrected"), SearchFilters()).total == hits == 1
        old_ids = {s.id for s in store.segments(rid)}
        save_transcription(store, audio(), later("b", shift=0.01), SETTINGS, KEY, {})
        assert not old_ids & {s.id for s in store.segments(rid)}
        assert "a corrected" in [s.text for s in store.segments(rid)]


def test_upgrading_from_0009_keeps_each_coders_decision_the_history_holds(db_url):
    """Revision 0010 filled the coders' own decisions from the annotations as they stood: rita's acceptance of a
    theme bob rejected after her was lost to the agreement between coders, though the history kept it."""
    with Store(db_url) as store:
        rid = save_transcription(store, audio(), transcript(tag="a"), SETTINGS, KEY, {})
        seg = store.segments(rid)[0]
        save_tags(store, rid, {seg.id: [ThemeSuggestion("war", 0.5, ())]}, {}, "t", {}, "k1")
        (war,) = store.annotations(rid)
        store.decide(war.id, "accepted", "rita")
        store.decide(war.id, "rejected", "bob")
        decided = [(d.coder, d.present) for d in store.decisions(rid)]
    assert decided == [("bob", False), ("rita", True)]
    command.downgrade(alembic_config(db_url), "0009")
    with Store(db_url) as store:  # upgrades to the newest revision
        assert [(d.coder, d.present) for d in store.decisions(rid)] == decided


@SQLITE_ONLY  # names compared exactly on both databases; the migration is one for both
def test_two_accounts_that_differed_by_case_before_0008_are_each_reached_by_their_name(db_url):
    """Before revision 0008 a name was compared as written: Ann and ann could be two accounts. 0008 gave the later
    a key of its own (ann#2) and every look-up went by key: ann could not sign in, and `ohp user remove ann`
    removed Ann."""
    with Store(db_url) as store:
        store.add_user("Ann", "Ann's password", "researcher")
        store.add_user("bob", "bob's password", "annotator")
    command.downgrade(alembic_config(db_url), "0007")
    engine = create_engine(db_url)
    with engine.begin() as conn:  # as ohp of that time let it be made
        conn.execute(text("UPDATE users SET name = 'ann' WHERE name = 'bob'"))
    engine.dispose()
    with Store(db_url) as store:
        assert store.check_password("ann", "bob's password").name == "ann"
        assert store.check_password("Ann", "Ann's password").name == "Ann"
        assert store.remove_user("ann").name == "ann"
        assert [u.name for u in store.list_users()] == ["Ann"]


@pytest.mark.parametrize("merged", [False, True], ids=["no segments left", "segments merged"])
def test_a_decided_theme_with_nowhere_to_go_is_dropped_in_the_history(store, merged):
    """A re-transcription with no segment left for a person's theme, or one segment where two old ones each had
    it (the first kept), lost it without a word in the history; a dropped correction is noted there."""
    rid = save_transcription(store, audio(), transcript(tag="a"), SETTINGS, KEY, {})
    first, second, _ = store.segments(rid)
    save_tags(store, rid, {first.id: [ThemeSuggestion("war", 0.9, ())]}, {}, "t", {}, "k1")
    (war,) = store.annotations(rid)
    store.decide(war.id, "rejected", "bob", version=war.version)
    (added,) = store.add_annotations([(second.id, "war", "jun", ())])
    made = transcript(1, tag="b")
    whole = replace(made.segments[0], start=first.start, end=second.end)
    save_transcription(store, audio(), replace(made, segments=[whole] if merged else []), SETTINGS, KEY, {})
    kept = [(a.theme, a.status, a.source) for a in store.annotations(rid)]
    assert kept == ([("war", "rejected", "auto")] if merged else [])
    dropped = [h for h in store.history(recording_id=rid) if h.action == "dropped"]
    assert [(h.annotation_id, h.before["status"], h.before["source"]) for h in dropped] == (
        [(added.id, "accepted", "jun")] if merged else [(war.id, "rejected", "auto"), (added.id, "accepted", "jun")]
    )
    assert all(h.changed_by == "ohp" and h.after is None for h in dropped)


@pytest.mark.parametrize("number", [float("nan"), float("inf")], ids=["nan", "infinity"])
def test_a_number_json_has_not_is_refused_on_every_database(store, number):
    """SQLite kept NaN and infinity in a JSON column (as no JSON reader outside Python reads it), PostgreSQL's json
    refused them: a report or metadata saved on one was an error on the other."""
    rid = save_transcription(store, audio(), transcript(), SETTINGS, KEY, {"run": 1})
    with pytest.raises(InvalidInputError):
        save_transcription(store, audio(), transcript(tag="b"), SETTINGS, KEY, {"run": 2, "rate": number})
    with pytest.raises(InvalidInputError):
        store.set_metadata(rid, rate=number)
    assert store.stage(rid, "transcribe").report == {"run": 1}
    assert [s.text for s in store.segments(rid)] == [s.text for s in transcript().segments]
    assert store.recording(rid).metadata == {}


def test_a_number_that_is_not_finite_is_refused_in_every_float_column(store):
    """SQLite stores NaN as NULL: a segment's avg_logprob came back None where PostgreSQL gave NaN back, and a NaN
    start or word probability failed as a database error (NOT NULL) where PostgreSQL kept it. Infinity was kept by
    both, and written by the JSON export as no JSON reader outside Python reads it. Both refuse them, nothing saved."""
    made = transcript(tag="a")
    nan, first = float("nan"), made.segments[1]
    for broken in (
        replace(first, start=nan),
        replace(first, avg_logprob=nan),
        replace(first, end=float("inf")),
        replace(first, words=[replace(first.words[0], probability=nan), *first.words[1:]]),
    ):
        with pytest.raises(InvalidInputError, match="finite"):
            save_transcription(store, audio(), replace(made, segments=[broken]), SETTINGS, KEY, {})
    with pytest.raises(InvalidInputError, match="finite"):
        save_transcription(store, replace(audio(), duration=nan), made, SETTINGS, KEY, {})
    assert store.list_recordings() == []


def test_a_string_that_is_not_text_is_refused_on_every_database(store):
    """A NUL in a correction, a metadata field or a name (the web API's JSON carries one as \\u0000) was kept by
    SQLite and refused by PostgreSQL; half of a UTF-16 pair (\\ud800) crashed both with UnicodeEncodeError. Both
    refuse them with InvalidInputError, nothing changed."""
    rid = save_transcription(store, audio(), transcript(tag="a"), SETTINGS, KEY, {})
    seg = store.segments(rid)[1]
    for change in (
        lambda: store.correct_text(seg.id, "a\x00b", "ann", seg.version),
        lambda: store.set_metadata(rid, interviewee="Li \ud800"),
        lambda: store.rename_speaker(rid, "A", "Li\x00", "ann"),
    ):
        with pytest.raises(InvalidInputError, match="not text"):
            change()
    assert [s.text for s in store.segments(rid)] == [s.text for s in transcript(tag="a").segments]
    assert store.recording(rid).interviewee is None and [s.name for s in store.speakers(rid)] == [None]


def test_a_string_longer_than_its_column_is_refused_on_every_database(store):
    """A speaker label of 300 characters (an import allows 1,000) was kept by SQLite and refused by PostgreSQL:
    an import worked on one database and failed on the other. Both refuse it, with nothing saved, through the
    raw insert of segments and through the ORM alike."""
    made = transcript(tag="a")
    long_label = replace(
        made, segments=[made.segments[0], replace(made.segments[1], speaker="李" * 300), *made.segments[2:]]
    )
    with pytest.raises(InvalidInputError, match="300 characters: at most 255"):
        save_transcription(store, audio(), long_label, SETTINGS, KEY, {})
    assert store.list_recordings() == []
    rid = save_transcription(store, audio(), made, SETTINGS, KEY, {})
    with pytest.raises(InvalidInputError, match="at most 255"):
        store.rename_speaker(rid, "A", "李秀英", "u" * 256)  # by a user of a name longer than users have
    assert [s.name for s in store.speakers(rid)] == [None]


@SQLITE_ONLY  # the recordings are matched in Python: the database plays no part
def test_a_reference_of_digits_that_no_id_has_is_a_name_or_not_found(store):
    """A reference of digits is an id. "①" and "²" are digits to str.isdigit and no number to int(), and int()
    refuses 4,300 digits or more: `ohp history ①` crashed instead of finding ①.wav by its stem. Digits of
    another script (full-width, as a Chinese input method types them) still name an id."""
    circled = store.start_stage(audio("①.wav", "ab" * 32), "transcribe", {}, "k")
    other = store.start_stage(audio("b.wav", "cd" * 32), "transcribe", {}, "k")
    assert [r.id for r in store.find_recordings(["①", chr(0xFF10 + other), f"00{other}"])] == [circled, other]
    for ref in ("²", "9" * 5000, str(2**80)):
        with pytest.raises(NotFoundError, match="matches no recording"):
            store.find_recordings([ref])
