"""Text sorts the same on every database: by code point, as SQLite compares it and Python's sorted() does.

A PostgreSQL database made with a language's collation (ICU's en, glibc's en_US.UTF-8) sorts /a/a.wav < /a/Ä.wav <
/a/B.wav where SQLite sorts B < a < Ä: tied search hits, pages of them and every listing came out in another order,
and a page's boundary could repeat or skip an item between the two. Each test runs on SQLite and PostgreSQL
databases of the C locale and of ICU's English collation (EVERY_COLLATION)."""

from __future__ import annotations

from pathlib import Path

import pytest
from saving import save_tags, save_transcription

from pipeline.records import AudioInfo, Segment, ThemeSuggestion, Transcript
from pipeline.search.textindex import parse_query
from pipeline.store import Store
from pipeline.store.users import name_key

from conftest import EVERY_COLLATION

# Names whose order by code point (B < _c < a < b < Ä) differs from a language's (_c < a < Ä < b < B).
PATHS = ["/audio/B.wav", "/audio/a.wav", "/audio/Ä.wav", "/audio/b.wav", "/audio/_c.wav"]
THEMES = ["wages", "Ärger", "Housing", "_misc"]
CODERS = ["bob", "Zoe", "ärne"]
TEXT = "the wages were low"  # the same in every recording: its hits tie in rank


def info(path: str, n: int) -> AudioInfo:
    return AudioInfo(Path(path), f"{n:064x}", 1000, "wav", "pcm_s16le", 16000, 1, 30.0)


def save_recording(store: Store, path: str, n: int, speakers: tuple[str, ...] = ("S1",)) -> int:
    """A recording of TEXT at 0.0, said by each of `speakers` at once."""
    segments = [Segment(0.0, 8.0, TEXT, TEXT, "en", speaker=speaker) for speaker in speakers]
    return save_transcription(
        store, info(path, n), Transcript("en", 1.0, segments, "faster-whisper", "base"), {}, "k", {}
    )


def suggest_and_decide(store: Store, rid: int) -> None:
    """Every one of THEMES suggested on each segment of the recording, decided by every one of CODERS: bob and Zoe
    accept each, ärne rejects it (before Zoe: each stays accepted)."""
    suggestions = {s.id: [ThemeSuggestion(theme, 0.8, ((4, 9),)) for theme in THEMES] for s in store.segments(rid)}
    save_tags(store, rid, suggestions, {}, "t", {}, "t")
    for annotation in store.annotations(rid):
        for coder, status in (("bob", "accepted"), ("ärne", "rejected"), ("Zoe", "accepted")):
            store.decide(annotation.id, status, coder)


@pytest.fixture
def coded(store) -> tuple[Store, dict[int, str]]:
    """A recording at each of PATHS and a second one at the first path (new bytes where a file was), each a segment
    of TEXT, its themes suggested and decided (suggest_and_decide). CODERS are users and enrolled voices too. The
    path of each recording by id."""
    paths = {save_recording(store, path, n): path for n, path in enumerate([*PATHS, PATHS[0]])}
    for rid in paths:
        suggest_and_decide(store, rid)
    for coder in CODERS:
        store.add_user(coder, "a long password", "annotator")
        store.enroll(coder, [1.0, 0.0], "admin")
    return store, paths


@EVERY_COLLATION
def test_tied_search_hits_and_their_pages_sort_by_path_in_code_point_order(coded):
    store, paths = coded
    hits = store.search(parse_query("wages"), limit=20).hits
    assert [h.rank for h in hits] == [hits[0].rank] * len(paths)  # the ties this is about
    assert [(h.recording_path, h.segment_id) for h in hits] == sorted((h.recording_path, h.segment_id) for h in hits)
    pages = [store.search(parse_query("wages"), limit=2, offset=offset).hits for offset in range(0, len(paths), 2)]
    assert [h.segment_id for page in pages for h in page] == [h.segment_id for h in hits]
    assert {h.themes for h in hits} == {tuple(sorted(THEMES))}


@EVERY_COLLATION
def test_listings_sort_text_in_code_point_order(coded):
    store, paths = coded
    assert [r.path for r in store.list_recordings()] == sorted(paths.values())
    assert [row.path for row in store.collection_counts().coverage] == sorted(paths.values())
    counted = [(path, rid, theme) for rid, path, theme, _ in store.theme_counts()]
    assert counted == sorted(counted) and len(counted) == len(paths) * len(THEMES)  # a recording's rows together
    for rid in paths:
        assert [a.theme for a in store.annotations(rid)] == sorted(THEMES)
        assert [(d.theme, d.coder) for d in store.decisions(rid)] == sorted((t, c) for t in THEMES for c in CODERS)
    decided = [(d.segment_id, d.theme) for d in store.theme_decisions()]
    assert [theme for _, theme in decided] == [theme for _, theme in sorted(decided)]
    assert store.coders() == sorted(CODERS)
    disputed = list(store.disagreements(None, CODERS))
    in_order = [(d.path, d.segment_id, d.theme) for d in disputed]
    assert in_order == sorted(in_order)
    assert {tuple(d.decisions) for d in disputed} == {tuple(sorted(CODERS))}
    assert [p.name for p in store.people()] == sorted(CODERS)
    assert [u.name for u in store.list_users()] == sorted(CODERS, key=name_key)


@EVERY_COLLATION
def test_pages_of_hits_tied_in_rank_path_and_time_hold_each_hit_once(store):
    """Recordings at one path (new bytes where a file was) with the same words at the same time tie in everything
    the hits were sorted by: PostgreSQL's top-N sort of each page chose among them anew, and pages of 1 to 5 hits
    repeated one and skipped others. Such ties go by segment id."""
    ids = [store.segments(save_recording(store, "/audio/same.wav", n))[0].id for n in range(12)]
    for size in (1, 3, 5):
        pages = [store.search(parse_query("wages"), limit=size, offset=offset).hits for offset in range(0, 12, size)]
        assert [h.segment_id for page in pages for h in page] == ids, size


@EVERY_COLLATION
def test_a_recordings_themes_and_decisions_list_segments_at_one_time_one_after_the_other(store):
    """Two segments at one time (two speakers at once) tie in time: their themes and decisions were sorted by theme
    across both, interleaved, in an order the database chose among the ties. They go by segment, then theme."""
    rid = save_recording(store, "/audio/a.wav", 0, speakers=("S1", "S2"))
    suggest_and_decide(store, rid)
    segments = sorted(s.id for s in store.segments(rid))
    assert [(a.segment_id, a.theme) for a in store.annotations(rid)] == [
        (s, t) for s in segments for t in sorted(THEMES)
    ]
    decided = [(d.segment_id, d.theme, d.coder) for d in store.decisions(rid)]
    assert decided == [(s, t, c) for s in segments for t in sorted(THEMES) for c in sorted(CODERS)]


@EVERY_COLLATION
def test_the_themes_a_new_transcript_has_no_place_for_are_noted_in_code_point_order(store):
    """A re-transcription read the decided themes it carries over in the database's order of theme: the history
    noted those with nowhere to go in another order on each database."""
    rid = save_recording(store, "/audio/a.wav", 0)
    suggest_and_decide(store, rid)
    save_transcription(store, info("/audio/a.wav", 0), Transcript("en", 1.0, [], "faster-whisper", "base"), {}, "k", {})
    dropped = [h.before["theme"] for h in store.history(recording_id=rid) if h.action == "dropped"]
    assert dropped == sorted(THEMES)
