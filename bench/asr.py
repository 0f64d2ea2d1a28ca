"""Accuracy, speed and memory of ohp's transcription on the interview-like corpus recordings.

    python bench/asr.py            # ohp (both engines), plain openai-whisper, clips alone
    python bench/asr.py --long     # also a 2-hour recording made by repeating longform_zh_dev.wav
    python bench/asr.py --systems ohp clips-alone

Each system runs in its own process so its peak memory (VmHWM) is its own. Figures print side by side;
results go to bench/out/asr.json. Copy the table into bench/RESULTS.md.

Systems:
  ohp            the pipeline as `ohp run` runs it: decode, silero-vad chunks, faster-whisper, guards
  ohp-openai     the same pipeline with the openai-whisper engine
  plain-openai   openai-whisper's transcribe() on the whole file with the `whisper` command's defaults
                 (beam 5, best of 5, temperature fallback, conditioning on previous text), same weights
  clips-alone    each reference clip transcribed on its own (the reference's own times as chunks):
                 the best this model can do on these clips
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpus"
OUT = REPO / "bench" / "out"
FILES = ("longform_zh_dev.wav", "longform_dialect_dev.wav")
SYSTEMS = ("ohp", "ohp-openai", "plain-openai", "clips-alone")
GAP_MARGIN = 0.25  # s inside a gap's edges that still counts as the clip (reference times are not exact)


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _segments(segments) -> list[dict]:
    return [
        {"start": s.start, "end": s.end, "text": s.text, "words": [[w.start, w.end, w.text] for w in s.words]}
        for s in segments
    ]


def worker(system: str, path: Path) -> dict:
    """Run one system on one file, in this process; return its segments and figures."""
    from pipeline.config import Config
    from pipeline.records import Chunk, SpeechRegion
    from pipeline.stages.audio import decode, probe
    from pipeline.stages.engines import load_engine
    from pipeline.stages.segment import segment
    from pipeline.stages.transcribe import TranscribeOptions, transcribe

    home = Config.load().home
    started = time.perf_counter()
    if system == "plain-openai":
        from pipeline.weights import load_openai_whisper

        model = load_openai_whisper("base", home)
        loaded = time.perf_counter()
        samples = decode(probe(path)).samples
        result = model.transcribe(samples, beam_size=5, best_of=5, fp16=False, verbose=None)
        segments = [
            {"start": s["start"], "end": s["end"], "text": s["text"].strip(), "words": []} for s in result["segments"]
        ]
    else:
        engine_name = "openai-whisper" if system == "ohp-openai" else "faster-whisper"
        engine = load_engine(engine_name, "base", home, "cpu")  # the CPU, as the figures in RESULTS.md
        loaded = time.perf_counter()
        samples = decode(probe(path)).samples
        if system == "clips-alone":
            reference = json.loads(path.with_suffix(".json").read_text())["segments"]
            chunks = [Chunk(c["start"], c["end"], (SpeechRegion(c["start"], c["end"]),)) for c in reference]
        else:
            chunks = segment(samples)
        transcript = transcribe(samples, chunks, engine, TranscribeOptions(engine=engine_name))
        segments = _segments(transcript.segments)
    done = time.perf_counter()
    return {
        "segments": segments,
        "load_seconds": loaded - started,
        "seconds": done - loaded,
        "peak_mb": peak_mb(),
        "audio_seconds": len(samples) / 16000,
    }


def normalise(text: str, simplify: bool) -> str:
    from pipeline.script import to_simplified

    text = re.sub(r"[\W_]+", "", text.lower())
    return to_simplified(text) if simplify else text


def cer(hypothesis: str, reference: str) -> float:
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(hypothesis, reference) / max(1, len(reference))


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


def score(run: dict, path: Path) -> dict:
    reference = json.loads(path.with_suffix(".json").read_text())
    ref_text = "".join(c["text"] for c in reference["segments"])
    hyp_text = "".join(s["text"] for s in sorted(run["segments"], key=lambda s: s["start"]))
    return {
        "cer": cer(normalise(hyp_text, True), normalise(ref_text, True)),
        "raw_cer": cer(normalise(hyp_text, False), normalise(ref_text, False)),
        "gap_chars": gap_characters(run["segments"], reference["segments"], reference["duration_s"]),
    }


def run_in_subprocess(system: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", system, str(path)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{system} on {path.name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def make_long(path: Path, hours: float) -> Path:
    """A long recording made by repeating a real one (ffmpeg stream copy, so it costs no decoding)."""
    from pipeline.stages.audio import ffmpeg_exe, probe

    target = OUT / f"{path.stem}_x{hours:g}h.wav"
    if not target.exists():
        repeats = int(hours * 3600 / probe(path).duration) + 1
        subprocess.run(
            [
                ffmpeg_exe(),
                "-v",
                "error",
                "-y",
                "-stream_loop",
                str(repeats - 1),
                "-i",
                str(path),
                "-t",
                str(hours * 3600),
                "-c",
                "copy",
                str(target),
            ],
            check=True,
        )
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=2, metavar=("SYSTEM", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--long", action="store_true", help="also time ohp on a 2-hour recording")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.worker[1])), ensure_ascii=False))
        return

    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict]] = {}
    print(
        f"{'system':<13} {'file':<26} {'CER':>6} {'raw CER':>8} {'gap chars':>9} "
        f"{'time s':>7} {'load s':>6} {'x realtime':>10} {'peak MB':>8}"
    )
    for system in args.systems:
        for name in FILES:
            path = CORPUS / name
            run = run_in_subprocess(system, path)
            run.update(score(run, path))
            results.setdefault(system, {})[name] = run
            print(
                f"{system:<13} {name:<26} {run['cer']:6.3f} {run['raw_cer']:8.3f} {run['gap_chars']:9d} "
                f"{run['seconds']:7.1f} {run['load_seconds']:6.1f} "
                f"{run['audio_seconds'] / run['seconds']:10.1f} {run['peak_mb']:8.0f}",
                flush=True,
            )
    print()
    for system, runs in results.items():
        seconds = sum(r["seconds"] for r in runs.values())
        line = f"{system:<13} both files: {seconds:6.1f} s"
        if "plain-openai" in results and system != "plain-openai":
            plain = sum(r["seconds"] for r in results["plain-openai"].values())
            line += f", {plain / seconds:4.1f}x faster than plain-openai"
        if "clips-alone" in results and system != "clips-alone":
            for name, run in runs.items():
                line += (
                    f"; {name.split('_')[1]} CER {run['cer'] - results['clips-alone'][name]['cer']:+.3f} vs clips alone"
                )
        print(line)
    if args.long:
        long_path = make_long(CORPUS / FILES[0], 2.0)
        run = run_in_subprocess("ohp", long_path)
        print(
            f"\nohp on {long_path.name}: {run['audio_seconds'] / 3600:.2f} h of audio in {run['seconds']:.0f} s "
            f"({run['audio_seconds'] / run['seconds']:.1f}x realtime), peak memory {run['peak_mb']:.0f} MB, "
            f"{len(run['segments'])} segments"
        )
        results["long"] = {long_path.name: {k: v for k, v in run.items() if k != "segments"}}
    (OUT / "asr.json").write_text(json.dumps(results, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
