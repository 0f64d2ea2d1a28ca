"""Which signals would mark wrong words that the recogniser's probability misses? Candidates for the doubt
rule, each added to it and measured as bench/doubt.py measures the rule (it must have been run first: its
cache of the recogniser's output is read here).

    python bench/doubt_signals.py                     # every candidate
    python bench/doubt_signals.py --signals sampled   # one

For each candidate: how well it alone tells wrong words from right ones (ROC AUC, per long-form), then the
rule ln p + fragment_weight * rarity - touched_weight * touched - weight * signal < threshold tuned on a
grid with the signal's weight in it, on all clips and by halves (tuned on every other clip, scored on the
others, both ways round), with bench/doubt.py's objective: the smaller recall gain over the baseline at the
same flag rate of Mandarin and dialect, within the Mandarin and English limits.

Candidates:
  duration   how far a word's seconds per character are from the recording's median (too fast or slow)
  segment    the segment's average log probability, less than 0 (Whisper's own segment score)
  unknown    the word is in a word of 2+ Chinese characters jieba's HMM made up, not in its dictionary
  greedy     share of the word's characters a second decode, greedy (beam 1), wrote differently
  sampled    the same for a second decode sampled at temperature 0.6 (seeded, so repeatable)

The second decodes (what `ohp run` does, with the decoding options changed) are cached beside bench/doubt.py's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import doubt as bench  # noqa: E402

from pipeline.records import Transcript  # noqa: E402
from pipeline.stages import doubt as stage  # noqa: E402
from pipeline.stages.engines import DecodeOptions  # noqa: E402

SECOND_DECODES = {
    "greedy": stage.SECOND_DECODE,  # as `ohp run --second-decode` makes it (and bench/doubt.py caches it)
    "sampled": DecodeOptions(beam_size=1, best_of=1, temperatures=(0.6,)),
}
SIGNALS = ("duration", "segment", "unknown", *SECOND_DECODES)
WEIGHTS = (0.0, 0.3, 0.6, 1.0, 1.5)
GRID = {"threshold": bench.GRID["threshold"], "fragment_weight": (0.2, 0.25, 0.3), "touched_weight": (0.0, 0.3)}


def second_decode_path(name: str, kind: str) -> Path:
    return bench.cache_path(name, second=True) if kind == "greedy" else bench.CACHE / f"{name}.{kind}.json"


def transcribe_again(files: dict[str, Path]) -> None:
    """Each long-form decoded again with each SECOND_DECODES option, in the language of the first decode."""
    from pipeline.config import Config
    from pipeline.stages.audio import decode, probe
    from pipeline.stages.engines import load_engine
    from pipeline.stages.segment import segment
    from pipeline.stages.transcribe import TranscribeOptions, transcribe

    engine = load_engine("faster-whisper", "base", Config.load().home, "cpu")
    for name, path in files.items():
        missing = {k: o for k, o in SECOND_DECODES.items() if not second_decode_path(name, k).exists()}
        if not missing:
            continue
        samples = decode(probe(path)).samples
        chunks = segment(samples)
        language = bench.cached(name).language
        for kind, options in missing.items():
            again = transcribe(samples, chunks, engine, TranscribeOptions(language=language, decode=options))
            second_decode_path(name, kind).write_text(json.dumps(asdict(again), ensure_ascii=False), "utf-8")


def words_of(transcript: Transcript) -> list:
    return [w for s in transcript.segments for w in s.words]


def features(name: str, transcript: Transcript) -> list[dict[str, float]]:
    """Per word of the transcript (in order): the rule's own inputs and every candidate signal."""
    rows = []
    for s in transcript.segments:
        chinese = s.language in stage.CHINESE_LANGUAGES
        rarity = stage.fragment_rarity(s.words) if chinese else [0.0] * len(s.words)
        made_up = made_up_words(s.words) if chinese else [False] * len(s.words)
        for w, r, unknown in zip(s.words, rarity, made_up, strict=True):
            rows.append(
                {
                    "lp": math.log(max(w.probability, 1e-3)),
                    "rarity": r,
                    "touched": 1.0 if s.marks else 0.0,
                    "foreign": float(
                        bool(transcript.language)
                        and (s.language != transcript.language or stage.is_foreign(w, transcript.language))
                    ),
                    "pace": math.log(max(w.end - w.start, 0.02) / max(stage.characters(w.text), 1)),
                    "segment": -(s.avg_logprob or 0.0),
                    "unknown": float(unknown),
                }
            )
    paces = sorted(r["pace"] for r in rows)
    for r in rows:
        r["duration"] = abs(r["pace"] - paces[len(paces) // 2])
    for kind in SECOND_DECODES:
        if not second_decode_path(name, kind).exists():  # not made yet (bench/doubt_model.py reads what is there)
            continue
        second = bench.read_transcript(second_decode_path(name, kind))
        shares = [share for segment in stage.disputed(transcript, second) for share in segment]
        for r, share in zip(rows, shares, strict=True):
            r[kind] = share
    return rows


def made_up_words(words: list) -> list[bool]:
    """Per word: in a word of two or more Chinese characters jieba's HMM made up (not in its dictionary)."""
    import jieba

    frequencies, _ = stage.jieba_dictionary()
    flags: list[bool] = []
    for token in jieba.lcut(stage.to_simplified("".join(w.text for w in words)), HMM=True):
        flags.extend([len(token) > 1 and bool(stage.HAN_CHAR.match(token)) and not frequencies.get(token)] * len(token))
    out, at = [], 0
    for w in words:
        out.append(any(flags[at : at + len(w.text)]))
        at += len(w.text)
    return out


@dataclass
class Recording:
    """A long-form's words with their features, aligned with its reference once (the rule does not change it)."""

    name: str
    features: list[dict[str, float]]
    clips: list[bench.Scored]  # per reference clip
    index: list[list[int]]  # per clip: the index into `features` of each of its words

    def row(self, doubtful: list[bool], only: set[int] | None) -> bench.Row:
        parts = [i for i in range(len(self.clips)) if only is None or i in only]
        scored = sum((self.clips[i] for i in parts[1:]), self.clips[parts[0]])
        marks = [doubtful[j] for i in parts for j in self.index[i]]
        recall, flag_rate = bench.figures(scored, marks)
        base, _ = bench.figures(scored, bench.baseline(scored, round(flag_rate * len(scored.wrong))))
        return bench.Row(self.name, len(scored.wrong), scored.errors, recall, flag_rate, base, [])


def recording(name: str) -> Recording:
    transcript = bench.cached(name)
    position = {id(w): i for i, w in enumerate(words_of(transcript))}
    clips = bench.by_clip(transcript, bench.reference_clips(name))
    return Recording(name, features(name, transcript), clips, [[position[id(w)] for w in c.words] for c in clips])


def rows(recordings: list[Recording], signal: str, rule: tuple, only: dict[str, set[int]] | None) -> dict:
    threshold, fragment, touched, weight = rule
    out = {}
    for r in recordings:
        doubtful = [
            f["lp"] + fragment * f["rarity"] - touched * f["touched"] - weight * f[signal] < threshold
            or f["foreign"] > 0
            for f in r.features
        ]
        out[r.name] = r.row(doubtful, only[r.name] if only else None)
    return out


def tune(recordings: list[Recording], signal: str, only: dict[str, set[int]] | None) -> tuple:
    grid = itertools.product(*GRID.values(), WEIGHTS)
    return max(grid, key=lambda rule: bench.objective(rows(recordings, signal, rule, only)))


def auc(recording: Recording, signal: str) -> float:
    from sklearn.metrics import roc_auc_score

    wrong = [False] * len(recording.features)
    for clip, index in zip(recording.clips, recording.index, strict=True):
        for at, w in zip(clip.word_of, clip.wrong, strict=True):
            wrong[index[at]] |= w
    return roc_auc_score(wrong, [f[signal] for f in recording.features])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signals", nargs="+", choices=SIGNALS, default=list(SIGNALS))
    args = parser.parse_args()
    longforms = {name: path for name, path in bench.LONGFORMS.items() if bench.cache_path(name).exists()}
    transcribe_again(longforms)
    recordings = [recording(name) for name in longforms]
    clips = {r.name: len(r.clips) for r in recordings}
    folds = [{n: set(range(k, c, 2)) for n, c in clips.items()} for k in (0, 1)]
    print(
        "| signal | AUC "
        + " / ".join(clips)
        + " | tuned on | rule (threshold, fragment, touched, signal) | "
        + " | ".join(f"{n} flagged, recall, gain" for n in clips)
        + " |"
    )
    for r in recordings:  # "none": the rule as it is, no signal added
        for f in r.features:
            f["none"] = 0.0
    for signal in ("none", *args.signals):
        aucs = " / ".join(f"{auc(r, signal):.2f}" if signal != "none" else "-" for r in recordings)
        for seen, unseen in ((None, None), (0, 1), (1, 0)):
            rule = tune(recordings, signal, folds[seen] if seen is not None else None)
            scored = rows(recordings, signal, rule, folds[unseen] if unseen is not None else None)
            where = "all clips" if seen is None else f"{'odd' if seen == 0 else 'even'} clips, scored on the others"
            cells = " | ".join(f"{r.flag_rate:.1%}, {r.recall:.1%}, {100 * r.gain:+.1f}" for r in scored.values())
            print(f"| {signal} | {aucs} | {where} | {rule} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
