"""The speaker turn stored with each segment (segments.turn, migration 0012): after every kind of write the
store does, the stored numbers are those a recount from scratch gives, on SQLite and PostgreSQL; and the
migration numbers the segments a database already holds, and goes back down."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from saving import save_speakers, save_tags, save_transcription
from sqlalchemy import create_engine, inspect, text

from pipeline.imports import import_file
from pipeline.records import AudioInfo, Segment, SpeakerRecord, ThemeSuggestion, Transcript, Word
from pipeline.store import Store, alembic_config
from pipeline.store.transcripts import turn_numbers

INFO = AudioInfo(Path("/audio/turns.wav"), "ef" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 60.0)


def seg(start: float, speaker: str | None, text_: str = "line") -> Segment:
    return Segment(start, start + 1.5, text_, text_, "en", [Word(start, start + 1.0, text_, 0.9)], speaker=speaker)


def stored_and_recounted(db_url: str) -> tuple[list, list]:
    """(recording, segment id, stored turn) of every segment, and the same with the turn counted anew here: in
    order of start (then of place in the transcript), a new turn wherever the speaker changes or is unknown."""
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT recording_id, id, speaker, turn FROM segments ORDER BY recording_id, start, idx")
        ).all()
    engine.dispose()
    stored, recounted = [], []
    turn, previous = 0, None
    for k, (recording_id, segment_id, speaker, stored_turn) in enumerate(rows):
        if k == 0 or recording_id != rows[k - 1].recording_id:
            turn, previous = 0, None
        turn += speaker is None or speaker != previous
        previous = speaker
        stored.append((recording_id, segment_id, stored_turn))
        recounted.append((recording_id, segment_id, turn))
    return stored, recounted


def assert_turns_recounted(db_url: str) -> None:
    stored, recounted = stored_and_recounted(db_url)
    assert stored and stored == recounted


def test_turn_numbers():
    assert turn_numbers([]) == []
    # Out of order by start; a speaker's run broken by nobody (None), and None never joins a turn.
    segments = [seg(9.0, "A"), seg(0.0, "A"), seg(3.0, "A"), seg(5.0, None), seg(6.0, None), seg(7.0, "A")]
    assert turn_numbers(segments) == [4, 1, 1, 2, 3, 4]
    assert turn_numbers([seg(1.0, "A"), seg(1.0, "B"), seg(1.0, "A")]) == [1, 2, 3]  # equal starts: by place


def test_every_write_keeps_the_stored_turns_equal_to_a_recount(store, db_url, tmp_path):
    first = [seg(0.0, None), seg(4.0, None), seg(2.0, None)]
    rid = save_transcription(store, INFO, Transcript("en", 0.9, first, "faster-whisper", "base"), {}, "t", {})
    assert_turns_recounted(db_url)

    # The speakers stage splits and labels the segments anew (a re-run: its labels replace the old ones).
    split = [seg(0.0, "S1"), seg(1.5, "S1"), seg(2.0, "S2"), seg(4.0, "S1"), seg(3.0, "S2"), seg(6.0, None)]
    save_speakers(store, rid, [SpeakerRecord("S1", None, "interviewer")], {}, "s", {}, split)
    assert_turns_recounted(db_url)
    save_speakers(store, rid, [SpeakerRecord("S2", None, "interviewee")], {}, "s2", {}, [*split[:3], seg(4.0, "S2")])
    assert_turns_recounted(db_url)

    # People's work: themes, decisions, names and roles, text corrections and their undoing.
    ids = [s.id for s in store.segments(rid)]
    save_tags(store, rid, {ids[0]: [ThemeSuggestion("wages", 0.8, ((0, 4),))]}, {}, "t1", {}, "t1")
    note = store.annotations(rid)[0]
    store.decide(note.id, "accepted", "alice")
    store.add_annotation(ids[1], "housing", "bob")
    store.rename_speaker(rid, "S1", "Li Wei", "alice")
    store.set_role(rid, "S1", "interviewee", "alice")
    segment, _ = store.correct_text(ids[2], "corrected line", "alice", 1)
    store.revert(store.history(segment_id=segment.id)[-1].id, "alice")
    assert_turns_recounted(db_url)

    # A re-transcription: new segments, the people's work carried over to them.
    again = [seg(0.0, "S1"), seg(2.0, "S1"), seg(2.5, "S2"), seg(5.0, "S2"), seg(8.0, "S1")]
    save_transcription(store, INFO, Transcript("en", 0.9, again, "faster-whisper", "base"), {}, "t2", {})
    assert {a.theme for a in store.annotations(rid)} == {"wages", "housing"}
    assert_turns_recounted(db_url)

    # Imported transcripts (a second recording): SRT with speakers, then the same file changed.
    srt = tmp_path / "interview.srt"
    cues = [("Q", "What did you do?"), ("A", "I worked."), ("A", "Long hours."), ("Q", "Where?"), ("A", "Dongguan.")]
    srt.write_text(
        "\n".join(f"{i + 1}\n00:00:0{i},000 --> 00:00:0{i},900\n{who}: {line}\n" for i, (who, line) in enumerate(cues)),
        encoding="utf-8",
    )
    imported = import_file(srt, store)
    assert [s.speaker for s in store.segments(imported)] == ["Q", "A", "A", "Q", "A"]
    assert_turns_recounted(db_url)
    stored, _ = stored_and_recounted(db_url)
    assert [turn for recording, _, turn in stored if recording == imported] == [1, 2, 2, 3, 4]


def test_the_migration_numbers_stored_segments_and_goes_back_down(db_url):
    command.upgrade(alembic_config(db_url), "0011")
    engine = create_engine(db_url)
    speakers = {1: ["A", "A", None, None, "B", "B", "A"], 2: ["B", "A", "A"], 3: []}
    with engine.begin() as conn:
        for rid, labels in speakers.items():
            conn.execute(
                text(
                    "INSERT INTO recordings (id, sha256, path, size_bytes, format, duration, extra, created_at, "
                    "updated_at) VALUES (:rid, :sha, '/a.vtt', 1, 'transcript/vtt', 9.0, '{}', CURRENT_TIMESTAMP, "
                    "CURRENT_TIMESTAMP)"
                ),
                {"rid": rid, "sha": f"{rid:064d}"},
            )
            # idx runs against start in recording 1: the turn follows start.
            for i, speaker in enumerate(labels):
                conn.execute(
                    text(
                        'INSERT INTO segments (recording_id, idx, start, "end", text, original_text, language, '
                        "speaker, engine, model) VALUES (:rid, :i, :start, :start + 1, 'x', 'x', 'en', :speaker, "
                        "'import', 'vtt')"
                    ),
                    {"rid": rid, "i": i, "start": (len(labels) - i) * 2.0 if rid == 1 else i * 2.0, "speaker": speaker},
                )
    Store(db_url).close()  # upgrades to the newest revision
    assert_turns_recounted(db_url)
    stored, _ = stored_and_recounted(db_url)
    assert [turn for rid, _, turn in stored if rid == 1] == [1, 2, 2, 3, 4, 5, 5]
    assert [turn for rid, _, turn in stored if rid == 2] == [1, 2, 2]

    command.downgrade(alembic_config(db_url), "0011")
    with engine.connect() as conn:
        assert "turn" not in {c["name"] for c in inspect(conn).get_columns("segments")}
        assert conn.execute(text("SELECT count(*) FROM segments")).scalar_one() == 10
    engine.dispose()
    Store(db_url).close()
    assert_turns_recounted(db_url)
