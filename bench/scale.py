"""One batch through the single-process `ohp run` and through `ohp run --ray local` with 1 and 2 workers.

The batch: every corpus recording of 10 s or more and the two long-form ones, by path (over ten minutes of
audio), transcribed only (--speakers off --no-tag: the recogniser is what is spread). Each configuration
runs as its own `ohp run` process on a fresh SQLite database and a fresh model cache (the weights linked,
no half-done transcripts to resume from), one after the other in the same run, Ray's workers at the single
process's priority. Measured: wall time, audio seconds per wall second, the peak resident memory of each
process of the run (the driver, Ray's own processes, each worker) and of them all at once, their CPU
seconds (which, unlike wall time, hardly depend on what else the machine runs), the load before and after,
and for Ray its start-up: connecting (starting a local Ray) and the workers answering, from the driver's log.

    python bench/scale.py [--workers 1 2] [--limit N] [--skip-single] [--keep DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
LONG_FORM = ["longform_zh_dev.wav", "longform_dialect_dev.wav"]


def batch(limit: int | None) -> tuple[list[Path], float]:
    """The recordings and their seconds of audio in all."""
    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if float(r["duration_s"] or 0) >= 10]
    files = [CORPUS / name for name in LONG_FORM] + [CORPUS / r["file"] for r in rows]
    from pipeline.stages.audio import probe

    files = files[:limit] if limit else files
    return files, sum(probe(f).duration for f in files)


class Memory:
    """Peak resident memory of a process and everything under it, sampled every 0.2 s: per process (by its
    role: driver, a worker, or Ray's own) and of them all at once."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak_total = 0
        self.peaks: dict[int, tuple[str, int]] = {}
        self.cpu: dict[int, tuple[str, float]] = {}  # CPU seconds (user and system) of each, as last seen
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        while not self.stopped.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for p in processes:
                try:
                    rss, name = p.memory_info().rss, " ".join(p.cmdline())  # a worker's: ray::Recogniser...
                    cpu = p.cpu_times()
                except psutil.Error:
                    continue
                was = self.peaks.get(p.pid, ("", 0))[0]  # a worker exiting has no command line any more
                role = "driver" if p.pid == self.root.pid else "worker" if "Recogniser" in name else was or "other"
                role = "ray" if role == "other" and "ray" in name else role  # else ffmpeg, decoding
                total += rss
                self.peaks[p.pid] = (role, max(rss, self.peaks.get(p.pid, ("", 0))[1]))
                self.cpu[p.pid] = (role, cpu.user + cpu.system)
            self.peak_total = max(self.peak_total, total)
            time.sleep(0.2)

    def stop(self) -> dict:
        self.stopped.set()
        self.thread.join()
        by_role: dict[str, list[int]] = defaultdict(list)
        for role, rss in self.peaks.values():
            by_role[role].append(rss)
        mb = 1 << 20
        cpu: dict[str, float] = defaultdict(float)
        for role, seconds in self.cpu.values():
            cpu[role] += seconds
        return {
            "cpu_s": dict(cpu),  # by role; the processes' own, those that ended before a sample are missed
            "driver_mb": max(by_role["driver"], default=0) / mb,
            "worker_mb": [round(r / mb) for r in sorted(by_role["worker"], reverse=True)],
            "ray_mb": sum(by_role["ray"]) / mb,  # Ray's own processes (gcs, raylet, idle workers), each at its peak
            "total_mb": self.peak_total / mb,
        }


def uptime() -> str:
    """The machine's load as `uptime` tells it (other processes share the cores)."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def load(uptime: str) -> str:
    """The load averages of an `uptime` line."""
    return uptime.rsplit("load average: ", 1)[-1]


def run(label: str, files: list[Path], scratch: Path, extra: list[str]) -> dict:
    folder = scratch / label
    home = folder / "home"
    home.mkdir(parents=True)
    from pipeline.config import Config

    (home / "models").symlink_to(Config.load().home / "models")
    report, log = folder / "report.json", folder / "ohp.log"
    command = [sys.executable, "-c", "from pipeline.cli import app; app()", "--log-file", str(log), "run"]
    command += [*map(str, files), "--db", f"sqlite:///{folder / 'ohp.db'}", "--out", str(folder / "out")]
    command += ["--speakers", "off", "--no-tag", "--report", str(report), *extra]
    # Ray starts its workers at nice 15 (its worker_niceness) so that its own processes stay responsive; on a
    # machine that others share that makes them yield to everything. They run at the single process's
    # priority here, so that the runs compare ohp and Ray, not priorities.
    env = {**os.environ, "PYTHONPATH": str(REPO), "OHP_HOME": str(home), "RAY_worker_niceness": "0"}
    load_before = uptime()
    print(f"{label}: starting; uptime: {load_before}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    memory = Memory(process.pid)
    _, errors = process.communicate()
    wall = time.perf_counter() - started
    figures = memory.stop()
    figures.update(load_before=load_before, load_after=uptime())
    if process.returncode != 0:
        raise SystemExit(f"{label}: ohp run failed ({process.returncode}): {errors}")
    results = json.loads(report.read_text(encoding="utf-8"))["files"]
    figures.update(label=label, wall=wall, audio=sum(f["duration"] for f in results))
    text = log.read_text(encoding="utf-8")
    connected = re.search(r"connected in ([\d.]+) s", text)
    if connected:
        stamps = [line[:23] for line in text.splitlines() if "ready (pid" in line]
        first = datetime.datetime.strptime(text[:23], "%Y-%m-%d %H:%M:%S,%f")
        ready = [datetime.datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in stamps]
        figures["ray_connect"] = float(connected[1])
        figures["workers_ready"] = (max(ready) - first).total_seconds() if ready else None
        per_worker: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for f in results:
            per_worker[f["worker"]][0] += f["duration"]
            per_worker[f["worker"]][1] += f["seconds"]
        figures["per_worker"] = {w: round(a / s, 2) for w, (a, s) in per_worker.items()}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--limit", type=int, help="only the first N recordings (a quick try)")
    parser.add_argument("--keep", type=Path, help="keep each run's database, log and report in this new folder")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--skip-single", action="store_true", help="only the Ray runs")
    options = parser.parse_args()
    files, audio = batch(options.limit)
    print(f"{len(files)} recordings, {audio:.1f} s of audio; uptime: {uptime()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ohp-scale-") as folder:
        scratch = options.keep or Path(folder)
        configurations = [("single process", [])] * (not options.skip_single) + [
            (f"ray, {n} worker{'s' if n > 1 else ''}", ["--ray", "local", "--workers", str(n)]) for n in options.workers
        ]
        for label, extra in configurations:
            rows.append(run(label, files, scratch, extra))
            print(rows[-1], flush=True)
            if options.json:
                options.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(f"uptime after: {uptime()}")
    print(
        "| run | wall s | audio s / s | Ray start s | workers ready s | audio s / s per worker"
        " | peak MB: driver | each worker | Ray's own | all | CPU s: driver, workers | load average before, after |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---|---:|---:|---|---|")
    for r in rows:
        ray_start = f"{r['ray_connect']:.1f}" if "ray_connect" in r else "-"
        ready = f"{r['workers_ready']:.1f}" if r.get("workers_ready") else "-"
        per_worker = ", ".join(f"{v}" for v in r.get("per_worker", {}).values()) or "-"
        workers = ", ".join(map(str, r["worker_mb"])) or "-"
        print(
            f"| {r['label']} | {r['wall']:.1f} | {r['audio'] / r['wall']:.2f} | {ray_start} | {ready} | {per_worker}"
            f" | {r['driver_mb']:.0f} | {workers} | {r['ray_mb']:.0f} | {r['total_mb']:.0f}"
            f" | {r['cpu_s'].get('driver', 0):.0f}, {r['cpu_s'].get('worker', 0):.0f}"
            f" | {load(r['load_before'])}; {load(r['load_after'])} |"
        )


if __name__ == "__main__":
    main()
