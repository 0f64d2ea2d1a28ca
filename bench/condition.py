"""Conditioning each chunk on the previous chunk's text: two checkouts of ohp side by side (issue 12).

    python bench/condition.py --base /tmp/base --candidate .            # the long-forms, then every clip
    python bench/condition.py --base /tmp/base --candidate . --no-clips

The base and the candidate are checkouts of ohp (one without conditioning, one with). On the three long-forms
(bench/asr.py's FILES) each runs as a fresh process per file, alternating (bench/asr.py's run_system: time, CPU
time, CER, raw CER, characters in the gaps), with what the guards removed and the loops decoded again from
`ohp run --report`. Then every corpus clip with a Chinese or English reference (MANIFEST.tsv) is decoded as its own
recording, one `ohp run` over all of them per checkout, and the clips whose text differs are listed with their
wrong characters (scored as bench/asr.py scores: Chinese in simplified, English after Whisper's normaliser). Last,
per language, the long-forms and the scored clips together: the wrong characters and the reference's characters
left out (missed), and over everything decoded the loops and guard removals. Results go to
bench/out/condition.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import asr  # bench/asr.py, beside this file

MANIFEST = asr.CORPUS / "MANIFEST.tsv"
# `ohp` run through this script, which appends each recording's decode marks (loops) to the file named by the
# BENCH_MARKS environment variable: the JSON transcript does not carry them.
OHP_CLI = (sys.executable, __file__, "--ohp")


def ohp_counting_marks(argv: list[str]) -> None:
    """`ohp argv...`, counting the marks of each recording's transcript as it is made."""
    sys.path.insert(0, os.environ["PYTHONPATH"])  # the checkout's pipeline, not the one asr.py put first
    import pipeline.process as process
    from pipeline.cli import app

    transcribe_twice = process.transcribe_twice

    def counted(samples, chunks, *args, **kwargs):
        transcript, second = transcribe_twice(samples, chunks, *args, **kwargs)
        marks = Counter(str(mark) for s in transcript.segments for mark in s.marks)
        with open(os.environ["BENCH_MARKS"], "a", encoding="utf-8") as f:
            f.write(json.dumps({"chunks": len(chunks), "marks": marks}) + "\n")
        return transcript, second

    process.transcribe_twice = counted
    app(argv)


def counted_marks(run) -> dict:
    """The marks counted while `run()` ran ohp, summed over its recordings."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as f:
        os.environ["BENCH_MARKS"] = f.name
        result = run()
        lines = [json.loads(line) for line in Path(f.name).read_text(encoding="utf-8").splitlines()]
    return result, {
        "chunks": sum(line["chunks"] for line in lines),
        "marks": dict(sum((Counter(line["marks"]) for line in lines), Counter())),
        "per_recording": lines,
    }


def clips() -> list[dict]:
    """The corpus clips with a Chinese or English reference."""
    with MANIFEST.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [
        r
        for r in rows
        if r["reference_transcript"].strip() and r["language"].split(" ")[0].split("_")[0] in ("zh", "en")
    ]


def errors(text: str, row: dict) -> tuple[int, int, int]:
    """Wrong characters of `text` against the clip's reference, the reference's characters it leaves out, and the
    reference's characters."""
    from rapidfuzz.distance import Levenshtein

    reference = row["reference_transcript"]
    if row["language"].startswith("en"):
        hypothesis, reference = asr.normalise(asr.english(text), False), asr.normalise(asr.english(reference), False)
    else:
        hypothesis, reference = asr.normalise(text, True), asr.normalise(reference, True)
    return Levenshtein.distance(hypothesis, reference), asr.missed_characters(hypothesis, reference), len(reference)


def run_clips(repo: Path, rows: list[dict]) -> dict:
    """One `ohp run --speakers off --no-tag` over every clip (links to the corpus): each clip's text and guards."""
    with tempfile.TemporaryDirectory(prefix="ohp-condition-") as folder:
        audio = Path(folder) / "a"
        for row in rows:
            link = audio / row["file"]
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(asr.CORPUS / row["file"])
        command = [*OHP_CLI, "run", str(audio)]
        command += ["--speakers", "off", "--no-tag", "--db", f"sqlite:///{folder}/ohp.db", "--out", f"{folder}/t"]
        command += ["--format", "json", "--force", "--report", f"{folder}/report.json"]
        started = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(repo)}
        subprocess.run(command, check=True, capture_output=True, env=env, cwd=folder)  # no vocabulary file there
        seconds = time.perf_counter() - started
        report = json.loads(Path(folder, "report.json").read_text(encoding="utf-8"))
        found = {}
        for entry in report["files"]:
            document = json.loads(Path(folder, "t", f"{Path(entry['path']).stem}.json").read_text(encoding="utf-8"))
            text = " ".join(s["text"] for s in document["segments"])
            clip = str(Path(entry["path"]).resolve().relative_to(asr.CORPUS.resolve()))
            found[clip] = {"text": text, "guards": entry["guards"]}
    return {"seconds": seconds, "clips": found}


def language_totals(results: dict) -> dict:
    """Per language (zh, en), over the long-forms and the scored clips together, the reference's characters and
    each checkout's wrong and missed ones; and per checkout, over everything decoded, the segments marked `loop`
    and what the guards removed."""
    totals: dict[str, Counter] = {"zh": Counter(), "en": Counter(), "loops+guards": Counter()}
    for runs in results.get("longforms", {}).values():
        for name, run in runs.items():
            total = totals[run["language"]]
            total["characters"] += run["characters"] if name == "base" else 0
            total[f"{name} wrong"] += round(run["cer"] * run["characters"])
            total[f"{name} missed"] += round(run["missed"] * run["characters"])
            totals["loops+guards"][name] += run["marks"].get("loop", 0) + sum(run["guards"].values())
    for language, clip_total in results.get("clip_totals", {}).items():
        totals[language]["characters"] += clip_total["characters"]
        for name in ("base", "candidate"):
            totals[language][f"{name} wrong"] += clip_total[name]
            totals[language][f"{name} missed"] += clip_total[f"{name} missed"]
    for name, run in results.get("clips", {}).items():
        guards = sum(sum(clip["guards"].values()) for clip in run["clips"].values())
        totals["loops+guards"][name] += run["marks"].get("loop", 0) + guards
    return {key: dict(total) for key, total in totals.items()}


def main() -> None:
    if sys.argv[1:2] == ["--ohp"]:
        ohp_counting_marks(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="the checkout without conditioning")
    parser.add_argument("--candidate", type=Path, required=True, help="the checkout with conditioning")
    parser.add_argument("--files", nargs="*", help="only the long-forms whose names contain these (zh, dialect, en)")
    parser.add_argument("--no-clips", action="store_true", help="the long-forms only")
    parser.add_argument("--no-longforms", action="store_true", help="the clips only")
    parser.add_argument("--long", action="store_true", help="also the 2-hour recording (loops and guards, no CER)")
    args = parser.parse_args()
    repos = {"base": args.base.resolve(), "candidate": args.candidate.resolve()}
    results: dict = {"uptime_before": asr.uptime(), "repos": {k: str(v) for k, v in repos.items()}}
    print(results["uptime_before"])
    files = [f for f in asr.FILES if not args.files or any(part in f.name for part in args.files)]
    for path in [] if args.no_longforms else files:
        for name, repo in repos.items():
            run, marks = counted_marks(
                lambda path=path, repo=repo: asr.run_system("ohp", path, ohp_repo=repo, ohp_cli=OHP_CLI)
            )
            run.update(chunks=marks["chunks"], marks=marks["marks"])
            results.setdefault("longforms", {}).setdefault(path.name, {})[name] = run
            print(
                f"{name:<10} {path.name:<25} {run['seconds']:6.1f} s {run['cpu_seconds']:6.1f} CPU s "
                f"CER {run['cer']:.3f} raw {run['raw_cer']:.3f} gaps {run['gap_chars']} guards {run['guards']} "
                f"chunks {run['chunks']} marks {run['marks']}",
                flush=True,
            )
    if args.long:  # bench/asr.py --long makes it
        for name, repo in repos.items():
            run, marks = counted_marks(
                lambda repo=repo: asr.run_system("ohp", asr.LONG, scored=False, ohp_repo=repo, ohp_cli=OHP_CLI)
            )
            text = " ".join(s["text"] for s in run.pop("segments"))
            results.setdefault("long", {})[name] = {
                **run,
                "chunks": marks["chunks"],
                "marks": marks["marks"],
                "text": text,
            }
            print(
                f"{name:<10} {asr.LONG.name}: {run['seconds']:.0f} s {run['cpu_seconds']:.0f} CPU s "
                f"guards {run['guards']} chunks {marks['chunks']} marks {marks['marks']}",
                flush=True,
            )
    if not args.no_clips:
        rows = clips()
        runs = {}
        for name, repo in repos.items():
            runs[name], marks = counted_marks(lambda repo=repo: run_clips(repo, rows))
            runs[name].update(chunks=marks["chunks"], marks=marks["marks"])
            guards = sum((Counter(clip["guards"]) for clip in runs[name]["clips"].values()), Counter())
            print(f"{name}: {runs[name]['seconds']:.1f} s, {marks['chunks']} chunks, marks {marks['marks']}", end="")
            print(f", guards {dict(guards)}")
        results["clips"] = runs
        totals: dict[str, Counter] = {}
        for row in rows:
            texts = {name: run["clips"][row["file"]]["text"] for name, run in runs.items()}
            group = "en" if row["language"].startswith("en") else "zh"
            scored = {name: errors(text, row) for name, text in texts.items()}
            if not scored["base"][2]:  # a reference that only describes the audio ("-", "see ...")
                continue
            total = totals.setdefault(group, Counter())
            total["clips"] += 1
            total["characters"] += scored["base"][2]
            for name, (wrong, missed, _) in scored.items():
                total[name] += wrong
                total[f"{name} missed"] += missed
            if texts["base"] != texts["candidate"]:
                total["changed"] += 1
                for name, (wrong, _, _) in scored.items():
                    total[f"{name} changed"] += wrong
                print(f"changed: {row['file']} ({row['language']}): {scored['base'][0]} -> {scored['candidate'][0]}")
                print(f"   base:      {texts['base']}\n   candidate: {texts['candidate']}")
        for group, total in totals.items():
            print(f"{group}: {dict(total)}")
        results["clip_totals"] = {group: dict(total) for group, total in totals.items()}
    results["languages"] = language_totals(results)
    for key, total in results["languages"].items():
        print(f"{key}, long-forms and clips: {total}")
    results["uptime_after"] = asr.uptime()
    print(results["uptime_after"])
    for runs in results.get("longforms", {}).values():
        for run in runs.values():
            run["text"] = " ".join(s["text"] for s in run.pop("segments"))
    asr.OUT.mkdir(parents=True, exist_ok=True)
    (asr.OUT / "condition.json").write_text(json.dumps(results, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
