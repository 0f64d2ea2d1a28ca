"""Subtitles: SRT and WebVTT files of cues that players and editors accept.

A segment becomes one cue or, when its text does not fit, several, timed from its word timings. A cue
has at most two lines, measured in display columns as East Asian text is: a Chinese (any full-width)
character takes two columns, anything else one, and a line holds 42 columns: 42 Latin characters, 21
Chinese, mixed lines in between. Lines break at spaces and between Chinese words (jieba's), never
inside a Latin token, preferably after punctuation, and never before closing punctuation (kinsoku);
only a run wider than a whole line (a URL) is cut where it must.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from itertools import accumulate, pairwise

from pipeline.records import RecordingExport, Segment
from pipeline.utils import display_width, is_wide, timestamp, xml_text

LINE_WIDTH = 42  # columns; a cue has two lines at most
MIN_DURATION = 0.8  # seconds: shorter cues flash by unread
MIN_CUE = 0.001  # seconds: a cue's least length where the segments leave no time (they start together)

# No line starts with closing punctuation nor ends with opening punctuation (Chinese kinsoku, and Latin alike).
_CLOSING = frozenset("，。！？、；：”’）」』】》〉〕｝］…—,.!?;:)]}%")
_OPENING = frozenset("“‘（「『【《〈〔｛［([{")
_SENTENCE_END = frozenset("。！？.!?…")
_CLAUSE_END = frozenset("，、；：,;:—")
# Costs in squared columns, of the imbalance between a cue's two lines: a line break after a clause
# costs 50, a plain one 500 (a 22-column imbalance), a cut inside a run 4000. A break between cues costs
# three times as much (the reader looks away), each cue 100 more, and each squared column a cue leaves
# empty 0.03: few cues, filled evenly.
_SENTENCE, _CLAUSE, _PLAIN, _HARD = 0, 50, 500, 4000
_CUE_BREAK, _CUE, _EMPTY = 3, 100, 0.03


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None  # display name


def _words(run: str) -> list[int]:
    """Where a space-free run may break: between Chinese words, never between two Latin characters."""
    if not any(is_wide(c) for c in run):
        return []
    import jieba  # only Chinese text needs it (its dictionary takes a second to load)

    from pipeline.stages.doubt import jieba_dictionary

    jieba_dictionary()  # loaded once, quietly: jieba would say so on standard error
    cuts = list(accumulate(len(w) for w in jieba.cut(run)))[:-1]
    return [p for p in cuts if is_wide(run[p - 1]) or is_wide(run[p])]


def _cost(piece: str) -> int:
    """The cost of a break after a piece, by its last mark (looking through closing quotes and brackets)."""
    last = piece.rstrip("”’）」』】》〉〕｝］)]}\"'")[-1:]
    return _SENTENCE if last in _SENTENCE_END else _CLAUSE if last in _CLAUSE_END else _PLAIN


def _pieces(text: str, prefix: int) -> list[tuple[int, int, int]]:
    """(start, end, cost of a break after it): the runs of `text` no line breaks inside, separated by at
    most one space; text[:prefix] (the speaker's name) is one."""
    cuts = [0] if prefix else []
    position = prefix
    for run in text[prefix:].split(" "):
        cuts += [position] + [position + p for p in _words(run)]
        position += len(run) + 1
    # kinsoku: no cut before closing punctuation, nor after opening punctuation (with a space between too)
    cuts = [
        p
        for p in cuts
        if p <= prefix or (text[p] not in _CLOSING and text[max(p - 2, 0) : p].rstrip()[-1:] not in _OPENING)
    ]
    cuts.append(len(text))
    pieces = []
    for start, end in pairwise(cuts):
        if text[end - 1] == " ":
            end -= 1
        # a run wider than a line (a URL) is cut where the line is full
        while display_width(text[start:end]) > LINE_WIDTH:
            cut = start + 1
            while display_width(text[start : cut + 1]) <= LINE_WIDTH:
                cut += 1
            pieces.append((start, cut, _HARD))
            start = cut
        # "Name:" ends in a colon, but a line of the name alone is no clause
        pieces.append((start, end, _PLAIN if end == prefix - 1 else _cost(text[start:end])))
    return pieces


def _layout(text: str, pieces: list[tuple[int, int, int]], prefixed: bool) -> list[tuple[int, int, int | None]]:
    """The pieces grouped into cues (first piece, end piece, first piece of the second line or None): few
    cues, full and balanced, breaking after punctuation where it costs little."""
    columns = list(accumulate((display_width(c) for c in text), initial=0))

    def width(i: int, j: int) -> int:
        return columns[pieces[j - 1][1]] - columns[pieces[i][0]]

    n = len(pieces)
    best = [0.0] + [math.inf] * n
    choice: list[tuple[int, int, int | None]] = [(0, 0, None)] * (n + 1)
    for j in range(1, n + 1):
        if prefixed and j == 1:
            continue  # a cue of the speaker's name alone
        after = _CUE_BREAK * pieces[j - 1][2] if j < n else 0
        i = j - 1
        while i >= 0 and width(i, j) <= 2 * LINE_WIDTH + 1:  # two full lines and the space between
            if width(i, j) <= LINE_WIDTH:
                split, lines = None, 0.0
            else:  # two lines, as balanced as the break allows
                split, lines = None, math.inf
                k = i + 1
                while k < j and width(i, k) <= LINE_WIDTH:
                    if (
                        width(k, j) <= LINE_WIDTH
                        and (cost := (width(i, k) - width(k, j)) ** 2 + pieces[k - 1][2]) < lines
                    ):
                        split, lines = k, cost
                    k += 1
            total = best[i] + lines + _EMPTY * (2 * LINE_WIDTH - width(i, j)) ** 2 + after + _CUE
            if total < best[j]:
                best[j], choice[j] = total, (i, j, split)
            i -= 1
    cues = []
    while n:
        cues.append(choice[n])
        n = choice[n][0]
    return cues[::-1]


def _char_starts(segment: Segment, text: str, offset: int) -> dict[int, float]:
    """When each character of text[offset:] begins, by its offset: from the word timings, else (no
    words, or words that no longer match an edited text) in proportion to characters. Words match
    when they have as many characters: the script policy converts character for character."""
    chars = [p for p in range(offset, len(text)) if text[p] != " "]
    times = []
    for word in segment.words:
        letters = len("".join(word.text.split()))
        times += [word.start + (word.end - word.start) * q / letters for q in range(letters)]
    if len(times) != len(chars):
        times = [segment.start + (segment.end - segment.start) * q / len(chars) for q in range(len(chars))]
    return dict(zip(chars, times, strict=True))


def _bounds(start: float, end: float, starts: list[float]) -> list[float]:
    """The boundaries of a segment's cues from start to end: each later cue begins with its first word, unless
    that leaves a cue less than MIN_DURATION, or less than its share of the time where the segment has not room
    for MIN_DURATION each (cues cannot then begin before they end)."""
    bounds = [start] + [min(max(t, start), end) for t in starts] + [end]
    least = min(MIN_DURATION, (end - start) / (len(bounds) - 1))
    for k in range(1, len(bounds) - 1):
        bounds[k] = max(bounds[k], bounds[k - 1] + least)
    for k in range(len(bounds) - 2, 0, -1):
        bounds[k] = min(bounds[k], bounds[k + 1] - least)
    return bounds


def cues(export: RecordingExport, name_changes: bool = False) -> list[Cue]:
    """The segments with text as cues, in order and not overlapping. With name_changes the first cue after
    each change of speaker begins with "Name: ", as subtitles without voice tags (SRT) name speakers."""
    segments = [s for s in export.segments if s.text.strip()]
    out: list[Cue] = []
    previous_name, previous_end = None, 0.0
    for n, segment in enumerate(segments):
        name = " ".join((export.speaker_name(segment) or "").split()) or None  # a name is one line
        prefix = f"{name}: " if name_changes and name and name != previous_name else ""
        text = prefix + " ".join(segment.text.split())
        pieces = _pieces(text, len(prefix))
        layout = _layout(text, pieces, bool(prefix))
        # Whisper's segments may overlap a little: a segment starts when the previous cue ends and ends
        # when the next segment starts, and is stretched for its cues' minimum duration, by at most one
        # minimum past the next segment's start (which then waits), and never past the recording's end: a long
        # text in a short segment pushed every later cue late, by 44 s on a hostile one and past 48 hours.
        start = max(segment.start, previous_end)
        if n + 1 < len(segments):
            following = segments[n + 1].start
            latest = following + MIN_DURATION
        else:
            following = latest = max(segment.end, export.recording.duration)
        wanted = max(min(segment.end, following), start + len(layout) * MIN_DURATION)
        end = max(min(wanted, latest), start + len(layout) * MIN_CUE)
        char_starts = _char_starts(segment, text, len(prefix))
        # A name wider than a cue is cut like a URL, so a cue may begin inside it: before any word is said.
        bounds = _bounds(start, end, [char_starts.get(pieces[i][0], start) for i, _, _ in layout[1:]])
        for (i, j, split), (a, b) in zip(layout, pairwise(bounds), strict=True):
            breaks = [i, j] if split is None else [i, split, j]
            lines = tuple(text[pieces[p][0] : pieces[q - 1][1]] for p, q in pairwise(breaks))
            out.append(Cue(a, b, lines, name))
        previous_name, previous_end = name, end
    return out


def to_srt(export: RecordingExport) -> str:
    # SRT has no voice tags: as subtitlers do, the first cue after each change of speaker names them. Control
    # characters (a NUL in an imported text) are left out, as in the XML formats: a reader takes them for binary.
    blocks = [
        f"{number}\n{timestamp(c.start, ',')} --> {timestamp(c.end, ',')}\n" + xml_text("\n".join(c.lines)) + "\n"
        for number, c in enumerate(cues(export, name_changes=True), 1)
    ]
    return "\n".join(blocks)


def _vtt_text(cue: Cue) -> str:
    # Cue text is markup in WebVTT: "<" opens a tag (the text after it vanishes) and "&" an entity; the
    # speaker is a voice tag, <v Name>, on every cue, whose name is escaped alike.
    text = xml_text("\n".join(html.escape(line, quote=False) for line in cue.lines))  # as to_srt
    if not cue.speaker:
        return text
    # A name ending in "--" and the tag's ">" would make "-->", which ends the cue for a WebVTT parser; a
    # space keeps them apart (parsers strip the annotation's spaces).
    name = xml_text(html.escape(cue.speaker, quote=False))
    return f"<v {name} >{text}" if name.endswith("-") else f"<v {name}>{text}"


def to_vtt(export: RecordingExport) -> str:
    blocks = ["WEBVTT\n"]
    recording = export.recording
    if (access := recording.access()) != "open":
        until = f" until {recording.release_on}" if recording.release_on else ""
        blocks.append(
            f"NOTE Consent: {access}{until}. "
            "Check what the interviewee agreed to before sharing or showing this recording.\n"
        )
    blocks += [f"{timestamp(c.start)} --> {timestamp(c.end)}\n{_vtt_text(c)}\n" for c in cues(export)]
    return "\n".join(blocks)
