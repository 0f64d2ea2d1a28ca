"""Reverting a correction of a segment's text. Back to the recogniser's version: its words as it wrote them
(times, probabilities, doubtful marks), the segment's confidence, the recording's share of doubtful text and
its warnings, and the segment counts as uncorrected (the page, `ohp review --doubtful`, exports, a later
re-transcription). Back to a person's version: that person's words. On SQLite, and on PostgreSQL when
OHP_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import json
import threading
import time

import pytest
from alembic import command
from saving import save_tags
from sqlalchemy import JSON, bindparam, create_engine, text
from typer.testing import CliRunner

from pipeline.cli import app as cli
from pipeline.config import Config
from pipeline.errors import ConflictError, InvalidInputError
from pipeline.formats.export import gather, to_json
from pipeline.records import RecordingResult, StageRun, ThemeSuggestion, Transcript
from pipeline.stages.doubt import mark_doubt
from pipeline.store import Store, alembic_config, transcripts
from pipeline.web import create_app

from conftest import SQLITE_ONLY
from test_doubt_audit import INFO, poor_result, zh_segment
from test_web_api import PASSWORD, client_for

runner = CliRunner()


def corrected_then_reverted(store: Store) -> tuple[int, list]:
    """The poor recording saved, its last segment corrected and the correction reverted: its id, and its
    segments as the recogniser left them."""
    rid = store.save_result(poor_result()).export.recording.id
    recognised = store.segments(rid)
    last = recognised[2]
    store.correct_text(last.stored_id, "东莞青州，宿舍。", "mei", last.version)
    (correction,) = store.history(segment_id=last.stored_id)
    store.revert(correction.id, "ann")
    return rid, recognised


def test_reverting_to_the_recognisers_version_brings_its_words_and_doubt_back(store: Store):
    """A revert kept the person's words (sure, never doubtful) under the recogniser's text: the doubtful share
    and the warning dropped as if someone had checked it."""
    rid = store.save_result(poor_result()).export.recording.id
    recognised, recording = store.segments(rid)[2], store.recording(rid)
    assert any(w.doubtful for w in recognised.words) and recording.warnings == ("much doubtful text (50%)",)
    store.correct_text(recognised.stored_id, "东莞青州，宿舍。", "mei", recognised.version)
    assert store.recording(rid).warnings == () and [w.text for w in store.corrected_words()] == ["青州，"]
    (correction,) = store.history(segment_id=recognised.stored_id)
    store.revert(correction.id, "ann")
    assert store.corrected_words() == []  # nothing a person wrote left to suggest for the vocabulary
    reverted = store.segments(rid)[2]
    assert (reverted.text, reverted.version) == (recognised.text, recognised.version + 2)
    assert reverted.words == recognised.words  # times, probabilities, doubtful marks; none of them a person's
    assert reverted.confidence == recognised.confidence < 1.0
    assert not reverted.corrected
    again = store.recording(rid)
    assert (again.doubtful, again.warnings) == (recording.doubtful, recording.warnings)


def test_reverting_to_a_persons_version_gives_that_persons_words(store: Store):
    rid = store.save_result(poor_result()).export.recording.id
    recognised = store.segments(rid)[2]
    segment_id = recognised.stored_id
    _, version = store.correct_text(segment_id, "东莞青州，宿舍。", "mei", recognised.version)
    first = store.segments(rid)[2]
    store.correct_text(segment_id, "宿舍。", "li", version)  # the words before it taken out
    cut = store.segments(rid)[2]
    first_change, second_change = store.history(segment_id=segment_id)
    store.revert(second_change.id, "ann")
    back = store.segments(rid)[2]
    assert back.text == first.text and back.words == first.words  # 东莞 the recogniser's word, 青州 mei's
    assert back.corrected and back.confidence == 1.0 and not any(w.doubtful for w in back.words)
    undo = store.history(segment_id=segment_id)[-1]
    store.revert(undo.id, "ann")  # the revert undone: li's words again
    assert store.segments(rid)[2].words == cut.words
    store.revert(store.history(segment_id=segment_id)[-1].id, "ann")
    store.revert(first_change.id, "ann")  # and back to the recogniser's
    assert store.segments(rid)[2].words == recognised.words and not store.segments(rid)[2].corrected


def test_a_reverted_segment_is_not_carried_over_by_a_re_transcription(store: Store):
    """A re-transcription carried the reverted text over as a person's correction, in place of what the
    recogniser now hears."""
    rid, _ = corrected_then_reverted(store)
    heard = zh_segment(10.0, [("东莞", 0.99), ("秦州，", 0.9), ("宿舍。", 0.9)])
    segments = [*poor_result().transcript.segments[:2], heard]
    transcript = mark_doubt(Transcript("zh", 0.99, segments, "faster-whisper", "base"))
    store.save_result(RecordingResult(INFO, transcript, stages={"transcribe": StageRun({}, "t2", {})}))
    now = store.segments(rid)[2]
    assert now.text == "东莞秦州，宿舍。" and not now.corrected
    assert "carried" not in [c.action for c in store.history(recording_id=rid)]


def test_a_reverted_segment_is_uncorrected_in_the_json_export(store: Store):
    rid, recognised = corrected_then_reverted(store)
    document = json.loads(to_json(gather(store, store.recording(rid))))
    last = document["segments"][2]
    assert [(w["doubtful"], w["corrected"]) for w in last["words"]] == [
        (w.doubtful, False) for w in recognised[2].words
    ]
    assert last["confidence"] == recognised[2].confidence
    assert document["recording"]["warnings"] == ["much doubtful text (50%)"]


def test_the_page_shows_a_reverted_segments_doubt_again(store: Store):
    for name, role in (("ann", "annotator"), ("mei", "annotator")):
        store.add_user(name, PASSWORD, role)
    rid = store.save_result(poor_result()).export.recording.id
    web = create_app(store, Config(secret="test-secret"))
    client, token = client_for(web, "ann")
    before = client.get(f"/api/recordings/{rid}/segments").json()[2]
    assert before["risk"] is not None
    saved = client.patch(
        f"/api/segments/{before['id']}",
        json={"text": "东莞青州，宿舍。", "version": before["version"]},
        headers={"X-CSRF-Token": token},
    )
    assert saved.status_code == 200
    change = client.get("/api/history", params={"segment": before["id"]}).json()[-1]
    assert client.post(f"/api/history/{change['id']}/revert", headers={"X-CSRF-Token": token}).status_code == 200
    after = client.get(f"/api/recordings/{rid}/segments").json()[2]
    assert (after["text"], after["risk"], after["confidence"]) == (before["text"], before["risk"], before["confidence"])
    assert after["pieces"] == before["pieces"]  # the doubtful words underlined again
    recording = client.get(f"/api/recordings/{rid}").json()
    assert recording["warnings"] == ["much doubtful text (50%)"]
    assert "钦州" in client.get(f"/recordings/{rid}/doubtful").text


def test_status_and_review_show_a_reverted_segments_doubt_again(db_url):
    with Store(db_url) as store:
        rid, _ = corrected_then_reverted(store)
    result = runner.invoke(cli, ["status", "--db", db_url], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "50%" in result.output and "much doubtful text (50%)" in result.output
    result = runner.invoke(cli, ["review", str(rid), "--doubtful", "--user", "mei", "--db", db_url], input="q\n")
    assert result.exit_code == 0, result.output
    assert "2 doubtful passages" in result.output and "钦州" in result.output


def test_upgrading_keeps_every_segment_and_marks_those_people_corrected(db_url):
    with Store(db_url) as store:
        rid = store.save_result(poor_result()).export.recording.id
        segments = store.segments(rid)
        store.correct_text(segments[1].stored_id, "工资！", "mei", segments[1].version)
    command.downgrade(alembic_config(db_url), "0013")
    engine = create_engine(db_url)
    query = text("SELECT id, text, version, confidence FROM segments ORDER BY id")
    with engine.connect() as conn:
        before = conn.execute(query).all()
    with Store(db_url) as store:  # upgrades to the newest revision
        with engine.connect() as conn:
            assert conn.execute(query).all() == before
            if conn.dialect.name == "sqlite":  # the table copied with the AUTOINCREMENT of 0013
                made = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'segments'")).scalar_one()
                assert "AUTOINCREMENT" in made
        assert [s.corrected for s in store.segments(rid)] == [False, True, False]
    engine.dispose()


def test_a_correction_the_history_kept_no_words_of_reverts_to_a_persons_text(store: Store, db_url):
    """A correction made before the history kept words: the revert puts its text back, as a person's."""
    rid = store.save_result(poor_result()).export.recording.id
    recognised = store.segments(rid)[2]
    store.correct_text(recognised.stored_id, "东莞青州，宿舍。", "mei", recognised.version)
    (correction,) = store.history(segment_id=recognised.stored_id)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        kept = {"text": recognised.text, "version": recognised.version}  # what such a correction kept
        update = text("UPDATE history SET before = :kept WHERE id = :id")
        conn.execute(update.bindparams(bindparam("kept", type_=JSON)), {"kept": kept, "id": correction.id})
    engine.dispose()
    store.revert(correction.id, "ann")
    reverted = store.segments(rid)[2]
    assert reverted.text == recognised.text and reverted.corrected and reverted.confidence == 1.0
    assert not any(w.doubtful for w in reverted.words)


def test_two_reverts_of_one_change_at_once_are_one_revert_and_one_conflict(store: Store, db_url):
    """A revert looks for a later change in the history: two reverts of one correction at the same moment must not
    both pass that check (on PostgreSQL, read committed, neither would see the other's 'reverted' before its
    commit). The store's one writer at a time (the advisory lock) makes the second read after the first."""
    rid = store.save_result(poor_result()).export.recording.id
    last = store.segments(rid)[2]
    store.correct_text(last.stored_id, "东莞青州，宿舍。", "mei", last.version)
    (correction,) = store.history(segment_id=last.stored_id)
    first_holds_it, second_started = threading.Event(), threading.Event()

    def revert_and_wait() -> None:
        with store._session(write=True) as s:
            transcripts.revert(s, correction.id, "ann")
            first_holds_it.set()
            second_started.wait(10)
            time.sleep(0.5)  # the second revert is waiting on this one: it must then see the text it left

    first = threading.Thread(target=revert_and_wait)
    first.start()
    assert first_holds_it.wait(10)
    with Store(db_url) as other:
        second_started.set()
        with pytest.raises(ConflictError):
            other.revert(correction.id, "jun")
    first.join()
    assert [h.action for h in store.history(segment_id=last.stored_id)].count("reverted") == 1
    assert store.segments(rid)[2].version == last.version + 2


def test_a_carried_correction_is_not_a_change_to_revert(store: Store):
    """A re-transcription's carry-over keeps the person's text as it was (before and after the same): reverting
    it raised the version, wrote a 'reverted' entry and changed nothing."""
    rid = store.save_result(poor_result()).export.recording.id
    last = store.segments(rid)[2]
    store.correct_text(last.stored_id, "东莞青州，宿舍。", "mei", last.version)
    heard = zh_segment(10.0, [("东莞", 0.99), ("秦州，", 0.9), ("宿舍。", 0.9)])
    transcript = mark_doubt(
        Transcript("zh", 0.99, [*poor_result().transcript.segments[:2], heard], "faster-whisper", "base")
    )
    store.save_result(RecordingResult(INFO, transcript, stages={"transcribe": StageRun({}, "t2", {})}))
    (carried,) = [c for c in store.history(recording_id=rid) if c.action == "carried"]
    before = store.segments(rid)[2]
    with pytest.raises(InvalidInputError, match="'carried' cannot be reverted"):
        store.revert(carried.id, "ann")
    # The correction itself is on the segment that went: no later change to revert first, as was said.
    (correction,) = [c for c in store.history(recording_id=rid) if c.action == "corrected"]
    with pytest.raises(ConflictError, match=f"segment {last.stored_id} is no longer there: .* transcribed again"):
        store.revert(correction.id, "ann")
    after = store.segments(rid)[2]
    assert (after.text, after.version, after.corrected) == (before.text, before.version, True)
    assert [c.action for c in store.history(recording_id=rid)].count("reverted") == 0


@SQLITE_ONLY  # the rule is the store's, the same on every database
def test_a_change_changed_again_since_is_not_reverted_even_where_it_reads_the_same(store: Store):
    """A revert checked only that the text (the status) was still the one the change left: after mei's correction,
    li's and mei's again to the same text, reverting mei's first one undid her later one unseen, putting the
    recogniser's words back; a theme mei accepted, li rejected and mei accepted again went back to suggested,
    mei's own later decision deleted with it. Only the latest change is reverted: the others are a conflict."""
    rid = store.save_result(poor_result()).export.recording.id
    segment = store.segments(rid)[2]
    _, version = store.correct_text(segment.stored_id, "东莞青州，宿舍。", "mei", segment.version)
    _, version = store.correct_text(segment.stored_id, "东莞秦州，宿舍。", "li", version)
    store.correct_text(segment.stored_id, "东莞青州，宿舍。", "mei", version)
    first = store.history(segment_id=segment.stored_id)[0]
    kept = store.segments(rid)[2]
    with pytest.raises(ConflictError, match="changed again since"):
        store.revert(first.id, "ann")
    assert store.segments(rid)[2] == kept
    wages = store.segments(rid)[1].stored_id
    save_tags(store, rid, {wages: [ThemeSuggestion("wages", 0.9, ((0, 2),))]}, {}, "t1", {}, "t1")
    [theme] = store.annotations(rid)
    for user, status in (("mei", "accepted"), ("li", "rejected"), ("mei", "accepted")):
        theme = store.decide(theme.id, status, user, version=theme.version)
    accepted = next(c for c in store.history(annotation_id=theme.id) if c.action == "accepted")
    with pytest.raises(ConflictError, match="changed again since"):
        store.revert(accepted.id, "ann")
    assert store.annotations(rid) == [theme]
    assert {(d.coder, d.present) for d in store.decisions(rid)} == {("mei", True), ("li", False)}


@SQLITE_ONLY  # which changes may be reverted is the store's rule, the same on every database
def test_ohps_own_moves_of_a_theme_are_not_changes_to_revert(store: Store):
    """A decision moved to a new segment by a re-transcription ('moved', status before and after the same) had a
    Revert button on the history page, and reverting it changed nothing but the annotation's version (so a page
    open on it got a conflict) and wrote a 'reverted' in ann's name, as a carried correction did before."""
    rid = store.save_result(poor_result()).export.recording.id
    wages = store.segments(rid)[1].stored_id
    save_tags(store, rid, {wages: [ThemeSuggestion("wages", 0.9, ((0, 2),))]}, {}, "t1", {}, "t1")
    [theme] = store.annotations(rid)
    store.decide(theme.id, "accepted", "mei", version=theme.version)
    moved = zh_segment(5.2, [("工资。", 0.99)])
    transcript = Transcript("zh", 0.99, [poor_result().transcript.segments[0], moved], "faster-whisper", "base")
    store.save_result(RecordingResult(INFO, transcript, stages={"transcribe": StageRun({}, "t2", {})}))
    [move] = [c for c in store.history(recording_id=rid) if c.action == "moved"]
    [kept] = store.annotations(rid)
    app = create_app(store, Config(secret="test-secret"))
    store.add_user("ann", PASSWORD, "annotator")
    client, _ = client_for(app, "ann")
    page = client.get("/history", params={"recording": rid}).text
    assert f'class="revert" data-id="{move.id}"' not in page
    with pytest.raises(InvalidInputError, match="'moved' cannot be reverted"):
        store.revert(move.id, "ann")
    assert store.annotations(rid) == [kept] and kept.status == "accepted"
