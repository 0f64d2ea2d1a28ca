"""A name goes from an export however it is written: in another Unicode form or Chinese script, split over the
recogniser's word pieces, in a field with brackets; and a place goes from the speakers, the coders and the codebook.
Each found by an audit of `ohp export --redact` (2026-12-02) on a project stored through the CLI (SQLite), every
byte of every file written searched (the members of docx and qdpx zips too)."""

from __future__ import annotations

import json
import unicodedata
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.formats.export import FORMATS
from pipeline.store import Store

runner = CliRunner()
ALL_FORMATS = [arg for fmt in FORMATS for arg in ("--format", fmt)]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def db(tmp_path: Path, name: str = "ohp.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def every_byte(folder: Path) -> str:
    """Every file's name and content (zip members' names and contents), as text."""
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            continue
        parts.append(path.name)
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                parts += [m + z.read(m).decode("utf-8", "replace") for m in z.namelist()]
        else:
            parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def import_json(tmp_path: Path, url: str, name: str, document: dict) -> None:
    (tmp_path / name).write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    result = invoke("import", tmp_path / name, "--no-tag", "--db", url)
    assert result.exit_code == 0, result.output


def sheila(tmp_path: Path) -> str:
    """A database of one interview with Sheila Brown, who speaks of herself by name."""
    url = db(tmp_path)
    document = {
        "recording": {"interviewee": "Sheila Brown"},
        "segments": [{"start": 0, "end": 1, "text": "Sheila spoke."}],
    }
    import_json(tmp_path, url, "interview.json", document)
    return url


def export(url: str, out: Path, *args) -> None:
    result = invoke("export", "--all", *ALL_FORMATS, "--out", out, *args, "--db", url)
    assert result.exit_code == 0, result.output


# A Latin name in a Chinese recording: Whisper's words for Chinese are its tokens, so "Sheila" is the words
# "She" + "ila" (and, English in a Chinese recording, always doubtful). The text was redacted, the words were
# not: they were searched with a space between Latin pieces.
def test_a_latin_name_split_into_word_tokens_goes_from_the_words(tmp_path):
    url = db(tmp_path)
    words = ["我", "叫", "She", "ila", "，", "在", "工", "厂"]
    document = {
        "recording": {"interviewee": "Sheila Brown", "language": "zh"},
        "segments": [
            {
                "start": 0.0,
                "end": 4.0,
                "text": "".join(words),
                "language": "zh",
                "speaker": "S1",
                "words": [
                    {"start": i / 2, "end": i / 2 + 0.5, "text": w, "probability": 0.9} for i, w in enumerate(words)
                ],
            }
        ],
    }
    import_json(tmp_path, url, "interview.json", document)
    export(url, tmp_path / "share", "--redact", "names")
    written = json.loads((tmp_path / "share" / "interview.json").read_text(encoding="utf-8"))
    assert "[NAME]" in written["segments"][0]["text"]  # the text is redacted...
    said = "".join(w["text"] for w in written["segments"][0]["words"])
    assert "sheila" not in said.lower(), said  # ...the word timings keep "She" + "ila"
    eaf = (tmp_path / "share" / "interview.eaf").read_text(encoding="utf-8")
    assert "She ila" not in eaf and "Sheila" not in eaf  # the doubtful tier: "我叫She ila"


# A name written otherwise than the field gives it: in full-width letters (as a Chinese input method types them),
# with its accents decomposed (as a Mac writes file names, and text pasted from one may be), with a soft hyphen
# inside (as pasted text carries). Each was left whole in every file.
FORMS = {
    "full-width": ("Sheila Brown", "我叫Ｓｈｅｉｌａ，在工厂打工", "interview.json", "sheila"),
    "decomposed": (
        "María Pérez",
        unicodedata.normalize("NFD", "La señora Pérez habló."),
        unicodedata.normalize("NFD", "entrevista Pérez.json"),
        "pérez",
    ),
    "soft hyphen": ("Sheila Brown", "Shei\u00adla came in 1998.", "interview.json", "sheila"),
}


@pytest.mark.parametrize("form", FORMS)
def test_a_name_written_otherwise_goes_from_every_file(tmp_path, form):
    interviewee, text, name, said = FORMS[form]
    url = db(tmp_path)
    segment = {"start": 0.0, "end": 2.0, "text": text, "speaker": "S1"}
    import_json(tmp_path, url, name, {"recording": {"interviewee": interviewee}, "segments": [segment]})
    export(url, tmp_path / "share", "--redact", "names")
    written = unicodedata.normalize("NFKC", every_byte(tmp_path / "share")).replace("\u00ad", "").lower()
    assert said not in written


# Chinese in Taiwan's or Hong Kong's forms (ohp's own traditional-tw and traditional-hk scripts): the names
# were looked for in simplified and OpenCC's standard traditional only (启 -> 啓, not Taiwan's 啟; 卫 -> 衛,
# not Hong Kong's 衞).
def test_a_name_in_taiwan_or_hong_kong_forms_goes(tmp_path):
    url = db(tmp_path)
    document = {
        "recording": {"interviewee": "陈卫东", "language": "zh"},
        "segments": [
            {"start": 0.0, "end": 2.0, "text": "我家在啟明村，後來去了工廠。", "speaker": "S1"},
            {"start": 2.0, "end": 4.0, "text": "衞東那時候還小。", "speaker": "S1"},
        ],
    }
    import_json(tmp_path, url, "interview.json", document)
    (tmp_path / "redact.txt").write_text("place: 启明村\n", encoding="utf-8")
    export(url, tmp_path / "share", "--redact", "names,places", "--redact-list", tmp_path / "redact.txt")
    text = every_byte(tmp_path / "share")
    assert "啟明" not in text  # the listed place, 启明村 (simplified) / 啓明村 (OpenCC traditional)
    assert "衞東" not in text  # the interviewee's given name, 卫东 / 衛東


# --redact places: a listed place in a speaker's label or name, or in a coder's name (an ELAN tier named
# after the village), was written as it is: speakers and coders went through no place redaction.
def test_redact_places_takes_the_place_out_of_speakers_and_coders(tmp_path):
    url = db(tmp_path)
    (tmp_path / "interview.srt").write_text(
        "1\n00:00:01,000 --> 00:00:04,000\n石门村村长: 工资是计件的。\n\n"
        "2\n00:00:05,000 --> 00:00:08,000\n采访者: 工资多少？\n",
        encoding="utf-8",
    )
    assert invoke("import", tmp_path / "interview.srt", "--no-tag", "--db", url).exit_code == 0
    with Store(url) as store:
        first = store.segments(1)[0].id
        store.add_annotations([(first, "wages", "石门村小组", ())])
    (tmp_path / "redact.txt").write_text("place: 石门村\n", encoding="utf-8")
    export(url, tmp_path / "share", "--redact", "places", "--redact-list", tmp_path / "redact.txt")
    text = every_byte(tmp_path / "share")
    assert "石门村" not in text


# --redact "" (an empty $KINDS in a script) gave no error, and every file was written unredacted.
def test_an_empty_redact_is_an_error_not_an_unredacted_export(tmp_path):
    url = sheila(tmp_path)
    result = invoke("export", "--all", "--format", "txt", "--out", tmp_path / "share", "--redact", "", "--db", url)
    assert result.exit_code == 2 and "cannot redact nothing" in result.output, result.output
    assert not list(tmp_path.glob("share*/*"))


# The report lists every name; it goes beside the output folder, not in it. Where --out was a link
# (project/share -> a synced or removable folder), it went beside the link's target: into the folder
# that leaves the project.
def test_the_report_goes_beside_the_folder_named_not_beside_a_links_target(tmp_path):
    url = sheila(tmp_path)
    synced = tmp_path / "Nextcloud" / "for-the-archive"
    synced.mkdir(parents=True)
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "share").symlink_to(synced)
    result = invoke(
        "export", "--all", "--format", "txt", "--out", tmp_path / "project" / "share", "--redact", "names", "--db", url
    )
    assert result.exit_code == 0, result.output
    assert not list((tmp_path / "Nextcloud").rglob("*redactions.csv")), "the report went into the synced folder"
    assert (tmp_path / "project" / "share-redactions.csv").exists()


# An interviewee recorded as archives write them, "李秀英 (Li Xiuying)" or "Sheila Brown (née Smith)": the
# field was one term, and no part of it (the romanisation, the maiden name) was looked for on its own, so the
# file named after her kept it.
def test_the_parts_of_an_interviewee_field_with_a_parenthesis_go_from_the_file_name(tmp_path):
    url = db(tmp_path)
    import_json(tmp_path, url, "li_xiuying_1998.json", {"segments": [{"start": 0, "end": 1, "text": "你好"}]})
    import_json(tmp_path, url, "smith-tapes.json", {"segments": [{"start": 0, "end": 1, "text": "hello"}]})
    assert invoke("describe", "1", "--interviewee", "李秀英 (Li Xiuying)", "--db", url).exit_code == 0
    assert invoke("describe", "2", "--interviewee", "Sheila Brown (née Smith)", "--db", url).exit_code == 0
    export(url, tmp_path / "share", "--redact", "names")
    text = every_byte(tmp_path / "share").lower()
    assert "xiuying" not in text
    assert "smith" not in text


# An unreadable --redact-list: the message named the file and the cause, but blamed --redact.
def test_an_unreadable_redact_list_is_blamed_on_redact_list(tmp_path):
    url = db(tmp_path)
    import_json(tmp_path, url, "a.json", {"segments": [{"start": 0, "end": 1, "text": "hello"}]})
    result = invoke(
        "export",
        "--all",
        "--out",
        tmp_path / "o",
        "--redact",
        "names",
        "--redact-list",
        tmp_path / "x.txt",
        "--db",
        url,
    )
    assert result.exit_code == 2
    assert "x.txt" in result.output
    assert "--redact-list" in result.output, result.output


# The project's codebook: a theme about one place (its label and description name the village). Labels go
# into the JSON, txt, docx comments, ELAN's vocabulary, OHMS subjects, the CSV and the REFI-QDA codes; the
# listed place was not taken out of them.
def test_a_listed_place_goes_from_the_codebook_labels_an_export_writes(tmp_path):
    url = db(tmp_path)
    default = Path(__file__).resolve().parents[1] / "pipeline" / "stages" / "codebook.yaml"
    theme = (
        "  - id: shimen_relocation\n"
        "    label: {en: Relocation of 石门村, zh: 石门村搬迁}\n"
        "    description: The move of 石门村 to the new town.\n"
        "    patterns:\n"
        "      zh: [搬迁]\n"
    )
    (tmp_path / "codebook.yaml").write_text(
        default.read_text(encoding="utf-8").replace("themes:\n", "themes:\n" + theme, 1), encoding="utf-8"
    )
    import_json(tmp_path, url, "interview.json", {"segments": [{"start": 0, "end": 2, "text": "搬迁以后我们都走了。"}]})
    with Store(url) as store:
        store.add_annotations([(store.segments(1)[0].id, "shimen_relocation", "alice", ())])
    (tmp_path / "redact.txt").write_text("place: 石门村\n", encoding="utf-8")
    export(
        url,
        tmp_path / "share",
        "--redact",
        "names,places",
        "--redact-list",
        tmp_path / "redact.txt",
        "--codebook",
        tmp_path / "codebook.yaml",
    )
    assert "石门村" not in every_byte(tmp_path / "share")
