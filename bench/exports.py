"""Redaction recall and precision on a labelled set, and export speed and memory on a 2-hour interview.

    python bench/exports.py                 # both tables
    python bench/exports.py --redaction     # only the redaction table (and its misses)
    python bench/exports.py --speed --runs 3
    python bench/exports.py --speed --runs 1 --recordings 1 --segments 12000   # a 10-hour interview
    python bench/exports.py --errors        # every labelled name missed and every word replaced wrongly

Redaction. bench/data/redact_set.jsonl: 82 interview lines in four interviews (three in Mandarin, one
with a Henan speaker's 俺 and 啥; one in English), every person and place name marked by hand in the
text: {P:小军}, {L:石门村}. The rule: every person's name and every place name (village, town, district,
city, province, country); address forms that work as a name whole (小军, 老王, 阿芳, 娟娟); a surname with
a title only the surname (王 of 王老板, Lin of Mr. Lin). Traps not marked: 东西, 一张纸, 周末, 白天, 高兴,
马上, 王国, 老乡, May the month (May is also a daughter's name in the same interview). Company names are
not in the set. Each line is tagged alone with the real tagger (pipeline.stages.tag.tag_text, codebook
the default codebook), each interview becomes a RecordingExport with those entities (no speaker
names, no interviewee or place field, so only the text's names count), and three redactions are compared,
names and places both asked for:

  (a) baseline: the PERSON and PLACE spans the entity stage found, replaced where it found them (what a
      per-sentence NER redaction does);
  (b) ohp: pipeline.formats.redact.Redactor without a project list (entity texts of 2+ characters replaced
      everywhere in the interview);
  (c) ohp with the project list below (LISTED: what a researcher adds after reading (b)'s report).

Replaced characters are read from what the Redactor outputs: its redacted segment text is aligned with
the original through its Redaction records (in order: the text between two replacements must be the
original's, and each record's `found` must be what stood there; the script stops if not). Recall: share
of the labelled name characters that were replaced; precision: share of the replaced characters that were
labelled name characters; per language and overall, plus mentions (a mention counts when all its
characters went).

Speed. A 2-hour interview: 2,400 segments of 3 s (the labelled lines, names unmarked, cycled: 70 % of
segments Chinese, 30 % English), word timings (Chinese in two-character words, English by word), two
speakers (one named), the tagger's themes as annotations (every fourth accepted by a coder) and its
entities. Every writer in pipeline.formats.export.WRITERS: median wall time over --runs runs, then one run under
tracemalloc for the peak of memory allocated during the call (the export itself not counted), and the
output's size; JSON is the baseline column (ratio to JSON). Project writers (csv, qdpx) over ten such
recordings, against JSON of the ten (median of half as many runs). The Redactor (names and places, with
the project list) on the same interview, timed the same way. The load average is printed before and
after: the machine is shared.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import sys
import time
import tracemalloc
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LABELLED = REPO / "bench" / "data" / "redact_set.jsonl"
MARK = re.compile(r"\{([PL]):([^{}]+)\}")
KIND = {"P": "PERSON", "L": "PLACE"}

# (c): what a researcher would put in annotations/redact.txt after reading (b)'s report (which shows what
# was replaced, in context) for these interviews: each one's home village or town and the name they know
# is missing, about two per interview. Chosen after seeing (b)'s misses, so (c) says what such a list
# fixes, not how a list does on names nobody read. One-character surnames (老板姓王) cannot go on it: 王
# would go from 王国 and every other word with the character.
LISTED = {
    "石门村": "places",
    "小军": "names",  # zh-1: the village; the son, never found by the entity stage
    "张秀英": "names",
    "樟木头": "places",  # zh-2: the wife (only 秀英 found); the detention town
    "周口": "places",
    "龙华": "places",  # zh-3: home town; the factory district
    "Houjie": "places",
    "May": "names",  # en-1: the factory town; the daughter (and so May the month goes too)
}


# ------------------------------------------------------------------------------------------- labelled set


@dataclass
class Line:
    interview: str
    language: str
    speaker: str
    text: str  # marks removed
    names: list[tuple[str, int, int]]  # (PERSON|PLACE, start, end) in text
    entities: list = field(default_factory=list)  # the tagger's
    themes: list = field(default_factory=list)


def parse(marked: str) -> tuple[str, list[tuple[str, int, int]]]:
    """'我儿子{P:小军}' -> ('我儿子小军', [('PERSON', 3, 5)])."""
    text, names, at = [], [], 0
    for match in MARK.finditer(marked):
        text.append(marked[at : match.start()])
        start = sum(map(len, text))
        text.append(match.group(2))
        names.append((KIND[match.group(1)], start, start + len(match.group(2))))
        at = match.end()
    text.append(marked[at:])
    return "".join(text), names


def load_lines(path: Path = LABELLED) -> list[Line]:
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.strip():
            row = json.loads(raw)
            text, names = parse(row["text"])
            lines.append(Line(row["interview"], row["language"], row["speaker"], text, names))
    return lines


def tag_lines(lines: list[Line], codebook) -> None:
    from pipeline.stages.tag import tag_text

    for line in lines:
        result = tag_text(line.text, line.language, codebook)
        line.entities, line.themes = result.entities, result.themes


def interview_exports(lines: list[Line]):
    """One RecordingExport per interview, segment ids = line index + 1; {segment id: line}."""
    from pipeline.records import RecordingExport, RecordingRecord, Segment, SpeakerRecord

    by_interview: dict[str, list[int]] = defaultdict(list)
    for i, line in enumerate(lines):
        by_interview[line.interview].append(i)
    exports = []
    for n, (name, indices) in enumerate(by_interview.items(), 1):
        recording = RecordingRecord(
            n, f"{n:064x}", f"/bench/{name}.wav", 1, "wav", 3.0 * len(indices), lines[indices[0]].language
        )
        segments = [
            Segment(
                3.0 * k,
                3.0 * k + 2.8,
                lines[i].text,
                lines[i].text,
                lines[i].language,
                speaker=lines[i].speaker,
                id=i + 1,
            )
            for k, i in enumerate(indices)
        ]
        entities = {i + 1: list(lines[i].entities) for i in indices}
        speakers = [SpeakerRecord("S1", None, "interviewer"), SpeakerRecord("S2", None, "interviewee")]
        exports.append(RecordingExport(recording, segments, {}, speakers, entities))
    return exports


def replaced_spans(original: str, redacted: str, records) -> list[tuple[int, int]]:
    """The spans of the original text the Redactor replaced, from its output and its report (in order)."""
    spans, o, r = [], 0, 0
    for record in records:
        at = redacted.find(record.replacement, r)
        gap = redacted[r:at]
        if (
            at < 0
            or original[o : o + len(gap)] != gap
            or original[o + len(gap) : o + len(gap) + len(record.found)] != record.found
        ):
            raise AssertionError(f"redacted text and report disagree: {original!r} -> {redacted!r}, {record}")
        o += len(gap)
        spans.append((o, o + len(record.found)))
        o, r = o + len(record.found), at + len(record.replacement)
    if original[o:] != redacted[r:]:
        raise AssertionError(f"redacted text and report disagree at the end: {original!r} -> {redacted!r}")
    return spans


def baseline_spans(lines: list[Line]) -> dict[int, list[tuple[int, int]]]:
    return {
        i: [(e.start, e.end) for e in line.entities if e.label in ("PERSON", "PLACE")] for i, line in enumerate(lines)
    }


def ohp_spans(lines: list[Line], listed: dict[str, str] | None) -> dict[int, list[tuple[int, int]]]:
    from pipeline.formats.redact import Redactor

    redactor = Redactor({"names", "places"}, listed)
    spans: dict[int, list[tuple[int, int]]] = {}
    for export in interview_exports(lines):
        redacted, report = redactor(export)
        for before, after in zip(export.segments, redacted.segments, strict=True):
            records = [r for r in report if r.segment_id == before.id and r.field == "text"]
            spans[before.id - 1] = replaced_spans(before.text, after.text, records)
    return spans


def score(lines: list[Line], spans: dict[int, list[tuple[int, int]]], language: str | None) -> dict:
    named = replaced = both = mentions = mentions_found = 0
    for i, line in enumerate(lines):
        if language and line.language != language:
            continue
        gold = {c for _, s, e in line.names for c in range(s, e)}
        hit = {c for s, e in spans[i] for c in range(s, e)}
        named, replaced, both = named + len(gold), replaced + len(hit), both + len(gold & hit)
        mentions += len(line.names)
        mentions_found += sum(all(c in hit for c in range(s, e)) for _, s, e in line.names)
    return {
        "recall": both / named if named else 1.0,
        "precision": both / replaced if replaced else 1.0,
        "mentions": mentions,
        "mentions_found": mentions_found,
        "named": named,
        "replaced": replaced,
    }


def misses(lines: list[Line], spans: dict[int, list[tuple[int, int]]]) -> tuple[dict, dict, dict]:
    """{text: count} of names not (wholly) replaced, of replaced words with no name in them, and of
    replacements that took words beside a name (王老板 for 王, the title with the surname)."""
    missed: dict[str, int] = defaultdict(int)
    wrong: dict[str, int] = defaultdict(int)
    beyond: dict[str, int] = defaultdict(int)
    for i, line in enumerate(lines):
        hit = {c for s, e in spans[i] for c in range(s, e)}
        gold = {c for _, s, e in line.names for c in range(s, e)}
        for _, s, e in line.names:
            if not all(c in hit for c in range(s, e)):
                missed[line.text[s:e]] += 1
        for s, e in spans[i]:
            inside = [c in gold for c in range(s, e)]
            if not any(inside):
                wrong[line.text[s:e]] += 1
            elif not all(inside):
                beyond[
                    "".join(ch if g else f"[{ch}]" for ch, g in zip(line.text[s:e], inside, strict=False)).replace(
                        "][", ""
                    )
                ] += 1
    return missed, wrong, beyond


def _counted(found: dict[str, int]) -> str:
    return (
        ", ".join(f"{t} x{n}" if n > 1 else t for t, n in sorted(found.items(), key=lambda x: (x[0].isascii(), -x[1])))
        or "-"
    )


def redaction_report(show_errors: bool) -> list[Line]:
    from pipeline.stages.codebook import load_codebook

    lines = load_lines()
    started = time.perf_counter()
    tag_lines(lines, load_codebook())
    tagged = time.perf_counter() - started
    languages = sorted({line.language for line in lines}, key=lambda x: x != "zh")
    count = {lang: sum(line.language == lang for line in lines) for lang in languages}
    print(
        f"== Redaction: {len(lines)} labelled lines in {len({line.interview for line in lines})} interviews "
        f"({', '.join(f'{n} {lang}' for lang, n in count.items())}), "
        f"{sum(len(line.names) for line in lines)} name mentions "
        f"({sum(k == 'PERSON' for line in lines for k, _, _ in line.names)} persons, "
        f"{sum(k == 'PLACE' for line in lines for k, _, _ in line.names)} places), "
        f"{sum(not line.names for line in lines)} lines without a name; tagged in {tagged:.1f} s\n"
    )
    methods = {
        "(a) baseline: NER spans only": baseline_spans(lines),
        "(b) ohp Redactor, no list": ohp_spans(lines, None),
        f"(c) ohp Redactor, list of {len(LISTED)}": ohp_spans(lines, LISTED),
    }
    header = f"{'':<34}" + "".join(f"{lang + ': R':>9} {'P':>5} {'names':>7}  " for lang in [*languages, "all"])
    print(header)
    for method, spans in methods.items():
        row = f"{method:<34}"
        for lang in [*languages, None]:
            s = score(lines, spans, lang)
            row += f"{s['recall']:>9.2f} {s['precision']:>5.2f} {s['mentions_found']:>3}/{s['mentions']:<3}  "
        print(row)
    (a, b, _) = methods.values()
    changed = sum(sorted(a[i]) != sorted(b[i]) for i in range(len(lines)))
    print(f"lines where (b) replaced other characters than (a): {changed} of {len(lines)}")
    print(
        "R, P: name characters replaced / all name characters, and / all replaced characters; "
        "names: mentions wholly replaced"
    )
    for method, spans in list(methods.items())[1:]:
        missed, wrong, beyond = misses(lines, spans)
        print(f"\n{method}:")
        print(f"  names missed (wholly or in part): {_counted(missed)}")
        print(f"  replaced, not a name:             {_counted(wrong)}")
        print(f"  replaced with words beside a name ([not name]): {_counted(beyond)}")
    entity_texts = sorted(
        {(e.label, e.text) for line in lines for e in line.entities if e.label in ("PERSON", "PLACE")}
    )
    print("\nentity stage, PERSON/PLACE texts found: " + ", ".join(f"{t} ({label[:3]})" for label, t in entity_texts))
    if show_errors:
        spans = methods[f"(c) ohp Redactor, list of {len(LISTED)}"]
        print("\nlines where (c) and the labels disagree:")
        for i, line in enumerate(lines):
            hit = sorted(spans[i])
            gold = sorted((s, e) for _, s, e in line.names)
            if {c for s, e in hit for c in range(s, e)} != {c for s, e in gold for c in range(s, e)}:
                print(
                    f"  {line.text}\n    labelled {[line.text[s:e] for s, e in gold]}, "
                    f"replaced {[line.text[s:e] for s, e in hit]}, "
                    f"entities {[(e.label, e.text) for e in line.entities]}"
                )
    return lines


# ------------------------------------------------------------------------------------------- speed


def long_interview(lines: list[Line], codebook, number: int, segments: int = 2400, seconds: float = 3.0):
    """A 2-hour interview (segments x seconds) from the tagged lines: Chinese 70 %, English 30 %."""
    from pipeline.records import AnnotationRecord, RecordingExport, RecordingRecord, Segment, SpeakerRecord, Word

    zh = [line for line in lines if line.language == "zh"]
    en = [line for line in lines if line.language == "en"]
    out, annotations, entities = [], {}, {}
    offset, taken = number * 100_000, {"zh": 0, "en": 0}
    for k in range(segments):
        language = "en" if k % 10 in (2, 5, 8) else "zh"
        pool = en if language == "en" else zh
        line = pool[(taken[language] + 7 * number) % len(pool)]
        taken[language] += 1
        start, end = k * seconds, k * seconds + seconds - 0.2
        if line.language == "zh":
            pieces = [line.text[i : i + 2] for i in range(0, len(line.text), 2)]
        else:
            pieces = [(" " if i else "") + w for i, w in enumerate(line.text.split())]
        step = (end - start) / len(pieces)
        words = [
            Word(round(start + j * step, 3), round(start + (j + 1) * step, 3), p, 0.9) for j, p in enumerate(pieces)
        ]
        sid = offset + k + 1
        out.append(
            Segment(
                start, end, line.text, line.text, line.language, words, avg_logprob=-0.3, speaker=line.speaker, id=sid
            )
        )
        entities[sid] = list(line.entities)
        annotations[sid] = [
            AnnotationRecord(
                sid * 10 + j,
                sid,
                number,
                t.theme,
                "auto",
                "accepted" if (k + j) % 4 == 0 else "suggested",
                t.score,
                t.evidence,
                "1/v",
                "mei" if (k + j) % 4 == 0 else None,
                "2026-01-01T00:00:00",
                1,
            )
            for j, t in enumerate(line.themes)
        ]
    recording = RecordingRecord(
        number,
        f"{number:064x}",
        f"/archive/interview_{number:02d}.wav",
        230_400_000,
        "wav",
        segments * seconds,
        "zh",
        interviewee="刘秀兰",
        place="东莞",
        recorded_on="2019-05-03",
    )
    speakers = [SpeakerRecord("S1", "Maria", "interviewer"), SpeakerRecord("S2", None, "interviewee")]
    return RecordingExport(recording, out, annotations, speakers, entities, codebook)


def measure(f, runs: int) -> tuple[float, int, int]:
    """Median seconds over runs, tracemalloc peak bytes (one more run), size of the output."""
    times = []
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - started)
    del result
    gc.collect()
    tracemalloc.start()
    result = f()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    size = len(result.encode("utf-8")) if isinstance(result, str) else len(result) if isinstance(result, bytes) else 0
    return statistics.median(times), peak, size


def speed_report(lines: list[Line] | None, runs: int, recordings: int, segments: int = 2400) -> None:
    from pipeline.formats.export import PROJECT_WRITERS, WRITERS
    from pipeline.formats.redact import Redactor
    from pipeline.stages.codebook import load_codebook

    codebook = load_codebook()
    if lines is None:
        lines = load_lines()
        tag_lines(lines, codebook)
    export = long_interview(lines, codebook, 1, segments)
    n = len(export.segments)
    words = sum(len(s.words) for s in export.segments)
    themes = sum(len(a) for a in export.annotations.values())
    ents = sum(len(e) for e in export.entities.values())
    zh = sum(s.language == "zh" for s in export.segments)
    print(
        f"\n== Export: one interview of {n} segments ({export.recording.duration / 3600:.1f} h; {zh} zh, {n - zh} en), "
        f"{words} words, {themes} themes, {ents} entities; median of {runs} runs, then one under tracemalloc"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print(f"{'format':<22} {'median ms':>10} {'x JSON':>7} {'peak MB':>8} {'x JSON':>7} {'output KB':>10}")
    base = measure(lambda: WRITERS["json"][0](export), runs)

    def row(name: str, m: tuple[float, int, int], b: tuple[float, int, int]) -> None:
        size = f"{m[2] / 1024:>10.0f}" if m[2] else f"{'':>10}"
        print(f"{name:<22} {m[0] * 1000:>10.1f} {m[0] / b[0]:>7.2f} {m[1] / 2**20:>8.1f} {m[1] / b[1]:>7.2f} {size}")

    row("json (baseline)", base, base)
    for fmt, (writer, _) in WRITERS.items():
        if fmt != "json":
            row(fmt, measure(lambda w=writer: w(export), runs), base)
    redactor = Redactor({"names", "places"}, LISTED)
    _, report = redactor(export)
    row("Redactor (names+places)", measure(lambda: redactor(export), runs), base)
    print(
        f"  (the Redactor replaced {sum(r.field == 'text' for r in report)} mentions in the text, {len(report)} in all)"
    )

    many = [export] + [long_interview(lines, codebook, k, segments) for k in range(2, recordings + 1)]
    print(f"\nproject formats over {len(many)} such recordings ({sum(len(e.segments) for e in many)} segments):\n")
    print(f"{'format':<22} {'median ms':>10} {'x JSON':>7} {'peak MB':>8} {'x JSON':>7} {'output KB':>10}")
    pbase = measure(lambda: [WRITERS["json"][0](e) for e in many], max(1, runs // 2))
    size = sum(len(WRITERS["json"][0](e).encode("utf-8")) for e in many)
    row(f"json x{len(many)} (baseline)", (pbase[0], pbase[1], size), pbase)
    for fmt, (writer, _) in PROJECT_WRITERS.items():
        row(fmt, measure(lambda w=writer: w(many, codebook), max(1, runs // 2)), pbase)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redaction", action="store_true", help="only the redaction table")
    parser.add_argument("--speed", action="store_true", help="only the export speed and memory table")
    parser.add_argument("--errors", action="store_true", help="every line where (c) and the labels disagree")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per format (median)")
    parser.add_argument("--recordings", type=int, default=10, help="recordings in the project formats")
    parser.add_argument(
        "--segments", type=int, default=2400, help="segments of the interview, 3 s each (2,400: 2 hours)"
    )
    args = parser.parse_args()
    both = not (args.redaction or args.speed)
    lines = None
    if args.redaction or both:
        lines = redaction_report(args.errors)
    if args.speed or both:
        speed_report(lines, args.runs, args.recordings, args.segments)


if __name__ == "__main__":
    main()
