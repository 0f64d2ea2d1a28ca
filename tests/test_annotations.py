"""Annotations in the store: suggestions, decisions, history, and what survives re-tagging and
re-transcription. Runs on SQLite, and on PostgreSQL when OHP_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from saving import save_tags, save_transcription

from pipeline.records import AudioInfo, Entity, Segment, ThemeSuggestion, Transcript
from pipeline.store import ConflictError, Store, annotations

from conftest import SQLITE_ONLY

INFO = AudioInfo(Path("/audio/li.wav"), "cd" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 30.0)
TEXTS = ["你的孩子现在在哪里？", "在老家，跟爷爷奶奶一起住。", "工资是计件的，一个月三千块。"]


def transcript(texts: list[str] = TEXTS, offset: float = 0.0) -> Transcript:
    segments = [Segment(i * 5.0 + offset, i * 5.0 + 4.0 + offset, t, t, "zh") for i, t in enumerate(texts)]
    return Transcript("zh", 0.99, segments, "faster-whisper", "base")


def tag(store, recording_id: int, found: dict[int, list[tuple[str, float, tuple]]], tagger: str = "t1") -> dict:
    ids = [s.id for s in store.segments(recording_id)]
    suggestions = {
        ids[i]: [ThemeSuggestion(theme, score, evidence) for theme, score, evidence in items]
        for i, items in found.items()
    }
    entities = {ids[2]: [Entity("MONEY", "三千块", 10, 13)]}
    return save_tags(store, recording_id, suggestions, entities, tagger, {"tagger": tagger}, tagger)


@pytest.fixture
def recording(store) -> int:
    rid = save_transcription(store, INFO, transcript(), {}, "k", {})
    tag(store, rid, {1: [("left_behind_children", 0.9, ((1, 3), (5, 9)))], 2: [("wages", 0.8, ((0, 2),))]})
    return rid


def by_theme(store, rid: int) -> dict:
    return {a.theme: a for a in store.annotations(rid)}


def test_suggestions_are_stored_with_evidence_and_entities(store, recording):
    found = by_theme(store, recording)
    assert set(found) == {"left_behind_children", "wages"}
    children = found["left_behind_children"]
    assert (children.source, children.status, children.score, children.tagger) == ("auto", "suggested", 0.9, "t1")
    text = store.segments(recording)[1].text
    assert [text[a:b] for a, b in children.evidence] == ["老家", "爷爷奶奶"]
    assert list(store.entities(recording).values()) == [[Entity("MONEY", "三千块", 10, 13)]]
    assert store.stage(recording, "tag").status == "done"
    assert [h.action for h in store.history(recording_id=recording)] == ["suggested", "suggested"]


def test_decisions_are_kept_with_history(store, recording):
    wages = by_theme(store, recording)["wages"]
    accepted = store.decide(wages.id, "accepted", "mei")
    assert (accepted.status, accepted.updated_by, accepted.version) == ("accepted", "mei", wages.version + 1)
    [entry] = store.history(annotation_id=wages.id)[1:]
    assert (entry.action, entry.changed_by, entry.before["status"], entry.after["status"]) == (
        "accepted",
        "mei",
        "suggested",
        "accepted",
    )
    with pytest.raises(ValueError, match="status"):
        store.decide(wages.id, "maybe", "mei")


def test_a_stale_decision_is_a_conflict_not_an_overwrite(store, recording):
    wages = by_theme(store, recording)["wages"]
    store.decide(wages.id, "accepted", "mei", version=wages.version)
    with pytest.raises(ConflictError) as conflict:
        store.decide(wages.id, "rejected", "jun", version=wages.version)
    assert conflict.value.current.status == "accepted" and conflict.value.current.updated_by == "mei"
    assert by_theme(store, recording)["wages"].status == "accepted"


def test_two_decisions_on_one_version_at_once_are_one_decision_and_one_conflict(store, recording, db_url):
    """Each read the version, then compared it: on PostgreSQL (read committed) two decisions made at the
    same moment on the same version both went through, the second overwriting the first unseen."""
    wages = by_theme(store, recording)["wages"]
    first_holds_it, second_started = threading.Event(), threading.Event()

    def decide_and_wait() -> None:
        with store._session(write=True) as s:
            annotations.decide(s, wages.id, "accepted", "mei", version=wages.version)
            first_holds_it.set()
            second_started.wait(10)
            time.sleep(0.5)  # the second decision is waiting on this one: it must then see its version

    first = threading.Thread(target=decide_and_wait)
    first.start()
    assert first_holds_it.wait(10)
    with Store(db_url) as other:
        second_started.set()
        with pytest.raises(ConflictError) as conflict:
            other.decide(wages.id, "rejected", "jun", version=wages.version)
    first.join()
    assert conflict.value.current.updated_by == "mei"
    assert by_theme(store, recording)["wages"].status == "accepted"


def test_adding_a_theme_someone_rejected_is_a_conflict_not_an_overturn(store, recording):
    wages = by_theme(store, recording)["wages"]
    store.decide(wages.id, "rejected", "jun", version=wages.version)
    with pytest.raises(ConflictError, match="rejected by jun") as conflict:
        store.add_annotation(store.segments(recording)[2].id, "wages", "mei", ((3, 5),))
    assert conflict.value.current.status == "rejected" and conflict.value.current.updated_by == "jun"
    assert by_theme(store, recording)["wages"].status == "rejected"


def test_retagging_never_touches_human_decisions(store, recording):
    found = by_theme(store, recording)
    store.decide(found["wages"].id, "rejected", "mei")
    report = tag(
        store,
        recording,
        {0: [("schooling", 0.5, ((0, 2),))], 1: [("left_behind_children", 0.7, ((6, 10),))]},
        tagger="t2",
    )
    after = by_theme(store, recording)
    assert after["wages"].status == "rejected"  # the tagger no longer finds it, but a person decided it
    assert after["left_behind_children"].score == 0.7 and after["left_behind_children"].tagger == "t2"
    assert after["schooling"].status == "suggested"
    assert report == {"added": 1, "updated": 1, "withdrawn": 0, "kept": 1}
    tag(store, recording, {}, tagger="t3")
    assert set(by_theme(store, recording)) == {"wages"}
    actions = [h.action for h in store.history(recording_id=recording)]
    assert actions.count("withdrawn") == 2 and "retagged" in actions


def test_a_person_adds_a_theme_with_evidence(store, recording):
    segment = store.segments(recording)[0]
    added = store.add_annotation(segment.id, "schooling", "mei", ((0, 4),))
    assert (added.source, added.status, added.evidence) == ("mei", "accepted", ((0, 4),))
    with pytest.raises(ValueError, match="outside"):
        store.add_annotation(segment.id, "health", "mei", ((0, 400),))
    again = store.add_annotation(store.segments(recording)[2].id, "wages", "jun", ((3, 5),))
    assert again.status == "accepted" and again.source == "auto" and again.evidence == ((0, 2), (3, 5))


def test_theme_counts(store, recording):
    store.decide(by_theme(store, recording)["wages"].id, "accepted", "mei")
    counts = {theme: by_status for _, _, theme, by_status in store.theme_counts()}
    assert counts == {
        "left_behind_children": {"suggested": 1, "accepted": 0, "rejected": 0},
        "wages": {"suggested": 0, "accepted": 1, "rejected": 0},
    }


def test_status_counts_by_recording(store, recording):
    """What the list of recordings shows beside each: its suggestions by status, all themes together (counted by
    the database, not summed from the counts of each theme)."""
    other = save_transcription(
        store, replace(INFO, path=Path("/audio/wu.wav"), sha256="ef" * 32), transcript(), {}, "k", {}
    )
    tag(store, other, {0: [("wages", 0.7, ((0, 2),)), ("health", 0.6, ((0, 2),))], 2: [("wages", 0.8, ((0, 2),))]})
    save_transcription(store, replace(INFO, path=Path("/audio/none.wav"), sha256="01" * 32), transcript(), {}, "k", {})
    store.decide(by_theme(store, recording)["wages"].id, "accepted", "mei")
    store.decide(store.annotations(other)[0].id, "rejected", "mei")
    assert store.status_counts() == {
        recording: {"suggested": 1, "accepted": 1, "rejected": 0},
        other: {"suggested": 2, "accepted": 0, "rejected": 1},
    }


def test_retranscription_carries_decisions_to_the_new_segments(store, recording):
    found = by_theme(store, recording)
    store.decide(found["left_behind_children"].id, "accepted", "mei")
    # New text for the same speech, times shifted a little: the decision follows its words.
    texts = ["你的孩子在哪里？", "孩子在老家，跟爷爷奶奶住。", "工资计件，一个月三千。"]
    save_transcription(store, INFO, transcript(texts, offset=0.3), {}, "k2", {})
    after = by_theme(store, recording)
    assert set(after) == {"left_behind_children"}  # the undecided suggestion goes; re-tagging makes it anew
    moved = after["left_behind_children"]
    new_text = store.segments(recording)[1].text
    assert moved.status == "accepted" and [new_text[a:b] for a, b in moved.evidence] == ["老家", "爷爷奶奶"]
    assert store.history(recording_id=recording)[-1].action == "moved"
    assert store.stage(recording, "tag") is None  # tagging runs again on the new segments


@SQLITE_ONLY  # the offsets are worked out in Python, the same on every database
def test_a_correction_keeps_evidence_on_its_own_words_where_they_occur_twice(store):
    """Evidence was re-anchored on the first place its words occur in the corrected text: mei's evidence on the
    second 工资 of "工资很低，工资还拖欠了三个月" moved to the first when li corrected 三 to 四 (and so did the learned
    model's examples and the highlight), as it did when a re-transcription carried it over."""
    text = "工资很低，工资还拖欠了三个月。"
    rid = save_transcription(store, INFO, transcript([text]), {}, "k", {})
    segment = store.segments(rid)[0]
    second = text.index("工资还")
    store.add_annotation(segment.stored_id, "wages", "mei", ((second, second + 2),))
    store.correct_text(segment.stored_id, "工资很低，工资还拖欠了四个月。", "li", segment.version)
    [wages] = store.annotations(rid)
    assert wages.evidence == ((second, second + 2),)
    store.correct_text(segment.stored_id, "工资太低，工资还拖欠了四个月。", "li", segment.version + 1)
    [wages] = store.annotations(rid)
    assert wages.evidence == ((second, second + 2),)


@SQLITE_ONLY  # the offsets are worked out in Python, the same on every database
def test_a_correction_moves_the_segments_named_entities_with_their_words_or_drops_them(store, recording):
    """A correction re-anchored the themes' evidence but left the named entities at their old offsets: the JSON
    export's entity 三千块 pointed at 月三千 of the corrected text, and a name the person corrected away stayed an
    entity of the segment, its start and end into a text that no longer has it."""
    segment = store.segments(recording)[2]
    store.correct_text(segment.stored_id, "工资是计件的，平均一个月三千块。", "mei", segment.version)
    [entity] = store.entities(recording)[segment.stored_id]
    assert "工资是计件的，平均一个月三千块。"[entity.start : entity.end] == entity.text == "三千块"
    store.correct_text(segment.stored_id, "工资是计件的，每个月两千。", "mei", segment.version + 1)
    assert store.entities(recording) == {}
