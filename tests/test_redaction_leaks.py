"""Redaction leaves no name in any exported file: interviews imported through the CLI into a real database
(SQLite, and PostgreSQL when OHP_TEST_POSTGRES_URL is set), described, and exported to every format with
--redact names,places; every byte of every file searched for every name the export was told to remove."""

from __future__ import annotations

import csv
import json
import re
import zipfile
from urllib.parse import quote

from lxml import etree
from pympi.Elan import Eaf
from saving import save_tags
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.formats.export import FORMATS
from pipeline.records import ThemeSuggestion
from pipeline.store import Store

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


# An interview imported from subtitles whose speakers are named in its lines, and one from ohp JSON whose
# words carry names without spaces (as some tools store them) and where a correction left a name in the
# words only (Mandy).
NAMED_SRT = """1
00:00:01,000 --> 00:00:04,000
王芳: 你是哪一年去的東莞？

2
00:00:05,000 --> 00:00:09,000
李秀英: 我二〇〇三年去的东莞，我儿子张伟在石门村上学。

3
00:00:10,000 --> 00:00:14,000
王芳: 張偉現在誰在帶？

4
00:00:15,000 --> 00:00:19,000
李秀英: 他跟爷爷奶奶住在石門村，工资是计件的。
"""
NAMED_WORDS = ["Sheila", "grew", "up", "in", "Texas", "and", "moved", "to", "Chicago", "for", "the", "wages."]
CORRECTED = ["Mandy", "came", "too."]  # the text says "My cousin"
NAMED_JSON = {
    "recording": {
        "interviewee": "Sheila Brown",
        "place": "Texas",
        "speakers": [
            {"label": "S1", "name": "Tom Baker", "role": "interviewer"},
            {"label": "S2", "name": "Sheila Brown", "role": "interviewee"},
        ],
    },
    "segments": [
        {"start": 0.0, "end": 3.0, "text": "Where did you grow up?", "speaker": "S1"},
        {
            "start": 3.0,
            "end": 9.0,
            "text": " ".join(NAMED_WORDS),
            "speaker": "S2",
            "words": [
                {"start": 3 + i / 2, "end": 3.5 + i / 2, "text": w, "probability": 0.9}
                for i, w in enumerate(NAMED_WORDS)
            ],
        },
        {
            "start": 9.0,
            "end": 10.0,
            "text": "My cousin came too.",
            "speaker": "S2",
            "words": [
                {"start": 9 + i / 4, "end": 9.25 + i / 4, "text": w, "probability": 0.9}
                for i, w in enumerate(CORRECTED)
            ],
        },
    ],
}
# What the export was told to remove: the speakers' labels and names, the recordings' interviewees and places,
# what the entity stage finds, and the project list; Chinese in both scripts.
REMOVED = (
    "李秀英",
    "王芳",
    "张伟",
    "張偉",
    "东莞",
    "東莞",
    "石门村",
    "石門村",
    "Sheila",
    "Brown",
    "Tom Baker",
    "Texas",
    "Chicago",
    "Mandy",
)


def test_redaction_leaves_no_name_in_any_exported_file(db_url, tmp_path):
    """Imported through the CLI, described, exported to every format with --redact names,places: no byte of
    any file (inside the zips too, in any encoding a format uses: URL-quoted in links) holds a name."""
    (tmp_path / "李秀英访谈.srt").write_text(NAMED_SRT, encoding="utf-8")
    (tmp_path / "sheila-brown.json").write_text(json.dumps(NAMED_JSON), encoding="utf-8")
    (tmp_path / "redact.txt").write_text("place: 石门村\nMandy\n", encoding="utf-8")
    imported = invoke("import", tmp_path / "李秀英访谈.srt", tmp_path / "sheila-brown.json", "--db", db_url)
    assert imported.exit_code == 0, imported.output
    assert invoke("describe", "1", "--interviewee", "李秀英", "--place", "东莞", "--db", db_url).exit_code == 0
    with Store(db_url) as store:  # what the project records besides (the web app's details), for OHMS
        store.set_metadata(1, media_url="https://archive.example/李秀英访谈.mp3", accession="Sheila Brown 2003")
    out = tmp_path / "share"
    formats = [arg for fmt in FORMATS for arg in ("--format", fmt)]
    result = invoke(
        "export",
        "--all",
        *formats,
        "--out",
        out,
        "--redact",
        "names,places",
        "--redact-list",
        tmp_path / "redact.txt",
        "--db",
        db_url,
    )
    assert result.exit_code == 0, result.output

    files = sorted(out.iterdir())
    assert len(files) == 2 * 7 + 2
    for path in files:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                data = b"".join(name.encode() + z.read(name) for name in z.namelist())
        else:
            data = path.read_bytes()
        data = (path.name.encode() + data).lower()  # bytes: a Word document holds binary parts too
        for name in REMOVED:
            for written in (name, quote(name)):
                assert written.lower().encode() not in data, (path.name, name)
        assert path.suffix == ".csv" or b"[name]" in data, path.name
    # The words keep their times, the name in them the placeholder.
    document = json.loads((out / "[NAME]-[NAME].json").read_text(encoding="utf-8"))
    words = document["segments"][1]["words"]
    assert [w["text"] for w in words] == [
        "[NAME]",
        *NAMED_WORDS[1:4],
        "[PLACE]",
        *NAMED_WORDS[5:8],
        "[PLACE]",
        *NAMED_WORDS[9:],
    ]
    assert [w["start"] for w in words] == [3.0 + i / 2 for i in range(len(NAMED_WORDS))]
    assert [(s["label"], s["name"]) for s in document["recording"]["speakers"]] == [
        ("S1", "Interviewer"),
        ("S2", "Interviewee"),
    ]
    labels = [
        s["label"] for s in json.loads((out / "[NAME]访谈.json").read_text(encoding="utf-8"))["recording"]["speakers"]
    ]
    assert labels == ["S1", "S2"]
    with open(tmp_path / "share-redactions.csv", encoding="utf-8-sig", newline="") as f:
        found = {(row["found"].casefold(), row["field"]) for row in csv.DictReader(f)}
    for name in REMOVED:
        assert any(name.casefold() in said for said, _ in found), name
    assert {
        ("李秀英", "speaker label"),
        ("王芳", "speaker label"),
        ("mandy", "words"),
        ("李秀英", "metadata: media_url"),
    } <= found


# An interview whose interviewee, interviewer and coders all have names of their own. The coders code it in
# the web app (accepting, rejecting, adding), in ELAN, and one by a name an ELAN tier's participant gave
# before that was refused (the interviewee's); the file lies in a coder's folder.
CODED_JSON = {
    "recording": {
        "interviewee": "Sheila Brown",
        "speakers": [
            {"label": "S1", "name": "Thaddeus Okonkwo", "role": "interviewer"},
            {"label": "S2", "name": "Sheila Brown", "role": "interviewee"},
        ],
    },
    "segments": [
        {"start": 0.0, "end": 3.0, "text": "Where did you work?", "speaker": "S1"},
        {"start": 3.0, "end": 9.0, "text": "They held back our wages for two months.", "speaker": "S2"},
        {"start": 9.0, "end": 12.0, "text": "Eight of us slept in one dormitory room.", "speaker": "S2"},
        {"start": 12.0, "end": 15.0, "text": "My children stayed with their grandparents.", "speaker": "S2"},
    ],
}
CODERS = ("Philippa Nguyen", "Mirela Volkova", "Carmen Diaz", "Ignatius Kowalski")
PEOPLE = ("Sheila Brown", "Thaddeus Okonkwo", *CODERS)


def test_coders_names_go_from_every_exported_file_and_each_coder_stays_one(db_url, tmp_path):
    """Exported to every format with --redact names, no byte of any file holds the interviewee's, a speaker's
    or a coder's name (nor a part of one); coders were left as they were (in the JSON and CSV, the Word
    comments' authors, ELAN's annotators and tier names, the project's users). Each coder is "Coder N",
    the same one in every file, so who agrees with whom still reads."""
    folder = tmp_path / "carmen-diaz"
    folder.mkdir()
    (folder / "interview.json").write_text(json.dumps(CODED_JSON), encoding="utf-8")
    assert invoke("import", folder / "interview.json", "--no-tag", "--db", db_url).exit_code == 0
    with Store(db_url) as store:
        seg = [s.id for s in store.segments(1)]
        suggested = {
            seg[1]: [ThemeSuggestion("wages", 0.8, ((21, 26),))],
            seg[3]: [ThemeSuggestion("left_behind_children", 0.7, ())],
        }
        save_tags(store, 1, suggested, {}, "t1", {}, "t1")
        by_theme = {a.theme: a for a in store.annotations(1)}
        store.decide(by_theme["wages"].id, "accepted", "Philippa Nguyen")
        store.decide(by_theme["left_behind_children"].id, "rejected", "Mirela Volkova")
        store.add_annotations([(seg[3], "schooling", "Carmen Diaz", ()), (seg[2], "housing", "Sheila Brown", ())])
    exchange = tmp_path / "exchange"
    assert invoke("export", "--format", "eaf", "--out", exchange, "--db", db_url).exit_code == 0
    eaf = Eaf(str(exchange / "interview.eaf"))
    eaf.add_tier("Ignatius", ling="theme", ann="Ignatius Kowalski")
    eaf.add_annotation("Ignatius", 3000, 9000, "wages")
    eaf.add_annotation("Ignatius", 9000, 12000, "housing")
    eaf.to_file(str(exchange / "interview.eaf"))
    assert invoke("import", exchange / "interview.eaf", "--db", db_url).exit_code == 0

    out = tmp_path / "share"
    formats = [arg for fmt in FORMATS for arg in ("--format", fmt)]
    result = invoke("export", "--all", *formats, "--out", out, "--redact", "names", "--db", db_url)
    assert result.exit_code == 0, result.output
    files = sorted(out.iterdir())
    assert len(files) == 7 + 2
    names = {part for person in PEOPLE for part in (person, *person.split())}
    for path in files:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                data = b"".join(name.encode() + z.read(name) for name in z.namelist())
        else:
            data = path.read_bytes()
        data = (path.name.encode() + data).lower()
        for name in names:
            for written in (name, quote(name)):
                assert written.lower().encode() not in data, (path.name, name)

    # Each coder is one pseudonym, the same in every file: Philippa and Ignatius both coded wages on segment 1.
    document = json.loads((out / "interview.json").read_text(encoding="utf-8"))
    in_json = {t["id"]: t["coder"] for segment in document["segments"] for t in segment["themes"]}
    with open(out / "coded-segments.csv", encoding="utf-8-sig", newline="") as f:
        in_csv = {row["theme"]: row["coder"] for row in csv.DictReader(f)}
    root = etree.parse(str(out / "interview.eaf")).getroot()
    in_eaf = {
        (t.get("TIER_ID"), t.get("ANNOTATOR")) for t in root.iter("TIER") if t.get("LINGUISTIC_TYPE_REF") == "theme"
    }
    with zipfile.ZipFile(out / "ohp-project.qdpx") as z:
        in_qdpx = {u.get("name") for u in etree.fromstring(z.read("project.qde")).iter("{*}User")}
    coders = {who for _, who in in_eaf} | set(in_json.values())
    assert all(re.fullmatch(r"Coder \d", who) for who in coders), coders
    assert len(coders) == len(CODERS) + 1  # and the interviewee's name as a coder's
    assert in_csv == {theme: who for theme, who in in_json.items() if theme != "left_behind_children"}  # rejected
    assert {(f"{theme} ({who})", who) for theme, who in in_json.items() if theme != "left_behind_children"} <= in_eaf
    wages = {who for tier, who in in_eaf if tier.startswith("wages (")}
    assert len(wages) == 2
    assert in_qdpx == {"ohp"} | {who for _, who in in_eaf}
