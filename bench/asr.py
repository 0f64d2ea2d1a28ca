"""ohp against faster-whisper and openai-whisper on interview-like long-forms: time, accuracy, text in the gaps.

    python bench/make_longform_en.py     # once: builds bench/out/longform_en_dev.wav
    python bench/asr.py                  # every system on the three long-forms
    python bench/asr.py --long           # also ohp on a 2-hour recording (bench/make_interview_2h.py)
    python bench/asr.py --systems ohp fw-batched --repeats 1
    python bench/asr.py --systems ohp fw-vad fw-batched --ohp-repeats 3   # ohp's time as a median too
    python bench/asr.py --systems ohp --files zh --ohp-args="--batch-size 8"   # ohp with other options
    python bench/asr.py --systems ohp --ohp-repo ../../main                   # another checkout's ohp

Each run is a fresh process timed whole, from its start to its exit (start-up, model load, decoding, and for
ohp the database and the transcript files), on the same Whisper base weights (pipeline/weights.py). Sampling
makes single runs noisy, so the faster-whisper peers run --repeats times (median and range); plain
openai-whisper once (it takes many minutes). The runs go round the systems and files in turn, a round per
repeat, so that a change in the machine's load falls on every system alike. Results go to bench/out/asr.json;
copy the table into bench/RESULTS.md. CER: Chinese after converting both texts to simplified, English after Whisper's
EnglishTextNormalizer (numbers, spellings, contractions written one way, as the Whisper paper scores), for
every system alike; raw CER without either (English's CER before 2026-11-30's fourth round); both on
characters without punctuation or spaces. "missed" is the share of the reference's characters a system left out
(deletions in the alignment behind the CER): a system that skips speech writes fewer tokens, so it is faster for
it, and this column shows how much.

Systems:
  ohp            `ohp run --speakers off --no-tag` with its defaults (batched faster-whisper, guards)
  ohp-full       `ohp run` with everything on (speakers and theme tagging too)
  fw-vad         faster-whisper's WhisperModel.transcribe(vad_filter=True, beam_size=5), int8 on the CPU
  fw-vad-independent  the same with condition_on_previous_text=False: each window not conditioned on the text
                 before it, as ohp decodes its chunks (not run unless named)
  fw-vad-words   fw-vad with word_timestamps=True: word times, as ohp always writes them (not run unless named;
                 faster-whisper then moves its windows on from the last word, so its text changes). The
                 characters in the gaps are then placed by word, not spread over a segment that may span a gap
  fw-batched     faster-whisper's BatchedInferencePipeline.transcribe(batch_size=8), int8 on the CPU
  fw-batched-words  the same with word_timestamps=True (not run unless named)
  plain-openai   openai-whisper's transcribe() on the whole file with the `whisper` command's defaults
                 (beam 5, best of 5, temperature fallback, conditioning on previous text)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpus"
OUT = REPO / "bench" / "out"
FILES = (CORPUS / "longform_zh_dev.wav", CORPUS / "longform_dialect_dev.wav", OUT / "longform_en_dev.wav")
SYSTEMS = (
    "ohp",
    "ohp-full",
    "fw-vad",
    "fw-vad-independent",
    "fw-vad-words",
    "fw-batched",
    "fw-batched-words",
    "plain-openai",
)
NAMED_ONLY = ("fw-vad-independent", "fw-vad-words", "fw-batched-words")  # run only when --systems names them
REPEATED = tuple(s for s in SYSTEMS if s.startswith("fw-"))  # sampled peers: run --repeats times
LONG = Path("/tmp/ohp-bench/interview_2h.wav")  # made by bench/make_interview_2h.py
OHP_CLI = (sys.executable, "-c", "from pipeline.cli import app; app()")  # the `ohp` command
GAP_MARGIN = 0.25  # s inside a gap's edges that still counts as the clip (reference times are not exact)


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _segments(segments) -> list[dict]:
    return [
        {
            "start": s.start,
            "end": s.end,
            "text": s.text,
            "words": [[w.start, w.end, w.word] for w in s.words or []],
        }
        for s in segments
    ]


def worker(system: str, path: Path) -> dict:
    """Run a peer on one file, in this process: its segments and peak memory."""
    from pipeline.config import Config
    from pipeline.stages.engines import EngineName
    from pipeline.utils import usable_cores
    from pipeline.weights import resolve_model

    home = Config.load().home
    if system == "plain-openai":
        from pipeline.stages.audio import decode, probe
        from pipeline.weights import load_openai_whisper

        model = load_openai_whisper("base", home, "cpu")
        result = model.transcribe(decode(probe(path)).samples, beam_size=5, best_of=5, fp16=False, verbose=None)
        segments = [
            {"start": s["start"], "end": s["end"], "text": s["text"].strip(), "words": []} for s in result["segments"]
        ]
    else:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        model = WhisperModel(
            resolve_model("base", EngineName.FASTER_WHISPER, home),
            "cpu",
            compute_type="int8",
            cpu_threads=usable_cores(),
        )
        if system.startswith("fw-vad"):
            found, _ = model.transcribe(
                str(path),
                beam_size=5,
                vad_filter=True,
                # faster-whisper's default; ohp decodes each chunk on its own
                condition_on_previous_text=system != "fw-vad-independent",
                word_timestamps=system.endswith("-words"),
            )
        else:
            found, _ = BatchedInferencePipeline(model).transcribe(
                str(path), batch_size=8, word_timestamps=system.endswith("-words")
            )
        segments = _segments(list(found))
    return {"segments": segments, "peak_mb": peak_mb()}


def _ohp_segments(document: dict) -> list[dict]:
    return [
        {
            "start": s["start"],
            "end": s["end"],
            "text": s["text"],
            "words": [[w["start"], w["end"], w["text"]] for w in s.get("words", [])],
        }
        for s in document["segments"]
    ]


def normalise(text: str, simplify: bool) -> str:
    from pipeline.script import to_simplified

    text = re.sub(r"[\W_]+", "", text.lower())
    return to_simplified(text) if simplify else text


def cer(hypothesis: str, reference: str) -> float:
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(hypothesis, reference) / max(1, len(reference))


def missed_characters(hypothesis: str, reference: str) -> int:
    """The reference's characters the hypothesis leaves out: the insertions that turn it into the reference, in
    one alignment of least edits."""
    from rapidfuzz.distance import Levenshtein

    return sum(op.tag == "insert" for op in Levenshtein.editops(hypothesis, reference))


def missed(hypothesis: str, reference: str) -> float:
    """The share of the reference's characters the hypothesis leaves out (`missed_characters`)."""
    return missed_characters(hypothesis, reference) / max(1, len(reference))


def gap_characters(segments: list[dict], reference: list[dict], duration: float) -> int:
    """Characters written where the reference has no speech: at word midpoints where words have times,
    else spread evenly over the segment."""
    clips = [(c["start"] - GAP_MARGIN, c["end"] + GAP_MARGIN) for c in reference]

    def in_gap(t: float) -> bool:
        return 0 <= t <= duration and not any(a <= t <= b for a, b in clips)

    count = 0
    for s in segments:
        if s["words"]:
            pieces = [((a + b) / 2, text) for a, b, text in s["words"]]
        else:
            chars = normalise(s["text"], False)
            step = (s["end"] - s["start"]) / max(1, len(chars))
            pieces = [(s["start"] + (i + 0.5) * step, c) for i, c in enumerate(chars)]
        count += sum(len(normalise(text, False)) for t, text in pieces if in_gap(t))
    return count


def reference_of(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))


def english(text: str) -> str:
    """English as the Whisper paper and the leaderboards score it: Whisper's EnglishTextNormalizer writes numbers,
    spellings and contractions one way ("eighteen thirteen" and "1813" both become 1813)."""
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()(text)


def score(segments: list[dict], path: Path) -> dict:
    """CER (Chinese in simplified; English after Whisper's English normaliser, for every system alike), raw CER
    (neither: what a reader sees; English's CER before 2026-11-30's fourth round) and characters in the gaps."""
    reference = reference_of(path)
    ref_text = " ".join(c["text"] for c in reference["segments"])
    hyp_text = " ".join(s["text"] for s in sorted(segments, key=lambda s: s["start"]))
    language = "en" if all(c.get("language") == "en" for c in reference["segments"]) else "zh"
    if language == "en":
        ref_scored, hyp_scored = normalise(english(ref_text), False), normalise(english(hyp_text), False)
    else:
        ref_scored, hyp_scored = normalise(ref_text, True), normalise(hyp_text, True)
    return {
        "language": language,  # how it was scored
        "characters": len(ref_scored),  # the reference's, as scored: the CER's and missed's denominator
        "cer": cer(hyp_scored, ref_scored),
        "raw_cer": cer(normalise(hyp_text, False), normalise(ref_text, False)),
        "missed": missed(hyp_scored, ref_scored),
        "gap_chars": gap_characters(segments, reference["segments"], reference["duration_s"]),
    }


def run_system(
    system: str,
    path: Path,
    scored: bool = True,
    ohp_repo: Path = REPO,
    ohp_args: Sequence[str] = (),
    ohp_cli: Sequence[str] = OHP_CLI,
) -> dict:
    """One fresh process: its wall time from start to exit, peak memory, and the score of what it wrote. ohp
    runs from `ohp_repo` (this checkout by default) with `ohp_args` added to its command, `ohp_cli` the command
    (another script may stand in for `ohp`)."""
    env = {**os.environ, "PYTHONPATH": str(ohp_repo if system.startswith("ohp") else REPO)}
    with tempfile.TemporaryDirectory(prefix="ohp-asr-") as folder:
        if system.startswith("ohp"):
            extra = [*(["--speakers", "off", "--no-tag"] if system == "ohp" else []), *ohp_args]
            where = ["--db", f"sqlite:///{folder}/ohp.db", "--out", folder, "--format", "json", "--force"]
            where += ["--report", f"{folder}/report.json"]
            command = [*ohp_cli, "run", str(path), *extra, *where]
            command = ["/usr/bin/time", "-f", "%M", *command]  # peak resident KB on stderr's last line
        else:
            command = [sys.executable, __file__, "--worker", system, str(path)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        out = subprocess.run(command, capture_output=True, text=True, check=False, env=env, cwd=folder)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode != 0:
            raise RuntimeError(f"{system} on {path.name} failed:\n{out.stderr[-3000:]}")
        if system.startswith("ohp"):
            document = json.loads((Path(folder) / f"{path.stem}.json").read_text(encoding="utf-8"))
            run = {"segments": _ohp_segments(document), "peak_mb": int(out.stderr.split()[-1]) / 1024}
            [report] = json.loads((Path(folder) / "report.json").read_text(encoding="utf-8"))["files"]
            run["guards"] = report["guards"]  # what the guards removed, and the loops decoded again
        else:
            run = json.loads(out.stdout.splitlines()[-1])
    run["seconds"] = seconds
    # The process's CPU time (user and system): steadier than the wall time on a shared machine.
    run["cpu_seconds"] = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if scored:
        run.update(score(run["segments"], path), audio_seconds=reference_of(path)["duration_s"])
    return run


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def summary(runs: list[dict], key: str, fmt: str) -> str:
    values = [r[key] for r in runs]
    # Counts ("d") take the lower middle value of an even number of runs, as a count is whole.
    median = statistics.median_low(values) if fmt == "d" else statistics.median(values)
    if len(values) == 1:
        return format(median, fmt)
    return f"{format(median, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=2, metavar=("SYSTEM", "FILE"), help=argparse.SUPPRESS)
    default = [s for s in SYSTEMS if s not in NAMED_ONLY]
    parser.add_argument("--systems", nargs="*", choices=SYSTEMS, default=default)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each faster-whisper peer per file")
    parser.add_argument(
        "--ohp-repeats", type=int, default=1, help="runs of ohp per file (its text is the same each time)"
    )
    parser.add_argument("--long", action="store_true", help="also time ohp on a 2-hour recording")
    parser.add_argument("--files", nargs="*", help="only the long-forms whose names contain these (zh, dialect, en)")
    parser.add_argument("--ohp-repo", type=Path, default=REPO, help="the checkout whose ohp runs (default: this)")
    parser.add_argument("--ohp-args", default="", help="options added to ohp's command, e.g. '--batch-size 8'")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.worker[1])), ensure_ascii=False))
        return
    missing = [str(f) for f in FILES if not f.exists()]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (python bench/make_longform_en.py builds the English one)")

    OUT.mkdir(parents=True, exist_ok=True)
    files = [f for f in FILES if not args.files or any(part in f.name for part in args.files)]
    ohp = {"ohp_repo": args.ohp_repo.resolve(), "ohp_args": shlex.split(args.ohp_args)}
    results: dict = {"uptime_before": uptime(), "ohp": {k: str(v) for k, v in ohp.items()}, "runs": {}}
    print(results["uptime_before"])
    print(
        f"{'system':<16} {'file':<25} {'time s':>17} {'CPU s':>17} {'CER':>19} {'raw CER':>8} {'missed':>7} "
        f"{'gap chars':>12} {'peak MB':>8}"
    )
    repeats = {
        s: args.repeats if s in REPEATED else args.ohp_repeats if s.startswith("ohp") else 1 for s in args.systems
    }
    done: dict[tuple[str, str], list[dict]] = {(s, p.name): [] for s in args.systems for p in files}
    for round_ in range(max(repeats.values())):
        for system in args.systems:
            for path in files:
                if round_ < repeats[system]:
                    print(f"round {round_ + 1}: {system} on {path.name}", file=sys.stderr, flush=True)
                    done[system, path.name].append(run_system(system, path, **ohp))
    for system in args.systems:
        for path in files:
            runs = done[system, path.name]
            results["runs"].setdefault(system, {})[path.name] = [
                {k: v for k, v in r.items() if k != "segments"} for r in runs
            ]
            print(
                f"{system:<16} {path.name:<25} {summary(runs, 'seconds', '.1f'):>17} "
                f"{summary(runs, 'cpu_seconds', '.1f'):>17} {summary(runs, 'cer', '.3f'):>19} "
                f"{summary(runs, 'raw_cer', '.3f'):>8} {summary(runs, 'missed', '.2f'):>7} "
                f"{summary(runs, 'gap_chars', 'd'):>12} "
                f"{max(r['peak_mb'] for r in runs):8.0f}",
                flush=True,
            )
    print()
    for system, files in results["runs"].items():
        total = sum(statistics.median(r["seconds"] for r in runs) for runs in files.values())
        cpu = sum(statistics.median(r["cpu_seconds"] for r in runs) for runs in files.values())
        print(f"{system:<16} three files: {total:6.1f} s, {cpu:6.1f} CPU s (medians summed)")
    if args.long:
        long_path = LONG
        if not long_path.exists():
            subprocess.run(
                [sys.executable, str(REPO / "bench" / "make_interview_2h.py"), "--out", str(long_path)], check=True
            )
        run = run_system("ohp", long_path, scored=False, **ohp)
        run["audio_seconds"] = 2 * 3600
        print(
            f"\nohp on {long_path.name}: 2 h of audio in {run['seconds']:.0f} s "
            f"({run['audio_seconds'] / run['seconds']:.1f}x real time, {run['cpu_seconds']:.0f} CPU s), "
            f"peak memory {run['peak_mb']:.0f} MB"
        )
        results["long"] = {k: v for k, v in run.items() if k != "segments"}
    results["uptime_after"] = uptime()
    print(results["uptime_after"])
    (OUT / "asr.json").write_text(json.dumps(results, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
