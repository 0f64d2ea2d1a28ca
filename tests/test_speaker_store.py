"""Speakers in the store, on SQLite and (with OHP_TEST_POSTGRES_URL) PostgreSQL: a row per label, what the
speakers stage found, names and roles people set (kept in the history, never overridden by the stage,
carried through re-splits and re-transcriptions), enrolled voices, and migration 0004 on old data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from alembic import command
from saving import save_speakers, save_tags, save_transcription
from sqlalchemy import create_engine, inspect, text

from pipeline.errors import ConflictError
from pipeline.records import (
    AudioInfo,
    RecordingResult,
    SearchFilters,
    Segment,
    SpeakerRecord,
    SpeakerTurn,
    StageRun,
    ThemeSuggestion,
    Transcript,
    Word,
)
from pipeline.search.textindex import parse_query
from pipeline.stages.speakers import split_segment
from pipeline.store import Store, alembic_config

from conftest import SQLITE_ONLY

INFO = AudioInfo(Path("/audio/zhang.wav"), "cd" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 30.0)


def seg(start: float, end: float, text_: str, speaker: str | None) -> Segment:
    return Segment(start, end, text_, text_, "en", [Word(start, end, text_, 0.9)], speaker=speaker)


# An interview as the transcribe stage saw it, then as the speakers stage splits it.
UNSPLIT = [seg(0.0, 4.0, "Where were you born? In Wuhan.", None), seg(5.0, 9.0, "We moved to Dongguan in 1998.", None)]
SPLIT = [
    seg(0.0, 1.8, "Where were you born?", "S1"),
    seg(2.2, 4.0, "In Wuhan.", "S2"),
    seg(5.0, 9.0, "We moved to Dongguan in 1998.", "S2"),
]
FOUND = [SpeakerRecord("S1", role="interviewer"), SpeakerRecord("S2", role="interviewee")]


def transcribed(store: Store, segments: list[Segment] = UNSPLIT) -> int:
    return save_transcription(
        store, INFO, Transcript("en", 0.9, segments, "faster-whisper", "base"), {}, "t", {"segments": len(segments)}
    )


def test_save_speakers_splits_the_segments_and_marks_the_stage(store):
    rid = transcribed(store)
    transcribe = store.stage(rid, "transcribe")
    saved = save_speakers(store, rid, FOUND, {"count": None}, "k1", {"speakers": 2}, segments=SPLIT)
    assert saved == FOUND
    assert [(s.text, s.speaker) for s in store.segments(rid)] == [(s.text, s.speaker) for s in SPLIT]
    assert store.stage(rid, "speakers").status == "done" and store.stage(rid, "speakers").report == {"speakers": 2}
    assert store.stage(rid, "transcribe") == transcribe  # not transcribed again
    assert [s.speaker for s in store.segments(rid)] == ["S1", "S2", "S2"]


def test_transcripts_with_labels_get_a_speaker_row_per_label(store):
    rid = transcribed(
        store,
        [
            seg(0, 1, "Hello.", "Interviewer"),
            seg(1, 2, "Hi.", "张长华"),
            seg(2, 3, "So.", "Interviewer"),
            seg(3, 4, "Hm.", None),
        ],
    )
    assert store.speakers(rid) == [SpeakerRecord("Interviewer"), SpeakerRecord("张长华")]
    transcribed(store)  # transcribed again, without speakers
    assert store.speakers(rid) == []


def test_rename_and_role_are_kept_in_the_history_and_the_stage_does_not_override_them(store):
    rid = transcribed(store, SPLIT)
    save_speakers(store, rid, FOUND, {}, "k", {})
    renamed = store.rename_speaker(rid, "S2", "  Zhang\nChanghua ", "mei")
    assert renamed == SpeakerRecord("S2", "Zhang Changhua", "interviewee", named_by="mei")
    assert store.set_role(rid, "S1", "other", "li") == SpeakerRecord("S1", role="other", role_by="li")
    history = store.history(recording_id=rid)
    assert [(h.action, h.changed_by) for h in history] == [("renamed", "mei"), ("role", "li")]
    assert history[0].before["name"] is None and history[0].after["name"] == "Zhang Changhua"
    assert (history[1].before["role"], history[1].after["role"]) == ("interviewer", "other")

    # The stage runs again (an enrolled voice matches S2, the heuristics swap the roles): people's choices stay.
    again = [SpeakerRecord("S1", role="interviewee"), SpeakerRecord("S2", "Wang Fang", "interviewer", person_id=None)]
    assert save_speakers(store, rid, again, {}, "k2", {}) == [
        SpeakerRecord("S1", role="other", role_by="li"),
        SpeakerRecord("S2", "Zhang Changhua", "interviewer", named_by="mei"),
    ]
    assert store.rename_speaker(rid, "S2", "", "mei") == SpeakerRecord("S2", None, "interviewer")  # the label again


def test_unknown_speakers_and_roles_are_refused(store):
    rid = transcribed(store, SPLIT)
    with pytest.raises(LookupError, match="no speaker 'S9' \\(it has S1, S2\\)"):
        store.rename_speaker(rid, "S9", "Zhang", "mei")
    with pytest.raises(ValueError, match="unknown role 'boss'"):
        store.set_role(rid, "S1", "boss", "mei")
    with pytest.raises(ValueError, match="unknown role"):
        save_speakers(store, rid, [SpeakerRecord("S1", role="boss")], {}, "k", {})
    with pytest.raises(LookupError, match="no recording"):
        save_speakers(store, rid + 1, FOUND, {}, "k", {})
    assert store.history(recording_id=rid) == []


def test_names_roles_and_decisions_follow_the_voice_when_the_speakers_are_found_again(store):
    rid = transcribed(store)
    save_speakers(store, rid, FOUND, {}, "k1", {}, segments=SPLIT)
    store.rename_speaker(rid, "S2", "Zhang Changhua", "mei")
    store.set_role(rid, "S1", "other", "mei")
    ids = {s.text: s.id for s in store.segments(rid)}
    save_tags(
        store,
        rid,
        {ids["We moved to Dongguan in 1998."]: [ThemeSuggestion("migration", 0.8, ((3, 8),))]},
        {},
        "t",
        {},
        "k",
    )
    [suggestion] = store.annotations(rid)
    store.decide(suggestion.id, "accepted", "mei")

    # Found again with the labels the other way round: the names and roles go with who spoke when.
    swapped = [seg(s.start, s.end, s.text, {"S1": "S2", "S2": "S1"}[s.speaker]) for s in SPLIT]
    saved = save_speakers(
        store,
        rid,
        [SpeakerRecord("S2", role="interviewer"), SpeakerRecord("S1", role="interviewee")],
        {},
        "k2",
        {},
        segments=swapped,
    )
    assert sorted(saved, key=lambda s: s.label) == [
        SpeakerRecord("S1", "Zhang Changhua", "interviewee", named_by="mei"),
        SpeakerRecord("S2", None, "other", role_by="mei"),
    ]
    [carried] = store.annotations(rid)
    assert (carried.theme, carried.status, store.segments(rid)[2].id) == ("migration", "accepted", carried.segment_id)
    assert store.stage(rid, "tag") is None  # suggestions are made anew on the new segments
    moves = [h for h in store.history(recording_id=rid) if h.action == "speaker moved"]
    assert sorted((h.before["label"], h.after["label"]) for h in moves) == [("S1", "S2"), ("S2", "S1")]


def test_enroll_and_people(store):
    profile = [i / 256 for i in range(256)]
    person = store.enroll(" Wang  Fang ", profile, "mei", ["/audio/wang-1.wav", Path("/audio/wang-2.wav")])
    assert (person.name, person.enrolled_by, person.sources) == (
        "Wang Fang",
        "mei",
        ("/audio/wang-1.wav", "/audio/wang-2.wav"),
    )
    assert person.profile == pytest.approx(profile) and len(person.profile) == 256
    again = store.enroll("Wang Fang", [1.0] * 256, "li")
    assert again.id == person.id and again.profile == (1.0,) * 256 and again.enrolled_by == "li"
    store.enroll("Chen Jie", [0.5] * 256, "li")
    assert [p.name for p in store.people()] == ["Chen Jie", "Wang Fang"]
    with pytest.raises(ValueError, match="needs a name"):
        store.enroll("  ", profile, "mei")

    rid = transcribed(store, SPLIT)
    save_speakers(store, rid, [SpeakerRecord("S1", "Wang Fang", "interviewer", person_id=person.id)], {}, "k", {})
    assert store.speakers(rid)[0] == SpeakerRecord("S1", "Wang Fang", "interviewer", person_id=person.id)


def test_forgetting_a_person_removes_the_profile_and_the_names_it_gave(store):
    wang = store.enroll("Wang Fang", [1.0] * 256, "mei")
    chen = store.enroll("Chen Jie", [0.5] * 256, "mei")
    rid = transcribed(store, SPLIT)
    found = [
        SpeakerRecord("S1", "Wang Fang", "interviewer", person_id=wang.id),
        SpeakerRecord("S2", "Chen Jie", "interviewee", person_id=chen.id),
    ]
    save_speakers(store, rid, found, {}, "k", {"enrolled": {"S1": "Wang Fang", "S2": "Chen Jie"}})
    other = save_transcription(
        store,
        replace(INFO, path=Path("/audio/li.wav"), sha256="ef" * 32),
        Transcript("en", 0.9, SPLIT, "faster-whisper", "base"),
        {},
        "t",
        {},
    )
    save_speakers(store, other, [SpeakerRecord("S1", "Wang Fang", person_id=wang.id)], {}, "k", {})
    store.rename_speaker(other, "S1", "Wang Fang (teacher)", "li")  # a person's name stays

    assert store.forget_person(" Wang  Fang") == 1
    assert [p.name for p in store.people()] == ["Chen Jie"]
    assert store.speakers(rid) == [
        SpeakerRecord("S1", None, "interviewer"),
        SpeakerRecord("S2", "Chen Jie", "interviewee", person_id=chen.id),
    ]
    assert store.speakers(other)[0] == SpeakerRecord("S1", "Wang Fang (teacher)", named_by="li")
    assert store.stage(rid, "speakers").report == {"enrolled": {"S2": "Chen Jie"}}
    with pytest.raises(LookupError, match="no enrolled voice 'Wang Fang' \\(there are Chen Jie\\)"):
        store.forget_person("Wang Fang")


def test_migration_gives_stored_labels_their_speaker_rows(db_url):
    command.upgrade(alembic_config(db_url), "0003")
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO recordings (id, sha256, path, size_bytes, format, duration, extra, created_at, updated_at)"
                " VALUES (1, 'ab', '/a.vtt', 1, 'transcript/vtt', 9.0, '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        for i, speaker in enumerate(["张长华", None, "张长华", "Interviewer"]):
            conn.execute(
                text(
                    'INSERT INTO segments (recording_id, idx, start, "end", text, '
                    "original_text, language, speaker, engine, model)"
                    " VALUES (1, :i, :i, :i + 1, 'x', 'x', 'zh', :speaker, 'import', 'vtt')"
                ),
                {"i": i, "speaker": speaker},
            )
    engine.dispose()
    with Store(db_url) as store:
        assert sorted(s.label for s in store.speakers(1)) == ["Interviewer", "张长华"]


# --- enrolled voices and consent ------------------------------------------------------------------------

LI = replace(INFO, path=Path("/audio/li.wav"), sha256="ef" * 32)


def recording_of(store: Store, info: AudioInfo) -> int:
    return save_transcription(store, info, Transcript("en", 0.9, SPLIT, "faster-whisper", "base"), {}, "t", {})


def test_a_voice_knows_the_recordings_it_was_enrolled_from(store):
    rid = transcribed(store, SPLIT)
    clip = "12" * 32  # a file cut from the interview, not itself a recording of the collection
    person = store.enroll("Zhang", [1.0] * 256, "mei", ["/clips/zhang.wav"], origins=[clip, INFO.sha256])
    assert (person.origins, person.origin_known) == (tuple(sorted([clip, INFO.sha256])), True)
    assert [r.id for r in person.from_recordings] == [rid]
    [listed] = store.people()
    assert listed == person
    apart = store.enroll("Mei", [0.5] * 256, "mei", ["/clips/mei.wav"])  # recorded apart from every interview
    assert (apart.origins, apart.origin_known, apart.from_recordings) == ((), True, ())


def test_closing_the_recording_a_voice_came_from_takes_the_name_it_gave_elsewhere(store):
    rid = recording_of(store, INFO)
    other, third = recording_of(store, LI), recording_of(store, replace(INFO, path=Path("/a/c.wav"), sha256="0f" * 32))
    zhang = store.enroll("Zhang", [1.0] * 256, "mei", origins=[INFO.sha256])
    for recording_id in (rid, other, third):
        found = [SpeakerRecord("S1", "Zhang", "interviewee", person_id=zhang.id), SpeakerRecord("S2", role="other")]
        save_speakers(store, recording_id, found, {}, "k", {"enrolled": {"S1": "Zhang"}})
    store.rename_speaker(third, "S1", "Zhang Changhua", "li")  # a person's name stays
    store.set_role(other, "S1", "other", "li")  # the history keeps the speaker as it was: named by the voice

    store.set_metadata(rid, consent="closed", release_on="2040-01-01")
    assert store.speakers(rid)[0] == SpeakerRecord("S1", "Zhang", "interviewee", person_id=zhang.id)  # its own
    assert store.speakers(other)[0] == SpeakerRecord("S1", None, "other", role_by="li")  # the label again
    [role] = store.history(recording_id=other)
    assert (role.before["name"], role.after["name"], role.after["role"]) == (None, None, "other")
    [renamed] = store.history(recording_id=third)  # the name a person gave stays; the voice's before it goes
    assert (renamed.before["name"], renamed.after["name"]) == (None, "Zhang Changhua")
    assert store.speakers(third)[0] == SpeakerRecord("S1", "Zhang Changhua", "interviewee", named_by="li")
    assert store.stage(other, "speakers").report == {"enrolled": {}}
    assert store.stage(rid, "speakers").report == {"enrolled": {"S1": "Zhang"}}
    found = store.search(parse_query("Dongguan OR born OR Wuhan"), SearchFilters(speaker="Zhang"))
    assert {hit.recording_id for hit in found.hits} == {rid}  # nor is the name found by search there

    # A run's result that names the speaker with it anyway (read before the consent changed) is not stored so.
    found = [SpeakerRecord("S1", "Zhang", "interviewee", person_id=zhang.id)]
    save_speakers(store, other, found, {}, "k", {"enrolled": {"S1": "Zhang"}})
    assert store.speakers(other)[0] == SpeakerRecord("S1", None, "other", role_by="li")
    assert store.stage(other, "speakers").report == {"enrolled": {}}

    # Released: the voice names speakers elsewhere again, on the next run of the speakers stage.
    store.set_metadata(rid, consent="open")
    assert store.speakers(other)[0].name is None
    save_speakers(store, other, found, {}, "k", {})
    assert store.speakers(other)[0] == SpeakerRecord("S1", "Zhang", "other", role_by="li", person_id=zhang.id)


def test_a_voice_enrolled_apart_is_withheld_once_its_file_is_a_closed_recording(store):
    zhang = store.enroll("Zhang", [1.0] * 256, "mei", origins=[LI.sha256])  # not a recording of the collection yet
    rid = recording_of(store, INFO)
    save_speakers(store, rid, [SpeakerRecord("S1", "Zhang", person_id=zhang.id)], {}, "k", {})
    other = recording_of(store, LI)
    store.set_metadata(other, consent="closed")
    assert store.speakers(rid)[0] == SpeakerRecord("S1")


def test_the_origins_of_a_voice_can_be_given_again(store):
    rid, other = recording_of(store, INFO), recording_of(store, LI)
    store.set_metadata(rid, consent="closed")
    zhang = store.enroll("Zhang", [1.0] * 256, "mei")  # said to be recorded apart: names speakers everywhere
    assert (zhang.origin_by, zhang.origin_at) == ("mei", zhang.enrolled_at)  # the enroller said so
    save_speakers(store, other, [SpeakerRecord("S1", "Zhang", person_id=zhang.id)], {}, "k", {})
    assert store.speakers(other)[0].name == "Zhang"
    corrected = store.set_voice_origins(" Zhang ", [INFO.sha256], "li")  # it was cut from the closed interview
    assert [r.id for r in corrected.from_recordings] == [rid] and corrected.profile == zhang.profile
    assert store.speakers(other)[0] == SpeakerRecord("S1")
    # Who changed what the voice may do, and when, is kept; the enrolment's own record stays.
    [listed] = store.people()
    assert listed == corrected
    assert (corrected.origin_by, corrected.enrolled_by, corrected.enrolled_at) == ("li", "mei", zhang.enrolled_at)
    assert corrected.origin_at is not None and corrected.origin_at >= zhang.enrolled_at
    with pytest.raises(LookupError, match="no enrolled voice 'Li'"):
        store.set_voice_origins("Li", [], "li")


def test_migration_keeps_the_voices_enrolled_before_and_withholds_them_outside_their_own_recordings(db_url):
    command.upgrade(alembic_config(db_url), "0014")
    engine = create_engine(db_url)
    with engine.begin() as conn:
        for rid, sha, path in ((1, "ab", "/audio/zhang.wav"), (2, "cd", "/audio/li.wav")):
            conn.execute(
                text(
                    "INSERT INTO recordings (id, sha256, path, size_bytes, format, duration, extra, created_at,"
                    " updated_at) VALUES (:rid, :sha, :path, 1, 'wav', 9.0, '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"rid": rid, "sha": sha, "path": path},
            )
            conn.execute(
                text(
                    "INSERT INTO stages (recording_id, stage, status, settings, settings_key, report)"
                    " VALUES (:rid, 'speakers', 'done', '{}', 'k', :report)"
                ),
                {"rid": rid, "report": '{"enrolled": {"S1": "Zhang", "S2": "Mei"}}'},
            )
        # Zhang from one of the recordings (its path), Mei from a clip ohp knows nothing of.
        for pid, name, sources in ((1, "Zhang", '["/audio/zhang.wav"]'), (2, "Mei", '["/clips/mei.wav"]')):
            conn.execute(
                text(
                    "INSERT INTO people (id, name, profile, sources, enrolled_by, enrolled_at)"
                    " VALUES (:pid, :name, :profile, :sources, 'mei', CURRENT_TIMESTAMP)"
                ),
                {"pid": pid, "name": name, "profile": bytes(8), "sources": sources},
            )
        for rid, label, name, named_by, pid in (
            (1, "S1", "Zhang", None, 1),
            (1, "S2", "Mei", None, 2),
            (2, "S1", "Zhang", None, 1),
            (2, "S2", "Mei Lan", "li", 2),  # a name a person set
        ):
            conn.execute(
                text(
                    "INSERT INTO speakers (recording_id, label, name, named_by, person_id)"
                    " VALUES (:rid, :label, :name, :named_by, :pid)"
                ),
                {"rid": rid, "label": label, "name": name, "named_by": named_by, "pid": pid},
            )
        state = '{"label": "S1", "name": "Zhang", "named_by": null, "role": "%s", "role_by": %s}'
        conn.execute(
            text(
                "INSERT INTO history (recording_id, action, changed_by, changed_at, before, after)"
                " VALUES (2, 'role', 'li', CURRENT_TIMESTAMP, :before, :after)"
            ),
            {"before": state % ("interviewee", "null"), "after": state % ("other", '"li"')},
        )
    engine.dispose()
    with Store(db_url) as store:
        [role] = store.history(recording_id=2)
        assert (role.before["name"], role.after["name"], role.after["role"]) == (None, None, "other")
        mei, zhang = store.people()
        assert (zhang.origins, zhang.origin_known, [r.id for r in zhang.from_recordings]) == (("ab",), False, [1])
        assert (mei.origins, mei.origin_known, mei.sources) == ((), False, ("/clips/mei.wav",))
        assert store.speakers(1) == [SpeakerRecord("S1", "Zhang", person_id=1), SpeakerRecord("S2")]
        assert store.speakers(2) == [SpeakerRecord("S1"), SpeakerRecord("S2", "Mei Lan", named_by="li")]
        assert store.stage(1, "speakers").report == {"enrolled": {"S1": "Zhang"}}
        assert store.stage(2, "speakers").report == {"enrolled": {}}


def test_migration_0017_leaves_who_gave_the_origins_of_voices_enrolled_before_it_unknown(db_url):
    command.upgrade(alembic_config(db_url), "0016")
    engine = create_engine(db_url)
    with engine.begin() as conn:
        # Zhang's origin was given (at enrolment or by `ohp speakers source`, which kept no user); Mei's never.
        for pid, name, known in ((1, "Zhang", True), (2, "Mei", False)):
            conn.execute(
                text(
                    "INSERT INTO people (id, name, profile, sources, enrolled_by, enrolled_at, origin_known)"
                    " VALUES (:pid, :name, :profile, '[]', 'mei', CURRENT_TIMESTAMP, :known)"
                ),
                {"pid": pid, "name": name, "profile": bytes(8), "known": known},
            )
    Store(db_url).close()  # upgrades to the newest revision
    with Store(db_url) as store:
        mei, zhang = store.people()
        assert [(p.origin_known, p.origin_by, p.origin_at) for p in (zhang, mei)] == [
            (True, None, None),
            (False, None, None),
        ]
        store.set_voice_origins("Mei", [], "li")
        assert store.people()[0].origin_by == "li"

    command.downgrade(alembic_config(db_url), "0016")
    with engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("people")}
        assert not columns & {"origin_by", "origin_at"} and "origin_known" in columns
        assert conn.execute(text("SELECT count(*) FROM people")).scalar_one() == 2
    engine.dispose()


def test_an_imported_file_that_closes_a_voices_recording_takes_the_names_it_gave_elsewhere(store):
    zhang = store.enroll("Zhang", [1.0] * 256, "mei", origins=[INFO.sha256])  # its recording not stored yet
    other = recording_of(store, LI)
    save_speakers(store, other, [SpeakerRecord("S1", "Zhang", person_id=zhang.id)], {}, "k", {})
    closed = RecordingResult(
        INFO,
        Transcript("en", 0.9, SPLIT, "import", "vtt"),
        description={"consent": "closed"},
        stages={"transcribe": StageRun({"imported": "vtt"}, "i", {})},
    )
    store.save_result(closed)
    assert store.speakers(other)[0] == SpeakerRecord("S1")


@SQLITE_ONLY
def test_a_voice_forgotten_while_a_pass_ran_names_no_one_and_the_pass_is_saved(store):
    """A pass reads the enrolled voices when it starts: `ohp speakers forget` while it ran left it naming a speaker
    with a voice no longer there, and its save failed (FOREIGN KEY constraint failed), the recording's work lost.
    The pass is saved, and the forgotten voice names no one there, nor is it in the stage's report."""
    wang = store.enroll("Wang", [1.0] * 256, "mei", ["/clips/wang.wav"], origins=[])
    found = [SpeakerRecord("S1", "Wang", "interviewer", person_id=wang.id), SpeakerRecord("S2", None, "interviewee")]
    segments = [seg(0.0, 3.0, "Where did you work?", "S1"), seg(3.0, 6.0, "In Dongguan.", "S2")]
    result = RecordingResult(
        INFO,
        Transcript("en", 0.9, segments, "faster-whisper", "base"),
        speakers=found,
        stages={"transcribe": StageRun({}, "k", {}), "speakers": StageRun({}, "s", {"enrolled": {"S1": "Wang"}})},
    )
    store.forget_person("Wang")  # meanwhile
    rid = store.save_result(result).export.recording.id
    assert [(s.label, s.name, s.person_id) for s in store.speakers(rid)] == [("S1", None, None), ("S2", None, None)]
    assert store.stage(rid, "speakers").report["enrolled"] == {}


@SQLITE_ONLY  # the check is the store's, the same on every database
def test_a_correction_made_while_the_speakers_were_found_is_not_split_away(store):
    """The speakers stage splits the segments it read where the speaker changes. mei corrected one while it ran:
    the save put the recogniser's text back in two parts, each too little of her segment to take her correction
    over (only the history kept it, 'dropped'); a revert made meanwhile was undone alike. The save is refused,
    as one whose segment went is, and the next run finds the speakers on the text as it is now."""
    words = [Word(0.0, 0.9, "Where", 0.9), Word(0.9, 1.8, "born?", 0.9), Word(2.2, 3.0, "In", 0.9)]
    words.append(Word(3.0, 4.0, "Wuhan.", 0.9))
    heard = "Where born? In Wuhan."
    rid = transcribed(store, [Segment(0.0, 4.0, heard, heard, "en", words)])
    [read] = store.transcript(rid).segments  # what the stage works on
    store.correct_text(read.stored_id, "Where were you born? In Wuhan.", "mei", read.version)
    parts = split_segment(read, [SpeakerTurn(0.0, 1.8, "S1"), SpeakerTurn(1.8, 4.0, "S2")])
    with pytest.raises(ConflictError, match=f"segment {read.stored_id} was changed while"):
        save_speakers(store, rid, FOUND, {"count": None}, "k1", {}, segments=parts)
    [kept] = store.segments(rid)
    assert (kept.text, kept.corrected, store.stage(rid, "speakers")) == ("Where were you born? In Wuhan.", True, None)
