"""Every stored string `ohp report`, `ohp agreement` and the researchers' pages show, written by an attacker:
file names, interviewee and place, speaker and coder names, a codebook's theme labels, transcript text. The
files and pages must stay inert (no markup, script, link or formula from the data), well-formed, of bounded
size, and readable by the page's Content-Security-Policy; degenerate data gives "undefined", never NaN."""

from __future__ import annotations

import csv
import io

from pipeline.analysis.tables import Table

FORMULA = '=HYPERLINK("http://evil.example","x")'
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def assert_no_formulas(text: str) -> None:
    for row in csv.reader(io.StringIO(text.removeprefix("\ufeff"))):
        for cell in row:
            if cell.startswith(FORMULA_START):
                float(cell)  # a number ("-0.5000") is no formula; anything else raises


def test_a_tables_csv_header_is_safe_from_formulas():
    """The header holds coders' names ("NAME says there") and theme labels: it was written as it was."""
    columns = ("theme", f"{FORMULA} says there", "+1", "-x", "@x")
    table = Table("agreement", "A", columns, [(FORMULA, 1, -0.5, 2, 3)], "agreement")
    header, row = list(csv.reader(io.StringIO(table.csv().removeprefix("\ufeff"))))
    assert header[1:] == ["'" + FORMULA + " says there", "'+1", "'-x", "'@x"]
    assert row == ["'" + FORMULA, "1", "-0.5000", "2", "3"]  # a number stays a number
    assert_no_formulas(table.csv())
