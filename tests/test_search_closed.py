"""Closed recordings and the search's ranking: on SQLite their segments are in an index of their own
(segment_index_closed, migration 0018), so the bm25 statistics of a viewer's search count nothing the viewer
may not see; PostgreSQL's ts_rank_cd reads the segment alone. Both databases, through the `store` fixture."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from alembic import command
from saving import save_transcription
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from pipeline.records import AudioInfo, SearchFilters, Segment, Transcript
from pipeline.search.textindex import parse_query
from pipeline.store import Store, alembic_config, speakers

VIEWER = SearchFilters(hide_closed=True)
RESEARCHER = SearchFilters()


def save(store: Store, name: str, texts: list[str]) -> int:
    info = AudioInfo(
        Path(f"/audio/{name}.wav"), name.encode().hex().ljust(64, "0")[:64], 1000, "wav", "pcm", 16000, 1, 9.0
    )
    segments = [Segment(i * 10.0, i * 10.0 + 8.0, t, t, "en") for i, t in enumerate(texts)]
    return save_transcription(store, info, Transcript("en", 1.0, segments, "faster-whisper", "base"), {}, "k", {})


def ranked(store: Store, query: str, filters: SearchFilters, limit: int = 100, offset: int = 0) -> list[tuple]:
    return [(h.segment_id, h.rank) for h in store.search(parse_query(query), filters, limit, offset).hits]


def index_tables(store: Store) -> dict[str, set[int]]:
    """The segment ids in each of SQLite's two full-text tables ({} on PostgreSQL, which has one)."""
    if store.dialect != "sqlite":
        return {}
    engine = create_engine(store.url)
    with engine.connect() as conn:
        tables = {
            table: {rowid for (rowid,) in conn.exec_driver_sql(f"SELECT rowid FROM {table}")}
            for table in ("segment_index", "segment_index_closed")
        }
    engine.dispose()
    return tables


def segment_ids(store: Store, recording_id: int) -> set[int]:
    return {s.id for s in store.segments(recording_id)}


def test_closed_recordings_do_not_change_the_order_of_a_viewers_hits(store):
    """The side channel: a viewer searching "alpha OR bravo" over two open segments gets the same hits, ranked
    the same, however often closed interviews say alpha."""
    save(store, "open", ["the alpha", "the bravo", "the other", "more other", "still other", "nothing else"])
    before = ranked(store, "alpha OR bravo", VIEWER)
    assert len(before) == 2
    for n in range(3):
        closed = save(store, f"closed{n}", ["alpha alpha"] * 5)
        store.set_metadata(closed, consent="closed")
    assert ranked(store, "alpha OR bravo", VIEWER) == before
    assert len(ranked(store, "alpha OR bravo", RESEARCHER)) == 2 + 15  # the researcher finds the closed ones


def test_a_consent_change_moves_the_recordings_index_rows(store):
    rid = save(store, "mei", ["the wages were low", "we asked for more wages"])
    other = save(store, "li", ["no wages for months"])
    ids = segment_ids(store, rid)
    store.set_metadata(rid, consent="closed")
    assert {h[0] for h in ranked(store, "wages", VIEWER)} == segment_ids(store, other)
    if store.dialect == "sqlite":
        assert index_tables(store) == {"segment_index": segment_ids(store, other), "segment_index_closed": ids}
    store.set_metadata(rid, consent="restricted")  # restricted: every signed-in user sees it
    assert {h[0] for h in ranked(store, "wages", VIEWER)} == ids | segment_ids(store, other)
    if store.dialect == "sqlite":
        assert index_tables(store) == {"segment_index": ids | segment_ids(store, other), "segment_index_closed": set()}


def test_a_consent_change_that_fails_leaves_both_index_tables_as_they_were(store, monkeypatch):
    rid = save(store, "mei", ["the wages were low"])
    store.set_metadata(rid, consent="closed")
    tables = index_tables(store)

    def fail(*args: object) -> None:
        raise RuntimeError("after the move")

    monkeypatch.setattr(speakers, "withhold_voices", fail)  # runs after the move, in the same transaction
    with pytest.raises(RuntimeError):
        store.set_metadata(rid, consent="open")
    assert store.recording(rid).consent == "closed"
    assert index_tables(store) == tables
    assert ranked(store, "wages", VIEWER) == []
    assert [h[0] for h in ranked(store, "wages", RESEARCHER)] == sorted(segment_ids(store, rid))


def test_a_closed_recording_is_indexed_apart_when_saved_and_retranscribed(store):
    """A new recording at a closed one's path starts closed (access.first_consent): its segments go straight to
    the closed index; a new transcript of a closed recording replaces its rows there."""
    rid = save(store, "mei", ["the wages were low"])
    store.set_metadata(rid, consent="closed")
    info = AudioInfo(Path("/audio/mei.wav"), "f" * 64, 1000, "wav", "pcm", 16000, 1, 9.0)  # new bytes, same path
    new = save_transcription(
        store,
        info,
        Transcript("en", 1.0, [Segment(0.0, 5.0, "wages again", "wages again", "en")], "fw", "b"),
        {},
        "k",
        {},
    )
    assert store.recording(new).consent == "closed"
    assert ranked(store, "wages", VIEWER) == []
    again = save(store, "mei", ["other words now", "and wages"])  # the first recording's bytes: transcribed anew
    assert again == rid
    saying_wages = {s.id for r in (rid, new) for s in store.segments(r) if "wages" in s.text}
    assert {h[0] for h in ranked(store, "wages", RESEARCHER)} == saying_wages
    if store.dialect == "sqlite":
        everything = segment_ids(store, rid) | segment_ids(store, new)
        assert index_tables(store) == {"segment_index": set(), "segment_index_closed": everything}


def test_a_researcher_finds_closed_hits_ranked_with_exact_totals_and_pages(store):
    open_ = save(store, "open", [f"wages {'and more ' * n}" for n in range(7)])
    closed = save(store, "closed", [f"wages wages {'then ' * n}" for n in range(6)])
    store.set_metadata(closed, consent="closed")
    everything = store.search(parse_query("wages"), RESEARCHER, limit=100)
    assert everything.total == 13
    assert {h.segment_id for h in everything.hits} == segment_ids(store, open_) | segment_ids(store, closed)
    ranks = [h.rank for h in everything.hits]
    assert ranks == sorted(ranks, reverse=True)
    pages = [store.search(parse_query("wages"), RESEARCHER, limit=4, offset=k) for k in range(0, 16, 4)]
    assert [p.total for p in pages] == [13] * 4
    assert [h.segment_id for p in pages for h in p.hits] == [h.segment_id for h in everything.hits]
    viewer = store.search(parse_query("wages"), VIEWER, limit=3, offset=3)
    assert viewer.total == 7 and len(viewer.hits) == 3


def test_a_viewer_finds_a_closed_recording_once_its_release_date_has_passed(store, monkeypatch):
    """Indexed as closed while it was; found by a viewer from its release date."""
    today = datetime.date.today()
    rid = save(store, "mei", ["the wages were low"])
    store.set_metadata(rid, consent="closed", release_on=str(today + datetime.timedelta(days=1)))
    assert ranked(store, "wages", VIEWER) == []

    class Tomorrow(datetime.date):
        @classmethod
        def today(cls) -> datetime.date:
            return today + datetime.timedelta(days=1)

    monkeypatch.setattr("pipeline.store.search.date", Tomorrow)
    assert [h[0] for h in ranked(store, "wages", VIEWER)] == sorted(segment_ids(store, rid))
    # A correction indexes the segment as the recording is today, open: its rows move with it, none twice.
    (segment,) = store.segments(rid)
    store.correct_text(segment.id, "the wages were higher", "mei", segment.version)
    assert [h[0] for h in ranked(store, "wages", VIEWER)] == [segment.id]
    if store.dialect == "sqlite":
        assert index_tables(store) == {"segment_index": {segment.id}, "segment_index_closed": set()}


def test_upgrading_moves_the_closed_recordings_rows_to_their_own_table_and_back(db_url):
    with Store(db_url) as store:
        open_ = save(store, "open", ["the wages were low"])
        closed = save(store, "closed", ["no wages at all"])
        released = save(store, "released", ["wages by the piece"])
        store.set_metadata(closed, consent="closed")
        store.set_metadata(released, consent="closed", release_on="2001-01-01")
        ids = {rid: segment_ids(store, rid) for rid in (open_, closed, released)}
    command.downgrade(alembic_config(db_url), "0017")
    with Store(db_url) as store:  # upgrades to the newest revision
        if store.dialect == "sqlite":
            assert index_tables(store) == {
                "segment_index": ids[open_] | ids[released],
                "segment_index_closed": ids[closed],
            }
        assert {h[0] for h in ranked(store, "wages", VIEWER)} == ids[open_] | ids[released]
        assert {h[0] for h in ranked(store, "wages", RESEARCHER)} == ids[open_] | ids[released] | ids[closed]
    command.downgrade(alembic_config(db_url), "0017")
    if make_url(db_url).get_backend_name() == "sqlite":
        engine = create_engine(db_url)
        with engine.connect() as conn:
            held = {rowid for (rowid,) in conn.exec_driver_sql("SELECT rowid FROM segment_index")}
        engine.dispose()
        assert held == ids[open_] | ids[released] | ids[closed]


def test_a_released_recordings_rows_move_to_the_open_table_when_the_store_opens(db_url, store, monkeypatch):
    today = datetime.date.today()
    others = save(store, "li", ["the wages were high"])  # saved first: its segments have the lowest ids
    rid = save(store, "mei", ["the wages were low"])
    store.set_metadata(rid, consent="closed", release_on=str(today + datetime.timedelta(days=1)))
    ids = segment_ids(store, rid)

    class Tomorrow(datetime.date):
        @classmethod
        def today(cls) -> datetime.date:
            return today + datetime.timedelta(days=1)

    monkeypatch.setattr("pipeline.store.search.date", Tomorrow)
    with Store(db_url) as reopened:
        if reopened.dialect == "sqlite":  # looked at before any search, which would move them too
            assert index_tables(reopened) == {
                "segment_index": ids | segment_ids(store, others),
                "segment_index_closed": set(),
            }
        assert {h[0] for h in ranked(reopened, "wages", VIEWER)} == ids | segment_ids(store, others)


def test_a_viewers_search_moves_a_released_recordings_rows_first(store, monkeypatch):
    """A web app runs past release dates without opening the store again: the viewer's search itself moves the
    released recording's rows, so its hits are ranked among the open table's, never by the closed statistics."""
    today = datetime.date.today()
    open_ = save(store, "open", ["the alpha", "the bravo", "the other"])
    released = save(store, "released", ["alpha alpha"])
    store.set_metadata(released, consent="closed", release_on=str(today + datetime.timedelta(days=1)))
    for n in range(3):  # closed for good, saying alpha often: they must not weigh in the viewer's ranking
        store.set_metadata(save(store, f"closed{n}", ["alpha alpha"] * 4), consent="closed")

    class Tomorrow(datetime.date):
        @classmethod
        def today(cls) -> datetime.date:
            return today + datetime.timedelta(days=1)

    monkeypatch.setattr("pipeline.store.search.date", Tomorrow)
    hits = ranked(store, "alpha OR bravo", VIEWER)
    assert {h[0] for h in hits} == segment_ids(store, open_) - {max(segment_ids(store, open_))} | segment_ids(
        store, released
    )
    if store.dialect == "sqlite":
        tables = index_tables(store)
        assert segment_ids(store, released) <= tables["segment_index"]
        assert not segment_ids(store, released) & tables["segment_index_closed"]
