"""The access policy (pipeline.access): roles, consent with release dates, and the store's search SQL
agreeing with it on every combination. The SQL test runs on SQLite, and on PostgreSQL when
OHP_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from saving import save_transcription

from pipeline import access
from pipeline.errors import ForbiddenError, NotFoundError
from pipeline.records import (
    CONSENT_LEVELS,
    AudioInfo,
    PersonRecord,
    RecordingRecord,
    SearchFilters,
    Segment,
    Transcript,
    UserRecord,
)
from pipeline.search.textindex import parse_query

TODAY = date(2026, 3, 15)
RELEASES = {"none": None, "past": "2026-03-14", "today": "2026-03-15", "future": "2026-03-16"}


def user(role: str) -> UserRecord:
    return UserRecord(1, f"a {role}", role, "2026-01-01T00:00:00+00:00")


def recording(consent: str = "open", release_on: str | None = None, rid: int = 7) -> RecordingRecord:
    path = "/audio/interview.wav"
    return RecordingRecord(rid, "ab" * 32, path, 100, "wav", 60.0, "en", consent=consent, release_on=release_on)


@pytest.mark.parametrize(
    ("consent", "release", "in_force"),
    [
        ("open", "none", "open"),
        ("open", "future", "open"),
        ("restricted", "none", "restricted"),
        ("restricted", "future", "restricted"),
        ("restricted", "today", "open"),
        ("restricted", "past", "open"),
        ("closed", "none", "closed"),
        ("closed", "future", "closed"),
        ("closed", "today", "open"),
        ("closed", "past", "open"),
    ],
)
def test_a_restriction_ends_on_its_release_date(consent, release, in_force):
    found = recording(consent, RELEASES[release])
    assert access.consent_in_force(found, TODAY) == in_force
    assert found.access(TODAY) == in_force  # the record asks the policy


@pytest.mark.parametrize(
    ("current", "proposed", "looser"),
    [
        (("closed", "none"), ("open", "none"), True),
        (("closed", "none"), ("restricted", "none"), True),
        (("closed", "none"), ("closed", "future"), True),  # it would end, where it does not
        (("closed", "future"), ("closed", "none"), False),
        (("restricted", "none"), ("closed", "future"), True),  # closed until tomorrow, then open: looser after
        (("closed", "past"), ("open", "none"), False),  # open already
        (("open", "none"), ("restricted", "none"), False),
        (("restricted", "future"), ("restricted", "future"), False),
    ],
)
def test_a_consent_loosens_when_it_opens_the_recording_to_more_on_any_day_from_today(current, proposed, looser):
    now, then = (recording(consent, RELEASES[release]) for consent, release in (current, proposed))
    assert access.loosens(now, then, TODAY) is looser


def test_the_consent_label_names_the_release_date_of_a_restriction():
    assert access.consent_label(recording("closed", "2040-01-01")) == "closed until 2040-01-01"
    assert access.consent_label(recording("restricted")) == "restricted"
    assert access.consent_label(recording("open", "2040-01-01")) == "open"  # nothing to wait for


def test_roles_are_ordered_and_each_may_what_the_ones_before_may():
    assert [role for role in access.ROLES if access.has_role(role, "annotator")] == ["annotator", "researcher"]
    for change, least in access.CHANGES.items():
        allowed = [role for role in access.ROLES if access.may_change(user(role), change)]
        assert allowed == list(access.ROLES[access.ROLES.index(least) :]), change
    assert access.may_change(user("annotator"), "text") and not access.may_change(user("viewer"), "annotations")
    assert not access.may_change(user("annotator"), "consent") and access.may_change(user("researcher"), "users")
    with pytest.raises(ValueError):
        access.has_role("admin", "viewer")  # an unknown role is a bug, not a lesser role


def test_a_change_the_role_does_not_allow_is_forbidden_and_says_why():
    access.check_change(user("researcher"), "metadata", "consent")
    with pytest.raises(ForbiddenError, match=r"changing consent needs the researcher role \(yours is annotator\)"):
        access.check_change(user("annotator"), "text", "consent")
    with pytest.raises(KeyError):
        access.check_change(user("researcher"), "everything")  # a change the policy does not know is a bug


def test_a_viewer_does_not_learn_that_a_closed_recording_exists():
    closed = recording("closed", "2999-01-01")
    with pytest.raises(NotFoundError, match="no recording with id 7"):
        access.check_see(user("viewer"), closed)
    for role in ("annotator", "researcher"):
        assert access.check_see(user(role), closed) is closed
    restricted = recording("restricted", rid=8)
    assert access.visible(user("viewer"), [closed, restricted]) == [restricted]
    assert access.visible(user("annotator"), [closed, restricted]) == [closed, restricted]
    assert access.hides_closed(user("viewer")) and not access.hides_closed(user("annotator"))


@pytest.mark.parametrize(("consent", "release"), list(itertools.product(CONSENT_LEVELS, RELEASES)))
def test_who_sees_and_what_is_exported(consent, release):
    found = recording(consent, RELEASES[release])
    closed = consent == "closed" and release in ("none", "future")
    assert access.may_see(user("viewer"), found, TODAY) is not closed
    assert access.may_see(user("annotator"), found, TODAY) and access.may_see(user("researcher"), found, TODAY)
    assert access.exported(found, include_closed=False, today=TODAY) is not closed
    assert access.exported(found, include_closed=True, today=TODAY)
    assert access.writes_transcript_files(found, TODAY) is not closed
    assert access.closed_ids([found], TODAY) == ({found.id} if closed else set())  # what vocabulary marks


def test_only_a_researcher_may_export_closed_recordings():
    access.check_export_closed(user("researcher"), "rita")
    refused = "only a researcher may export closed recordings: ann has the annotator role"
    with pytest.raises(ForbiddenError, match=refused):
        access.check_export_closed(user("annotator"), "ann")
    with pytest.raises(ForbiddenError, match=r"nobody is not a user \(ohp user add\)"):
        access.check_export_closed(None, "nobody")


def test_the_search_sql_agrees_with_the_policy(store, tmp_path):
    """Every consent × release date (none, before, on, after today) × role: the store's hide_closed SQL
    finds exactly the recordings the policy lets the role see."""
    today = date.today()  # the store's SQL compares with today's date
    releases = [None, *(str(today + timedelta(days=d)) for d in (-1, 0, 1))]
    recordings = []
    for n, (consent, release_on) in enumerate(itertools.product(CONSENT_LEVELS, releases)):
        path = Path(tmp_path / f"interview-{n}.wav")
        info = AudioInfo(path, f"{n:064x}", 1000 + n, "wav", "pcm_s16le", 16000, 1, 5.0)
        segments = [Segment(0.0, 4.0, "the wages were paid by the piece", "", "en")]
        rid = save_transcription(store, info, Transcript("en", 0.99, segments, "faster-whisper", "base"), {}, "k", {})
        recordings.append(store.set_metadata(rid, consent=consent, release_on=release_on))
    assert len({(r.consent, r.release_on) for r in recordings}) == len(CONSENT_LEVELS) * len(releases)
    for role in access.ROLES:
        asker = user(role)
        found = store.search(parse_query("wages"), SearchFilters(hide_closed=access.hides_closed(asker)), limit=100)
        expected = {r.id for r in recordings if access.may_see(asker, r)}
        assert {hit.recording_id for hit in found.hits} == expected, role
    # the viewer's search must leave something out, or the test shows nothing
    assert len(access.visible(user("viewer"), recordings)) == len(recordings) - 2


# --- enrolled voices ------------------------------------------------------------------------------------

HERE, ELSEWHERE = "ab" * 32, "ef" * 32  # the sha256 of the voice's own recording, and of another


def voice(*sources: RecordingRecord, origins: tuple[str, ...] | None = None, known: bool = True) -> PersonRecord:
    """A voice enrolled from `sources` (stored recordings; `origins` the sha256 of every file it came from)."""
    shas = tuple(r.sha256 for r in sources) if origins is None else origins
    return PersonRecord(
        1, "Wang Fang", (1.0,), ("/audio/wang.wav",), "mei", "2026-01-01T00:00:00+00:00", shas, known, sources
    )


@pytest.mark.parametrize(("consent", "release"), [("closed", "none"), ("closed", "future")])
def test_a_voice_from_a_closed_recording_names_nobody_outside_it(consent, release):
    closed = voice(recording(consent, RELEASES[release]))
    until = f" until {RELEASES[release]}" if RELEASES[release] else ""
    assert access.voice_withheld(closed, ELSEWHERE, TODAY) == f"enrolled from interview.wav, closed{until}"
    assert access.voice_withheld(closed, None, TODAY) == access.voice_withheld(closed, ELSEWHERE, TODAY)
    assert access.voice_withheld(closed, HERE, TODAY) is None  # in its own recording, as before


@pytest.mark.parametrize(
    ("consent", "release"), [("open", "none"), ("restricted", "none"), ("closed", "today"), ("closed", "past")]
)
def test_a_voice_from_a_recording_not_closed_today_names_speakers_everywhere(consent, release):
    assert access.voice_withheld(voice(recording(consent, RELEASES[release])), ELSEWHERE, TODAY) is None


def test_one_closed_source_among_several_withholds_the_voice():
    other = replace(recording("closed", rid=8), sha256="cd" * 32, path="/audio/li.wav")
    both = voice(recording("open"), other)
    assert access.voice_withheld(both, ELSEWHERE, TODAY) == "enrolled from li.wav, closed"
    assert access.voice_withheld(both, HERE, TODAY) is None and access.voice_withheld(both, "cd" * 32, TODAY) is None


def test_a_voice_recorded_apart_names_speakers_everywhere_and_one_of_unknown_origin_only_in_its_own():
    apart = voice(origins=("12" * 32,))  # a file that is no recording of the collection
    assert access.voice_withheld(apart, ELSEWHERE, TODAY) is None
    unknown = voice(recording("open"), known=False)  # enrolled before ohp kept where a voice came from
    assert access.voice_withheld(unknown, ELSEWHERE, TODAY) == "where it was enrolled from is not known"
    assert access.voice_withheld(unknown, HERE, TODAY) is None
