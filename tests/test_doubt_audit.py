"""The doubt as people's work changes it: the recording's share of doubtful text and its warnings, as the
list, `ohp status`, the page and the JSON show them, after corrections and reverts (SQLite, and PostgreSQL
when OHP_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app as cli
from pipeline.cli import doubt as cli_doubt
from pipeline.formats.export import gather, to_json
from pipeline.records import AudioInfo, RecordingResult, Segment, StageRun, Transcript, Word
from pipeline.stages.doubt import doubtful_share, mark_doubt
from pipeline.store import Store

from conftest import SQLITE_ONLY

INFO = AudioInfo(Path("/audio/zhou.wav"), "ab" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 20.0)


def zh_segment(start: float, pieces: list[tuple[str, float]]) -> Segment:
    words = [Word(start + i * 0.5, start + i * 0.5 + 0.4, text, p) for i, (text, p) in enumerate(pieces)]
    text = "".join(w.text for w in words)
    return Segment(start, words[-1].end, text, text, "zh", words)


def poor_result() -> RecordingResult:
    """A Mandarin transcript with much doubtful text, its words carrying their punctuation as Whisper's do."""
    segments = [
        zh_segment(0.0, [("我们", 0.99), ("清典，", 0.7)]),  # rare lone characters: doubtful however sure
        zh_segment(5.0, [("工资。", 0.99)]),
        zh_segment(10.0, [("东莞", 0.99), ("钦州，", 0.2), ("宿舍。", 0.2)]),
    ]
    transcript = mark_doubt(Transcript("zh", 0.99, segments, "faster-whisper", "base"))
    return RecordingResult(INFO, transcript, stages={"transcribe": StageRun({}, "t1", {})})


def test_the_share_of_doubtful_text_counts_letters_as_the_warning_does(store: Store):
    """The list's share counted a word's punctuation, the warning (and the bench's rule) only its letters:
    the same recording was "56% doubtful" beside "much doubtful text (50%)"."""
    result = poor_result()
    share = doubtful_share(result.transcript.segments)
    assert result.transcript.quality_warnings == [f"much doubtful text ({share:.0%})"]
    rid = store.save_result(result).export.recording.id
    assert store.recording(rid).doubtful == pytest.approx(share)
    assert [r.doubtful for r in store.list_recordings()] == [pytest.approx(share)]


def test_a_correction_updates_the_warnings_as_it_does_the_share(store: Store):
    """The warning "much doubtful text" stayed on the recording (its list, `ohp status`, the page, the JSON)
    once people had corrected the doubtful text away, beside a share that had followed them."""
    rid = store.save_result(poor_result()).export.recording.id
    assert store.recording(rid).warnings == ("much doubtful text (50%)",)
    last = store.segments(rid)[2]
    store.correct_text(last.stored_id, "东莞钦州，宿舍！", "mei", last.version)  # read, and found right but a stop
    recording = store.recording(rid)
    assert recording.doubtful == pytest.approx(2 / 12)
    assert recording.warnings == ()
    assert json.loads(to_json(gather(store, recording)))["recording"]["warnings"] == []
    first = store.segments(rid)[0]
    store.correct_text(first.stored_id, "我们钦点，", "mei", first.version)
    assert store.recording(rid).doubtful == 0.0 and store.recording(rid).warnings == ()


def test_an_imported_transcript_corrected_stays_unchecked_not_0_percent_doubtful(store: Store):
    """An imported transcript has no recogniser's words: its share is empty (the doubt stage did not run). A
    correction gave its segment a person's words, and the share became "0% doubtful", as if checked."""
    segments = [Segment(i * 5.0, i * 5.0 + 4.0, t, t, "zh") for i, t in enumerate(["我们那时候", "住在乡下"])]
    transcript = Transcript("zh", 1.0, segments, "import", "srt")  # as pipeline.imports makes it
    rid = store.save_result(RecordingResult(INFO, transcript, stages={"transcribe": StageRun({}, "i", {})})).export
    rid = rid.recording.id
    assert store.recording(rid).doubtful is None
    first = store.segments(rid)[0]
    store.correct_text(first.stored_id, "我们那个时候", "mei", first.version)
    assert store.recording(rid).doubtful is None


@SQLITE_ONLY  # the walk's own handling of a conflict, the same on every database
def test_review_doubtful_shows_the_other_persons_version_on_a_conflict_and_corrects_from_it(
    migrated_db_url, monkeypatch
):
    """`ohp review --doubtful` said only "segment 3 was changed since version 1" when someone had corrected the
    segment while it was shown, dropped what was typed and went on to the next passage: the annotator never saw the
    other's text, where the web app shows it with who wrote it and lets one save again on it, deliberately."""
    with Store(migrated_db_url) as store:
        rid = store.save_result(poor_result()).export.recording.id
    read = cli_doubt.by_risk

    def read_then_li_corrects(passages):
        with Store(migrated_db_url) as other:  # li saves the riskiest passage's segment while mei reads it
            riskiest = read(passages)[0].segment
            other.correct_text(riskiest.stored_id, "东莞钦州，宿舍楼。", "li", riskiest.version)
        return read(passages)

    monkeypatch.setattr(cli_doubt, "by_risk", read_then_li_corrects)
    answers = "c\n东莞青州，宿舍。\nc\n东莞钦州，宿舍楼！\nq\n"
    result = CliRunner().invoke(
        cli, ["review", str(rid), "--doubtful", "--user", "mei", "--db", migrated_db_url], input=answers
    )
    assert result.exit_code == 0, result.output
    assert "li saved it first" in result.output and "东莞钦州，宿舍楼。" in result.output
    with Store(migrated_db_url) as store:
        assert store.segments(rid)[2].text == "东莞钦州，宿舍楼！"  # mei's, made on li's version
        assert [
            (c.changed_by, c.after["text"]) for c in store.history(segment_id=store.segments(rid)[2].stored_id)
        ] == [
            ("li", "东莞钦州，宿舍楼。"),
            ("mei", "东莞钦州，宿舍楼！"),
        ]
