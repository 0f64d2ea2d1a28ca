"""Files made to break ohp beyond the imported transcripts (tests/test_hostile_imports.py): the codebook, REFI-QDA
projects, checkpoints, audio. Each is refused with a message naming the file and the cause, never a traceback."""

from __future__ import annotations

import json
import math
import os
import re
import threading
import zipfile
from dataclasses import asdict

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.formats import qdpx
from pipeline.formats.readers import TranscriptFormatError
from pipeline.process import Checkpoint
from pipeline.records import AudioInfo, Segment, Word
from pipeline.stages.codebook import CodebookError, load_codebook, parse_codebook
from pipeline.stages.transcribe import ChunkResult
from pipeline.stages.vocabulary import read_vocabulary

runner = CliRunner()
THEME = "themes:\n  - id: wages\n    label: {en: Wages, zh: 工资}\n    patterns: {zh: [工资]}\n"
# Each level nine aliases of the one before: 9**9 values once expanded, in 600 bytes of YAML.
LAUGHS = (
    "no_theme: [&l0 [x, x, x, x, x, x, x, x, x], "
    + ", ".join(f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9))
    + "]\n"
)
LATIN1 = THEME.replace("Wages", "Wagés").encode("latin-1", "replace")
CODEBOOK_ATTACKS = {
    "python tag": (THEME.replace("id: wages", "id: !!python/object/apply:os.system [echo hi]"), "line 2", "python"),
    "list as a key": (THEME + "  - ? [a, b]\n    : x\n", "line 5", "a theme: a key must be text"),
    "a NUL byte": (THEME.replace("Wages", "Wa\x00ges"), "line 3", "control character #x00"),
    "100000 deep": ("themes: " + "[" * 100_000 + "]" * 100_000 + "\n", "line 1", "nest too deep"),
    "a date for tokens": (
        THEME.replace("zh: [工资]", "en: [{tokens: 2020-01-01}]"),
        "line 4",
        "a token pattern must be a list of mappings",
    ),
    "laughing tokens": (
        LAUGHS + THEME.replace("zh: [工资]", "en: [{tokens: [{LOWER: {IN: *l8}}]}]"),
        "line 5",
        "more than",
    ),
}


@pytest.mark.parametrize("check_tokens", [True, False], ids=["checked", "labels only"])
@pytest.mark.parametrize("attack", CODEBOOK_ATTACKS)
def test_a_hostile_codebook_is_a_problem_at_its_line(attack, check_tokens):
    text, line, cause = CODEBOOK_ATTACKS[attack]
    codebook, problems = parse_codebook(text, check_tokens=check_tokens)
    assert codebook is None
    assert any(str(p).startswith(line) and cause in str(p) for p in problems), problems


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda p: p.write_bytes(LATIN1), "line 3: not UTF-8 text"),
        (lambda p: p.write_bytes(THEME.encode("utf-16-le")), "line 1: not a text file"),
        (lambda p: p.write_bytes(THEME.encode("utf-16")[:-1]), "line 4: not UTF-16 text"),
        (lambda p: p.mkdir(), "line 1: is a folder, not a codebook"),
        (lambda p: p.symlink_to("/dev/zero"), "line 1: too big for a codebook"),
        (lambda p: p.write_bytes(b"#" * (11 * 2**20)), "line 1: 11.0 MB is too big for a codebook"),
    ],
    ids=["latin-1", "utf-16 without a BOM", "utf-16 cut short", "folder", "device", "11 MB"],
)
def test_a_codebook_file_that_is_no_text_is_refused_naming_it(tmp_path, make, cause):
    path = tmp_path / "codebook.yaml"
    make(path)
    with pytest.raises(CodebookError, match=cause):
        load_codebook(path)
    result = runner.invoke(app, ["codebook", "validate", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert str(path) in result.stderr and cause.split(": ", 1)[1] in result.stderr, result.stderr


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig"])
def test_a_codebook_saved_as_windows_notepad_saves_it_is_read(tmp_path, encoding):
    """Notepad's "Unicode" is UTF-16 with a byte-order mark (big-endian too); "UTF-8 with BOM" is UTF-8."""
    path = tmp_path / "codebook.yaml"
    path.write_bytes(("\ufeff" if encoding == "utf-16-be" else "").encode(encoding) + THEME.encode(encoding))
    assert load_codebook(path).label("wages") == "Wages / 工资"


def test_a_codebook_in_utf_16_without_its_mark_is_refused_saying_so(tmp_path):
    path = tmp_path / "codebook.yaml"
    path.write_bytes(THEME.encode("utf-16-le"))
    with pytest.raises(CodebookError, match=re.escape("UTF-16 without a byte-order mark? Save it as UTF-8")):
        load_codebook(path)


def test_a_codebook_that_is_a_fifo_nobody_writes_to_reads_as_empty_not_waited_for(tmp_path):
    path = tmp_path / "codebook.yaml"
    os.mkfifo(path)
    with pytest.raises(CodebookError, match="line 1: the codebook is empty"):
        load_codebook(path)


def test_a_checkpoint_cut_short_or_edited_resumes_with_only_the_chunks_it_holds_whole(tmp_path):
    """A resume trusted every line: one cut inside a character (a run killed as it wrote Chinese), or not in
    the shape ohp writes, failed the recording at every run until --force; edited times went into the store."""
    info = AudioInfo(tmp_path / "a.wav", "ab" * 32, 1, "wav", "pcm_s16le", 16000, 1, 10.0)
    checkpoint = Checkpoint(info, "key", tmp_path)
    good = ChunkResult([Segment(0.0, 1.0, "工资", "工资", "zh", words=[Word(0.0, 1.0, "工资", 0.9)])], {})
    checkpoint.add(0, good)

    def line(index: object, **changes: object) -> bytes:
        entry = {"index": index, "segments": [{**asdict(good.segments[0]), **changes}], "guards": {}}
        return json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n"

    with open(checkpoint.path, "ab") as f:
        f.write(b"[]\n" + b'{"index": 2}\n' + line("3") + line(5, start=math.nan) + line(6, start=5.0, end=1.0))
        cut = line(8)
        f.write(line(7, speakers="x") + line(4) + cut[: cut.rindex("资".encode()) + 1])  # the last cut inside 资
    assert checkpoint.load() == {0: good, 4: good}


def test_a_vocabulary_that_is_a_fifo_nobody_writes_to_is_not_waited_for(tmp_path):
    fifo = tmp_path / "vocabulary.txt"
    os.mkfifo(fifo)
    found = []
    reader = threading.Thread(target=lambda: found.append(read_vocabulary(fifo).terms), daemon=True)
    reader.start()
    reader.join(timeout=10)
    waited = reader.is_alive()
    if waited:  # the open waits for a writer: be one, so the thread ends
        os.close(os.open(fifo, os.O_WRONLY))
        reader.join()
    assert not waited and found == [()]


def test_a_project_naming_one_big_transcript_many_times_inflates_it_no_further_than_its_limit(tmp_path, monkeypatch):
    """A 200 MB transcript deflates to 200 kB; a thousand Transcripts naming it were a thousand inflations of it
    (200 GB, minutes of work) from a project of under 1 MB."""
    monkeypatch.setattr(qdpx, "MAX_INFLATED_BYTES", 10 * 2**20)
    transcript = '<Transcript guid="t" plainTextPath="internal://t.txt"/>'
    project = (
        f'<Project xmlns="{qdpx.NS}"><Sources><AudioSource guid="a" name="a.wav">'
        f"<Description>sha256: {'ab' * 32}</Description>{transcript * 20}</AudioSource></Sources></Project>"
    )
    path = tmp_path / "bomb.qdpx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("project.qde", project)
        z.writestr("sources/t.txt", "x" * 2**20)
    with pytest.raises(TranscriptFormatError, match="inflates to more than 10 MB"):
        qdpx.read_qdpx(path, load_codebook(check_tokens=False))
