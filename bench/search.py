"""Search at scale: import time, index size and search latency on databases of 100 000 and 1 000 000 segments.

    python bench/search.py                                  # SQLite 100k and 1M, PostgreSQL 100k
    python bench/search.py --sizes 100000 --backends sqlite # a quick look
    python bench/search.py --backends sqlite postgresql --pg-sizes 100000 1000000

The transcripts are made from real sentences: the reference texts of ../shared/corpus (MANIFEST.tsv's
`reference_transcript`, the longform .json references, sample.stm), the lines of the labelled theme set
(pipeline/stages/themes_labelled.jsonl) and the demo interview's script (audio/make_demo.py). They are split
into sentences (some 190 Chinese, 290 English) and recombined at random (one to three per segment) into
1000 recordings of size/1000 segments each, in Chinese (70 %) or English (30 %), with speaker labels,
written as SRT and ohp JSON files (every other one) in a temporary folder and imported one file at a time
through `pipeline.imports.import_file` (read, index terms, inserts: what `ohp import` does). Themes: the
real tagger (pipeline.stages.tag, the default codebook) is run once on every source sentence; a segment gets
the themes of its sentences (about 30 % of segments get one), stored with `Store.save_result` per recording
(timed apart from the import). With so few source sentences every word recurs: 孩子 is in 5 % of the
segments, and even the rarer words are in 700-2,000 of a million: a heavier load than a real archive's
long tail of rare words.

Queries are words that occur in the data, in the proportions a researcher types them: one and two words,
Chinese and English, mostly theme words (工资 户口 老家 孩子 加班, wages school children home...), some
rarer words and a few single characters; each once without a filter and once with the theme it belongs
to. Each is timed as `ohp search` runs it: parse_query, then Store.search(limit=20) with the total count.
Very common terms (是 的 我们 the and) are timed apart, as the worst case. One recording in 20
(CLOSED_SHARE) is made closed after the import (Store.set_metadata, timed apart); every query is timed again
as a web viewer's search (SearchFilters.hide_closed), which finds no closed recording. The baseline is a naive scan:
SELECT ... WHERE text LIKE '%word%' (count and first 20) over the segments table.

Databases and transcripts go to a temporary folder under /tmp (removed at the end unless --keep);
PostgreSQL runs on a database created for the run next to the one in --pg-url (dropped at the end).
"""

from __future__ import annotations

import argparse
import ast
import csv
import datetime
import json
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpus"
LABELLED = REPO / "pipeline" / "stages" / "themes_labelled.jsonl"
DEMO = REPO / "audio" / "make_demo.py"

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from pipeline.formats.readers import guess_language  # noqa: E402
from pipeline.imports import import_file  # noqa: E402
from pipeline.process import stored_result  # noqa: E402
from pipeline.records import (  # noqa: E402
    SearchFilters,
    StageRun,
    ThemeSuggestion,
)
from pipeline.search.textindex import parse_query  # noqa: E402
from pipeline.stages.codebook import load_codebook  # noqa: E402
from pipeline.store import Store  # noqa: E402
from pipeline.utils import HAN  # noqa: E402

# What researchers type (issue 4): theme words first; only those found in the data are used.
THEME_WORDS_ZH = [
    "工资",
    "户口",
    "老家",
    "孩子",
    "加班",
    "老板",
    "工厂",
    "上学",
    "学校",
    "房子",
    "打工",
    "回家",
    "过年",
    "看病",
    "医院",
    "爷爷奶奶",
    "火车",
    "宿舍",
    "拖欠",
    "计件",
    "辞职",
    "读书",
    "妈妈",
    "社保",
    "房租",
    "身体",
    "钱",
    "累",
    "家",
]
THEME_WORDS_EN = [
    "wages",
    "school",
    "children",
    "home",
    "overtime",
    "factory",
    "pay",
    "money",
    "village",
    "grandparents",
    "train",
    "boss",
    "rent",
    "hospital",
    "sick",
    "work",
    "job",
    "family",
    "house",
    "hukou",
    "dormitory",
    "held back",
    "new year",
]
STRESS = ["是", "的", "我们", "the", "and"]  # in a large share of segments: timed apart, the worst case
EN_STOP = set(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that "
    "these those i you he she we they me him her us them my your his our their what which who whom whose when "
    "where why how not no yes do does did done have has had so too very can could would should will shall may "
    "might must there here then than just also only about into over after before up down out off all any some "
    "one two oh um uh yeah okay well".split()
)


# ------------------------------------------------------------------------------------------- data


def _sentences(text_: str) -> list[str]:
    """A reference text as sentences (long ones cut at commas), punctuation kept."""
    out = []
    for piece in re.findall(r"[^。！？!?.]+[。！？!?.]*", text_):
        piece = piece.strip()
        if len(piece) > 40 and re.search(r"[，,、]", piece):
            out += [p.strip() for p in re.findall(r"[^，,、]+[，,、]?", piece) if p.strip()]
        elif piece:
            out.append(piece)
    return [s for s in out if re.search(r"\w", s)]


def _language(text_: str) -> str:
    return "zh" if guess_language(text_) == "zh" else "en"


def source_sentences() -> dict[str, list[str]]:
    """Real sentences by language ("zh", "en"), each once."""
    texts: list[str] = []
    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            ref = (row.get("reference_transcript") or "").strip()
            lang = row.get("language") or ""
            if not lang.startswith(("zh", "en")) or len(ref) < 4 or ref.startswith(("-", "see ", "(")):
                continue
            texts.append(re.sub(r"^[A-Z]: ", "", ref))
    for name in ("longform_zh_dev.json", "longform_dialect_dev.json"):
        texts += [s["text"] for s in json.loads((CORPUS / name).read_text(encoding="utf-8"))["segments"]]
    for stm in CORPUS.glob("en/*.stm"):
        texts += [
            line.split(maxsplit=5)[5] for line in stm.read_text(encoding="utf-8").splitlines() if len(line.split()) > 5
        ]
    texts += [json.loads(line)["text"] for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    tree = ast.parse(DEMO.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "DIALOGUE":
            texts += [line for _, line in ast.literal_eval(node.value)]
    found: dict[str, dict[str, None]] = {"zh": {}, "en": {}}
    for t in texts:
        for s in _sentences(t):
            if s.isupper():  # LibriSpeech references are in capitals
                s = s.capitalize()
            found[_language(s)].setdefault(s, None)
    return {lang: list(sentences) for lang, sentences in found.items()}


def sentence_themes(pool: dict[str, list[str]]) -> dict[str, list[ThemeSuggestion]]:
    """The real tagger's themes for every source sentence, alone (evidence relative to the sentence)."""
    from pipeline.stages.tag import tag_segments

    codebook = load_codebook()
    themes = {}
    for lang, sentences in pool.items():
        results = tag_segments(sentences, [lang] * len(sentences), codebook, context=False)
        for s, result in zip(sentences, results, strict=True):
            themes[s] = list(result.themes)
    return themes


@dataclass
class Recording:
    path: Path
    language: str
    segments: list[list[str]]  # the sentences of each segment


def _clock(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


CLOSED_SHARE = 0.05  # of the recordings, closed after the import: viewers' and researchers' searches both timed
THEMED_SHARE = 0.18  # chance that a sentence is drawn from those with a theme: about 30 % of segments get one


def generate(
    folder: Path, size: int, pool: dict[str, list[str]], themes: dict, seed: int, per: int | None = None
) -> list[Recording]:
    """Transcripts of `per` segments each (default: 1000 of size/1000 segments), SRT and ohp JSON in turn."""
    rng = random.Random(seed)
    themed = {lang: [s for s in sentences if themes.get(s)] for lang, sentences in pool.items()}
    plain = {lang: [s for s in sentences if not themes.get(s)] for lang, sentences in pool.items()}
    folder.mkdir(parents=True, exist_ok=True)
    per = per or max(1, size // 1000)
    n_recordings = size // per
    recordings = []
    for r in range(n_recordings):
        lang = "zh" if rng.random() < 0.7 else "en"
        speakers = ("Interviewer", rng.choice(["Zhang", "Li", "Wang", "Chen", "Liu", "Mei", "Anna", "Tom"]))
        segments, cues, t = [], [], 0.0
        for i in range(per):
            parts = [
                rng.choice(themed[lang] if rng.random() < THEMED_SHARE else plain[lang])
                for _ in range(rng.choice((1, 1, 2, 2, 3)))
            ]
            joiner = "" if lang == "zh" else " "
            body = joiner.join(parts)
            duration = max(1.0, len(body) * (0.25 if lang == "zh" else 0.07))
            speaker = speakers[0] if i % 4 == 0 else speakers[1]
            cues.append((t, t + duration, speaker, body))
            segments.append(parts)
            t += duration + rng.uniform(0.2, 2.0)
        if r % 2 == 0:  # every other transcript as SRT, the others as ohp's own JSON
            path = folder / f"interview_{r:04d}.srt"
            path.write_text(
                "\n".join(
                    f"{i + 1}\n{_clock(a)} --> {_clock(b)}\n{who}: {body}\n" for i, (a, b, who, body) in enumerate(cues)
                ),
                encoding="utf-8",
            )
        else:
            path = folder / f"interview_{r:04d}.json"
            document = {
                "recording": {
                    "path": f"interview_{r:04d}.wav",
                    "duration": round(t, 3),
                    "language": lang,
                    "speakers": [{"label": who, "name": None, "role": None} for who in speakers],
                },
                "segments": [
                    {
                        "start": round(a, 3),
                        "end": round(b, 3),
                        "text": body,
                        "original_text": body,
                        "language": lang,
                        "speaker": who,
                        "words": [],
                        "themes": [],
                    }
                    for a, b, who, body in cues
                ],
            }
            path.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        recordings.append(Recording(path, lang, segments))
    return recordings


def segment_suggestions(parts: list[str], lang: str, themes: dict[str, list[ThemeSuggestion]]) -> list[ThemeSuggestion]:
    """A segment's themes: those of its sentences, evidence moved to where each sentence is in it."""
    joiner = "" if lang == "zh" else " "
    found: dict[str, ThemeSuggestion] = {}
    offset = 0
    for part in parts:
        for s in themes.get(part, ()):
            evidence = tuple((a + offset, b + offset) for a, b in s.evidence)
            old = found.get(s.theme)
            found[s.theme] = s.__class__(
                s.theme, max(s.score, old.score if old else 0), (old.evidence if old else ()) + evidence
            )
        offset += len(part) + len(joiner)
    return list(found.values())


# ---------------------------------------------------------------------------------------- queries


@dataclass
class BenchQuery:
    text: str
    category: str  # zh-1, zh-2, en-1, en-2, stress
    theme: str  # the theme used for the filtered run


def _words(recordings: list[Recording], themes: dict[str, list[ThemeSuggestion]], sample: int = 20_000):
    """Segment frequencies of words (jieba for Chinese), and the themes of the segments each word is in."""
    import jieba

    from pipeline.script import to_simplified

    jieba.setLogLevel(60)
    freq: dict[str, Counter] = {"zh": Counter(), "en": Counter()}
    word_themes: dict[str, Counter] = defaultdict(Counter)
    pairs: dict[str, list[tuple[str, str]]] = {"zh": [], "en": []}
    rng = random.Random(7)
    cut_cache: dict[str, list[str]] = {}
    seen = 0
    for rec in recordings:
        for parts in rec.segments:
            seen += 1
            if seen > sample:
                break
            words = set()
            for part in parts:
                if part not in cut_cache:
                    if rec.language == "zh":  # in simplified script: search folds 這個 into 这个
                        cut_cache[part] = [
                            to_simplified(w) for w in jieba.lcut(part) if re.fullmatch(f"[{HAN}]{{1,4}}", w)
                        ]
                    else:
                        cut_cache[part] = [w.lower() for w in re.findall(r"[A-Za-z]+", part)]
                words.update(cut_cache[part])
            freq[rec.language].update(words)
            seg_themes = {s.theme for p in parts for s in themes.get(p, ())}
            for w in words:
                word_themes[w].update(seg_themes)
            content = sorted(
                w for w in words if (len(w) >= 2 if rec.language == "zh" else w not in EN_STOP and len(w) > 2)
            )
            if len(content) >= 2 and rng.random() < 0.05:
                pairs[rec.language].append(tuple(rng.sample(content, 2)))
    return freq, word_themes, pairs


def choose_queries(recordings, themes, n: int, seed: int, theme_ids: list[str]) -> list[BenchQuery]:
    """n queries: a quarter each of Chinese and English, one and two words (see the module docstring)."""
    rng = random.Random(seed)
    freq, word_themes, pairs = _words(recordings, themes)

    def theme_of(words: list[str]) -> str:
        counts = sum((word_themes[w] for w in words), Counter())
        return counts.most_common(1)[0][0] if counts else rng.choice(theme_ids)

    def occurs(lang: str, phrase: str) -> bool:
        return all(freq[lang][w] > 0 for w in phrase.split())

    theme_zh = [w for w in THEME_WORDS_ZH if occurs("zh", w)]
    theme_en = [w for w in THEME_WORDS_EN if occurs("en", w)]

    # Rarer words: the less frequent half of the content words (with a few hundred source sentences,
    # even these are in some 0.5 % of their language's segments: a harder mix than a real archive's).
    def rarer(lang: str, ok) -> list[str]:
        words = sorted((c, w) for w, c in freq[lang].items() if ok(w))
        return [w for _, w in words[: len(words) // 2]]

    rare_zh = rarer("zh", lambda w: len(w) >= 2)
    rare_en = rarer("en", lambda w: w not in EN_STOP and len(w) > 3)
    rng.shuffle(rare_zh)
    rng.shuffle(rare_en)
    per = n // 4
    out: list[BenchQuery] = []
    for lang, theme_words, rare in (("zh", theme_zh, rare_zh), ("en", theme_en, rare_en)):
        # One word: 70 % theme words (cycled), 30 % rarer words.
        n_theme = round(per * 0.7)
        ones = [theme_words[i % len(theme_words)] for i in range(n_theme)] + rare[: per - n_theme]
        out += [BenchQuery(w, f"{lang}-1", theme_of(w.split())) for w in ones]
        # Two words: pairs of theme words, pairs seen together in a segment, a theme word and a rarer word.
        twos = []
        for i in range(per):
            kind = i % 3
            if kind == 0:
                a, b = rng.sample(theme_words, 2)
            elif kind == 1 and pairs[lang]:
                a, b = rng.choice(pairs[lang])
            else:
                a, b = rng.choice(theme_words), rng.choice(rare[per:] or rare)
            twos.append(f"{a} {b}")
        out += [BenchQuery(q, f"{lang}-2", theme_of(q.split())) for q in twos]
    out += [BenchQuery(w, "stress", theme_of([w])) for w in STRESS]
    return out


# -------------------------------------------------------------------------------------- measuring


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


@dataclass
class Result:
    backend: str
    size: int
    segments: int = 0
    recordings: int = 0
    import_s: float = 0.0
    import_cpu_s: float = 0.0  # this process's CPU time during the import
    by_format: dict = field(default_factory=dict)  # "srt"/"json" -> [seconds, segments]
    load: list = field(default_factory=list)  # 1-minute load average at the start and end of import and search
    tag_s: float = 0.0
    annotations: int = 0
    tagged_segments: int = 0
    db_bytes: int = 0
    index_bytes: int = 0
    parts: dict = field(default_factory=dict)
    close_s: float = 0.0  # making CLOSED_SHARE of the recordings closed
    latency: dict = field(default_factory=dict)  # category -> list of ms (wall clock)
    viewer: dict = field(default_factory=dict)  # category -> list of ms (wall clock) of a viewer's search
    cpu: dict = field(default_factory=dict)  # category -> list of ms of this process's CPU time
    totals: dict = field(default_factory=dict)  # category -> list of totals
    slowest: list = field(default_factory=list)
    baseline: list = field(default_factory=list)


def build(store: Store, recordings: list[Recording], themes, result: Result, log) -> None:
    start, cpu = time.perf_counter(), time.process_time()
    result.load.append(os.getloadavg()[0])
    ids = []
    for k, rec in enumerate(recordings):
        t0 = time.perf_counter()
        ids.append(import_file(rec.path, store))
        kind = rec.path.suffix[1:]
        result.by_format[kind] = [
            a + b
            for a, b in zip(
                result.by_format.get(kind, [0.0, 0]), [time.perf_counter() - t0, len(rec.segments)], strict=True
            )
        ]
        if (k + 1) % max(1, len(recordings) // 10) == 0:
            elapsed = time.perf_counter() - start
            done = sum(len(r.segments) for r in recordings[: k + 1])
            log(f"  imported {k + 1}/{len(recordings)} files, {done} segments, {done / elapsed:,.0f}/s")
    result.import_s = time.perf_counter() - start
    result.import_cpu_s = time.process_time() - cpu
    result.load.append(os.getloadavg()[0])
    result.segments = sum(len(r.segments) for r in recordings)
    result.recordings = len(recordings)
    start = time.perf_counter()
    for rid, rec in zip(ids, recordings, strict=True):
        tagged = stored_result(store.recording(rid), store.transcript(rid))  # segments in the file's order
        found = {i: segment_suggestions(parts, rec.language, themes) for i, parts in enumerate(rec.segments)}
        tagged.themes, tagged.tagger = {i: f for i, f in found.items() if f}, "bench"
        tagged.stages["tag"] = StageRun({"bench": True}, "bench", {})
        result.tagged_segments += len(tagged.themes)
        result.annotations += sum(map(len, tagged.themes.values()))
        store.save_result(tagged)
    result.tag_s = time.perf_counter() - start
    start = time.perf_counter()
    for rid in ids[:: round(1 / CLOSED_SHARE)]:
        store.set_metadata(rid, consent="closed")
    result.close_s = time.perf_counter() - start


def sizes(engine, result: Result) -> None:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            path = Path(engine.url.database)
            result.db_bytes = path.stat().st_size
            rows = conn.exec_driver_sql("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").all()
            by_table: Counter = Counter()
            for name, size in rows:
                owner = (
                    "segment_index (FTS5)"
                    if name.startswith("segment_index")
                    else (
                        "segments"
                        if name in ("segments", "ix_segments_recording_id_start")
                        else ("annotations" if "annotation" in name else "other")
                    )
                )
                by_table[owner] += size
            result.parts = dict(by_table)
            result.index_bytes = by_table["segment_index (FTS5)"]
        else:
            result.db_bytes = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
            for name in ("segments", "segment_index", "annotations", "history"):
                result.parts[name] = conn.execute(text(f"SELECT pg_total_relation_size('{name}')")).scalar()
            result.index_bytes = result.parts["segment_index"]


def measure(store: Store, queries: list[BenchQuery], codebook, result: Result, seed: int) -> None:
    runs = [(q, None) for q in queries] + [(q, q.theme) for q in queries]
    rng = random.Random(seed)
    rng.shuffle(runs)
    # Warm up (the first queries open connections and read pages): 20 runs, not timed.
    for q, _theme in runs[:20]:
        store.search(parse_query(q.text), SearchFilters(), limit=20)
    timed = []
    result.load.append(os.getloadavg()[0])
    for q, theme in runs:
        filters = SearchFilters(themes=(theme, *codebook.descendants(theme))) if theme else SearchFilters()
        t0, c0 = time.perf_counter(), time.process_time()
        found = store.search(parse_query(q.text), filters, limit=20)  # what `ohp search` does
        ms = (time.perf_counter() - t0) * 1000
        cat = q.category + (" +theme" if theme else "")
        result.latency.setdefault(cat, []).append(ms)
        result.cpu.setdefault(cat, []).append((time.process_time() - c0) * 1000)
        result.totals.setdefault(cat, []).append(found.total)
        timed.append((ms, q.text, theme, found.total))
    result.load.append(os.getloadavg()[0])
    result.slowest = sorted(timed, reverse=True)[:8]
    for q, theme in runs:  # a web viewer's search: closed recordings left out
        themes = (theme, *codebook.descendants(theme)) if theme else ()
        t0 = time.perf_counter()
        store.search(parse_query(q.text), SearchFilters(themes=themes, hide_closed=True), limit=20)
        result.viewer.setdefault(q.category + (" +theme" if theme else ""), []).append(
            (time.perf_counter() - t0) * 1000
        )


def baseline(engine, queries: list[BenchQuery], result: Result, n: int = 40) -> None:
    """A naive scan: LIKE '%word%' on text and original text, the count and the first 20 rows."""
    words = [q.text for q in queries if q.category in ("zh-1", "en-1")][:: max(1, len(queries) // (2 * n))][:n]
    with engine.connect() as conn:
        for w in words:
            t0 = time.perf_counter()
            pattern = f"%{w}%"
            where = "text LIKE :p OR original_text LIKE :p"
            conn.execute(text(f"SELECT count(*) FROM segments WHERE {where}"), {"p": pattern}).scalar()
            conn.execute(
                text(
                    f"SELECT id, recording_id, start, text FROM segments WHERE {where} "
                    f"ORDER BY recording_id, start LIMIT 20"
                ),
                {"p": pattern},
            ).all()
            result.baseline.append((time.perf_counter() - t0) * 1000)


# ---------------------------------------------------------------------------------------- report


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} / {percentile(values, 0.95):.1f}"


CATEGORIES = ["zh-1", "zh-2", "en-1", "en-2"]


def _all(r: Result, what: str = "latency", theme: bool | None = None) -> list[float]:
    """Timings of the researcher's queries (not the very common terms), with or without a theme filter or both."""
    return [
        v
        for c, vs in getattr(r, what).items()
        if c.split()[0] in CATEGORIES and (theme is None or c.endswith("+theme") == theme)
        for v in vs
    ]


def report(results: list[Result]) -> str:
    lines = []
    head = "| | " + " | ".join(f"{r.backend} {r.size // 1000:,}k" for r in results) + " |"
    lines += [head, "|---" * (len(results) + 1) + "|"]

    def row(name, fn):
        lines.append(f"| {name} | " + " | ".join(fn(r) for r in results) + " |")

    def per_format(r: Result, kind: str) -> str:
        seconds, n = r.by_format.get(kind, (0, 0))
        return f"{n / seconds:,.0f}/s" if seconds else ""

    row("segments / recordings", lambda r: f"{r.segments:,} / {r.recordings:,}")
    row("import: all files through import_file", lambda r: f"{r.import_s:,.1f} s")
    row("**import speed** (wall clock)", lambda r: f"**{r.segments / r.import_s:,.0f} segments/s**")
    row("import speed, SRT files / ohp JSON files", lambda r: f"{per_format(r, 'srt')} / {per_format(r, 'json')}")
    row(
        "import speed on this process's CPU time (PostgreSQL: client only)",
        lambda r: f"{r.segments / r.import_cpu_s:,.0f} segments/s",
    )
    row(
        "themes stored (save_result, not in the import)",
        lambda r: f"{r.tag_s:,.1f} s, {r.annotations:,} on {r.tagged_segments / max(1, r.segments):.0%} of segments",
    )
    row(f"making {CLOSED_SHARE:.0%} of the recordings closed", lambda r: f"{r.close_s:,.1f} s")
    row("database size", lambda r: _mb(r.db_bytes))
    row("full-text index (share)", lambda r: f"{_mb(r.index_bytes)} ({r.index_bytes / max(1, r.db_bytes):.0%})")
    row("segments table and its index", lambda r: _mb(r.parts.get("segments", 0)))
    row(
        "annotations (+ history on PostgreSQL)",
        lambda r: _mb(r.parts.get("annotations", 0) + r.parts.get("history", 0)),
    )
    for cat in CATEGORIES:
        for suffix in ("", " +theme"):
            c = cat + suffix
            row(
                f"search {c}: median / p95 ms (n)",
                lambda r, c=c: f"{_ms(r.latency[c])} ({len(r.latency[c])})" if c in r.latency else "",
            )
    row("**all queries without filter**: median / p95 ms", lambda r: _ms(_all(r, theme=False)))
    row("**all queries with a theme filter**: median / p95 ms", lambda r: _ms(_all(r, theme=True)))
    row(
        "**all queries**: median / **p95** / max ms (n)",
        lambda r: (lambda v: f"{statistics.median(v):.1f} / **{percentile(v, 0.95):.1f}** / {max(v):.0f} ({len(v)})")(
            _all(r)
        ),
    )
    row(
        "**a viewer's search (closed left out), all queries**: median / **p95** / max ms",
        lambda r: (lambda v: f"{statistics.median(v):.1f} / **{percentile(v, 0.95):.1f}** / {max(v):.0f}")(
            _all(r, "viewer")
        ),
    )
    row(
        "all queries on this process's CPU time (SQLite: with the database; PostgreSQL: client only): median / p95 ms",
        lambda r: _ms(_all(r, "cpu")),
    )
    row(
        "hits per query (total): median / p95 / max",
        lambda r: (lambda t: f"{statistics.median(t):,.0f} / {percentile(t, 0.95):,.0f} / {max(t):,}")(
            _all(r, "totals")
        ),
    )
    row(
        f"very common terms ({' '.join(STRESS)}), without / with theme: median / max ms",
        lambda r: (
            f"{statistics.median(r.latency['stress']):.0f} / {max(r.latency['stress']):.0f}, "
            f"{statistics.median(r.latency['stress +theme']):.0f} / {max(r.latency['stress +theme']):.0f}"
        ),
    )
    row(
        "baseline: LIKE '%word%' scan, count + first 20: median / p95 ms",
        lambda r: _ms(r.baseline) if r.baseline else "",
    )
    row(
        "load average (1 min) during import, search",
        lambda r: f"{statistics.mean(r.load[:2]):.1f}, {statistics.mean(r.load[2:4]):.1f}",
    )
    return "\n".join(lines)


def pg_database(url: str, name: str):
    """A new database `name` on url's server; (its URL, a function that drops it)."""
    base = make_url(url)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="SQLite database sizes (segments)"
    )
    parser.add_argument("--pg-sizes", type=int, nargs="*", default=[100_000], help="PostgreSQL database sizes")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("OHP_TEST_POSTGRES_URL"),
        help="a PostgreSQL server (a database is created on it)",
    )
    parser.add_argument(
        "--queries", type=int, default=240, help="distinct queries (each timed with and without a theme filter)"
    )
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where databases and transcripts go (default: a new folder in /tmp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases and transcripts")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()

    if "postgresql" in args.backends and args.pg_sizes and not args.pg_url:
        parser.error("PostgreSQL needs --pg-url or $OHP_TEST_POSTGRES_URL (or --backends sqlite)")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ohp-bench-search-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    t_begin = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t_begin:7.1f}s] {msg}", flush=True)

    pool = source_sentences()
    log(f"{len(pool['zh'])} Chinese and {len(pool['en'])} English source sentences; tagging them")
    themes = sentence_themes(pool)
    codebook = load_codebook()
    log(f"{sum(1 for v in themes.values() if v)} sentences carry a theme")

    plan = []
    if "sqlite" in args.backends:
        plan += [("sqlite", n) for n in args.sizes]
    if "postgresql" in args.backends:
        plan += [("postgresql", n) for n in args.pg_sizes]
    results: list[Result] = []
    queries: list[BenchQuery] | None = None
    recordings_by_size: dict[int, list[Recording]] = {}
    try:
        for backend, size in plan:
            if size not in recordings_by_size:
                log(f"generating {size:,} segments as SRT and JSON files")
                recordings_by_size[size] = generate(work / f"transcripts-{size}", size, pool, themes, args.seed + size)
            if queries is None:  # one set for every database, from the first one's text
                queries = choose_queries(recordings_by_size[size], themes, args.queries, args.seed, codebook.ids)
            recordings = recordings_by_size[size]
            result = Result(backend, size)
            drop = None
            if backend == "sqlite":
                url = f"sqlite:///{work / f'ohp-{size}.db'}"
            else:
                url, drop = pg_database(args.pg_url, f"ohp_bench_{size}_{os.getpid()}")
            try:
                store = Store(url)
                log(f"{backend} {size:,}: importing {len(recordings)} files")
                build(store, recordings, themes, result, log)
                log(
                    f"{backend} {size:,}: imported in {result.import_s:.1f} s "
                    f"({result.segments / result.import_s:,.0f}/s), "
                    f"themes in {result.tag_s:.1f} s"
                )
                engine = create_engine(url)
                sizes(engine, result)
                log(f"{backend} {size:,}: database {_mb(result.db_bytes)}, index {_mb(result.index_bytes)}; searching")
                measure(store, queries, codebook, result, args.seed)
                baseline(engine, queries, result)
                engine.dispose()
                store.close()
                results.append(result)
                log(
                    f"{backend} {size:,}: done; slowest: "
                    + "; ".join(f"{q!r} {t or ''} {ms:.0f} ms ({n:,} hits)" for ms, q, t, n in result.slowest[:5])
                )
            finally:
                if drop:
                    drop()
                elif not args.keep:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{work / f'ohp-{size}.db'}{suffix}").unlink(missing_ok=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    import sqlite3

    qs = queries or []
    counts = Counter(q.category for q in qs)
    print()
    print(
        f"# bench/search.py, {datetime.date.today()}, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    print(
        "# queries: "
        + ", ".join(f"{n} {c}" for c, n in counts.items())
        + ", each without and with a theme filter; e.g. "
        + ", ".join(q.text for q in qs[:: max(1, len(qs) // 16)])
    )
    print(report(results))
    if args.json:
        document = {"queries": [q.__dict__ for q in qs], "results": [r.__dict__ for r in results]}
        args.json.write_text(json.dumps(document, default=str, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
