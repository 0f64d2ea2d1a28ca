"""Diarization error rate and speed of the speakers stage on the corpus recordings with speaker turns.

    python bench/speakers.py                  # DER table (given / estimated / one-speaker baseline), sanity checks
    python bench/speakers.py --neighbours 1 1.5 2   # DER and speakers found, number estimated, per setting
    python bench/speakers.py --long 20        # DER, time and memory on a 20-minute recording
    python bench/speakers.py --profiles       # enrolled-voice similarities (same / other person)

DER (pyannote.metrics) counts missed speech, false alarm and speaker confusion over the reference's
speech, with a collar of 0.25 s on either side of every reference boundary (the NIST convention;
pyannote's `collar` is the collar's whole width, so 0.5) and overlapped speech kept. Speech regions are
the project's own VAD (pipeline.stages.segment), so missed speech and false alarm are mostly the VAD's;
confusion is the speakers stage's own. The baseline gives all the speech to one speaker.
The stage's time excludes decoding and VAD, which other stages do anyway. Results go to
bench/out/speakers.json, each mode replacing its own part.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpus"
OUT = REPO / "bench" / "out"

from pipeline.records import SpeakerTurn, SpeechRegion  # noqa: E402
from pipeline.stages.audio import SAMPLE_RATE, decode, probe  # noqa: E402
from pipeline.stages.segment import speech_regions  # noqa: E402
from pipeline.stages.speakers import DiarizeOptions, diarize, match_profiles, voice_profile  # noqa: E402

EN = CORPUS / "en"
# (wav, rttm, uri of the wav's lines in the rttm)
FILES = (
    (
        "pyannote_pyannote-audio__src_pyannote_audio_sample_sample.wav",
        "pyannote_pyannote-audio__src_pyannote_audio_sample_sample.rttm",
        "sample",
    ),
    (
        "pyannote_pyannote-audio__tests_data_dev00.wav",
        "pyannote_pyannote-audio__tests_data_debug.development.rttm",
        "dev00",
    ),
    (
        "pyannote_pyannote-audio__tests_data_dev01.wav",
        "pyannote_pyannote-audio__tests_data_debug.development.rttm",
        "dev01",
    ),
)
SANITY = (  # no reference turns: what the manifest says of them
    # one speaker per channel, mixed to mono: both talk from 0.3 s, the right channel stops at 2.5 s
    "en/SYSTRAN_faster-whisper__tests_data_stereo_diarization.wav",
    # two-person Mandarin dialogue: A asks (to ~5 s), B answers (to ~12 s), A again
    "zh/k2-fsa_sherpa___static_fun-asr-nano-2025-12-30_far_3.wav",
    # a lecturer to 63.8 s, then a host to 70.5 s
    "zh/modelscope_FunASR__funasr_runtime_csharp_AliFsmnVad.Examples_speech_fsmn_vad_zh-cn-16k-common-onnx_example_0.wav",
)
COLLAR = 0.5  # pyannote's collar is the whole width: 0.25 s either side


def load_reference(rttm: str, uri: str):
    from pyannote.database.util import load_rttm

    return load_rttm(str(EN / rttm))[uri]


def annotation(turns: list[SpeakerTurn], uri: str):
    from pyannote.core import Annotation, Segment

    hypothesis = Annotation(uri=uri)
    for turn in turns:
        hypothesis[Segment(turn.start, turn.end)] = turn.speaker
    return hypothesis


def der(pairs: list) -> dict:
    """Totals over all files: DER and its components, as shares of the reference's speech."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=COLLAR)
    totals: dict[str, float] = {}
    for reference, hypothesis in pairs:
        for key, value in metric(reference, hypothesis, detailed=True).items():
            totals[key] = totals.get(key, 0.0) + value
    total = totals["total"]
    parts = {k: totals[k] / total for k in ("missed detection", "false alarm", "confusion")}
    return {"der": sum(parts.values()), **parts}


def load_files() -> list[dict]:
    files = []
    for wav, rttm, uri in FILES:
        samples = decode(probe(EN / wav)).samples
        files.append(
            {"uri": uri, "samples": samples, "regions": speech_regions(samples), "reference": load_reference(rttm, uri)}
        )
    return files


def run(files: list[dict], n_given: bool, options: DiarizeOptions = DiarizeOptions()) -> tuple[list, float]:
    pairs, seconds = [], 0.0
    for f in files:
        n = len(f["reference"].labels()) if n_given else None
        started = time.perf_counter()
        turns = diarize(f["samples"], f["regions"], n_speakers=n, options=options)
        seconds += time.perf_counter() - started
        f["turns" if n_given else "turns_estimated"] = turns
        pairs.append((f["reference"], annotation(turns, f["uri"])))
    return pairs, seconds


def table(files: list[dict]) -> dict:
    minutes = sum(len(f["samples"]) for f in files) / SAMPLE_RATE / 60
    diarize(files[0]["samples"], files[0]["regions"][:1])  # load the encoder outside the timing
    baseline = [
        (f["reference"], annotation([SpeakerTurn(r.start, r.end, "S1") for r in f["regions"]], f["uri"])) for f in files
    ]
    given, given_seconds = run(files, True)
    estimated, estimated_seconds = run(files, False)
    rows = {
        "baseline (one speaker)": {**der(baseline), "s_per_min": 0.0},
        "number given": {**der(given), "s_per_min": given_seconds / minutes},
        "number estimated": {**der(estimated), "s_per_min": estimated_seconds / minutes},
    }
    print(f"{len(files)} files, {minutes:.1f} min, collar 0.25 s either side, overlap kept\n")
    print(f"{'':24} {'DER':>6} {'missed':>7} {'false al.':>9} {'confusion':>9} {'s/min':>6}")
    for name, row in rows.items():
        print(
            f"{name:24} {row['der']:6.1%} {row['missed detection']:7.1%} {row['false alarm']:9.1%}"
            f" {row['confusion']:9.1%} {row['s_per_min']:6.2f}"
        )
    print("\nper file (given / estimated):")
    for f, g, e in zip(files, given, estimated, strict=True):
        found = len({t.speaker for t in f["turns_estimated"]})
        print(
            f"  {f['uri']:8} DER {der([g])['der']:6.1%} / {der([e])['der']:6.1%}   "
            f"speakers found {found} (reference {len(f['reference'].labels())})"
        )
    return rows


def sanity() -> dict:
    found = {}
    for relative in SANITY:
        samples = decode(probe(CORPUS / relative)).samples
        turns = diarize(samples, speech_regions(samples))
        found[relative] = [[round(t.start, 2), round(t.end, 2), t.speaker] for t in turns]
        print(f"\n{relative}: {len({t.speaker for t in turns})} speakers estimated")
        for t in turns:
            print(f"  {t.start:6.2f} {t.end:6.2f} {t.speaker}")
    return found


def sweep(files: list[dict], settings: list[float]) -> dict:
    out = {}
    for neighbours in settings:
        pairs, _ = run(files, False, DiarizeOptions(neighbours=neighbours))
        counts = [len({t.speaker for t in f["turns_estimated"]}) for f in files]
        out[neighbours] = {**der(pairs), "speakers": counts}
        print(
            f"neighbours {neighbours:.2f}: DER {out[neighbours]['der']:6.1%}  "
            f"confusion {out[neighbours]['confusion']:6.1%}  speakers {counts}"
        )
    return out


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def long(files: list[dict], minutes: float) -> dict:
    """A long recording made by repeating sample.wav (one phone call, two voices): DER with the number
    given and estimated, time per minute, peak memory. (Repeating all three files mixes three recordings'
    channels, and the clusters follow the recording rather than the voice: not an interview.)"""
    from pyannote.core import Annotation, Segment

    files = files[:1]

    copies = int(np.ceil(minutes * 60 / sum(len(f["samples"]) / SAMPLE_RATE for f in files)))
    # Each copy at its own level and with its own faint noise, so no two windows are identical.
    rng = np.random.default_rng(0)
    samples = np.concatenate(
        [
            (
                f["samples"] * 10 ** (rng.uniform(-6, 6) / 20) + rng.normal(0, 10 ** (-50 / 20), len(f["samples"]))
            ).astype(np.float32)
            for _ in range(copies)
            for f in files
        ]
    )
    offsets = np.cumsum([0] + [len(f["samples"]) for f in files] * copies)[:-1] / SAMPLE_RATE
    regions = [
        SpeechRegion(r.start + o, r.end + o) for o, f in zip(offsets, files * copies, strict=True) for r in f["regions"]
    ]
    reference = Annotation(uri="long")
    for o, f in zip(offsets, files * copies, strict=True):
        for segment, _, speaker in f["reference"].itertracks(yield_label=True):
            reference[Segment(segment.start + o, segment.end + o)] = speaker
    n = len(reference.labels())
    diarize(samples, regions[:1])
    before = peak_mb()
    result = {"minutes": len(samples) / SAMPLE_RATE / 60, "audio_mb": samples.nbytes / 2**20}
    for name, given in (("given", n), ("estimated", None)):
        started = time.perf_counter()
        turns = diarize(samples, regions, n_speakers=given)
        seconds = time.perf_counter() - started
        result[name] = {
            **der([(reference, annotation(turns, "long"))]),
            "s_per_min": seconds / result["minutes"],
            "speakers": len({t.speaker for t in turns}),
        }
    result["peak_mb_before"], result["peak_mb"] = before, peak_mb()
    print(
        f"{result['minutes']:.1f} min, {n} voices; peak memory {before:.0f} -> {result['peak_mb']:.0f} MB "
        f"(audio {result['audio_mb']:.0f} MB)"
    )
    for name in ("given", "estimated"):
        r = result[name]
        print(
            f"  number {name:9}: DER {r['der']:6.1%} (missed {r['missed detection']:.1%}, "
            f"false alarm {r['false alarm']:.1%},"
            f" confusion {r['confusion']:.1%}), {r['speakers']} speakers, {r['s_per_min']:.2f} s per minute"
        )
    return result


IMPOSTORS = (  # one voice each, none of them in the files above
    "en/lhotse-speech_lhotse__test_fixtures_libri_libri-1088-134315-0000.wav",
    "en/linto-ai_whisper-timestamped__tests_data_words.wav",
    "en/k2-fsa_sherpa___static_fun-asr-nano-2025-12-30_noise_en.wav",
    "en/lhotse-speech_lhotse__test_fixtures_ami_ES2011a.Headset-0-40s-46s.wav",
    "en/k2-fsa_sherpa___static_sense-voice_en.wav",
    "zh/RapidAI_RapidASR__python_test_wavs_0478_00017.wav",
    "zh/FireRedTeam_FireRedASR__examples_wav_TEST_MEETING_T0000000001_S00000.wav",
    "zh/k2-fsa_sherpa___static_qwen3-asr-0.6b_fast1.wav",
    "zh/MoonshotAI_Kimi-Audio__test_audios_asr_example.wav",
)


def reference_turns(f: dict, start: float = 0.0, end: float = float("inf")) -> list[SpeakerTurn]:
    """The reference's turns within [start, end), overlapped speech left out."""
    from pyannote.core import Segment

    reference = f["reference"]
    overlap = reference.get_overlap()
    turns = []
    for segment, _, speaker in reference.crop(Segment(start, min(end, len(f["samples"]) / SAMPLE_RATE))).itertracks(
        yield_label=True
    ):
        for piece in overlap.gaps(support=segment):
            if piece.duration > 0.5:
                turns.append(SpeakerTurn(piece.start, piece.end, speaker))
    return turns


def profiles(files: list[dict]) -> dict:
    """Cosine similarity of enrolled profiles to speakers' voices: same person (another part of the same
    recording, or another recording), and other people (the other speaker, single-voice corpus clips)."""
    from pipeline.stages.speakers import speaker_embeddings

    def profile(f: dict, turns: list[SpeakerTurn], speaker: str) -> np.ndarray:
        pieces = [
            f["samples"][int(t.start * SAMPLE_RATE) : int(t.end * SAMPLE_RATE)] for t in turns if t.speaker == speaker
        ]
        return voice_profile(pieces)

    sample, dev00, dev01 = files
    enrolled: dict[str, np.ndarray] = {}
    voices: dict[str, np.ndarray] = {}  # same keys for the same person
    for name in ("speaker90", "speaker91"):
        enrolled[name] = profile(sample, reference_turns(sample, 0, 20), name)
    voices.update(speaker_embeddings(sample["samples"], reference_turns(sample, 20)))
    for name in ("MEE009", "MEE012"):
        enrolled[name] = profile(dev00, reference_turns(dev00), name)
    voices.update(speaker_embeddings(dev01["samples"], reference_turns(dev01)))
    for relative in IMPOSTORS:
        samples = decode(probe(CORPUS / relative)).samples
        voices[relative] = voice_profile([samples])
    same = {name: float(enrolled[name] @ voices[name]) for name in enrolled}
    other = {f"{a} ~ {b}": float(enrolled[a] @ voices[b]) for a in enrolled for b in voices if a != b}
    print("same person:  " + "  ".join(f"{k} {v:.3f}" for k, v in same.items()))
    worst = sorted(other.items(), key=lambda kv: -kv[1])[:6]
    print("other people, most similar: " + "  ".join(f"{k.split('/')[-1][:40]} {v:.3f}" for k, v in worst))
    print(f"lowest same {min(same.values()):.3f}, highest other {max(other.values()):.3f}")
    # match_profiles itself, on diarized turns of the second half of sample.wav
    turns = diarize(
        sample["samples"],
        [SpeechRegion(max(20.0, r.start), r.end) for r in sample["regions"] if r.end > 20],
        n_speakers=2,
    )
    matched = match_profiles(sample["samples"], turns, enrolled)
    print(f"match_profiles on sample.wav after 20 s (diarized): {matched}")
    return {"same": same, "other": other, "matched": matched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neighbours", type=float, nargs="*")
    parser.add_argument("--long", type=float, metavar="MINUTES")
    parser.add_argument("--profiles", action="store_true")
    args = parser.parse_args()
    files = load_files()
    results: dict = {}
    if args.neighbours:
        results["neighbours"] = sweep(files, args.neighbours)
    elif args.long:
        results["long"] = long(files, args.long)
    elif args.profiles:
        results["profiles"] = profiles(files)
    else:
        results["der"] = table(files)
        results["sanity"] = sanity()
    OUT.mkdir(exist_ok=True)
    path = OUT / "speakers.json"  # each mode replaces its own part
    kept = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**kept, **results}, indent=1, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
