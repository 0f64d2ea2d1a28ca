"""Build the English interview-like long-form, the same way as the corpus's Mandarin and dialect ones.

    python bench/make_longform_en.py            # writes bench/out/longform_en_dev.wav (+ its .json)

The corpus's `longform_zh_dev.wav` and `longform_dialect_dev.wav` are real clips, each normalised and
placed in sequence with gaps of quiet room noise (1.5-6 s, and one gap of 25 s in the middle). This script
does the same with the corpus's English clips that have a real reference (`exact` or `doc_gt` in
MANIFEST.tsv), taking the room noise from the 25 s gap of `longform_zh_dev.wav`, so the three long-forms
sound alike between the clips. The corpus is read by path and the audio is written outside the repository
(bench/out is ignored); the reference, `bench/data/longform_en_dev.json`, is kept in the repository, and a
copy is written beside the audio so that tools finding a reference by the audio's name find it.

Deterministic: a fixed seed for the gaps and noise offsets; the reference records the audio's SHA-256, and
the build stops if what it made differs from what the kept reference describes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpus"
REFERENCE = REPO / "bench" / "data" / "longform_en_dev.json"
OUT = REPO / "bench" / "out" / "longform_en_dev.wav"

SAMPLE_RATE = 16000
SEED = 20261130
LEAD_IN = 1.0  # s of room noise before the first clip, as in the Mandarin long-form
TAIL = 1.5
GAP_RANGE = (1.5, 6.0)
LONG_GAP = 25.0
TARGET_PEAK_DBFS = -6.0  # every clip's peak, as in the corpus's long-forms
NOISE_SOURCE = ("longform_zh_dev.wav", 50.7, 75.1)  # the Mandarin long-form's 25 s gap: room noise only

# (file in the corpus, channel or None for a mono mix, start s, end s or None, reference text)
SAMPLE_STM = "en/pyannote_pyannote-audio__src_pyannote_audio_sample_sample.stm"
CLIPS: tuple[tuple[str, int | None, float, float | None, str | None], ...] = (
    (
        "en/k2-fsa_sherpa___static_fun-asr-nano-2025-12-30_noise_en.wav",
        None,
        0.0,
        None,
        "So what's interesting here is I feel that you know brands knowing this when people sort of speak to "
        "the voice assistance at home and if you want to be the brand.",
    ),
    ("en/lhotse-speech_lhotse__test_fixtures_ljspeech_storage_LJ002-0020.wav", None, 0.0, None, "In eighteen thirteen"),
    # The two-speaker telephone call from its first word: its text comes from the speaker-attributed STM.
    ("en/pyannote_pyannote-audio__src_pyannote_audio_sample_sample.wav", None, 6.4, None, None),
    (
        "en/mozilla_DeepSpeech__data_smoke_test_new-home-in-the-stars-16k.wav",
        None,
        0.0,
        None,
        "We must find a new home in the stars.",
    ),
    (
        "en/SYSTRAN_faster-whisper__tests_data_stereo_diarization.wav",
        0,
        0.0,
        None,
        "He began a confused complaint against the wizard, who had vanished behind the curtain on the left.",
    ),
    (
        "en/modelscope_FunASR__funasr_runtime_csharp_AliParaformerAsr.Examples_speech_paraformer-large_asr_"
        "nat-zh-cn-16k-common-vocab8404-onnx_example_4.wav",
        None,
        0.0,
        None,
        "After early nightfall the yellow lamps would light up here and there the squalid quarter of the brothels.",
    ),
    ("en/Uberi_speech_recognition__examples_english.wav", None, 0.0, None, "One two three."),
    (
        "en/SYSTRAN_faster-whisper__tests_data_stereo_diarization.wav",
        1,
        0.0,
        None,
        "The horizon seems extremely distant.",
    ),
    (
        "en/lhotse-speech_lhotse__test_fixtures_ljspeech_storage_LJ002-0035.wav",
        None,
        0.0,
        None,
        "Eight, the press yard.",
    ),
)


def read_clip(name: str, channel: int | None, start: float, end: float | None) -> np.ndarray:
    """A clip at 16 kHz, one channel (or the mono mix), cut to [start, end)."""
    from pipeline.stages.audio import decode, probe

    path = CORPUS / name
    if channel is None:
        samples = decode(probe(path)).samples
    else:
        import soundfile

        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
        if rate != SAMPLE_RATE:
            raise SystemExit(f"{path}: expected {SAMPLE_RATE} Hz for a channel cut, found {rate}")
        samples = data[:, channel]
    return samples[int(start * SAMPLE_RATE) : None if end is None else int(end * SAMPLE_RATE)]


def stm_text(start: float) -> str:
    lines = (CORPUS / SAMPLE_STM).read_text().splitlines()
    return " ".join(" ".join(line.split()[5:]) for line in lines if line.strip() and float(line.split()[3]) >= start)


def normalised(samples: np.ndarray) -> np.ndarray:
    peak = float(np.abs(samples).max())
    return (samples * (10 ** (TARGET_PEAK_DBFS / 20) / max(peak, 1e-9))).astype(np.float32)


def room_noise(seconds: float, source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Room noise of the given length, cut from the source at a random offset (tiled if longer)."""
    count = round(seconds * SAMPLE_RATE)
    offset = int(rng.integers(0, len(source)))
    return np.resize(np.roll(source, -offset), count)


def build(
    clips: tuple[tuple[str, int | None, float, float | None, str | None], ...] = CLIPS,
    language: str = "en",
    text_of: Callable[[str, float], str] = lambda _name, start: stm_text(start),
) -> tuple[np.ndarray, dict]:
    """The long-form of the clips (a clip's text None: `text_of(its file, its start)`), and its reference."""
    rng = np.random.default_rng(SEED)
    noise_file, noise_start, noise_end = NOISE_SOURCE
    noise = read_clip(noise_file, None, noise_start, noise_end)
    pieces = [room_noise(LEAD_IN, noise, rng)]
    position = LEAD_IN
    segments = []
    middle = len(clips) // 2
    for index, (name, channel, start, end, text) in enumerate(clips):
        clip = normalised(read_clip(name, channel, start, end))
        duration = len(clip) / SAMPLE_RATE
        segments.append(
            {
                "start": round(position, 3),
                "end": round(position + duration, 3),
                "text": text if text is not None else text_of(name, start),
                "language": language,
                "source": name if channel is None else f"{name}#channel{channel}",
            }
        )
        pieces.append(clip)
        position += duration
        if index == len(clips) - 1:
            gap = TAIL
        elif index == middle:
            gap = LONG_GAP
        else:
            gap = float(rng.uniform(*GAP_RANGE))
        gap_samples = room_noise(gap, noise, rng)
        pieces.append(gap_samples)
        position += len(gap_samples) / SAMPLE_RATE
    audio = np.concatenate(pieces)
    return audio, {"duration_s": round(len(audio) / SAMPLE_RATE, 2), "segments": segments}


def main(description: str = __doc__, out: Path = OUT, reference_path: Path = REFERENCE, **build_args) -> None:
    """Build the long-form (`build`'s arguments), write it, and check it against the kept reference."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=out, help="where to write the audio (default: %(default)s)")
    parser.add_argument("--update-reference", action="store_true", help="rewrite bench/data's reference")
    args = parser.parse_args()
    import soundfile

    audio, reference = build(**build_args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(args.out, audio, SAMPLE_RATE, subtype="PCM_16")
    reference["sha256"] = hashlib.sha256(args.out.read_bytes()).hexdigest()
    if args.update_reference or not reference_path.exists():
        reference_path.write_text(json.dumps(reference, ensure_ascii=False, indent=1) + "\n")
    elif json.loads(reference_path.read_text()) != reference:
        raise SystemExit(f"{args.out} differs from {reference_path}: rebuild with --update-reference if that is meant")
    args.out.with_suffix(".json").write_text(reference_path.read_text())
    print(f"{args.out}: {reference['duration_s']} s, {len(reference['segments'])} clips")


if __name__ == "__main__":
    main()
