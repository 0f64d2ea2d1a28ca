"""The attacks of issue #15 against a live `ohp serve` on loopback: prints tried / held for each.

    python bench/attacks.py [--db URL]

Prepares a database (SQLite in a temp folder unless --db names an empty one) as tests/attacks.py does:
users, an interview, x.js and x.html imported as transcripts without audio, a closed recording. Starts
`ohp serve` on a free 127.0.0.1 port (PYTHONPATH: this tree), and runs every attack of tests/attacks.py
over HTTP, restarting the server where an attack needs it (sessions across restarts; a server behind a
trusted proxy; --secure-cookies). Then the throttling attacks, which wait as a real attacker would
(about 30 s), and the hostile inputs that do not need the server (point 4's imports, a FIFO). Traffic
goes to 127.0.0.1 only, a bounded number of requests.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import attacks  # noqa: E402  (tests/attacks.py)

from pipeline.formats.readers import MAX_BYTES, TranscriptFormatError, read_limited  # noqa: E402
from pipeline.imports import import_file  # noqa: E402
from pipeline.store import Store  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`ohp serve` over the database, on loopback, started again with other flags on request."""

    def __init__(self, url: str, home: Path) -> None:
        self.url, self.home, self.port = url, home, free_port()
        self.process: subprocess.Popen | None = None

    def start(self, *flags: str) -> None:
        self.stop()
        env = {**os.environ, "PYTHONPATH": str(REPO), "OHP_SECRET": "bench-secret", "OHP_HOME": str(self.home)}
        command = [sys.executable, "-c", "from pipeline.cli import app; app()", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--db", self.url, *flags], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(600):
            try:
                httpx.get(f"{self.base}/login", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("ohp serve did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def hostile_json(folder: Path) -> None:
    """4. An ohp JSON with "end": Infinity imported and broke every page (in main: tests/test_hostile_imports.py)."""
    path = folder / "infinite.json"
    path.write_text('{"segments": [{"start": 0, "end": Infinity, "text": "x"}]}')
    with Store(f"sqlite:///{folder / 'imports.db'}") as store:
        try:
            import_file(path, store)
        except TranscriptFormatError as e:
            assert "infinite.json" in str(e), str(e)
            return
    raise AssertionError("imported")


def fifo_size(folder: Path) -> None:
    """6. A FIFO skipped the size limit."""
    fifo = folder / "endless.srt"
    os.mkfifo(fifo)

    def write() -> None:
        try:
            with open(fifo, "wb") as f:
                for _ in range(MAX_BYTES // (1024 * 1024) + 2):
                    f.write(b"\0" * 1024 * 1024)
        except BrokenPipeError:
            pass  # the reader stopped at the limit

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.2)  # the writer opens the FIFO first: ohp opens it without blocking
    try:
        read_limited(fifo, "a transcript file")
    except TranscriptFormatError:
        return
    finally:
        writer.join(30)
    raise AssertionError("read whole")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="an empty database (default: SQLite in a temp folder)")
    args = parser.parse_args()
    rows: list[tuple[str, bool, float, str]] = []

    def attempt(name: str, attack: Callable[[], object], note: Callable[[], str] = lambda: "") -> None:
        began = time.perf_counter()
        try:
            attack()
            held, why = True, note()
        except AssertionError as e:
            held, why = False, str(e)[:80]
        rows.append((name, held, time.perf_counter() - began, why))
        print(f"{name:<58} tried  {'held' if held else 'NOT HELD'}  {rows[-1][2]:6.1f} s  {why}", flush=True)

    with tempfile.TemporaryDirectory(prefix="ohp-attacks-") as tmp:
        folder = Path(tmp)
        url = args.db or f"sqlite:///{folder / 'ohp.db'}"
        with Store(url) as store:
            ids = attacks.prepare(store, folder)
        server = Server(url, folder / "home")
        server.start()
        site = attacks.Site(lambda: httpx.Client(base_url=server.base, timeout=180), ids, restart=server.start)
        try:
            for name, attack in attacks.ATTACKS.items():
                attempt(name, lambda attack=attack: attack(site))
            server.start()  # the throttle's memory afresh for each of the throttling attacks
            before = server.rss_mb()
            attempt(
                "3 forty 900 KB names",
                lambda: attacks.long_names(site),
                lambda: f"server RSS {before:.0f} -> {server.rss_mb():.0f} MB",
            )
            server.start()
            attempt("3 twenty guesses in parallel", lambda: attacks.parallel_guesses(site))
            attempt("3 own login resets the victim's counter", lambda: attacks.own_login_resets_nothing(site))
            server.start()
            attempt("3 X-Forwarded-For spray from loopback", lambda: attacks.forwarded_for_spray(site))
            server.start("--trusted-proxies", "127.0.0.1")
            attempt("6 session cookie over HTTPS behind a trusted proxy", lambda: attacks.cookies_over_https(site))
            server.start("--secure-cookies")
            attempt(
                "6 --secure-cookies",
                lambda: assert_secure(httpx.get(f"{server.base}/login").headers.get("set-cookie", "")),
            )
        finally:
            server.stop()
        attempt("4 JSON with Infinity imported", lambda: hostile_json(folder))
        attempt("6 a FIFO past the size limit", lambda: fifo_size(folder))
    held = sum(row[1] for row in rows)
    print(f"\n{len(rows)} attacks tried, {held} held")
    print(json.dumps([{"attack": n, "held": h, "seconds": round(s, 2), "note": w} for n, h, s, w in rows]))
    sys.exit(0 if held == len(rows) else 1)


def assert_secure(cookie: str) -> None:
    assert "; secure" in cookie.lower(), cookie


if __name__ == "__main__":
    main()
