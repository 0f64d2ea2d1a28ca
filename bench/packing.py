"""faster-whisper's own decoder given ohp's chunks: one at a time, or packed into 30 s windows as `vad_filter` does.

    python bench/packing.py                      # the three long-forms
    python bench/packing.py --files en           # the English one alone

ohp cuts a recording into chunks of speech (its segment stage) and decodes each on its own; faster-whisper's
`vad_filter` packs the speech of several chunks into each 30 s window and conditions a window on the text before
it. This asks what the packing alone is worth to the text, with ohp's chunks and faster-whisper's `transcribe()`
(beam 5, int8 on the CPU, the same base weights) in three ways:

  separate      each chunk's audio decoded alone, not conditioned
  packed        the chunks' audio joined (the pauses between chunks left out) and decoded as one, not conditioned
  packed-cond   the same, each window conditioned on the text before it (faster-whisper's default)

Language: English's file decoded as English, the Chinese files with faster-whisper's own detection per call.
Only the CER is scored (bench/asr.py's `score`), not the times of words: joining the chunks moves them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr import FILES, score

WAYS = ("separate", "packed", "packed-cond")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="+", choices=("zh", "dialect", "en"), default=["zh", "dialect", "en"])
    args = parser.parse_args()

    from faster_whisper import WhisperModel

    from pipeline.config import Config
    from pipeline.stages.audio import SAMPLE_RATE, decode, probe
    from pipeline.stages.engines import EngineName
    from pipeline.stages.segment import segment
    from pipeline.utils import usable_cores
    from pipeline.weights import resolve_model

    home = Config.load().home
    model = WhisperModel(
        resolve_model("base", EngineName.FASTER_WHISPER, home), "cpu", compute_type="int8", cpu_threads=usable_cores()
    )
    named = dict(zip(("zh", "dialect", "en"), FILES, strict=True))
    print(f"{'file':<24} {'way':<12} {'chunks':>6} {'CER':>7} {'s':>6}")
    for key in args.files:
        path = named[key]
        samples = decode(probe(path)).samples
        chunks = segment(samples)
        pieces = [samples[int(c.start * SAMPLE_RATE) : int(c.end * SAMPLE_RATE)] for c in chunks]
        language = "en" if key == "en" else None
        for way in WAYS:
            started = time.perf_counter()
            audios = pieces if way == "separate" else [np.concatenate(pieces)]
            texts = []
            for audio in audios:
                conditioned = way == "packed-cond"
                found, _ = model.transcribe(
                    audio, language=language, beam_size=5, vad_filter=False, condition_on_previous_text=conditioned
                )
                texts.extend(s.text for s in found)
            seconds = time.perf_counter() - started
            # score() sorts segments by start: number them in the order written
            segments = [{"start": i, "end": i, "text": text, "words": []} for i, text in enumerate(texts)]
            print(f"{path.name:<24} {way:<12} {len(chunks):>6} {score(segments, path)['cer']:>7.4f} {seconds:>6.1f}")


if __name__ == "__main__":
    main()
