"""Generate audio/demo_interview.mp3, the demo interview that ships with ohp.

The demo is a short synthetic oral-history interview (about 85 s). An
interviewer asks a woman who works in a garment factory about her pay
(piece rates, overtime, wages held back), her two children, who live with
their grandparents in the home village and go to school there, and the trip
home by train at Spring Festival. Both speakers are espeak-ng voices: a low
male variant for the interviewer and a higher, slower female variant for
the worker. Turns alternate with pauses, and quiet room noise runs
underneath. The speech sounds robotic, but it gives a fresh clone something
to run `ohp run audio/` on.

Run from the repository root:

    python audio/make_demo.py            # writes audio/demo_interview.mp3
    python audio/make_demo.py -o x.mp3   # writes somewhere else

`ohp run` needs only the committed mp3. To regenerate it you need the
espeak-ng binary on PATH (Debian/Ubuntu: `apt-get install espeak-ng`). You
also need pydub, numpy and imageio-ffmpeg, which are all ohp dependencies.
The script uses the ffmpeg that comes with imageio-ffmpeg, so there is no
need for a system ffmpeg. The room noise uses a fixed seed, so the same
espeak-ng version (1.51 was used) gives the same audio every time.

Why English: most of the pipeline's users speak Mandarin, so Mandarin was
tried first. espeak-ng 1.51's default `cmn` voice reads Hanzi as numbered
pinyin in English (计件 comes out as "ji four jian four"). The
`cmn-latn-pinyin` voice pronounces them, but Whisper "base" transcribed that
synthetic Mandarin at roughly 30-50 % character error. The words the demo
is about were lost: 工资, 加班, 计件 and 火车票 came back as 东子, 夹盘, 体骗
and 或是. This English version transcribes almost word for word.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import imageio_ffmpeg
import numpy as np

with warnings.catch_warnings():
    # pydub warns at import time when no system ffmpeg is on PATH; we set the
    # converter to imageio-ffmpeg's bundled binary below.
    warnings.simplefilter("ignore", RuntimeWarning)
    import pydub
    from pydub.silence import detect_leading_silence

# --------------------------------------------------------------------------
# The interview. Q = interviewer, A = worker. Each turn is spoken in that
# speaker's espeak-ng voice (VOICES below). Some words were chosen because
# Whisper hears them reliably in espeak's voice: "paid by the piece" came
# back as "peace" and "two yuan" as "to you and", so the script avoids them.
# --------------------------------------------------------------------------
DIALOGUE: list[tuple[str, str]] = [
    ("Q", "Hello, and thank you for talking with us. How long have you worked in this factory?"),
    ("A", "Six years now. I make shirts on the production line."),
    ("Q", "How are your wages calculated?"),
    ("A", "We are paid for each piece we make. If I make more shirts, I earn more."),
    ("Q", "Do you work overtime? Is it paid?"),
    ("A", "In the busy season we work three hours of overtime every day, and on Saturdays too. "
          "The overtime pay is very low."),
    ("Q", "Have your wages ever been held back?"),
    ("A", "Yes. Our wages are held back for one month, so that we do not quit. "
          "We only get that money before the New Year."),
    ("Q", "Where are your children now?"),
    ("A", "My two children live in our home village, with their grandparents."),
    ("Q", "Do they go to school?"),
    ("A", "The older one is in middle school, the younger one is in second grade. "
          "Their grandparents cannot read, so they cannot help with homework."),
    ("Q", "Do you go home for the Spring Festival?"),
    ("A", "Every year. Train tickets are very hard to buy, we have to grab them online. "
          "One year I had to stand on the train for twenty hours."),
    ("Q", "Thank you very much."),
]

# espeak-ng settings per speaker: voice+variant, pitch (0-99), speed (wpm).
VOICES: dict[str, dict[str, object]] = {
    "Q": {"voice": "en-us+m3", "pitch": 35, "speed": 160},   # interviewer: low male
    "A": {"voice": "en-us+f2", "pitch": 60, "speed": 140},   # worker: female, slower
}

SAMPLE_RATE = 16_000        # the rate the pipeline works at
LEAD_IN_MS = 700            # room tone before the first turn
TAIL_MS = 800               # room tone after the last turn
PAUSES_MS = [700, 900, 1_200, 800, 1_000, 650, 1_300, 900]  # cycled between turns
LONG_PAUSE_MS = 2_000       # "thinking" pause, every LONG_PAUSE_EVERY turns
LONG_PAUSE_EVERY = 5
NOISE_DBFS = -54.0          # RMS level of the room noise
SEED = 20240210             # fixed seed: reproducible noise
BITRATE = "24k"             # plenty for 16 kHz mono speech

DEFAULT_OUT = Path(__file__).resolve().parent / "demo_interview.mp3"


def synth_turn(text: str, voice: dict[str, object], wav: Path) -> pydub.AudioSegment:
    """Speak one turn with espeak-ng into `wav` and load it."""
    cmd = [
        "espeak-ng",
        "-v", str(voice["voice"]),
        "-p", str(voice["pitch"]),
        "-s", str(voice["speed"]),
        "-w", str(wav),
        text,
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    seg = pydub.AudioSegment.from_wav(wav)
    seg = seg.set_channels(1).set_frame_rate(SAMPLE_RATE).set_sample_width(2)
    # espeak-ng pads its output with silence; trim it (keeping a few ms) so that
    # the pauses below are the real gaps between turns.
    head = detect_leading_silence(seg, silence_threshold=-50.0)
    tail = detect_leading_silence(seg.reverse(), silence_threshold=-50.0)
    return seg[max(0, head - 30): len(seg) - max(0, tail - 60)]


def room_noise(duration_ms: int, rng: np.random.Generator) -> pydub.AudioSegment:
    """Quiet noise with a 1/f ("pink") spectrum and a faint 50 Hz mains hum, like a small room."""
    n = int(SAMPLE_RATE * duration_ms / 1000)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, d=1 / SAMPLE_RATE)
    shape = 1 / np.sqrt(np.maximum(freqs, 20.0))      # pink below, flat under 20 Hz
    shape[freqs > 5_000] *= 0.3                         # take the hiss off the top
    noise = np.fft.irfft(spectrum * shape, n)
    noise /= np.sqrt(np.mean(noise ** 2))
    t = np.arange(n) / SAMPLE_RATE
    noise += 0.3 * np.sin(2 * np.pi * 50 * t)
    noise /= np.sqrt(np.mean(noise ** 2))
    noise *= 10 ** (NOISE_DBFS / 20) * 32767
    pcm = np.clip(np.round(noise), -32768, 32767).astype("<i2")
    return pydub.AudioSegment(pcm.tobytes(), frame_rate=SAMPLE_RATE, sample_width=2, channels=1)


def build(dialogue: list[tuple[str, str]], voices: dict[str, dict[str, object]]) -> pydub.AudioSegment:
    """Synthesise every turn and lay them out with pauses and room noise."""
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng not found: install it (apt-get install espeak-ng) to regenerate the demo")
    speech = pydub.AudioSegment.silent(duration=LEAD_IN_MS, frame_rate=SAMPLE_RATE)
    with tempfile.TemporaryDirectory(prefix="ohp-demo-") as tmp:
        for i, (speaker, text) in enumerate(dialogue):
            if i > 0:
                if i % LONG_PAUSE_EVERY == 0:
                    gap = LONG_PAUSE_MS
                else:
                    gap = PAUSES_MS[i % len(PAUSES_MS)]
                speech += pydub.AudioSegment.silent(duration=gap, frame_rate=SAMPLE_RATE)
            turn = synth_turn(text, voices[speaker], Path(tmp) / f"turn{i:02d}.wav")
            # espeak-ng peaks near full scale; leave some headroom.
            speech += turn.apply_gain(-3.0 - turn.max_dBFS)
    speech += pydub.AudioSegment.silent(duration=TAIL_MS, frame_rate=SAMPLE_RATE)
    speech = speech.set_channels(1).set_frame_rate(SAMPLE_RATE).set_sample_width(2)
    rng = np.random.default_rng(SEED)
    return speech.overlay(room_noise(len(speech), rng))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help="output file (.mp3)")
    args = parser.parse_args(argv)

    pydub.AudioSegment.converter = imageio_ffmpeg.get_ffmpeg_exe()
    audio = build(DIALOGUE, VOICES)
    audio.export(
        args.out,
        format="mp3",
        bitrate=BITRATE,
        # bitexact: no encoder-version tag, so the same input gives the same bytes.
        parameters=["-ar", str(SAMPLE_RATE), "-ac", "1", "-fflags", "+bitexact", "-flags", "+bitexact"],
    )
    print(f"wrote {args.out} ({len(audio) / 1000:.1f} s, {args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
