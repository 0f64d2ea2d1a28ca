"""Charts of the analysis tables (pipeline.analysis.tables), drawn with matplotlib on the server, offline,
as SVG or PNG bytes: no pyplot (no global state, safe in the web app's threads), nothing fetched.

Fonts: a CJK font when the machine has one (Noto Sans CJK, Source Han Sans, WenQuanYi...), so Chinese
names draw; without one, Chinese characters in names show as empty boxes (the CSV has them right).

An SVG has nothing a Content-Security-Policy without inline styles refuses (the web app puts it in its pages):
no style attribute or <style> element (presentation attributes instead) and no data: image (a heatmap's cells
are shapes).

Every text in a table (file names, interviewees, places, coders, theme labels) may be anybody's: a chart draws
it as it is written, never as matplotlib's mathtext ($...$), with control and bidi characters shown, on one line
and cut to LABEL_WIDTH columns (the CSV has it whole).
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from dataclasses import replace
from xml.etree import ElementTree

import numpy as np

from pipeline.analysis.agreement import ALL_THEMES
from pipeline.analysis.tables import DOUBTFUL, Table
from pipeline.utils import NOT_XML, ContentCache, display_width, inert, is_wide

log = logging.getLogger(__name__)

FORMATS = {"svg": "image/svg+xml", "png": "image/png"}
MOST_ROWS = 50  # rows a chart shows; the CSV has them all
# Columns (a Chinese character two) of a name a chart draws, and of its title (which holds the coders' names).
LABEL_WIDTH, TITLE_WIDTH = 50, 100
# The namespaces in matplotlib's SVG, by the prefixes it gives them.
NAMESPACES = {
    "": "http://www.w3.org/2000/svg",
    "xlink": "http://www.w3.org/1999/xlink",
    "cc": "http://creativecommons.org/ns#",
}
FONTS = ["DejaVu Sans", "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "Microsoft YaHei", "PingFang SC"]


def _figure(width: float, height: float):
    from matplotlib import font_manager, rcParams
    from matplotlib.figure import Figure

    installed = {font.name for font in font_manager.fontManager.ttflist}
    rcParams["font.family"] = [f for f in FONTS if f in installed] or ["sans-serif"]  # glyph by glyph fallback
    rcParams["svg.hashsalt"] = "ohp"  # the same chart gives the same SVG
    rcParams["text.parse_math"] = False  # a name with "$5 and $6" is text, not mathtext (which may not parse)
    return Figure(figsize=(width, height), layout="constrained")


def _most_used_themes(table: Table) -> tuple[Table, str]:
    """The table with at most MOST_ROWS of its themes (the columns after the first), those with most segments,
    in their order; and what the title adds when some are left out."""
    themes = len(table.columns) - 1
    if themes <= MOST_ROWS:
        return table, ""
    totals = {j: sum(row[j] for row in table.rows) for j in range(1, themes + 1)}
    kept = sorted(sorted(totals, key=lambda j: -totals[j])[:MOST_ROWS])
    shown = replace(
        table,
        columns=(table.columns[0], *(table.columns[j] for j in kept)),
        rows=[(row[0], *(row[j] for j in kept)) for row in table.rows],
    )
    return shown, f" ({MOST_ROWS} of {themes} themes, those most found)"


def _heatmap(table: Table):
    table, themes_shown = _most_used_themes(table)
    rows = table.rows
    if len(rows) > MOST_ROWS:  # the groups with most themes
        rows = sorted(rows, key=lambda r: -sum(v for v in r[1:]))[:MOST_ROWS]
    columns = table.columns[1:]
    # Room for the names: the columns' below the cells (at 45 degrees), the rows' beside them.
    below = 0.05 * max(map(display_width, columns), default=0)
    beside = 0.09 * max((display_width(str(r[0])) for r in rows), default=0)
    width = 0.55 * len(columns) + max(3.0, 2.0 + beside)
    fig = _figure(max(6.0, width), max(3.0, 0.32 * len(rows) + max(2.0, 1.0 + below)))
    ax = fig.add_subplot()
    values = [[float(v) for v in row[1:]] for row in rows] or [[0.0] * len(columns)]
    # Cells as shapes, centred on the ticks, the first row on top: imshow's image is a data: PNG in an SVG.
    image = ax.pcolormesh(np.arange(len(columns) + 1) - 0.5, np.arange(len(values) + 1) - 0.5, values, cmap="Blues")
    ax.invert_yaxis()
    ax.set_xticks(range(len(columns)), labels=columns, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), labels=[str(r[0]) for r in rows])
    top = max((v for row in values for v in row), default=0)
    if len(rows) * len(columns) <= 400:
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=7, color="white" if v > top / 2 else "black")
    scale = fig.colorbar(image, ax=ax, label="segments" if "turn" not in table.title else "turns")
    scale.solids.set_rasterized(False)  # matplotlib draws a colour scale of 50 steps or more as an image
    shown = f" ({len(rows)} of {len(table.rows)} with most themes)" if len(rows) < len(table.rows) else ""
    ax.set_title(table.title + shown + themes_shown)
    return fig


def _lines(table: Table):
    table, themes_shown = _most_used_themes(table)
    fig = _figure(8, max(4.5, 0.16 * len(table.columns) + 1))  # room for the legend, a theme a line
    ax = fig.add_subplot()
    positions = [str(r[0]) for r in table.rows]
    for j, theme in enumerate(table.columns[1:], start=1):
        ax.plot(positions, [r[j] for r in table.rows], marker="o", label=theme)
    ax.set_xlabel("part of the interview")
    ax.set_ylabel("segments")
    ax.tick_params(axis="x", rotation=45)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    ax.set_title(table.title + themes_shown)
    return fig


def _first_rows(table: Table) -> tuple[list[tuple], str]:
    """The rows a bar chart shows, at most MOST_ROWS, and what its title adds when some are left out."""
    rows = table.rows[:MOST_ROWS]
    return rows, f" (first {len(rows)} of {len(table.rows)})" if len(rows) < len(table.rows) else ""


def _coverage(table: Table):
    rows, shown = _first_rows(table)
    # Each kind's share of segments, and the doubtful share of the text (no bar where it was not checked).
    shares = [(c.removesuffix(" % of segments"), c) for c in table.columns if c.endswith(" % of segments")]
    shares += [(c, c) for c in table.columns if c == DOUBTFUL]
    kinds = [kind for kind, _ in shares]
    fig = _figure(8, max(3.0, 0.3 * len(rows) * len(kinds) / 2 + 2))
    ax = fig.add_subplot()
    height = 0.8 / max(1, len(kinds))
    for j, (kind, column) in enumerate(shares):
        at = table.columns.index(column)
        values = [r[at] or 0 for r in rows]
        ax.barh([i + j * height for i in range(len(rows))], values, height=height, label=kind)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(rows))], labels=[str(r[0]) for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of segments (doubtful: % of text)")
    ax.legend(fontsize=8)
    ax.set_title(table.title + shown)
    return fig


def _agreement(table: Table):
    """Kappa (two coders) or alpha per theme, as bars."""
    rows, shown = _first_rows(table)
    fig = _figure(8, max(3.0, 0.35 * len(rows) + 1.5))
    ax = fig.add_subplot()
    names = [str(r[0]) for r in rows]
    for column, offset in (("Cohen's kappa", -0.2), ("Krippendorff's alpha", 0.2)):
        at = table.columns.index(column)
        values = [r[at] for r in rows]
        if any(v is not None for v in values):
            ax.barh([i + offset for i in range(len(names))], [v or 0 for v in values], height=0.4, label=column)
    ax.set_yticks(range(len(names)), labels=names)
    ax.invert_yaxis()
    ax.set_xlim(-1, 1)
    ax.axvline(0, color="grey", linewidth=0.5)
    if ax.get_legend_handles_labels()[0]:  # every measure undefined: no bar, nothing to name
        ax.legend(fontsize=8)
    ax.set_title(table.title + shown + " (undefined: no bar)")
    return fig


def tagger_rows(table: Table) -> tuple[list[tuple], str]:
    """The rows the tagger's chart shows (_first_rows): every coder's pooled kappa first, so that a chart cut to
    MOST_ROWS still has it for each coder (a coder's pooled row comes after their themes in the table)."""
    return _first_rows(replace(table, rows=sorted(table.rows, key=lambda r: r[1] != ALL_THEMES)))


def _tagger(table: Table):
    """The tagger's kappa against each coder, over all themes pooled and per theme."""
    rows, shown = tagger_rows(table)
    fig = _figure(8, max(3.0, 0.3 * len(rows) + 1.5))
    ax = fig.add_subplot()
    names = [_shown(f"{r[1]} ({r[0]})") for r in rows]
    at = table.columns.index("Cohen's kappa")
    ax.barh(range(len(names)), [r[at] or 0 for r in rows])
    ax.set_yticks(range(len(names)), labels=names)
    ax.invert_yaxis()
    ax.set_xlim(-1, 1)
    ax.set_xlabel("Cohen's kappa, tagger against coder")
    ax.set_title(table.title + shown)
    return fig


def _shown(text: str, width: int = LABEL_WIDTH) -> str:
    """Text from the data as a chart draws it: on one line, each control, bidi or invisible character as a
    visible one (inert; a NUL or ESC also made the SVG no XML), cut to `width` columns (a 100,000-character
    name took seconds to lay out, and megabytes of SVG, only to squeeze the plot to nothing)."""
    line = NOT_XML.sub("\ufffd", inert(text.replace("\n", " ").replace("\t", " ")))
    if display_width(line) <= width:
        return line
    kept, used = [], 1  # the ellipsis
    for char in line:
        used += 2 if is_wide(char) else 1
        if used > width:
            break
        kept.append(char)
    return "".join(kept) + "…"


def _drawable(table: Table) -> Table:
    """The table with its title, columns and text cells as the chart shows them (_shown)."""
    return replace(
        table,
        title=_shown(table.title, TITLE_WIDTH),
        columns=tuple(map(_shown, table.columns)),
        rows=[tuple(_shown(v) if isinstance(v, str) else v for v in row) for row in table.rows],
    )


def _declarations(css: str) -> dict[str, str]:
    """ "fill: #fff; stroke: none" as {"fill": "#fff", "stroke": "none"}."""
    pairs = (declaration.partition(":") for declaration in css.split(";") if declaration.strip())
    return {name.strip(): value.strip() for name, _, value in pairs}


def _without_inline_styles(svg: bytes) -> bytes:
    """matplotlib's SVG with each style attribute written as presentation attributes (fill="#fff"), which are
    no styles to a CSP, and its <style> element's rule for every element ("*{stroke-linejoin: round; ...}")
    as attributes of the root, which every element inherits unless it sets its own, as before. Comments
    (matplotlib repeats each text drawn in one) are left out."""
    for prefix, uri in NAMESPACES.items():
        ElementTree.register_namespace(prefix, uri)
    root = ElementTree.fromstring(svg)
    for parent in root.iter():
        for style in parent.findall(f"{{{NAMESPACES['']}}}style"):
            rule = re.fullmatch(r"\s*\*\s*\{([^{}]*)\}\s*", style.text or "")
            if rule is None:  # matplotlib writes that one rule; another would need a selector of its own
                raise ValueError(f"a <style> ohp cannot turn into attributes: {style.text!r}")
            root.attrib.update(_declarations(rule.group(1)))
            parent.remove(style)
    for element in root.iter():
        element.attrib.update(_declarations(element.attrib.pop("style", "")))
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


DRAW = {"heatmap": _heatmap, "lines": _lines, "bars": _coverage, "agreement": _agreement, "tagger": _tagger}


# Charts drawn, by their table's content, with the warnings drawing them gave (said again each time one is
# used: a warning is a fault of the chart, a squeezed plot, which the tests turn into errors): the web app draws
# a page's charts for each view of it, and a report written twice (with names and without) draws the tables that
# name nobody twice. A second each to draw; 32 of at most a few hundred kilobytes kept.
_DRAWN: ContentCache[tuple[bytes, list[warnings.WarningMessage]]] = ContentCache(size=32)


def render(table: Table, fmt: str) -> bytes:
    """The table's chart as SVG or PNG bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"no chart format {fmt!r}: {', '.join(FORMATS)}")
    shown = _drawable(table)
    # repr tells 0.0 from -0.0 and 1 from 1.0, as a chart's labels do.
    drawn, said = _DRAWN.get(repr(shown).encode("utf-8", "surrogatepass"), lambda: _draw(shown, fmt), fmt)
    for warning in said:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return drawn


def _draw(table: Table, fmt: str) -> tuple[bytes, list[warnings.WarningMessage]]:
    buffer = io.BytesIO()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        fig = DRAW[table.chart](table)
        fig.savefig(buffer, format=fmt, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
    drawn = _without_inline_styles(buffer.getvalue()) if fmt == "svg" else buffer.getvalue()
    # Without a CJK font, Chinese names draw as boxes (see the module's doc): no fault of the chart.
    return drawn, [w for w in said if not re.match(r"Glyph .* missing from font", str(w.message))]
