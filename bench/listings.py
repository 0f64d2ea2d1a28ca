"""The web app's list of recordings and `ohp vocabulary accept` on a large collection: time and database reads.

    python bench/listings.py                                   # SQLite in a new folder in /tmp
    python bench/listings.py --pg-url postgresql+psycopg://ohp:ohp@localhost/ohp_bench   # an empty database
    python bench/listings.py --ohp-repo ../main                # another checkout's ohp, on a database of its own

Builds, in bulk SQL (a benchmark, not a run), --recordings recordings of --segments segments each, every recording
with five stages (2 % of them with a failed stage's error), the tagger's suggestions on a third of the segments
(some accepted or rejected), 5 % of the recordings closed, and a corpus of corrections: --corrected segments
corrected, each with a few words a person wrote, among them names and places from a pool of --terms terms (Chinese
and English) that the recogniser's text of the segment (pieces of sentences, each segment's its own) seldom has,
and in half of a closed recording's corrected segments its interviewee's name, which no other recording has.
Then times (the median, and the range, of --repeats, or --accept-repeats, runs):

- the web app's list of recordings as a researcher sees it (pipeline.web.views.recordings, what `/` and
  `/api/recordings` show), with the statements it sends to the database, by table;
- `ohp vocabulary accept` of --accept of the suggested terms (none of them only in closed recordings) into a new
  vocabulary file, in process through typer's runner, with the number of corrected words read and looked at.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--recordings", type=int, default=3000)
parser.add_argument("--segments", type=int, default=40, help="segments per recording")
parser.add_argument("--corrected", type=int, default=10_000, help="corrected segments")
parser.add_argument("--terms", type=int, default=600, help="the pool of names, places and terms corrections write")
parser.add_argument("--accept", type=int, default=300, help="terms accepted at once")
parser.add_argument("--repeats", type=int, default=5, help="times the list is made")
parser.add_argument("--accept-repeats", type=int, default=3, help="times the terms are accepted")
parser.add_argument(
    "--pg-url", default=None, help="an empty PostgreSQL database: filled, then emptied (its schema public made anew)"
)
parser.add_argument("--ohp-repo", type=Path, default=Path(__file__).resolve().parents[1], help="the ohp to time")
parser.add_argument("--seed", type=int, default=17)
args = parser.parse_args()
sys.path.insert(0, str(args.ohp_repo.resolve()))

from sqlalchemy import create_engine, event, insert, select, text  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from pipeline.cli import app  # noqa: E402
from pipeline.records import UserRecord  # noqa: E402
from pipeline.stages import vocabulary  # noqa: E402
from pipeline.store import Store  # noqa: E402
from pipeline.store.models import AnnotationRow, RecordingRow, SegmentRow, StageRow, WordRow, now  # noqa: E402
from pipeline.web import views  # noqa: E402

STAGES = ("segment", "transcribe", "speakers", "tag", "doubt")
THEMES = ("wages", "working_conditions", "housing", "schooling", "family_separation", "hukou")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国红梅玉珍春花金凤德福"
PLACES = "东莞 深圳 佛山 惠州 中山 温州 义乌 昆山 苏州 成都 重庆 绵阳 南充 达州 宜宾 乐山 遂宁".split()
FILLER = "我们 那个 时候 工厂 老板 一个 月 然后 就是 说 也 了 的 在 去".split()
ENGLISH_FILLER = "the and then we went to a in of factory boss".split()
HEARD = "那个时候我们在工厂里面做工，一个月工资不多，老板说明年再涨，过年回家的车票也买不到。".split("，")


def pool_of_terms(rng: random.Random, n: int) -> list[str]:
    """Chinese names (two or three characters), places with a suffix, English names: n distinct terms."""
    terms: set[str] = set()
    while len(terms) < n:
        kind = rng.random()
        if kind < 0.6:
            terms.add(rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2)))))
        elif kind < 0.8:
            terms.add(rng.choice(PLACES) + rng.choice(("镇", "村", "厂", "街")))
        else:
            terms.add("".join(rng.choice("bcdfghklmnprstwz") + rng.choice("aeiou") for _ in range(3)).capitalize())
    return sorted(terms)


def build(url: str, rng: random.Random, terms: list[str]) -> None:
    """The collection, in bulk: recordings, stages, segments, suggestions, corrections."""
    Store(url).close()  # the schema, by this checkout's migrations
    engine = create_engine(url)
    today = now()
    names = {r: rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, 2)) for r in range(1, args.recordings + 1)}
    closed = {r for r in names if r % 20 == 0}
    with engine.begin() as conn:
        conn.execute(
            insert(RecordingRow),
            [
                {
                    "id": r,
                    "sha256": f"{r:064x}",
                    "path": f"/archive/{r % 40:02d}/interview-{r:05d}.wav",
                    "size_bytes": 10**8,
                    "format": "wav",
                    "duration": 3600.0,
                    "language": "zh",
                    "interviewee": names[r],
                    "place": rng.choice(PLACES),
                    "extra": {},
                    "consent": "closed" if r in closed else "open",
                    "doubtful": rng.random() * 0.3,
                    "created_at": today,
                    "updated_at": today,
                }
                for r in range(1, args.recordings + 1)
            ],
        )
        conn.execute(
            insert(StageRow),
            [
                {
                    "recording_id": r,
                    "stage": stage,
                    "status": "done",
                    "settings": {},
                    "settings_key": "k",
                    "report": {},
                    "error": "decoder ran out of memory" if stage == "tag" and r % 50 == 0 else None,
                    "started_at": today,
                    "finished_at": today,
                }
                for r in range(1, args.recordings + 1)
                for stage in STAGES
            ],
        )
        segments, annotations = [], []
        for r in range(1, args.recordings + 1):
            for i in range(args.segments):
                sid = (r - 1) * args.segments + i + 1
                heard = "，".join(rng.sample(HEARD, 3)) + f"，{rng.choice(SURNAMES)}{rng.choice(PLACES)}。"
                segments.append(
                    {
                        "id": sid,
                        "recording_id": r,
                        "idx": i,
                        "start": i * 5.0,
                        "end": i * 5.0 + 4.5,
                        "text": heard,
                        "original_text": heard,
                        "language": "zh",
                        "speaker": f"S{i % 2 + 1}",
                        "engine": "faster-whisper",
                        "model": "base",
                        "turn": i + 1,
                    }
                )
                if sid % 3 == 0:
                    for theme in rng.sample(THEMES, 2):
                        status = rng.choice(("suggested", "suggested", "accepted", "rejected"))
                        annotations.append(
                            {
                                "segment_id": sid,
                                "theme": theme,
                                "source": "auto",
                                "status": status,
                                "score": 0.7,
                                "evidence": [[0, 4]],
                                "tagger": "t",
                                "origin": "pattern",
                                "updated_at": today,
                                "version": 1,
                            }
                        )
        conn.execute(insert(SegmentRow), segments)
        conn.execute(insert(AnnotationRow), annotations)
        corrected = rng.sample(range(1, len(segments) + 1), min(args.corrected, len(segments)))
        # Names are written again and again, a few often (Zipf-like), most rarely: as an archive's corrections.
        weights = [1 / (rank + 1) for rank in range(len(terms))]
        words = []
        for sid in corrected:
            written = [*rng.choices(terms, weights, k=rng.choice((1, 2))), *rng.sample(FILLER, 5)]
            recording = (sid - 1) // args.segments + 1
            if recording in closed and rng.random() < 0.5:  # a closed interviewee's name, written nowhere else
                written.append(names[recording])
            if rng.random() < 0.2:
                written += rng.sample(ENGLISH_FILLER, 3)
            rng.shuffle(written)
            words += [
                {
                    "segment_id": sid,
                    "idx": k,
                    "start": k * 0.4,
                    "end": k * 0.4 + 0.3,
                    "text": word,
                    "probability": 1.0,
                    "corrected": True,
                }
                for k, word in enumerate(written)
            ]
        conn.execute(insert(WordRow), words)
        conn.execute(
            SegmentRow.__table__.update().where(SegmentRow.id.in_(corrected)).values(corrected=True, version=2)
        )
        if engine.dialect.name == "postgresql":  # the ids were given here, not by the sequences
            for table in ("recordings", "segments", "annotations", "words"):
                serial = f"pg_get_serial_sequence('{table}', 'id')"
                conn.execute(text(f"SELECT setval({serial}, (SELECT max(id) FROM {table}))"))
    engine.dispose()


class Statements:
    """The SELECT statements sent to any database while it is listening, by the first table each reads."""

    def __init__(self) -> None:
        self.tables: Counter[str] = Counter()

    def __enter__(self) -> Statements:
        event.listen(Engine, "before_cursor_execute", self.count)
        return self

    def __exit__(self, *_) -> None:
        event.remove(Engine, "before_cursor_execute", self.count)

    def count(self, conn, cursor, statement: str, parameters, context, executemany) -> None:
        found = re.search(r"\bFROM\s+\"?(\w+)", statement, re.IGNORECASE)
        if statement.lstrip().upper().startswith("SELECT") and found:
            self.tables[found.group(1)] += 1


def seconds(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def time_list(url: str) -> None:
    researcher = UserRecord(1, "rita", "researcher", "")
    with Store(url) as store:
        shown = views.recordings(store, researcher)  # warm: the first read fills the caches either version has
        runs = []
        with Statements() as statements:
            for _ in range(args.repeats):
                started = time.perf_counter()
                again = views.recordings(store, researcher)
                runs.append(time.perf_counter() - started)
        assert again == shown
        per_list = {table: n // args.repeats for table, n in sorted(statements.tables.items())}
    print(f"list of recordings ({len(shown)} shown): {seconds(runs)}; statements per list: {per_list}", flush=True)


def time_accept(url: str, folder: Path) -> None:
    with Store(url) as store:
        closed = {r.id for r in store.list_recordings() if r.consent == "closed"}
        found = vocabulary.suggest(store.corrected_words(), (), (), closed)
        words = len(store.corrected_words())
    chosen = [s.term for s in found if not s.closed_only][: args.accept]
    looked_at = Counter[str]()
    content_term = vocabulary.content_term

    def counted(word: str) -> str | None:
        looked_at["words"] += 1
        return content_term(word)

    vocabulary.content_term = counted  # how many corrected words each accept looks at
    runner, runs = CliRunner(), []
    try:
        for run in range(args.accept_repeats):
            path = folder / f"vocabulary-{run}.txt"
            started = time.perf_counter()
            done = runner.invoke(app, ["vocabulary", "accept", *chosen, "--vocabulary", str(path), "--db", url])
            runs.append(time.perf_counter() - started)
            assert done.exit_code == 0, done.output
            assert len(path.read_text(encoding="utf-8").splitlines()) == len(chosen)
    finally:
        vocabulary.content_term = content_term
    print(
        f"vocabulary accept of {len(chosen)} terms ({len(found)} suggested from {words:,} corrected words, "
        f"{len(found) - sum(not s.closed_only for s in found)} only in closed recordings): {seconds(runs)}; "
        f"corrected words looked at per accept: {looked_at['words'] // args.accept_repeats:,}",
        flush=True,
    )


def main() -> None:
    rng = random.Random(args.seed)
    terms = pool_of_terms(rng, args.terms)
    folder = Path(tempfile.mkdtemp(prefix="ohp-bench-listings-", dir="/tmp"))
    revision = subprocess.run(
        ["git", "-C", str(args.ohp_repo), "log", "-1", "--format=%h"], capture_output=True, text=True
    ).stdout.strip()
    url = args.pg_url or f"sqlite:///{folder / 'ohp.db'}"
    try:
        started = time.perf_counter()
        build(url, rng, terms)
        engine = create_engine(url)
        with engine.connect() as conn:
            counts = {
                table.__tablename__: conn.execute(select(text("count(*)")).select_from(table)).scalar_one()
                for table in (RecordingRow, StageRow, SegmentRow, AnnotationRow, WordRow)
            }
        engine.dispose()
        print(
            f"ohp {revision} at {args.ohp_repo}, {make_url(url).get_backend_name()}: built in "
            f"{time.perf_counter() - started:.1f} s: {counts}",
            flush=True,
        )
        time_list(url)
        time_accept(url, folder)
    finally:
        if args.pg_url:  # the database empty again, for the next run
            engine = create_engine(args.pg_url)
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            engine.dispose()


if __name__ == "__main__":
    main()
