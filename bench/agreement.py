"""Agreement between coders and the collection report: are the figures right, and how long do they take?

    python bench/agreement.py                       # checks, then the report on a 1,000,000-segment database
    python bench/agreement.py --size 100000         # a quicker look
    python bench/agreement.py --db sqlite:///x.db   # time an existing database (one bench/search.py --keep left)
    python bench/agreement.py --pg-url postgresql+psycopg://ohp:ohp@localhost/ohp_test   # build on PostgreSQL

Checks: Cohen's kappa and Krippendorff's alpha (pipeline.analysis.agreement, from counts) against a
hand-computed example and against scikit-learn's cohen_kappa_score and the krippendorff package on random
data (two coders for kappa; three with gaps for alpha), each figure to 1e-9.

Timing: the database is bench/search.py's (its generator and builder, imported, not copied): size/1000
recordings of real sentences, themes from the real tagger on about 30 % of segments. Coders are then made
up on top of it in bulk SQL (a benchmark, not a review session): three coders each review a random 10 % of
the recordings, deciding every suggestion there (agreeing with the tagger 85 % of the time) and adding a
theme on 2 % of the segments they review; their decisions also go onto the annotations (accepted or
rejected). Then timed, as `ohp report` and `ohp agreement --disagreements` run them: the agreement counts
(Store.decision_counts) and the arithmetic, the collection counts (frequency by five dimensions,
co-occurrence in segments and in turns, coverage; each of these queries also alone), and streaming every
disagreement; the charts apart. On PostgreSQL the database works in server processes: their CPU seconds
(of the connections to the benchmark's database, from /proc) are given beside this process's.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, insert, select, text, update  # noqa: E402

from pipeline.analysis.agreement import agreement, cohen_kappa, krippendorff_alpha  # noqa: E402
from pipeline.analysis.charts import render  # noqa: E402
from pipeline.analysis.report import report_tables  # noqa: E402
from pipeline.stages.codebook import load_codebook  # noqa: E402
from pipeline.store import Store, analysis  # noqa: E402
from pipeline.store.models import AnnotationRow, DecisionRow, SegmentRow  # noqa: E402


def _search_bench():
    """bench/search.py as a module: its generator and builder."""
    spec = importlib.util.spec_from_file_location("bench_search", REPO / "bench" / "search.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_search"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------- checks


def check_figures(seed: int = 11) -> list[str]:
    import krippendorff
    from sklearn.metrics import cohen_kappa_score

    lines = []
    # Hand-computed (tests/test_agreement.py): 10 units, both yes 4, one each 1, neither 4.
    hand = (cohen_kappa(4, 1, 1, 4), krippendorff_alpha({(2, 2): 4, (2, 1): 2, (2, 0): 4}))
    assert abs(hand[0] - 0.6) < 1e-9 and abs(hand[1] - 0.62) < 1e-9, hand
    lines.append("| hand-computed example (10 units) | kappa 0.6, alpha 0.62 | kappa 0.6, alpha 0.62 | yes |")
    rng = np.random.default_rng(seed)
    worst_kappa = worst_alpha = 0.0
    trials = 200
    for _ in range(trials):
        n, p = int(rng.integers(5, 400)), rng.uniform(0.05, 0.6)
        first = (rng.random(n) < p).astype(int)
        second = np.where(rng.random(n) < rng.uniform(0.5, 1), first, 1 - first)
        n11 = int((first & second).sum())
        n10, n01 = int((first & (1 - second)).sum()), int(((1 - first) & second).sum())
        ours = cohen_kappa(n11, n10, n01, n - n11 - n10 - n01)
        if ours is not None:
            worst_kappa = max(worst_kappa, abs(ours - cohen_kappa_score(first, second)))
        data = (rng.random((3, n)) < p).astype(float)
        data[2, rng.random(n) < 0.3] = np.nan
        histogram: dict[tuple[int, int], int] = {}
        for unit in data.T:
            seen = unit[~np.isnan(unit)]
            if len(seen) >= 2:
                histogram[len(seen), int(seen.sum())] = histogram.get((len(seen), int(seen.sum())), 0) + 1
        alpha = krippendorff_alpha(histogram)
        if alpha is not None:
            expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
            worst_alpha = max(worst_alpha, abs(alpha - expected))
    assert worst_kappa < 1e-9 and worst_alpha < 1e-9, (worst_kappa, worst_alpha)
    lines.append(
        f"| {trials} random data sets, 5-400 units | sklearn cohen_kappa_score; krippendorff.alpha (3 coders, "
        f"30 % gaps) | largest difference {worst_kappa:.1e} (kappa), {worst_alpha:.1e} (alpha) | yes |"
    )
    return lines


# ----------------------------------------------------------------------------------------- coders


def add_coders(url: str, seed: int, coders=("alice", "bob", "chen"), share: float = 0.10) -> dict[str, int]:
    """Made-up coders' decisions, in bulk (see the module's doc); how many of each kind."""
    rng = random.Random(seed)
    engine = create_engine(url)
    book = load_codebook()
    counts = {"decisions": 0, "added": 0, "reviewed recordings": 0}
    with engine.begin() as conn:
        recordings = sorted({rid for (rid,) in conn.execute(select(SegmentRow.recording_id).distinct())})
        now = datetime.datetime.now(datetime.UTC)
        for coder in coders:
            chosen = rng.sample(recordings, max(1, int(share * len(recordings))))
            counts["reviewed recordings"] += len(chosen)
            rows, statuses = [], {}
            suggestions = conn.execute(
                select(AnnotationRow.id, AnnotationRow.segment_id, AnnotationRow.theme)
                .join(SegmentRow, SegmentRow.id == AnnotationRow.segment_id)
                .where(SegmentRow.recording_id.in_(chosen))
            ).all()
            for aid, sid, theme in suggestions:
                present = rng.random() < 0.85
                rows.append(
                    dict(segment_id=sid, theme=theme, coder=coder, present=present, via="review", decided_at=now)
                )
                statuses[aid] = "accepted" if present else "rejected"
            taken = {(r["segment_id"], r["theme"]) for r in rows}
            segments = conn.execute(select(SegmentRow.id).where(SegmentRow.recording_id.in_(chosen))).scalars().all()
            for sid in segments:
                if rng.random() < 0.02:
                    theme = rng.choice(book.ids)
                    if (sid, theme) not in taken:
                        rows.append(
                            dict(segment_id=sid, theme=theme, coder=coder, present=True, via="review", decided_at=now)
                        )
                        counts["added"] += 1
            for start in range(0, len(rows), 5000):
                conn.execute(insert(DecisionRow.__table__), rows[start : start + 5000])
            by_status: dict[str, list[int]] = {}
            for aid, status in statuses.items():
                by_status.setdefault(status, []).append(aid)
            for status, ids in by_status.items():
                for start in range(0, len(ids), 5000):
                    conn.execute(
                        update(AnnotationRow.__table__)
                        .where(AnnotationRow.id.in_(ids[start : start + 5000]))
                        .values(status=status, updated_by=coder)
                    )
            counts["decisions"] += len(rows)
    engine.dispose()
    return counts


# ------------------------------------------------------------------------------------------ timing


def _server_cpu(url: str) -> float | None:
    """CPU seconds so far of the PostgreSQL server processes connected to url's database (None: SQLite, or a
    server on another machine)."""
    if not url.startswith("postgresql"):
        return None
    engine = create_engine(url)
    with engine.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars()
        total = 0.0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    engine.dispose()
    return total


class _Clock:
    """Wall-clock and this process's CPU seconds of a step (SQLite works in this process: its CPU time is the
    counting's own, whatever else the shared machine runs), and on PostgreSQL the server's CPU seconds."""

    def __init__(self, timings: dict, name: str, url: str):
        self.timings, self.name, self.url = timings, name, url

    def __enter__(self):
        self.server = _server_cpu(self.url)
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *_):
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        server = _server_cpu(self.url)
        self.timings[self.name] = (wall, cpu, None if server is None else server - self.server)


COLLECTION_QUERIES = {
    "frequency (5 dimensions, one statement)": analysis._frequency,
    "co-occurrence in segments": analysis._cooccurrence_in_segments,
    "co-occurrence in turns": analysis._cooccurrence_in_turns,
    "coverage": analysis.coverage,
}


def time_report(url: str, charts: bool = True) -> dict:
    book = load_codebook()
    timings: dict = {}
    with Store(url) as store:
        with _Clock(timings, "agreement (counts + arithmetic)", url):
            names = store.coders()
            counts = store.decision_counts(None, names)
            found = agreement(counts, book.ids)
        with _Clock(timings, "frequency, co-occurrence, coverage", url):
            collection = store.collection_counts(None)
        with _Clock(timings, "disagreements, streamed", url):
            disputed = sum(1 for _ in store.disagreements(None, names))
        with _Clock(timings, "every table of ohp report (again, all at once)", url):
            tables = report_tables(store, None, book)
        with _Clock(timings, f"charts: {len(tables)} as SVG and PNG", url):
            for table in tables if charts else ():
                render(table, "svg")
                render(table, "png")
        for name, query in COLLECTION_QUERIES.items():  # what collection_counts is made of, each alone
            with store._session() as s, _Clock(timings, f"  of which: {name}", url):
                query(s, None)
    overall = found.themes[-1]
    timings.update(time_commands(url))
    timings["_figures"] = (
        f"{len(names)} coders, {sum(counts.shared.values()):,} segments reviewed by two or more, "
        f"{overall.units:,} units over all themes: kappa -, alpha {overall.alpha:.3f}, "
        f"agreement {100 * overall.percent:.1f} %; {disputed:,} disagreements; "
        f"{len(collection.coverage):,} recordings"
    )
    return timings


def time_commands(url: str) -> dict:
    """`ohp agreement` and `ohp report --no-charts`-like work as a person meets them: the command in a process
    of its own (start-up included), and the web app's /collection page for a researcher (charts drawn)."""
    from fastapi.testclient import TestClient

    from pipeline.config import Config
    from pipeline.web import create_app

    timings: dict = {}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", "from pipeline.cli import app; app()", "agreement", "--db", url]
    with _Clock(timings, "`ohp agreement` (a process of its own, start-up included)", url):
        subprocess.run(command, check=True, capture_output=True, cwd=REPO, env=env)
    password = "bench password 1"
    with Store(url) as store:
        if store.user("bench") is None:
            store.add_user("bench", password, "researcher")
        client = TestClient(create_app(store, Config(secret="bench")))
        token = client.get("/login").text.split('name="csrf-token" content="')[1].split('"')[0]
        client.post("/login", data={"name": "bench", "password": password, "csrf_token": token})
        with _Clock(timings, "web: GET /collection (counts and 8 SVG charts)", url):
            assert client.get("/collection").status_code == 200
    return {name: (wall, None, server) for name, (wall, _, server) in timings.items()}  # CPU: in other processes too


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000, help="segments in the database built")
    parser.add_argument("--db", default=None, help="time this database instead of building one")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--pg-url", default=None, help="build on a new database of this PostgreSQL server (kept)")
    parser.add_argument("--no-coders", action="store_true", help="with --db: its decisions are there already")
    parser.add_argument("--no-charts", action="store_true", help="time the counting only")
    args = parser.parse_args()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    log("checking the figures")
    checks = check_figures()
    url = args.db
    if url is None:
        search = _search_bench()
        work = args.workdir or Path(tempfile.mkdtemp(prefix="ohp-bench-agreement-", dir="/tmp"))
        pool = search.source_sentences()
        themes = search.sentence_themes(pool)
        recordings = search.generate(work / "transcripts", args.size, pool, themes, args.seed + args.size)
        if args.pg_url:
            url, _drop = search.pg_database(args.pg_url, f"ohp_bench_agreement_{os.getpid()}")
        else:
            url = f"sqlite:///{work / 'ohp.db'}"
        log(f"building {url} with bench/search.py's builder ({args.size:,} segments)")
        with Store(url) as store:
            search.build(store, recordings, themes, search.Result("sqlite", args.size), log)
    if not args.no_coders:
        log("adding coders")
        made = add_coders(url, args.seed)
        log(f"coders: {made}")
    log("timing the report")
    timings = time_report(url, charts=not args.no_charts)
    figures = timings.pop("_figures")
    steps = [v for k, v in timings.items() if not k.startswith(("charts", "every", "`", "web", " "))]
    total = tuple(sum(step[i] or 0 for step in steps) for i in range(3))
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print()
    print(f"## Agreement and the collection report ({datetime.date.today().isoformat()}, bench/agreement.py)")
    print()
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU, shared with other")
    print(f"helpers' work. uptime before: `{uptime_before}`; after: `{uptime_after}`.")
    print()
    print("| check | against | result | passes |")
    print("|---|---|---|---|")
    print("\n".join(checks))
    print()
    print(f"{url.split(':')[0].split('+')[0]}, {args.size:,} segments: {figures}.")
    print()
    print("| step | seconds (wall clock) | CPU seconds of this process | CPU seconds of the PostgreSQL server |")
    print("|---|---|---|---|")

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for name, (wall, cpu, server) in timings.items():
        print(f"| {name} | {wall:.2f} | {seconds(cpu)} | {seconds(server)} |")
    print(
        f"| **agreement + frequency + co-occurrence + coverage + disagreements** | **{total[0]:.2f}** | "
        f"**{total[1]:.2f}** | **{total[2]:.2f}** |"
    )


if __name__ == "__main__":
    main()
