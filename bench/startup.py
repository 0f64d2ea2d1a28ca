"""How long `ohp` commands take to start: this tree against the commit before the lazy imports.

Each command runs as a fresh process (`python -c "from pipeline.cli import app; app()" ARGS`, the
package taken from the tree under test through PYTHONPATH), in a scratch folder, on an empty SQLite
database; the runs of the two trees alternate so that both see the same load. Printed: the median wall
time of --runs runs per command and tree, after one warm-up run each (bytecode compiled, database made).
`ohp run` on a 4 s corpus clip is the fixed cost of a transcription: imports, the VAD and the recogniser
loaded, the language told, one chunk decoded.

    python bench/startup.py [--runs 5] [--before 49390e1]
    python bench/startup.py --before 2d8563d --commands "ohp run (4 s clip)"
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared/corpus/zh/FireRedTeam_FireRedASR__examples_wav_BAC009S0764W0121.wav"
COMMANDS = {
    "ohp --help": ["--help"],
    "ohp status": ["status", "--db", "{db}"],
    "ohp search 工资": ["search", "工资", "--db", "{db}"],
    "ohp themes": ["themes", "--db", "{db}"],
    "ohp run --help": ["run", "--help"],
    # The fixed cost of transcribing: a 4 s clip, one chunk, the models loaded (run from the corpus when present).
    "ohp run (4 s clip)": ["run", str(CLIP), "--speakers", "off", "--no-tag", "--force", "--db", "{db}"],
}


def start(tree: Path, args: list[str], scratch: Path) -> float:
    """Wall seconds of one `ohp ARGS` from the package in `tree`, as a new process."""
    db = f"sqlite:///{scratch / (tree.name + '.db')}"
    command = [sys.executable, "-c", "from pipeline.cli import app; app()", *(a.format(db=db) for a in args)]
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "120"}
    started = time.perf_counter()
    subprocess.run(command, cwd=scratch, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", default="49390e1", help="the commit to compare with")
    parser.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS), help="default: all")
    options = parser.parse_args()
    if not CLIP.exists():
        options.commands = [name for name in options.commands if CLIP.name not in " ".join(COMMANDS[name])]
    with tempfile.TemporaryDirectory(prefix="ohp-startup-") as folder:
        scratch, before = Path(folder), Path(folder) / "before"
        git = ["git", "-C", str(REPO), "worktree"]
        subprocess.run([*git, "add", "--detach", "--quiet", str(before), options.before], check=True)
        try:
            trees = {"before": before, "after": REPO}
            times: dict[tuple[str, str], list[float]] = {}
            for name in options.commands:
                args = COMMANDS[name]
                for tree in trees.values():
                    start(tree, args, scratch)  # warm-up
                for _ in range(options.runs):
                    for which, tree in trees.items():
                        times.setdefault((name, which), []).append(start(tree, args, scratch))
        finally:
            subprocess.run([*git, "remove", "--force", str(before)], check=True)
    load = " ".join(f"{n:.2f}" for n in os.getloadavg())
    print(f"{datetime.date.today()}, median of {options.runs} fresh processes; load average {load}")
    print(f"\n| command | before ({options.before}) s | after s | faster |\n|---|---:|---:|---:|")
    for name in options.commands:
        was, now = statistics.median(times[name, "before"]), statistics.median(times[name, "after"])
        print(f"| `{name}` | {was:.2f} | {now:.2f} | {was / now:.1f}× |")


if __name__ == "__main__":
    main()
