"""The web app under load: simulated annotators reviewing and correcting at once against a real server.

    python bench/web.py [--users 20] [--seconds 60] [--think 1.0] [--db URL]

Seeds a fresh database (SQLite in a temp folder unless --db names an empty one) with one recording per
annotator plus one they all share, starts `ohp serve` on a free 127.0.0.1 port, and runs one session
per annotator: open the recording page, read its segments, accept or reject suggestions, correct
text (on the shared recording too, where they collide), search, list recordings, pausing --think
seconds on average between actions (people read and listen; 0 hammers the server). Prints requests/s,
median and 95th-percentile latency per route, and checks afterwards that every accepted decision and
correction is in the database: for each annotation and segment, the last successful write (highest
version) is what is stored. Traffic goes to 127.0.0.1 only and stops after --seconds.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.records import AudioInfo, RecordingResult, Segment, StageRun, ThemeSuggestion, Transcript
from pipeline.store import Store

PASSWORD = "bench password"
WORDS = "wages factory village children school rent train letter harvest festival dormitory shift".split()
THEMES = ["wages", "working_conditions", "housing", "schooling"]
READS = {"page /recordings/{id}", "GET /api/recordings/{id}/segments", "GET /api/search", "page /"}


def seed(store: Store, folder: Path, recordings: int, segments: int) -> list[int]:
    """Recordings of `segments` segments, each with two suggestions waiting."""
    audio = folder / "audio.wav"
    audio.write_bytes(b"\0" * 1_000_000)
    ids = []
    rng = random.Random(7)
    for r in range(recordings):
        info = AudioInfo(
            folder / f"interview{r:02d}.wav", f"{r:064x}", 1_000_000, "wav", "pcm_s16le", 16000, 1, segments * 5.0
        )
        info.path.write_bytes(b"\0" * 1000)
        texts = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(segments)]
        segs = [Segment(i * 5.0, i * 5.0 + 4.5, t, t, "en", speaker=f"S{i % 2 + 1}") for i, t in enumerate(texts)]
        themes = {i: [ThemeSuggestion(t, 0.5, ((0, 4),)) for t in rng.sample(THEMES, 2)] for i in range(segments)}
        stages = {"transcribe": StageRun({}, "k", {}), "tag": StageRun({}, "t", {})}
        transcript = Transcript("en", 0.99, segs, "faster-whisper", "base")
        result = RecordingResult(info, transcript, themes=themes, tagger="t", stages=stages)
        ids.append(store.save_result(result).export.recording.id)
    return ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tally:
    """Latencies per route, and the last successful write to each annotation and segment."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.decisions: dict[int, tuple[int, str]] = {}  # annotation id -> (version, status)
        self.texts: dict[int, tuple[int, str]] = {}  # segment id -> (version, text)

    def timed(self, client: httpx.Client, route: str, method: str, url: str, **kwargs) -> httpx.Response:
        started = time.perf_counter()
        response = client.request(method, url, **kwargs)
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latency[route].append(elapsed)
            self.status[route][response.status_code] += 1
        return response

    def wrote(self, store: dict[int, tuple[int, str]], key: int, version: int, value: str) -> None:
        with self.lock:
            if version > store.get(key, (0, ""))[0]:
                store[key] = (version, value)


def annotator(
    base: str, name: str, own: int, shared: int, window: dict, think: float, tally: Tally, seed_: int
) -> None:
    rng = random.Random(seed_)

    def pause() -> None:
        time.sleep(rng.uniform(0.5, 1.5) * think)

    with httpx.Client(base_url=base, timeout=30) as client:
        client.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": csrf(client, "/login")})
        headers = {"X-CSRF-Token": csrf(client, "/")}  # the session's token, fresh after logging in
        # Logging in (argon2, once a day for a person) is not what is measured: the clock starts when all are in.
        window["barrier"].wait()
        time.sleep(rng.uniform(0, think))  # people do not all arrive in the same instant
        while time.monotonic() < window["until"]:
            rid = shared if rng.random() < 0.3 else own
            tally.timed(client, "page /recordings/{id}", "GET", f"/recordings/{rid}")
            pause()
            segments = tally.timed(
                client, "GET /api/recordings/{id}/segments", "GET", f"/api/recordings/{rid}/segments"
            ).json()
            for seg in rng.sample(segments, 3):
                for annotation in seg["annotations"]:
                    status = rng.choice(["accepted", "rejected"])
                    response = tally.timed(
                        client,
                        "PATCH /api/annotations/{id}",
                        "PATCH",
                        f"/api/annotations/{annotation['id']}",
                        json={"status": status, "version": annotation["version"]},
                        headers=headers,
                    )
                    if response.status_code == 200:
                        body = response.json()
                        tally.wrote(tally.decisions, body["id"], body["version"], body["status"])
                    pause()
                text = f"{seg['text'].split(' /')[0]} / corrected by {name} at {time.monotonic():.6f}"
                response = tally.timed(
                    client,
                    "PATCH /api/segments/{id}",
                    "PATCH",
                    f"/api/segments/{seg['id']}",
                    json={"text": text, "version": seg["version"]},
                    headers=headers,
                )
                if response.status_code == 200:
                    tally.wrote(tally.texts, seg["id"], response.json()["version"], text)
                pause()
            tally.timed(client, "GET /api/search", "GET", "/api/search", params={"q": rng.choice(WORDS), "limit": 20})
            if rng.random() < 0.2:
                tally.timed(client, "page /", "GET", "/")


def csrf(client: httpx.Client, path: str) -> str:
    html = client.get(path).text
    return html.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--segments", type=int, default=60, help="segments per recording")
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between one annotator's actions")
    parser.add_argument("--db", help="an empty database URL (default: SQLite in a temp folder)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ohp-bench-web-"))
    url = args.db or f"sqlite:///{folder / 'ohp.db'}"
    with Store(url) as store:
        ids = seed(store, folder, args.users + 1, args.segments)
        for i in range(args.users):
            store.add_user(f"annotator{i:02d}", PASSWORD, "annotator")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from pipeline.cli import app; app()",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            url,
        ],
        env={**os.environ, "OHP_SECRET": "bench-secret"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(base + "/login", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        tally = Tally()
        window: dict = {}

        def start_clock() -> None:
            window["started"] = time.monotonic()
            window["until"] = window["started"] + args.seconds

        window["barrier"] = threading.Barrier(args.users, action=start_clock)
        threads = [
            threading.Thread(
                target=annotator, args=(base, f"annotator{i:02d}", ids[i + 1], ids[0], window, args.think, tally, i)
            )
            for i in range(args.users)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - window["started"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    report(tally, elapsed, url, args)


def report(tally: Tally, elapsed: float, url: str, args: argparse.Namespace) -> None:
    total = sum(len(v) for v in tally.latency.values())
    print(
        f"{args.users} annotators, {elapsed:.0f} s, think {args.think} s, "
        f"{args.segments} segments per recording, {url.split(':')[0]}: "
        f"{total} requests, {total / elapsed:.0f} requests/s"
    )
    print(f"{'route':36} {'count':>6} {'req/s':>6} {'median ms':>9} {'p95 ms':>7}  statuses")
    worst_read = 0.0
    for route, times in sorted(tally.latency.items()):
        p95 = statistics.quantiles(times, n=20)[-1] * 1000 if len(times) > 1 else times[0] * 1000
        if route in READS:
            worst_read = max(worst_read, p95)
        statuses = " ".join(f"{code}:{n}" for code, n in sorted(tally.status[route].items()))
        print(
            f"{route:36} {len(times):6} {len(times) / elapsed:6.1f} "
            f"{statistics.median(times) * 1000:9.1f} {p95:7.1f}  {statuses}"
        )
    with Store(url) as store:
        stored_status = {a.id: a.status for a in store.annotations()}
        lost_decisions = [aid for aid, (_, status) in tally.decisions.items() if stored_status.get(aid) != status]
        texts = {}
        for rec in store.list_recordings():
            texts.update({s.id: s.text for s in store.segments(rec.id)})
        lost_texts = [sid for sid, (_, text) in tally.texts.items() if texts.get(sid) != text]
        corrections = sum(
            1 for rec in store.list_recordings() for h in store.history(recording_id=rec.id) if h.action == "corrected"
        )
    ok_corrections = tally.status["PATCH /api/segments/{id}"].get(200, 0)
    print(
        f"decisions checked: {len(tally.decisions)} annotations, lost {len(lost_decisions)}; "
        f"corrections checked: {len(tally.texts)} segments, lost {len(lost_texts)}; "
        f"corrections in history {corrections} of {ok_corrections} accepted"
    )
    print(f"worst p95 of page and API reads: {worst_read:.0f} ms (target < 200 ms)")
    if lost_decisions or lost_texts or corrections != ok_corrections:
        sys.exit(1)


if __name__ == "__main__":
    main()
