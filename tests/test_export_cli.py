"""`ohp export` and `ohp import` of codes, through the CLI on a real database (SQLite, and PostgreSQL
when OHP_TEST_POSTGRES_URL is set): every format read back by an independent reader, consent,
redaction with its report, and codes coming back from ELAN and a QDA program by their coder."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest
import srt
import webvtt
from docx2python import docx2python
from lxml import etree
from pympi.Elan import Eaf
from saving import save_speakers, save_transcription
from typer.testing import CliRunner

from pipeline.batch import tag_recording
from pipeline.cli import app
from pipeline.records import AudioInfo, Segment, SpeakerRecord, Transcript
from pipeline.stages.codebook import load_codebook
from pipeline.store import Store
from pipeline.utils import clock

runner = CliRunner()
TEXTS = [
    ("S1", "你的孩子现在谁在带？", "zh"),
    ("S2", "我儿子张伟在老家上学，跟爷爷奶奶住在石门村。", "zh"),
    ("S2", "我在东莞的工厂加班，工资是计件的。", "zh"),
    ("S1", "张伟多大了？", "zh"),
    ("S2", "They held back our wages for two months.", "en"),
]
PASSWORD = "correct horse battery"


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture
def db(migrated_db_url, tmp_path) -> str:
    """A recording of an interview in Dongguan, tagged by the real tagger, with named speakers."""

    audio = tmp_path / "audio" / "李秀英 访谈.wav"
    audio.parent.mkdir()
    audio.write_bytes(b"RIFF")
    info = AudioInfo(audio, "cd" * 32, 4, "wav", "pcm_s16le", 16000, 1, 30.0)
    segments = [
        Segment(i * 5.0, i * 5.0 + 4.0, text, text, lang, speaker=who) for i, (who, text, lang) in enumerate(TEXTS)
    ]
    with Store(migrated_db_url) as store:
        rid = save_transcription(store, info, Transcript("zh", 0.9, segments, "faster-whisper", "base"), {}, "k", {})
        save_speakers(
            store,
            rid,
            [SpeakerRecord("S1", "Wang Mei", "interviewer"), SpeakerRecord("S2", "李秀英", "interviewee")],
            {},
            "s",
            {},
        )
        tag_recording(store, rid, load_codebook())
        store.set_metadata(rid, interviewee="李秀英", place="东莞", recorded_on="2019-02-03")
        wages = next(a for a in store.annotations(rid) if a.theme == "wages")
        store.decide(wages.id, "accepted", "alice")
        store.add_user("rita", PASSWORD, "researcher")
        store.add_user("vera", PASSWORD, "viewer")
    return migrated_db_url


def test_every_format_reads_back(db, tmp_path):
    out = tmp_path / "out"
    formats = [
        arg for fmt in ("json", "srt", "vtt", "txt", "docx", "eaf", "ohms", "csv", "qdpx") for arg in ("--format", fmt)
    ]
    result = invoke("export", "--all", *formats, "--out", out, "--db", db)
    assert result.exit_code == 0, result.output
    stem = out / "李秀英 访谈"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"李秀英 访谈.{ext}" for ext in ("json", "srt", "vtt", "txt", "docx", "eaf", "ohms.xml")]
        + ["coded-segments.csv", "ohp-project.qdpx"]
    )
    document = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    assert document["recording"]["interviewee"] == "李秀英" and document["recording"]["consent"] == "open"
    assert {"PERSON", "PLACE"} <= {e["label"] for s in document["segments"] for e in s["entities"]}
    assert any(t["id"] == "wages" and t["coder"] == "alice" for s in document["segments"] for t in s["themes"])
    cues = list(srt.parse(stem.with_suffix(".srt").read_text(encoding="utf-8")))
    assert cues[0].content.startswith("Wang Mei: ") and all(
        len(line) <= 21 for c in cues[:4] for line in c.content.split("\n")[1:]
    )
    voices = [c.voice for c in webvtt.read(str(stem.with_suffix(".vtt")))]
    assert voices[:2] == ["Wang Mei", "李秀英"]
    assert "Interviewee: 李秀英" in stem.with_suffix(".txt").read_text(encoding="utf-8")
    with docx2python(stem.with_suffix(".docx")) as docx:
        assert "我在东莞的工厂加班" in docx.text and any(author == "alice" for _, author, _, _ in docx.comments)
    eaf = Eaf(str(stem.with_suffix(".eaf")))
    assert {"Wang Mei", "李秀英"} <= set(eaf.get_tier_names()) and eaf.media_descriptors[0]["MEDIA_URL"].startswith(
        "file://"
    )
    ohms = etree.parse(str(stem.with_suffix(".ohms.xml")))
    assert ohms.getroot().tag.endswith("ROOT") and ohms.xpath("//*[local-name()='point']")
    with open(out / "coded-segments.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"recording", "start", "end", "speaker", "text", "theme", "status", "coder"} <= set(rows[0])
    assert any(r["theme"] == "wages" and r["coder"] == "alice" and r["status"] == "accepted" for r in rows)
    with zipfile.ZipFile(out / "ohp-project.qdpx") as project:
        assert "project.qde" in project.namelist()


def test_closed_recordings_are_left_out_unless_a_researcher_asks(db, tmp_path):
    closing = ["describe", "1", "--consent", "closed", "--release-on", "2999-01-01", "--db", db]
    assert invoke(*closing, "--user", "rita").exit_code == 0
    out = tmp_path / "out"
    result = invoke("export", "--format", "txt", "--format", "csv", "--out", out, "--db", db)
    assert result.exit_code == 0 and not out.exists()
    assert "left out 1 closed recording(s): 李秀英 访谈.wav (closed until 2999-01-01)" in result.stderr
    for who in ([], ["--user", "vera"], ["--user", "nobody"]):
        refused = invoke("export", "--format", "txt", "--out", out, "--include-restricted", *who, "--db", db)
        assert refused.exit_code == 2 and not out.exists(), refused.output
    assert "only a researcher" in refused.stderr
    allowed = invoke("export", "--format", "txt", "--out", out, "--include-restricted", "--user", "rita", "--db", db)
    assert allowed.exit_code == 0, allowed.output
    assert "Access: closed until 2999-01-01" in (out / "李秀英 访谈.txt").read_text(encoding="utf-8")


def test_redaction_covers_every_text_format_and_reports(db, tmp_path):
    (tmp_path / "redact.txt").write_text("place: 石门村\n", encoding="utf-8")
    out = tmp_path / "share"
    formats = [
        arg for fmt in ("json", "srt", "vtt", "txt", "docx", "eaf", "ohms", "csv", "qdpx") for arg in ("--format", fmt)
    ]
    result = invoke(
        "export",
        *formats,
        "--out",
        out,
        "--redact",
        "names,places",
        "--redact-list",
        tmp_path / "redact.txt",
        "--db",
        db,
    )
    assert result.exit_code == 0, result.output
    for path in out.iterdir():
        if path.suffix in (".docx", ".qdpx"):
            with zipfile.ZipFile(path) as z:
                text = "".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
        else:
            text = path.read_text(encoding="utf-8-sig")
        for name in ("张伟", "李秀英", "Wang Mei", "东莞", "石门村"):
            assert name not in text, (path.name, name)
        assert path.suffix in (".csv",) or "[NAME]" in text, path.name
    times = [
        (s["start"], s["end"]) for s in json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))["segments"]
    ]
    assert times == [(i * 5.0, i * 5.0 + 4.0) for i in range(len(TEXTS))]
    report = tmp_path / "share-redactions.csv"
    assert "listed in" in result.stdout and report.exists()
    with open(report, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    found = {(r["found"], r["replaced with"], r["because"]) for r in rows}
    assert ("张伟", "[NAME]", "entity") in found and ("石门村", "[PLACE]", "list") in found
    assert sum(r["found"] == "张伟" for r in rows) == 2  # the second mention, too
    # Two interviews whose file names held their interviewees' names do not meet in one file.

    with Store(db) as store:
        other = AudioInfo(tmp_path / "王芳 访谈.wav", "ef" * 32, 4, "wav", "pcm_s16le", 16000, 1, 5.0)
        rid = save_transcription(
            store,
            other,
            Transcript("zh", 0.9, [Segment(0.0, 4.0, "好的", "好的", "zh")], "faster-whisper", "base"),
            {},
            "k",
            {},
        )
        store.set_metadata(rid, interviewee="王芳")
    again = invoke("export", "--format", "txt", "--out", tmp_path / "two", "--redact", "names", "--db", db)
    assert again.exit_code == 0 and len(list((tmp_path / "two").iterdir())) == 2
    bad = invoke("export", "--out", out, "--redact", "faces", "--db", db)
    assert bad.exit_code == 2 and "cannot redact faces" in bad.output


def test_names_a_person_typed_in_a_correction_are_redacted_too(db, tmp_path):
    """The names the tagger stored were those of the text it read: a name an annotator typed into a correction
    since (or any name in a recording never tagged) went out with --redact names."""

    with Store(db) as store:
        [recording] = store.list_recordings()
        first, *_, last = store.segments(recording.id)
        store.correct_text(first.id, "你的孩子现在谁在带？邻居周秀兰吗？", "ann", first.version)
        store.correct_text(last.id, "Tom Baker held back our wages in Houston.", "ann", last.version)
    out = tmp_path / "share"
    result = invoke("export", "--format", "txt", "--out", out, "--redact", "names,places", "--db", db)
    assert result.exit_code == 0, result.output
    text = next(out.glob("*.txt")).read_text(encoding="utf-8")
    for name in ("周秀兰", "Tom Baker", "Houston"):
        assert name not in text, name


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda p: None, "cannot read it: No such file"),
        (lambda p: p.mkdir(), "is a folder, not a list of names"),
        (lambda p: p.write_bytes("李秀英\n".encode("gbk")), "line 1: not UTF-8 text"),
        (lambda p: p.write_bytes(b"\x00" * 8), "not a text file"),
    ],
    ids=["missing", "folder", "gbk", "binary"],
)
def test_a_redaction_list_given_and_unreadable_is_an_error_not_an_export_with_its_names_left_in(
    db, tmp_path, make, cause
):
    """A list that was not a file (a typo, a folder) used to be taken as no list: the export went out with
    every name it held."""
    listed, out = tmp_path / "names.txt", tmp_path / "share"
    make(listed)
    result = invoke("export", "--out", out, "--redact", "names", "--redact-list", listed, "--db", db)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert str(listed) in result.stderr and cause in result.stderr, result.stderr
    assert not out.exists()


def test_codes_added_in_elan_come_back_by_their_coder(db, tmp_path):

    assert invoke("export", "--format", "eaf", "--out", tmp_path, "--db", db).exit_code == 0
    path = tmp_path / "李秀英 访谈.eaf"
    eaf = Eaf(str(path))
    eaf.add_tier("housing (bob)", ling="theme", part="bob", ann="bob")
    eaf.add_annotation("housing (bob)", 5000, 9000, "housing")
    eaf.add_annotation("housing (bob)", 25000, 26000, "lunch")
    eaf.to_file(str(path))
    result = invoke("import", path, "--db", db)
    assert result.exit_code == 0, result.output
    assert "1 annotation(s) added or accepted, 1 already there" in result.stdout  # alice's wages came back too
    assert "'lunch' is not a theme" in result.stderr
    with Store(db) as store:
        housing = [a for a in store.annotations(1) if a.theme == "housing"]
        assert [(a.source, a.status, a.segment_id) for a in housing] == [("bob", "accepted", store.segments(1)[1].id)]
    again = invoke("import", path, "--db", db)
    assert "0 annotation(s) added or accepted, 2 already there" in again.stdout


def test_an_imported_code_on_a_rejected_theme_is_kept_out_and_named(db, tmp_path):
    """alice accepted wages and exported her codes; rita rejects wages meanwhile. alice's file back: wages stays
    rejected, and the import says so, naming it; bob's new code in the file goes in."""

    assert invoke("export", "--format", "eaf", "--out", tmp_path, "--db", db).exit_code == 0
    path = tmp_path / "李秀英 访谈.eaf"
    eaf = Eaf(str(path))
    eaf.add_tier("housing (bob)", ling="theme", part="bob", ann="bob")
    eaf.add_annotation("housing (bob)", 5000, 9000, "housing")
    eaf.to_file(str(path))
    with Store(db) as store:
        wages = next(a for a in store.annotations(1) if a.theme == "wages")
        store.decide(wages.id, "rejected", "rita")
        segment = next(s for s in store.segments(1) if s.id == wages.segment_id)
    result = invoke("import", path, "--db", db)
    assert result.exit_code == 0, result.output
    assert "1 annotation(s) added or accepted, 0 already there, 1 kept as decided in ohp" in result.stdout
    span = f"{clock(segment.start)}-{clock(segment.end)}"
    assert f"kept: alice's Wages / 工资 at {span} of recording 1: rejected by rita" in result.stdout
    with Store(db) as store:
        assert next(a for a in store.annotations(1) if a.id == wages.id).status == "rejected"
        assert [a.status for a in store.annotations(1) if a.theme == "housing" and a.source == "bob"] == ["accepted"]


def test_codes_added_in_a_qda_program_come_back_by_their_coder(db, tmp_path):

    assert invoke("export", "--format", "qdpx", "--out", tmp_path, "--db", db).exit_code == 0
    path = tmp_path / "ohp-project.qdpx"
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    ns = "urn:QDA-XML:project:1.0"
    root = etree.fromstring(members["project.qde"])
    users = root.find(f"{{{ns}}}Users")
    etree.SubElement(users, f"{{{ns}}}User", guid="6f1e0a51-8a58-4a38-9e43-0d9b0b1c2d3e", name="bob")
    code = next(c for c in root.iter(f"{{{ns}}}Code") if c.get("name").lower().startswith("housing"))
    transcript = root.find(f".//{{{ns}}}Transcript")
    text = members[transcript.get("plainTextPath").replace("internal://", "sources/")].decode("utf-8")
    start = text.index("我在东莞")
    points = transcript.findall(f"{{{ns}}}SyncPoint")
    before = max((p for p in points if int(p.get("position")) <= start), key=lambda p: int(p.get("position")))
    after = min((p for p in points if int(p.get("position")) >= start + 8), key=lambda p: int(p.get("position")))
    selection = etree.SubElement(
        transcript,
        f"{{{ns}}}TranscriptSelection",
        guid="0b8e7b1c-1d2e-4f50-9a6b-7c8d9e0f1a2b",
        name="overtime",
        fromSyncPoint=before.get("guid"),
        toSyncPoint=after.get("guid"),
    )
    coding = etree.SubElement(
        selection,
        f"{{{ns}}}Coding",
        guid="1c9f8a2d-2e3f-4a51-8b7c-8d9e0f1a2b3c",
        creatingUser="6f1e0a51-8a58-4a38-9e43-0d9b0b1c2d3e",
    )
    etree.SubElement(coding, f"{{{ns}}}CodeRef", targetGUID=code.get("guid"))
    members["project.qde"] = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    result = invoke("import", path, "--db", db)
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        housing = [a for a in store.annotations(1) if a.theme == "housing" and a.source == "bob"]
        assert [a.segment_id for a in housing] == [store.segments(1)[2].id]


def test_a_broken_exchange_file_changes_nothing(db, tmp_path):

    with Store(db) as store:
        before = store.annotations(1)
    for name, data in (("a.eaf", b"<ANNOTATION_DOCUMENT><TIME_ORDER>"), ("b.qdpx", b"PK\x03\x04 not a zip")):
        (tmp_path / name).write_bytes(data)
        result = invoke("import", tmp_path / name, "--db", db)
        assert result.exit_code == 1 and f"{tmp_path / name}" in result.stderr.replace("\n", ""), result.output
    with Store(db) as store:
        assert store.annotations(1) == before


def test_a_coding_split_in_pieces_over_one_segment_is_one_annotation(db):
    from pipeline.imports import import_codings
    from pipeline.records import Coding, ImportedCodings

    pieces = [Coding("housing", "bob", 5.0, 7.0), Coding("housing", "bob", 7.0, 9.0)]  # segment 5-9 s, cut at 7 s
    with Store(db) as store:
        report = import_codings(ImportedCodings(Path("x.eaf"), "eaf", {"cd" * 32: pieces}), store)
        assert (report.added, report.unchanged) == (1, 1)
        assert [a.action for a in store.history(recording_id=1) if a.changed_by == "bob"] == ["added"]


def test_the_consent_is_changed_under_a_name_kept_in_the_history(db, monkeypatch):
    monkeypatch.delenv("OHP_USER", raising=False)
    nameless = invoke("describe", "1", "--consent", "closed", "--db", db)
    assert nameless.exit_code == 2 and "who is changing the consent? pass --user NAME" in nameless.stderr
    assert invoke("describe", "1", "--release-on", "2999-01-01", "--db", db).exit_code == 2
    assert invoke("describe", "1", "--interviewee", "L.", "--db", db).exit_code == 0  # not the consent: no name
    with Store(db) as store:
        assert store.recording(1).consent == "open" and store.recording(1).release_on is None
        assert invoke("describe", "1", "--consent", "closed", "--user", "rita", "--db", db).exit_code == 0
        [change] = [c for c in store.history(recording_id=1) if c.action == "consent"]
        assert (change.changed_by, change.before, change.after) == (
            "rita",
            {"consent": "open", "release_on": None},
            {"consent": "closed", "release_on": None},
        )
    # `ohp history` shows it to a researcher who asks (the recording is closed now), as the JSON keeps it.
    assert invoke("history", "1", "--db", db).exit_code == 2  # closed: not without asking
    shown = invoke("history", "1", "--include-restricted", "--user", "rita", "--db", db)
    assert shown.exit_code == 0, shown.output
    [row] = [line for line in shown.stdout.splitlines() if "consent" in line]
    assert "rita" in row and "open" in row and "closed" in row
    as_json = invoke("history", "1", "--json", "--include-restricted", "--user", "rita", "--db", db)
    [entry] = [c for c in json.loads(as_json.stdout) if c["action"] == "consent"]
    assert (entry["changed_by"], entry["after"]) == ("rita", {"consent": "closed", "release_on": None})


def test_a_closed_recording_asked_for_by_name_is_an_error_not_an_empty_success(db, tmp_path):
    assert invoke("describe", "1", "--consent", "closed", "--user", "rita", "--db", db).exit_code == 0
    out = tmp_path / "out"
    result = invoke("export", "1", "--format", "txt", "--out", out, "--db", db)
    assert result.exit_code == 2 and not out.exists()
    assert "left out 1 closed recording(s): 李秀英 访谈.wav" in result.stderr
