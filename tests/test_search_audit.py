"""audit-search: what the command line shows of outside text (transcripts, speaker names, codebook labels,
file names, queries) it shows as written. Never read as rich markup (a "[/]" crashed the command, a
"[bold]" or "[link=...]" restyled or linked what follows and vanished), and no control character of it
reaches the terminal (ESC clears the screen, recolours, or hides a link, OSC 8; U+202E reverses what follows)."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import pytest
from saving import save_speakers, save_transcription
from typer.testing import CliRunner

from pipeline import cli
from pipeline.cli.output import Terminal
from pipeline.records import (
    MAX_TEXT_CHARS,
    AudioInfo,
    Entity,
    RecordingResult,
    SearchFilters,
    Segment,
    SpeakerRecord,
    StageRun,
    Transcript,
    Word,
)
from pipeline.search import textindex
from pipeline.search.textindex import highlight, parse_query
from pipeline.stages.codebook import DEFAULT_CODEBOOK
from pipeline.stages.doubt import mark_doubt
from pipeline.store import Store

runner = CliRunner()

# A file name may hold markup and control characters (not "/").
NAME = "zhang [bold red]x\x1b]8;;file:evil\x1b\\y.srt"
SHOWN_NAME = "zhang [bold red]x␛]8;;file:evil␛\\y.srt"  # ESC as the control picture ␛, one character for one
TEXT = "我们工资[/]被\u202e拖欠了\x1b[2J三个月 [link=https://evil.example]here[/link]"
SHOWN_TEXT = "我们工资[/]被\ufffd拖欠了␛[2J三个月 [link=https://evil.example]here[/link]"
SNIPPET = SHOWN_TEXT[:14]  # what a search hit shows of it


def invoke(*args: str, input: str | None = None):
    return runner.invoke(cli.app, list(args), env={"COLUMNS": "250"}, input=input)


@pytest.fixture
def imported(tmp_path) -> tuple[str, str]:
    """A transcript with a hostile name, text and speaker, imported (and tagged: 工资 is wages); the
    database's URL and what `ohp import` said."""
    url = f"sqlite:///{tmp_path / 'ohp.db'}"
    srt = tmp_path / NAME
    srt.write_text(f"1\n00:00:01,000 --> 00:00:04,000\n王[/]: {TEXT}\n", encoding="utf-8")
    result = invoke("import", str(srt), "--db", url)
    assert result.exit_code == 0, result.output
    return url, result.output


@pytest.fixture
def codebook(tmp_path) -> Path:
    """ohp's codebook with a hostile label for wages."""
    path = tmp_path / "codebook.yaml"
    hostile = 'label: {en: "Wages [/][link=https://evil.example]\\e[2J", zh: 工资}'  # \\e: ESC, in YAML
    path.write_text(DEFAULT_CODEBOOK.read_text(encoding="utf-8").replace("label: {en: Wages, zh: 工资}", hostile))
    return path


def assert_shown_as_written(output: str, *pieces: str) -> None:
    for piece in pieces:
        assert piece in output, output
    assert "\x1b" not in output and "\u202e" not in output, output


def test_import_and_search_show_names_and_text_as_written(imported):
    url, said = imported
    assert_shown_as_written(said, SHOWN_NAME)
    found = invoke("search", "工资", "--db", url)
    assert found.exit_code == 0
    assert_shown_as_written(found.stdout, SHOWN_NAME, "王[/]: ", SNIPPET)


def test_a_query_with_markup_that_matches_nothing_is_said_as_written(imported):
    url, _ = imported
    result = invoke("search", "nothing [/] [bold]", "--db", url)  # was a MarkupError, exit code 1
    assert result.exit_code == 0 and "no matches for 'nothing [/] [bold]'" in result.stdout


@pytest.mark.parametrize("command", ["status", "describe", "themes"])
def test_tables_show_file_names_as_written(imported, command):
    url, _ = imported
    result = invoke(command, "--db", url)
    assert result.exit_code == 0
    assert_shown_as_written(result.stdout.replace("│", " "), "[bold red]x␛]8;;")  # the name may fold in its cell


def test_theme_labels_are_shown_as_written(imported, codebook):
    url, _ = imported
    label = "Wages [/][link=https://evil.example]␛[2J"
    themes = invoke("themes", "--db", url, "--codebook", str(codebook))
    assert themes.exit_code == 0
    assert_shown_as_written(themes.stdout, label)
    review = invoke("review", "1", "--db", url, "--codebook", str(codebook), "--user", "mei", input="q\n")
    assert review.exit_code == 0, review.output
    assert_shown_as_written(review.stdout, label, "王[/]: ", SHOWN_TEXT)


def test_run_in_a_terminal_shows_file_names_as_written(tmp_path, monkeypatch):
    """The progress bar, the failure as it happens and the table of `ohp run`."""
    audio = tmp_path / "audio"
    audio.mkdir()
    with wave.open(str(audio / "[bold red]quiet\x1b[2J.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(b"\0" * 32000)
    (audio / "[link=file:evil]broken.wav").write_text("not audio")
    screen = io.StringIO()
    terminal = Terminal(file=screen, force_terminal=True, width=250, color_system=None)
    monkeypatch.setattr(cli, "console", terminal)
    db = f"sqlite:///{tmp_path / 'ohp.db'}"
    result = invoke("run", str(audio), "--db", db, "--out", str(tmp_path / "out"), "--no-tag", "--speakers", "off")
    assert result.exit_code == 1
    shown = screen.getvalue()
    assert "│ [bold red]quiet␛[2J.wav " in shown and "│ [link=file:evil]broken.wav │" in shown
    assert "failed: " + str(audio / "[link=file:evil]broken.wav") in shown
    assert "\x1b[2J" not in shown


def test_a_doubtful_passage_is_shown_and_asked_about_as_written(tmp_path):
    """`ohp review --doubtful`: the text to correct was the prompt's default, echoed raw by click."""
    url = f"sqlite:///{tmp_path / 'ohp.db'}"
    pieces = [("我们", 0.95), ("工资\x1b[2J", 0.05), ("\u202e拖欠", 0.9)]
    words = [Word(i * 0.5, i * 0.5 + 0.4, text, p) for i, (text, p) in enumerate(pieces)]
    text = "".join(w.text for w in words)
    segments = [Segment(0.0, 1.4, text, text, "zh", words)]
    transcript = mark_doubt(Transcript("zh", 0.9, segments, "faster-whisper", "base"))
    info = AudioInfo(Path("/audio/li.wav"), "cd" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 2.0)
    with Store(url) as store:
        rid = store.save_result(RecordingResult(info, transcript, stages={"transcribe": StageRun({}, "t", {})}))
        rid = rid.export.recording.id
    result = invoke("review", str(rid), "--doubtful", "--user", "mei", "--db", url, input="c\n\n")  # Enter keeps it
    assert result.exit_code == 0, result.output
    assert_shown_as_written(result.output, "我们工资␛[2J\ufffd拖欠", "0 corrected")
    with Store(url) as store:
        assert store.segments(rid)[0].text == text


def test_log_records_on_standard_error_hold_no_control_characters(tmp_path):
    """--verbose: a bad file's message names it; a name with ESC sequences reached the terminal raw."""
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "li\x1b[2J.wav").write_text("not audio")
    db = f"sqlite:///{tmp_path / 'ohp.db'}"
    out = str(tmp_path / "out")
    result = invoke("--verbose", "run", str(audio), "--db", db, "--out", out, "--no-tag", "--speakers", "off")
    assert result.exit_code == 1
    assert_shown_as_written(result.stderr, "li␛[2J.wav: not an audio file")


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("zh", ["我们的工资", "工资條"]),
        ("ZH", ["我们的工资", "工资條"]),  # a language code in any case, on every database (LIKE folds on SQLite)
        ("zh-tw", ["工资條"]),
        ("%", []),  # LIKE's wildcards are letters here: "%" was every language with a subtag
        ("_h", []),
        ("z_", []),
    ],
)
def test_the_language_filter_takes_its_value_as_written(store, language, expected):
    for n, (text, code) in enumerate([("我们的工资", "zh"), ("工资條", "zh-TW"), ("wages 工资", "en-GB")]):
        segments = [Segment(0.0, 2.0, text, text, code)]
        info = AudioInfo(Path(f"/audio/{n}.wav"), str(n) * 64, 1000, "wav", "pcm_s16le", 16000, 1, 2.0)
        save_transcription(store, info, Transcript(code, 1.0, segments, "faster-whisper", "base"), {}, "k", {})
    hits = store.search(parse_query("工资"), SearchFilters(language=language)).hits
    assert sorted(h.text for h in hits) == sorted(expected)


def test_metadata_and_speaker_filters_fold_case_beyond_ascii_on_every_database(store):
    """SQLite's lower() folds ASCII only, PostgreSQL's every letter: --interviewee élodie found Élodie on one."""
    segments = [Segment(0.0, 2.0, "工资很低", "工资很低", "zh", speaker="S1")]
    info = AudioInfo(Path("/audio/e.wav"), "e" * 64, 1000, "wav", "pcm_s16le", 16000, 1, 2.0)
    rid = save_transcription(store, info, Transcript("zh", 1.0, segments, "faster-whisper", "base"), {}, "k", {})
    store.set_metadata(rid, interviewee="Élodie Ölmez", place="Ürümqi")
    save_speakers(store, rid, [SpeakerRecord("S1")], {}, "k", {})
    store.rename_speaker(rid, "S1", "Иван Ёлкин", "mei")
    for filters in (
        SearchFilters(interviewee="élodie"),
        SearchFilters(interviewee="ÉLODIE ÖLMEZ"),
        SearchFilters(place="ürümqi"),
        SearchFilters(speaker="иван ёлкин"),
    ):
        assert [h.text for h in store.search(parse_query("工资"), filters).hits] == ["工资很低"], filters


# A segment may be this long.
LONG = ("我们拿工资是计件的，老板拖欠了三个月。 wages were held back. " * 3000)[:MAX_TEXT_CHARS]


def test_a_snippet_of_a_long_segment_full_of_matches_is_a_snippet():
    """A search shows a snippet of each hit (up to 1,000 of them): of a segment with matches all through, it
    was the whole text (and took 24 s to make)."""
    snippet = highlight(LONG, parse_query("wages OR held OR 工资"))
    assert len(snippet.text) < 200 and snippet.text.endswith("…")


@pytest.mark.parametrize(
    "query", [" OR ".join(f"w{i}x" for i in range(100)), " OR ".join(f"w{i}*" for i in range(100))]
)
def test_a_snippet_looks_words_up_not_every_word_against_every_query_word(query, monkeypatch):
    """A query of 100 words none of which is in a long segment: each was compared with every word of it (3 s a
    snippet). Where the words are is now a look-up: none of them is there, so no word is compared."""
    compared = []
    monkeypatch.setattr(textindex, "_matches", lambda term, token: compared.append(token) or False)
    snippet = highlight(LONG, parse_query(query))
    assert compared == [] and snippet.spans == []


# ------------------------------------------------------------------------------------ --json

# What reorders, hides or acts on what a terminal shows: bidi embeddings, overrides, isolates and marks, C0 and C1
# controls (\x9b is CSI on a terminal that takes 8-bit controls), DEL, zero-width and invisible tag characters.
DISGUISING = "\u202a\u202e\u2066\u2069\u200f\u061c\x1b\x9b\x7f\u200b\u2060\ufeff\U000e0041"
HOSTILE_TEXT = "我们工资\u202e被拖欠\u2066了\u2069三个月\x9b2J\x7f\u200b\U000e0041"
HOSTILE_NAME = "王\u202e梅\x1b[2J"


def assert_json_escapes_disguising_characters(output: str) -> None:
    assert not [c for c in DISGUISING if c in output], output
    assert "\\u202e" in output, output


def test_search_json_escapes_what_disguises_text_and_reads_back_as_written(store, db_url):
    segments = [Segment(0.0, 2.0, HOSTILE_TEXT, HOSTILE_TEXT, "zh", speaker="S1")]
    info = AudioInfo(Path("/audio/li\u202eyrots.wav"), "ab" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 2.0)
    rid = save_transcription(store, info, Transcript("zh", 1.0, segments, "faster-whisper", "base"), {}, "k", {})
    save_speakers(store, rid, [SpeakerRecord("S1", HOSTILE_NAME, "interviewee")], {}, "k", {})
    result = invoke("search", "工资", "--json", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert_json_escapes_disguising_characters(result.stdout)
    (hit,) = json.loads(result.stdout)["hits"]
    assert (hit["text"], hit["speaker_name"], hit["recording"]) == (HOSTILE_TEXT, HOSTILE_NAME, "li\u202eyrots.wav")


def test_tag_text_json_escapes_what_disguises_text(monkeypatch):
    from pipeline.stages import tag

    entity = Entity("PLACE", "东莞\u202e\x9b", 0, 4)
    monkeypatch.setattr(tag, "tag_text", lambda text, *args: tag.TagResult([], [entity]))
    result = invoke("tag-text", "东莞\u202e\x9b", "--json")
    assert result.exit_code == 0, result.output
    assert_json_escapes_disguising_characters(result.stdout)
    assert json.loads(result.stdout)["entities"][0]["text"] == entity.text


def test_vocabulary_suggest_json_escapes_what_disguises_text(monkeypatch, db_url):
    from pipeline.cli import vocabulary
    from pipeline.stages.vocabulary import Suggestion

    found = [Suggestion("犹地\u202e亚\u2066", 2, 1)]
    monkeypatch.setattr(vocabulary, "suggest", lambda *args: found)
    result = invoke("vocabulary", "suggest", "--json", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert_json_escapes_disguising_characters(result.stdout)
    assert json.loads(result.stdout)[0]["term"] == found[0].term


def test_a_usage_error_quoting_a_file_name_shows_it_as_written(tmp_path):
    """Typer draws a usage error's panel itself, outside ohp's console: the message's name reached the terminal raw."""
    hostile = tmp_path / "out\x1b[2J\u202etxt"
    hostile.write_text("a file, not a folder")
    result = invoke("export", "--out", str(hostile), "--db", f"sqlite:///{tmp_path / 'ohp.db'}")
    assert result.exit_code == 2
    assert_shown_as_written(result.stderr, "out␛[2J\ufffdtxt")


# A second audit (2026-12-02, helper "audit-search"): three more, each failing on the code as it was.


def _saved(store: Store, lines: list[str]) -> None:
    info = AudioInfo(Path("/audio/a.wav"), "aa" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 30.0)
    segments = [Segment(i * 10.0, i * 10.0 + 8.0, t, t, "en") for i, t in enumerate(lines)]
    save_transcription(store, info, Transcript("en", 1.0, segments, "faster-whisper", "base"), {}, "k", {})


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("worki*", "we were working nights"),
        ("runn*", "he kept running away"),
        ("stopp*", "they stopped paying"),
        ("hopin*", "I was hoping for more"),
    ],
)
def test_a_prefix_finds_the_words_that_start_with_it(store, query, text):
    """The index holds stems ("working" as work): a prefix longer than the stem ("worki*") found nothing."""
    _saved(store, [text, "the wages were low"])
    assert [h.text for h in store.search(parse_query(query)).hits] == [text]


def test_an_undecodable_byte_in_a_search_is_a_message_not_a_crash(db_url, tmp_path):
    """`ohp search $'wag\\xffe'` (and a filter so): Python reads the byte as half of a UTF-16 pair, which crashed
    in OpenCC or the database driver with a traceback."""
    srt = tmp_path / "a.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:04,000\nour wages\n", encoding="utf-8")
    assert runner.invoke(cli.app, ["import", str(srt), "--no-tag", "--db", db_url]).exit_code == 0
    for args, said in (
        (["wag\udcffe"], "the query holds \\udcff"),
        (["wage", "--speaker", "\udcff"], "the speaker filter holds no text"),
        (["wage", "--place", "a\udcff"], "the place filter holds no text"),
        (["wage", "--language", "en\x00"], "the language filter holds no text"),
    ):
        result = runner.invoke(cli.app, ["search", *args, "--db", db_url])
        assert result.exit_code == 2 and said in result.output, (args, result.output)


def test_a_term_repeated_is_searched_once_and_prefixes_are_bounded(store):
    """ "工* " 250 times (750 characters) took 14 s on 20,000 segments, for the answer of 工* (bench/RESULTS.md)."""
    assert parse_query("工* " * 250).root == parse_query("工*").root
    assert parse_query("(wage OR pay) " * 50).root == parse_query("wage OR pay").root
    many = " OR ".join(f"w{i}*" for i in range(textindex.MAX_PREFIXES + 1))
    with pytest.raises(textindex.QuerySyntaxError, match=f"at most {textindex.MAX_PREFIXES}"):
        parse_query(many)
