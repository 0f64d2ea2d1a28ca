"""`ohp speakers enroll / rename / role / list` through typer's runner; names and roles reach the exports."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import pytest
from saving import save_speakers, save_transcription
from sqlalchemy import text
from typer.testing import CliRunner

from pipeline import batch
from pipeline.batch import BatchReport
from pipeline.cli import app
from pipeline.process import SpeakerOptions
from pipeline.records import AudioInfo, Segment, SpeakerRecord, Transcript
from pipeline.stages.audio import probe
from pipeline.store import Store

from conftest import corpus_path

runner = CliRunner()
INFO = AudioInfo(Path("/audio/zhang.wav"), "ab" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 20.0)
LINES = [
    ("您是哪年出来打工的？", "S1"),
    ("二零零八年，先到的东莞。", "S2"),
    ("工资怎么样？", "S1"),
    ("一个月一千多。", "S2"),
]


@pytest.fixture
def db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'ohp.db'}"
    segments = [
        Segment(i * 5.0, i * 5.0 + 4.0, text, text, "zh", speaker=speaker) for i, (text, speaker) in enumerate(LINES)
    ]
    with Store(url) as store:
        rid = save_transcription(store, INFO, Transcript("zh", 0.9, segments, "faster-whisper", "base"), {}, "k", {})
        save_speakers(
            store, rid, [SpeakerRecord("S1", role="interviewer"), SpeakerRecord("S2", role="interviewee")], {}, "k", {}
        )
    return url


def invoke(*args: str, **env: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200", "OHP_USER": "", **env})


def test_rename_and_role_then_list_and_export(db, tmp_path):
    renamed = invoke("speakers", "rename", "zhang", "S2", "Zhang Changhua", "--user", "mei", "--db", db)
    assert renamed.exit_code == 0, renamed.output
    assert "S2 is Zhang Changhua" in renamed.output
    role = invoke("speakers", "role", "zhang.wav", "S1", "other", "--db", db, OHP_USER="li")
    assert role.exit_code == 0 and "S1 is the other" in role.output
    listed = invoke("speakers", "list", "--db", db)
    assert listed.exit_code == 0
    rows = [line for line in listed.output.splitlines() if "zhang.wav" in line]
    assert len(rows) == 2
    assert "S1" in rows[0] and "other (set by li)" in rows[0] and "00:00:08" in rows[0]
    assert "Zhang Changhua (set by mei)" in rows[1] and "interviewee" in rows[1] and " 2 " in rows[1]
    with Store(db) as store:
        assert [(h.action, h.changed_by) for h in store.history(recording_id=1)] == [("renamed", "mei"), ("role", "li")]

    assert invoke("export", "zhang", "--format", "txt", "--out", str(tmp_path / "t"), "--db", db).exit_code == 0
    txt = (tmp_path / "t" / "zhang.txt").read_text(encoding="utf-8")
    assert "[00:00:00] S1: 您是哪年出来打工的？\n\n[00:00:05] Zhang Changhua: 二零零八年，先到的东莞。\n" in txt


def test_mistakes_get_a_message_and_exit_2(db):
    no_user = invoke("speakers", "rename", "zhang", "S2", "Zhang", "--db", db)
    assert no_user.exit_code == 2 and "who is renaming? pass --user" in no_user.output
    unknown = invoke("speakers", "rename", "zhang", "S3", "Zhang", "--user", "mei", "--db", db)
    assert unknown.exit_code == 2 and "zhang.wav has no speaker 'S3'; its speakers: S1, S2" in unknown.output
    assert invoke("speakers", "role", "zhang", "S1", "boss", "--user", "mei", "--db", db).exit_code == 2
    nobody = invoke("speakers", "role", "nobody", "S1", "other", "--user", "mei", "--db", db)
    assert nobody.exit_code == 2 and "'nobody' matches no recording" in nobody.output
    with Store(db) as store:
        assert store.history(recording_id=1) == []


def test_enroll_a_voice_from_files(db, tmp_path):
    voice = tmp_path / "wang fang.wav"
    shutil.copy(corpus_path("zh/FireRedTeam_FireRedASR__examples_wav_BAC009S0764W0121.wav"), voice)
    enrolled = invoke("speakers", "enroll", "Wang Fang", str(voice), "--outside", "--user", "mei", "--db", db)
    assert enrolled.exit_code == 0, enrolled.output
    assert "enrolled Wang Fang from 1 file(s), 00:00:04 of audio" in enrolled.output
    with Store(db) as store:
        [person] = store.people()
    assert (person.name, person.enrolled_by, person.sources, len(person.profile)) == (
        "Wang Fang",
        "mei",
        (str(voice.resolve()),),
        256,
    )
    assert sum(x * x for x in person.profile) == pytest.approx(1.0, abs=1e-4)
    assert "Wang Fang (by mei, " in invoke("speakers", "list", "--db", db).output

    nowhere = str(tmp_path / "nowhere.wav")
    missing = invoke("speakers", "enroll", "Li Mei", nowhere, "--outside", "--user", "mei", "--db", db)
    assert missing.exit_code == 2 and "nowhere.wav" in missing.output and "Traceback" not in missing.output


def test_forget_a_voice(db):
    with Store(db) as store:
        person = store.enroll("Wang Fang", [1.0] * 256, "mei")
        save_speakers(store, 1, [SpeakerRecord("S1", "Wang Fang", "interviewer", person_id=person.id)], {}, "k2", {})
    forgot = invoke("speakers", "forget", "Wang Fang", "--db", db)
    assert forgot.exit_code == 0, forgot.output
    assert "forgot the voice of Wang Fang; 1 speaker(s) known by their label again" in forgot.output
    listed = invoke("speakers", "list", "--db", db).output
    assert "Wang Fang" not in listed and "enrolled voices" not in listed
    again = invoke("speakers", "forget", "Wang Fang", "--db", db)
    assert again.exit_code == 2 and "no enrolled voice 'Wang Fang'" in again.output


def test_list_of_a_recording_without_speakers(tmp_path):
    url = f"sqlite:///{tmp_path / 'ohp.db'}"
    with Store(url) as store:
        save_transcription(
            store,
            INFO,
            Transcript("zh", 0.9, [Segment(0, 1, "好。", "好。", "zh")], "faster-whisper", "base"),
            {},
            "k",
            {},
        )
    result = invoke("speakers", "list", "zhang", "--db", url)
    assert result.exit_code == 0 and "no speakers yet" in result.output


@pytest.mark.parametrize(
    ("given", "expected"),
    [([], SpeakerOptions()), (["--speakers", "3"], SpeakerOptions(3)), (["--speakers", "off"], None)],
)
def test_run_speakers_option(monkeypatch, tmp_path, given, expected):
    seen = []

    def run_batch(paths, store, options, progress):
        seen.append(options.speakers)
        return BatchReport([])

    monkeypatch.setattr(batch, "run_batch", run_batch)  # the command imports it when it runs
    invoke("run", "a.wav", "--no-tag", "--db", f"sqlite:///{tmp_path / 'ohp.db'}", *given)
    assert seen == [expected]


@pytest.mark.parametrize("given", ["0", "21", "two", "", "²", "9" * 5000])  # ², 5,000 digits: int() crashed
def test_run_speakers_option_refuses_what_is_not_a_number_of_speakers(tmp_path, given):
    result = invoke("run", "a.wav", "--speakers", given, "--db", f"sqlite:///{tmp_path / 'ohp.db'}")
    assert result.exit_code == 2 and "give auto, off or a number of speakers from 1 to 20" in result.output


def test_status_counts_segments_and_speakers_after_the_speaker_split(tmp_path):
    url = f"sqlite:///{tmp_path / 'ohp.db'}"
    whole = [Segment(0.0, 9.0, "您是哪年出来打工的？二零零八年。", "", "zh")]
    split = [
        Segment(0.0, 4.0, "您是哪年出来打工的？", "", "zh", speaker="S1"),
        Segment(4.0, 9.0, "二零零八年。", "", "zh", speaker="S2"),
    ]
    with Store(url) as store:
        transcript = Transcript("zh", 0.9, whole, "faster-whisper", "base")
        rid = save_transcription(store, INFO, transcript, {}, "k", {"segments": 1})
        speakers = [SpeakerRecord("S1"), SpeakerRecord("S2")]
        save_speakers(store, rid, speakers, {}, "k", {"segments": 2, "speakers": 2}, segments=split)
    result = invoke("status", "--db", url)
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.stdout.splitlines() if "zhang.wav" in line]
    cells = [cell.strip() for cell in row.split("│")]
    assert cells[cells.index("zhang.wav") + 4 : cells.index("zhang.wav") + 6] == ["2", "2"]


# --- where a voice comes from ---------------------------------------------------------------------------


def quiet_wav(path: Path, seconds: int = 1) -> Path:
    """Quiet: a real file to probe (its length makes its bytes, and so its sha256, its own)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000 * seconds)
    return path


@pytest.fixture
def encoder(monkeypatch):
    """The voice encoder's profile, without the encoder: where the voice comes from is what is checked here."""
    import numpy as np

    from pipeline.stages import speakers

    monkeypatch.setattr(speakers, "voice_profile", lambda samples, device="auto": np.full(256, 1 / 16, np.float32))


def test_a_clip_that_is_no_recording_needs_to_say_where_it_comes_from(db, tmp_path, encoder):
    clip = quiet_wav(tmp_path / "zhang-clip.wav")
    refused = invoke("speakers", "enroll", "Zhang", str(clip), "--user", "mei", "--db", db)
    assert refused.exit_code == 2, refused.output
    assert "zhang-clip.wav is no recording ohp has: pass --from" in " ".join(refused.output.split())
    both = invoke("speakers", "enroll", "Zhang", str(clip), "--from", "zhang", "--outside", "--user", "mei", "--db", db)
    assert both.exit_code == 2 and "either" in both.output
    with Store(db) as store:
        assert store.people() == []

    cut = invoke("speakers", "enroll", "Zhang", str(clip), "--from", "zhang", "--user", "mei", "--db", db)
    assert cut.exit_code == 0, cut.output
    apart = quiet_wav(tmp_path / "wang.wav", 2)
    alone = invoke("speakers", "enroll", "Wang", str(apart), "--outside", "--user", "mei", "--db", db)
    assert alone.exit_code == 0, alone.output
    with Store(db) as store:
        wang, zhang = store.people()
        clip_sha, apart_sha = (probe(path).sha256 for path in (clip, apart))
        assert (zhang.origins, [r.id for r in zhang.from_recordings]) == (tuple(sorted([clip_sha, INFO.sha256])), [1])
        assert (wang.origins, wang.from_recordings, wang.origin_known) == ((apart_sha,), (), True)

        # A file that is a recording of the collection is its own origin.
        recording = quiet_wav(tmp_path / "li.wav", 3)
        save_transcription(store, probe(recording), Transcript("zh", 0.9, [], "faster-whisper", "base"), {}, "k", {})
    own = invoke("speakers", "enroll", "Li", str(recording), "--user", "mei", "--db", db)
    assert own.exit_code == 0, own.output
    with Store(db) as store:
        assert [r.path for r in store.people()[0].from_recordings] == [str(recording)]


def test_list_says_where_each_voice_comes_from_and_where_it_is_withheld(db, tmp_path):
    with Store(db) as store:
        store.enroll("Zhang", [1.0] * 256, "mei", ["/clips/zhang-1.wav"], origins=[INFO.sha256])
        store.enroll("Wang", [0.5] * 256, "mei", ["/clips/wang.wav"])
        store.set_metadata(1, consent="closed", release_on="2040-01-01")
        store.add_user("rita", "correct horse battery", "researcher")
    # A voice enrolled from a closed recording has its name: listed only for a researcher who asks.
    listed = " ".join(invoke("speakers", "list", "--include-restricted", "--user", "rita", "--db", db).output.split())
    assert (
        "Zhang (by mei, 20" in listed
        and "from zhang.wav (files: zhang-1.wav); withheld in other recordings: enrolled from zhang.wav, closed"
        " until 2040-01-01"
        in listed
    ), listed
    assert "recorded apart from the collection (files: wang.wav); names speakers in every recording" in listed


def test_the_origin_of_a_voice_enrolled_before_ohp_kept_it_can_be_given(db, tmp_path):
    with Store(db) as store:
        store.enroll("Zhang", [1.0] * 256, "mei", ["/clips/zhang-1.wav"])
        with store._session(write=True) as s:  # as migrations 0015 and 0017 leave a voice enrolled before them
            s.execute(text("UPDATE people SET origin_known = false, origin_by = NULL, origin_at = NULL"))
    listed = " ".join(invoke("speakers", "list", "--db", db).output.split())
    assert (
        "origin unknown (files: zhang-1.wav); withheld in other recordings: where it was enrolled from is not known"
        in listed
    )
    assert "origin given" not in listed
    neither = invoke("speakers", "source", "Zhang", "--user", "li", "--db", db)
    assert neither.exit_code == 2 and "--from" in neither.output and "--outside" in neither.output
    # What the voice may do changes with its origin: the change is someone's, as every change of access is.
    nobody = invoke("speakers", "source", "Zhang", "--from", "zhang", "--db", db)
    assert nobody.exit_code == 2 and "pass --user NAME or set OHP_USER" in nobody.output
    with Store(db) as store:
        assert store.people()[0].origin_known is False
    # Withheld until then (where it came from is not known): only a researcher releases it.
    viewer = invoke("speakers", "source", "Zhang", "--from", "zhang", "--user", "li", "--db", db)
    assert viewer.exit_code == 2 and "li is not a user" in viewer.output, viewer.output
    with Store(db) as store:
        store.add_user("li", "correct horse battery", "researcher")
    given = invoke("speakers", "source", "Zhang", "--from", "zhang", "--user", "li", "--db", db)
    assert given.exit_code == 0, given.output
    assert "Zhang: from zhang.wav (files: zhang-1.wav); names speakers in every recording" in given.output
    with Store(db) as store:
        [zhang] = store.people()
        assert (zhang.origins, zhang.origin_known, zhang.origin_by) == ((INFO.sha256,), True, "li")
    listed = " ".join(invoke("speakers", "list", "--db", db).output.split())
    assert f"Zhang (by mei, {zhang.enrolled_at[:10]}; origin given by li, {zhang.origin_at[:10]}):" in listed, listed
    apart = invoke("speakers", "source", "Zhang", "--outside", "--db", db, OHP_USER="wang")
    assert apart.exit_code == 0 and "Zhang: recorded apart from the collection" in apart.output
    with Store(db) as store:
        assert (store.people()[0].origins, store.people()[0].origin_by) == ((), "wang")
        with store._session(write=True) as s:  # as migration 0017 leaves a voice whose origin was given before it
            s.execute(text("UPDATE people SET origin_by = NULL, origin_at = NULL"))
    listed = " ".join(invoke("speakers", "list", "--db", db).output.split())
    assert "Zhang (by mei, 20" in listed and "origin given before ohp kept by whom):" in listed, listed


def test_who_gives_a_voice_its_origin_is_a_name_not_blanks_or_invisible_characters(db):
    """What consent lets a voice do changes with its origin, so ohp keeps who gave it: a --user (or OHP_USER) of
    spaces, of an invisible character or with a line break in it names no one, and was kept as the one who did.
    It is refused as a missing --user is; a name is kept as an account's is (NFKC, stripped)."""
    with Store(db) as store:
        store.enroll("Zhang", [1.0] * 256, "mei", ["/clips/zhang-1.wav"])
        enrolled = store.people()[0]
    for nobody in ("   ", "\u200b", "li\nroot", "\u202eil"):
        refused = invoke("speakers", "source", "Zhang", "--outside", "--user", nobody, "--db", db)
        assert refused.exit_code == 2 and "--user NAME" in refused.output, (nobody, refused.output)
    blank = invoke("speakers", "source", "Zhang", "--outside", "--db", db, OHP_USER=" \t ")
    assert blank.exit_code == 2, blank.output
    with Store(db) as store:
        assert store.people()[0] == enrolled
    given = invoke("speakers", "source", "Zhang", "--outside", "--user", " ｌｉ ", "--db", db)
    assert given.exit_code == 0, given.output
    with Store(db) as store:
        assert store.people()[0].origin_by == "li"
