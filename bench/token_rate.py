"""How many tokens a second of audio ohp's decodes write: the measurement behind engines.TOKENS_PER_SECOND.

    python bench/token_rate.py [--out bench/out/token_rate.json] [--compare OTHER.json]

Transcribes the dev long-forms (Mandarin, dialect, English: bench/make_longform_en.py builds the English one) and
every clip of ../shared/corpus/MANIFEST.tsv in this process, as `ohp run` does (one model, the defaults), and
records every generate call of the recogniser: each piece's duration, the tokens it wrote (text and timestamp
tokens; the prompt is not among them), the temperature, the compression ratio, whether the attempt failed
Whisper's checks, and the call's time. Prints the highest rate among attempts that did not loop and the calls
that did, and with --compare the segments whose text differs from another run's (the same files).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpus"
LONG_FORMS = (
    CORPUS / "longform_zh_dev.wav",
    CORPUS / "longform_dialect_dev.wav",
    REPO / "bench" / "out" / "longform_en_dev.wav",
)


def corpus_files() -> list[Path]:
    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8") as f:
        # The rows with a duration are audio (the others are references, annotations, lists).
        clips = [CORPUS / row["file"] for row in csv.DictReader(f, delimiter="\t") if row["duration_s"]]
    return [*LONG_FORMS, *clips]


def measure(files: list[Path]) -> dict:
    from pipeline.config import Config
    from pipeline.stages import engines
    from pipeline.stages.audio import decode, probe
    from pipeline.stages.segment import segment
    from pipeline.stages.transcribe import TranscribeOptions, transcribe

    calls: list[dict] = []
    generate = engines.FasterWhisperEngine._generate

    def recorded(self, encoded, languages, temperature, options):
        started = time.perf_counter()
        attempts = generate(self, encoded, languages, temperature, options)
        seconds = time.perf_counter() - started
        calls.append(
            {
                "file": current,
                "temperature": temperature,
                "seconds": round(seconds, 3),
                "pieces": [
                    {
                        "duration": frames / self._model.frames_per_second,
                        "tokens": len(a.tokens),
                        "compression_ratio": round(a.compression_ratio, 3),
                        "avg_logprob": round(a.avg_logprob, 3),
                        "failed": self._failed(a, options),
                        "cut_off": getattr(a, "cut_off", False),  # False before the budget
                    }
                    for frames, a in zip(encoded.frames, attempts, strict=True)
                ],
            }
        )
        return attempts

    engines.FasterWhisperEngine._generate = recorded  # type: ignore[method-assign]
    engine = engines.load_engine(engines.DEFAULT_ENGINE, "base", Config.load().home)
    texts: dict[str, list[str]] = {}
    timing: dict[str, float] = {}
    for path in files:
        current = str(path.relative_to(REPO.parent) if path.is_relative_to(REPO.parent) else path)
        samples = decode(probe(path)).samples
        chunks = segment(samples)
        started = time.perf_counter()
        transcript = transcribe(samples, chunks, engine, TranscribeOptions())
        timing[current] = round(time.perf_counter() - started, 2)
        texts[current] = [s.text for s in transcript.segments]
        print(f"{current}: {len(chunks)} chunks, {len(transcript.segments)} segments, {timing[current]} s", flush=True)
    return {"calls": calls, "texts": texts, "transcribe_seconds": timing}


def report(result: dict) -> None:
    pieces = [(call, p) for call in result["calls"] for p in call["pieces"]]
    good = [(c, p) for c, p in pieces if p["compression_ratio"] <= 2.4 and not p["cut_off"]]
    rates = sorted(
        ((p["tokens"] / p["duration"], p["tokens"], p["duration"], c["file"]) for c, p in good), reverse=True
    )
    print(f"\n{len(pieces)} pieces decoded in {len(result['calls'])} calls; {len(good)} not too repetitive")
    print("highest rates (tokens per second of the piece), attempts not too repetitive:")
    for rate, tokens, duration, file in rates[:8]:
        print(f"  {rate:5.2f} tokens/s: {tokens} tokens in {duration:.2f} s ({file})")
    most = max(good, key=lambda cp: cp[1]["tokens"])
    print(f"most tokens of such an attempt: {most[1]['tokens']} in {most[1]['duration']:.2f} s")
    print("attempts too repetitive (compression ratio > 2.4, or stopped by the token budget):")
    for call, p in pieces:
        if p["compression_ratio"] > 2.4 or p["cut_off"]:
            print(
                f"  {call['file']}: {p['tokens']} tokens in {p['duration']:.2f} s at temperature "
                f"{call['temperature']}, ratio {p['compression_ratio']}, {'cut off, ' if p['cut_off'] else ''}"
                f"call {call['seconds']} s"
            )
    for file in result["texts"]:
        seconds = sum(c["seconds"] for c in result["calls"] if c["file"] == file)
        if file.startswith("shared/corpus/longform") or "longform" in file:
            print(f"{file}: generate {seconds:.1f} s, transcribe {result['transcribe_seconds'][file]} s")


def compare(result: dict, other: dict) -> None:
    differing = 0
    for file, texts in result["texts"].items():
        theirs = other["texts"].get(file)
        if theirs != texts:
            differing += 1
            print(f"{file}: {len(texts)} segments against {len(theirs or [])}")
            for mine, its in zip(texts, theirs or [], strict=False):
                if mine != its:
                    print(f"  {its!r}\n  -> {mine!r}")
    print(f"{differing} of {len(result['texts'])} files differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "token_rate.json")
    parser.add_argument("--compare", type=Path, help="another run's JSON: print the segments whose text differs")
    parser.add_argument("--files", nargs="*", type=Path, help="these files instead of the corpus")
    args = parser.parse_args()
    result = measure(args.files or corpus_files())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    report(result)
    if args.compare:
        compare(result, json.loads(args.compare.read_text(encoding="utf-8")))


if __name__ == "__main__":
    main()
