"""Every stored string `ohp report`, `ohp agreement` and the researchers' pages show, written by an attacker:
file names, interviewee and place, speaker and coder names, a codebook's theme labels, transcript text. The
files and pages must stay inert (no markup, script, link or formula from the data), well-formed, of bounded
size, and readable by the page's Content-Security-Policy; degenerate data gives "undefined", never NaN."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest
from saving import save_speakers, save_tags, save_transcription
from typer.testing import CliRunner

from pipeline.analysis.charts import MOST_ROWS, render, tagger_rows
from pipeline.analysis.tables import Table, disagreements_csv
from pipeline.cli import app
from pipeline.config import Config
from pipeline.records import (
    MAX_FIELD_CHARS,
    AudioInfo,
    Disagreement,
    Segment,
    SpeakerRecord,
    ThemeSuggestion,
    Transcript,
)
from pipeline.stages.codebook import DEFAULT_CODEBOOK
from pipeline.store import Store
from pipeline.web import create_app

from test_web_api import PASSWORD, client_for

SCRIPT = "</svg><script>alert(1)</script>"
BREAKOUT = "\"' onload=alert(1) x='"
FORMULA = '=HYPERLINK("http://evil.example","x")'
MATH = r"$\frac$ paid"  # between two dollar signs: matplotlib's mathtext, unparsable
LONG = "长" * 100_000  # a chart's label (the store keeps interviewee and place to MAX_FIELD_CHARS)
FILE_NAME = f"{SCRIPT}{BREAKOUT}{MATH}.wav"
CODERS = (FORMULA, "<img src=x onerror=alert(1)>\u202e[link=http://evil.example]x[/link]\x1b[2J")
THEME_LABEL = f"{SCRIPT}{BREAKOUT}"
TEXTS = [f"{FORMULA} wages", "-2+3 wages", "@SUM(1) wages"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
runner = CliRunner()


@pytest.fixture
def hostile(store, tmp_path) -> tuple[Store, Path]:
    """A recording whose every name is an attack, coded by two coders whose names are too; and a codebook
    whose "wages" label is one."""
    info = AudioInfo(Path("/audio") / FILE_NAME, "ef" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 30.0)
    segments = [Segment(i * 10.0, i * 10.0 + 8.0, t, t, "en", speaker="S1") for i, t in enumerate(TEXTS)]
    rid = save_transcription(store, info, Transcript("en", 0.99, segments, "faster-whisper", "base"), {}, "k", {})
    save_speakers(store, rid, [SpeakerRecord("S1", f"@SUM(1){SCRIPT}", "interviewee")], {}, "k", {})
    interviewee = "长" * (MAX_FIELD_CHARS - len(SCRIPT)) + SCRIPT  # the longest the store keeps
    store.set_metadata(rid, interviewee=interviewee, place="javascript:alert(1)\u202e" + MATH)
    ids = [s.id for s in store.segments(rid)]
    save_tags(store, rid, {sid: [ThemeSuggestion("wages", 0.8, ((0, 4),))] for sid in ids}, {}, "t1", {}, "t1")
    notes = {a.segment_id: a.id for a in store.annotations(rid)}
    for coder, decisions in zip(CODERS, (("accepted",) * 3, ("accepted", "rejected", "rejected")), strict=True):
        for sid, status in zip(ids, decisions, strict=True):
            store.decide(notes[sid], status, coder)
    codebook = tmp_path / "codebook.yaml"
    yaml = DEFAULT_CODEBOOK.read_text(encoding="utf-8")
    label = f"{{en: {json.dumps(THEME_LABEL)}, zh: 工资}}"  # JSON's string is YAML's too
    codebook.write_text(yaml.replace("{en: Wages, zh: 工资}", label), encoding="utf-8")
    return store, codebook


class Markup(HTMLParser):
    """The tags, attributes and comments of a page, as a browser's parser finds them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.comments: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_comment(self, data):
        self.comments.append(data)


def assert_inert(text: str, own_scripts: frozenset[str] = frozenset()) -> None:
    """No element, attribute or link the data made: scripts only the app's own, no event handler, no link
    elsewhere or to javascript:."""
    found = Markup(text)
    assert {attrs.get("src") for tag, attrs in found.tags if tag == "script"} <= own_scripts
    for tag, attrs in found.tags:
        assert tag not in {"iframe", "object", "embed", "foreignobject", "img"} or attrs.get("onerror") is None, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in {"href", "src", "xlink:href", "action"}:
                assert value is not None and not re.match(r"\s*(javascript|https?):|//", value, re.I), value


def assert_allowed_by_the_csp(text: str) -> None:
    """Nothing the web app's Content-Security-Policy (default-src 'self') refuses in a page: no inline style
    (a <style> element or a style attribute) and no data: image."""
    found = Markup(text)
    for tag, attrs in found.tags:
        assert tag != "style" and "style" not in attrs, (tag, attrs.get("style"))
        assert not any((value or "").startswith("data:") for value in attrs.values()), tag


def assert_no_formulas(text: str) -> None:
    for row in csv.reader(io.StringIO(text.removeprefix("\ufeff"))):
        for cell in row:
            if cell.startswith(FORMULA_START):
                float(cell)  # a number ("-0.5000") is no formula; anything else raises


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_hostile_names_through_ohp_agreement(hostile, db_url, tmp_path):
    """The terminal shows each name as text: no rich markup (a link), no control or bidi character acting."""
    _, codebook = hostile
    out = tmp_path / "disagreements.csv"
    result = invoke("agreement", "--db", db_url, "--codebook", str(codebook), "--disagreements", str(out))
    assert result.exit_code == 0, result.output
    assert "[link=http://evil.example]x[/link]" in "".join(result.stdout.split())  # as written, however wrapped
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
    assert "2 disagreement(s)" in result.stdout
    assert_no_formulas(out.read_text(encoding="utf-8"))


def test_hostile_names_through_ohp_report(hostile, db_url, tmp_path):
    _, codebook = hostile
    out = tmp_path / "report"
    result = invoke("report", "--db", db_url, "--out", str(out), "--codebook", str(codebook))
    assert result.exit_code == 0, result.output
    index = (out / "index.html").read_text(encoding="utf-8")
    assert_inert(index)
    # A coder's U+202E in the title "Agreement between A and B" turned the rest of the heading around.
    assert "\u202e" not in index and "Agreement between" in index
    for path in out.glob("*.svg"):
        text = path.read_text(encoding="utf-8")
        ElementTree.fromstring(text)  # well-formed
        assert_inert(text)
        assert len(text) < 400_000, (path.name, len(text))  # not a copy of a 100,000-character name
    for path in out.glob("*.csv"):
        assert_no_formulas(path.read_text(encoding="utf-8"))
    [agreement] = list(csv.reader(io.StringIO((out / "agreement.csv").read_text(encoding="utf-8-sig"))))[:1]
    assert "'" + FORMULA + " says there" in agreement  # the header's names are text too


def test_a_tables_csv_header_is_safe_from_formulas():
    """The header holds coders' names ("NAME says there") and theme labels: it was written as it was."""
    columns = ("theme", f"{FORMULA} says there", "+1", "-x", "@x")
    table = Table("agreement", "A", columns, [(FORMULA, 1, -0.5, 2, 3)], "agreement")
    header, row = list(csv.reader(io.StringIO(table.csv().removeprefix("\ufeff"))))
    assert header[1:] == ["'" + FORMULA + " says there", "'+1", "'-x", "'@x"]
    assert row == ["'" + FORMULA, "1", "-0.5000", "2", "3"]  # a number stays a number
    assert_no_formulas(table.csv())


CHARTS = {  # a table of each kind of chart: its columns and a row
    "heatmap": (("place", "Wages", "Housing"), (1.0, 2.0)),
    "lines": (("position", "Wages", "Housing"), (1.0, 2.0)),
    "bars": (("recording", "coded % of segments", "doubtful % of text"), (50.0, 12.5)),
    "agreement": (("theme", "Cohen's kappa", "Krippendorff's alpha"), (0.5, None)),
    "tagger": (("coder", "theme", "Cohen's kappa"), ("wages", -0.25)),
}


def table_of(chart: str, name: str) -> Table:
    """A table drawn as `chart`, with `name` in its title, a column and a row."""
    columns, values = CHARTS[chart]
    if chart != "tagger":
        columns = (*columns, name)
        values = (*values, 1.0)
    return Table("t", f"Themes by {name}", columns, [(name, *values), ("b", *values)], chart)


@pytest.mark.filterwarnings("error::UserWarning")  # "constrained_layout not applied": the plot squeezed to nothing
@pytest.mark.parametrize("chart", CHARTS)
def test_charts_hold_control_characters_long_names_and_dollars(chart):
    """A NUL or ESC in a name made the SVG no XML at all; a pair of dollar signs was read as matplotlib's
    mathtext (raising when it did not parse); a 100,000-character name was drawn whole (8 MB of SVG)."""
    for name in ("a\x00b\x1b[2Jc\x7f\ufffe", MATH, "paid $5 and $6", LONG, "x" * 100_000, "x"):
        svg = render(table_of(chart, name), "svg")
        ElementTree.fromstring(svg)
        assert len(svg) < 200_000  # about 50,000 bytes for a name cut to LABEL_WIDTH; 8 MB whole
        render(table_of(chart, name), "png")


def test_a_chart_is_drawn_once_for_its_table_and_says_its_warnings_each_time(monkeypatch):
    """The web app draws a page's charts for each view of it, and `ohp report` with names and without draws the
    tables naming nobody twice: a chart is kept by its table's content, the same bytes and the same warnings
    (a squeezed plot's) each time it is used; a table that differs in a cell, or in a number's sign, is drawn
    anew."""
    from pipeline.analysis import charts
    from pipeline.utils import ContentCache

    monkeypatch.setattr(charts, "_DRAWN", ContentCache(size=32))
    drawn: list[str] = []
    draw = charts._draw

    def counted(table: Table, fmt: str):
        drawn.append(fmt)
        return draw(table, fmt)

    def squeezed(table: Table):
        import warnings

        warnings.warn("constrained_layout not applied", UserWarning, stacklevel=2)
        return bars(table)

    bars = charts.DRAW["bars"]
    monkeypatch.setattr(charts, "_draw", counted)
    monkeypatch.setitem(charts.DRAW, "bars", squeezed)
    table = table_of("bars", "Wages")
    for _ in range(2):
        with pytest.warns(UserWarning, match="constrained_layout not applied"):
            svg, png = render(table, "svg"), render(table, "png")
        assert svg.startswith(b"<?xml") and png.startswith(b"\x89PNG")
    assert drawn == ["svg", "png"]
    with pytest.warns(UserWarning):
        assert render(replace(table, rows=[("Wages", 50.0, -0.0, 1.0)]), "svg") != svg
        render(replace(table, rows=[("Wages", 50.0, 0.0, 1.0)]), "svg")
    assert drawn == ["svg", "png", "svg", "svg"]


@pytest.mark.parametrize("chart", CHARTS)
def test_charts_have_nothing_the_pages_csp_refuses(chart):
    """The researchers' pages put each chart's SVG in the page, under the app's CSP: matplotlib's style
    attributes and <style> element, and a heatmap's cells as a data: PNG, were refused (black shapes, no
    cells: tests/test_web_browser.py sees it in Chromium)."""
    svg = render(table_of(chart, "Wages"), "svg").decode("utf-8")
    assert_allowed_by_the_csp(svg)
    ElementTree.fromstring(svg)


def test_hostile_names_in_the_researchers_pages(hostile):
    """The pages escape every name (Jinja's autoescape) and draw the charts with nothing the CSP refuses."""
    store, codebook_path = hostile
    from pipeline.stages.codebook import load_codebook

    store.add_user("rita", PASSWORD, "researcher")
    web = create_app(store, Config(secret="test-secret"))
    web.state.codebook = load_codebook(codebook_path)
    client, _ = client_for(web, "rita")
    for path in ("/collection", "/agreement"):
        page = client.get(path)
        assert page.status_code == 200
        assert_inert(page.text, own_scripts=frozenset({"/static/ohp.js"}))
        assert_allowed_by_the_csp(page.text)
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text  # the coder, as text, in the agreement table
    refused = client.get("/agreement", params={"coders": f"{SCRIPT},{CODERS[1]}"})
    assert refused.status_code == 400 and "&lt;script&gt;" in refused.text
    assert_inert(refused.text, own_scripts=frozenset({"/static/ohp.js"}))
    for name in ("agreement.svg", "agreement.csv", "disagreements.csv"):
        assert client.get(f"/agreement/{name}").status_code == 200
    assert_no_formulas(client.get("/agreement/disagreements.csv").content.decode("utf-8"))
    assert_no_formulas(client.get("/agreement/agreement.csv").content.decode("utf-8"))


@pytest.fixture
def unanimous(store) -> Store:
    """One segment, on which the two coders both accept the one theme suggested: every unit in one category,
    so kappa and alpha are undefined (chance agreement is 1)."""
    info = AudioInfo(Path("/audio/one.wav"), "ab" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 5.0)
    segment = Segment(0.0, 4.0, "wages", "wages", "en", speaker="S1")
    rid = save_transcription(store, info, Transcript("en", 0.99, [segment], "faster-whisper", "base"), {}, "k", {})
    [sid] = [s.id for s in store.segments(rid)]
    save_tags(store, rid, {sid: [ThemeSuggestion("wages", 0.8, ((0, 4),))]}, {}, "t1", {}, "t1")
    [note] = store.annotations(rid)
    for coder in ("alice", "bob"):
        store.decide(note.id, "accepted", coder)
    return store


@pytest.mark.filterwarnings("error::UserWarning")  # matplotlib's "No artists with labels" on the terminal
def test_undefined_agreement_is_said_so_never_nan(unanimous, db_url, tmp_path):
    said = invoke("agreement", "--db", db_url)
    assert said.exit_code == 0, said.output
    assert "undefined" in said.stdout and "100.0 %" in said.stdout
    assert not re.search(r"\b(nan|inf)\b", said.stdout, re.I)
    out = tmp_path / "report"
    assert invoke("report", "--db", db_url, "--out", str(out)).exit_code == 0
    agreement = {
        row["theme"]: row for row in csv.DictReader(io.StringIO((out / "agreement.csv").read_text("utf-8-sig")))
    }
    wages = agreement["Wages / 工资"]
    assert (wages["units"], wages["percent agreement"], wages["Cohen's kappa"], wages["Krippendorff's alpha"]) == (
        "1",
        "1.0000",
        "",
        "",
    )
    for path in out.iterdir():
        if path.suffix != ".png":
            assert not re.search(r"\b(nan|inf)\b", path.read_text(encoding="utf-8"), re.I), path.name
    unanimous.add_user("rita", PASSWORD, "researcher")
    client, _ = client_for(create_app(unanimous, Config(secret="test-secret")), "rita")
    page = client.get("/agreement").text
    assert "undefined" in page and not re.search(r">\s*(nan|inf)\s*<", page, re.I)


@pytest.mark.filterwarnings("error::UserWarning")
def test_a_report_of_nothing(db_url, tmp_path):
    """No recording, no coder: the charts of empty tables, no agreement, no error."""
    out = tmp_path / "report"
    result = invoke("report", "--db", db_url, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert not (out / "agreement.csv").exists() and (out / "coverage.svg").exists()
    for path in out.glob("*.svg"):
        ElementTree.parse(path)


@pytest.mark.parametrize("chart", ["agreement", "tagger"])
def test_agreement_charts_show_at_most_most_rows(chart):
    """The tagger's chart had a bar for every coder and theme, the agreement chart one for every theme, however
    many: 150 coders (their imports) made a PNG 74,000 pixels tall in 21 s of CPU. Like the others, they show
    MOST_ROWS (the CSV has them all)."""

    def height(rows: int) -> str:
        table = table_of(chart, "Wages")
        svg = render(replace(table, rows=table.rows[:1] * rows), "svg")
        return ElementTree.fromstring(svg).attrib["height"]

    assert height(MOST_ROWS + 1) == height(10 * MOST_ROWS) != height(MOST_ROWS // 2)


def test_the_disagreements_csv_is_written_as_the_store_streams_it():
    """The store streams the disagreements, but the CSV was made whole in memory first (a million: 153 MB of
    CSV, 460 MB at the peak, in ohp agreement or in the web server for one request). Each line is written as
    its disagreement is read."""
    read = []

    def found():
        for i in range(1_000_000):
            read.append(i)
            yield Disagreement(
                i, "wages", "/a/one.wav", i * 5.0, i * 5.0 + 4.0, "S1", "text", True, {"a": True, "b": None}
            )

    lines = iter(disagreements_csv(found(), str))
    assert next(lines).startswith("\ufeffrecording,start,end")
    assert next(lines).startswith("one.wav,0.000,4.000") and next(lines).startswith("one.wav,5.000,9.000")
    assert len(read) == 2


@pytest.mark.filterwarnings("error::UserWarning")  # a legend of every theme squeezed the plot to nothing
@pytest.mark.parametrize("chart", ["heatmap", "lines"])
def test_theme_charts_show_at_most_most_rows_themes(chart):
    """A heatmap had a column, the lines chart a line, for every theme of the codebook: one of 300 themes (a
    QDA project's codebook) made a co-occurrence PNG of 25,000 by 2,700 pixels (380 MB at the peak) and 3.6 MB
    of SVG in the web page. They show the MOST_ROWS themes with most segments."""

    def size(themes: int) -> tuple[str, str]:
        names = [f"theme {i}" for i in range(themes)]
        rows = [(name, *(i * j % 7 for j in range(themes))) for i, name in enumerate(names[:12])]
        svg = render(Table("t", "T", ("theme", *names), rows, chart), "svg")
        root = ElementTree.fromstring(svg)
        return root.attrib["width"], root.attrib["height"]

    assert size(MOST_ROWS + 1) == size(6 * MOST_ROWS)


def test_the_tagger_chart_shows_every_coders_pooled_kappa_before_the_themes():
    """Capped at MOST_ROWS, the chart showed the first coders' per-theme rows (a coder's pooled row comes after
    their themes): with 30 themes, the second and third coders' kappa over all themes was left out."""
    from pipeline.analysis.agreement import ALL_THEMES

    coders, themes = ("ann", "ben", "cao"), [f"theme {n}" for n in range(30)]
    rows = [(coder, theme, 0.5) for coder in coders for theme in [*themes, ALL_THEMES]]
    shown, cut = tagger_rows(Table("t", "The tagger", ("coder", "theme", "Cohen's kappa"), rows, "tagger"))
    assert [r[0] for r in shown if r[1] == ALL_THEMES] == list(coders) and len(shown) == MOST_ROWS
    assert cut == f" (first {MOST_ROWS} of {len(rows)})"
