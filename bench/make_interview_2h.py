"""Build a 2-hour interview-like recording from the corpus's clips, for timing ohp on a long recording.

    python bench/make_interview_2h.py                 # writes /tmp/ohp-bench/interview_2h.wav
    ohp run /tmp/ohp-bench/interview_2h.wav --speakers off --no-tag

The corpus's Mandarin, dialect and English clips (most of an interview is Mandarin: its clips come twice as
often), each normalised as in the long-forms (bench/make_longform_en.py), shuffled, and placed in sequence
with gaps of quiet room noise (1.5-6 s, and a 25 s one every half hour: a break) until two hours are filled.
Deterministic (a fixed seed). The audio is written outside the repository; it has no reference: it is for
time, CPU and memory, not accuracy (the long-forms measure that).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from make_longform_en import (
    CORPUS,
    GAP_RANGE,
    LONG_GAP,
    NOISE_SOURCE,
    SAMPLE_RATE,
    SEED,
    normalised,
    read_clip,
    room_noise,
)

OUT = Path("/tmp/ohp-bench/interview_2h.wav")
HOURS = 2.0
BREAK_EVERY = 1800.0  # s: a long gap this often
LANGUAGES = {"zh": 2, "zh_dialect": 1, "en": 1}  # the corpus's folders, and how often each clip comes per round
LONGEST_CLIP = 60.0  # s: longer files (whole long-forms) are left out


def clips() -> list[str]:
    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    chosen = []
    for row in rows:
        folder = row["file"].split("/")[0]
        audio = bool(row["duration_s"])  # the manifest lists references and texts too, without a duration
        if folder in LANGUAGES and audio and float(row["duration_s"]) <= LONGEST_CLIP:
            chosen.extend([row["file"]] * LANGUAGES[folder])
    return chosen


def build(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    noise_file, noise_start, noise_end = NOISE_SOURCE
    noise = read_clip(noise_file, None, noise_start, noise_end)
    names = clips()
    audio = {name: normalised(read_clip(name, None, 0.0, None)) for name in set(names)}
    pieces, position, next_break = [], 0.0, BREAK_EVERY
    while position < seconds:
        for index in rng.permutation(len(names)):
            clip = audio[names[index]]
            gap = LONG_GAP if position >= next_break else float(rng.uniform(*GAP_RANGE))
            if position >= next_break:
                next_break += BREAK_EVERY
            pieces.extend([clip, room_noise(gap, noise, rng)])
            position += len(clip) / SAMPLE_RATE + gap
            if position >= seconds:
                break
    return np.concatenate(pieces)[: int(seconds * SAMPLE_RATE)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the audio (default: %(default)s)")
    parser.add_argument("--hours", type=float, default=HOURS)
    args = parser.parse_args()
    import soundfile

    audio = build(args.hours * 3600)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(args.out, audio, SAMPLE_RATE, subtype="PCM_16")
    print(f"{args.out}: {len(audio) / SAMPLE_RATE:.0f} s from {len(set(clips()))} clips")


if __name__ == "__main__":
    sys.exit(main())
