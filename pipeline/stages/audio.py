"""Audio in: identify a file by its bytes, ask ffmpeg what it holds, decode it to 16 kHz mono float32.

ffmpeg is the binary that imageio-ffmpeg ships, so no system ffmpeg is needed; pydub is pointed at the
same binary for the places that write audio (demo, fixtures). Decoding streams ffmpeg's output into one
preallocated array instead of going through pydub.AudioSegment.from_file, which holds the whole decoded
file several times over: a 2-hour interview must fit in memory once.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import InvalidInputError
from pipeline.records import AudioInfo

if TYPE_CHECKING:
    import numpy as np

SAMPLE_RATE = 16_000
# What fieldwork brings: recorders' and phones' audio (Apple's .caf and .m4b, Olympus dictation's .dss, WavPack),
# camcorders' video (AVCHD's .mts and .m2ts, MPEG) and the rest ffmpeg reads. Not .ts: TypeScript's too.
AUDIO_EXTENSIONS = frozenset(
    ".wav .flac .mp3 .m4a .aac .ogg .oga .opus .aif .aiff .aifc .wma .amr .webm .weba .mp4 .mov .mkv .mka .avi .3gp"
    " .3g2 .caf .m4b .dss .wv .spx .ac3 .mp2 .mts .m2ts .mpg .mpeg .m4v .wmv .flv .ogv".split()
)
MAX_DURATION = 12 * 3600.0  # longer than any interview; guards against files that claim days of audio
_READ_BLOCK = 1 << 20  # bytes of decoded audio read from ffmpeg at a time
# A mix of channels quieter than this (-40 dBFS RMS; speech is recorded at about -20 to -30) is checked against
# its first channel: one CANCELLED times louder means the channels cancelled each other (one was out of phase).
QUIET_RMS = 0.01
CANCELLED = 4.0
# Demuxers that play other files a file names (an ffconcat script, a playlist), which ffmpeg picks by content
# whatever the extension: a recording is its file's own bytes, hashed as its identity; such a file could bring
# in the recordings beside it under another identity (and consent).
_REFERENCING_FORMATS = frozenset({"concat", "hls", "dash"})


class AudioError(InvalidInputError):
    """A file that cannot be used as a recording; the message names the file and the cause."""

    def __init__(self, path: Path | str, cause: str) -> None:
        super().__init__(f"{path}: {cause}")
        self.path = Path(path)
        self.cause = cause

    def __reduce__(self) -> tuple:  # pickled whole: a pass on a cluster's worker reports its failure with it
        return type(self), (self.path, self.cause)


class ChangedFileError(AudioError):
    """The file's bytes changed while it was read (still being copied or recorded): they are no recording."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, "the file changed while it was read (still being copied?): run again once it is whole")

    def __reduce__(self) -> tuple:
        return type(self), (self.path,)


@dataclass
class DecodedAudio:
    samples: np.ndarray  # float32, mono, SAMPLE_RATE
    warnings: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@cache
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    with warnings.catch_warnings():  # pydub warns at import when no ffmpeg is on PATH: we set its converter
        warnings.simplefilter("ignore", RuntimeWarning)
        from pydub import AudioSegment

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    AudioSegment.converter = exe
    return exe


def is_audio_file(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _is_utf8(path: Path) -> bool:
    """Whether the path is text the store can keep: bytes that are not UTF-8 come as lone surrogates."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_readable(path: Path) -> int:
    """Fail early, with a plain cause, on what ffmpeg would report obscurely; return the size."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioError(path, "file not found (was it moved or deleted?)") from None
    except OSError as e:
        raise AudioError(path, f"cannot read file: {e.strerror}") from None
    if not path.is_file():
        raise AudioError(path, "a directory, not a file" if path.is_dir() else "not a regular file")
    if st.st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    if not _is_utf8(path):  # found now, not when the save fails after the whole pass
        raise AudioError(path, "its path is not UTF-8 text (another encoding's bytes?): rename the file or its folder")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except PermissionError:
        raise AudioError(path, "permission denied: the file is not readable") from None
    except OSError as e:
        raise AudioError(path, f"cannot read file: {e.strerror}") from None
    return st.st_size


def _check_unchanged(path: Path, size: int) -> None:
    """A file still being copied (or recorded) grows while it is read: its hash and its audio would be of different
    bytes, and the recording of a part of it would be saved as done."""
    try:
        now = path.stat().st_size
    except OSError:
        now = -1
    if now != size:
        raise ChangedFileError(path)


_INPUT = re.compile(r"^Input #0, (?P<format>[^,]+(?:,[^ ]+)*), from ", re.M)
_DURATION = re.compile(r"Duration: (?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?)")
_AUDIO_STREAM = re.compile(
    r"Stream #0:\d+[^:]*: Audio: (?P<codec>[\w-]+)[^,\n]*, (?P<rate>\d+) Hz, (?P<layout>[^,\n]+)"
)
_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "4.0": 4, "5.0": 5, "5.1": 6, "6.1": 7, "7.1": 8}


def _ffmpeg_input(path: Path) -> str:
    # "file:" stops ffmpeg reading a name like "2023-05-01T10:30.wav" as a URL of protocol "2023-05-01T10".
    return f"file:{path}"


def _ffmpeg_cause(stderr: str, opening: bool = True) -> str:
    """The line of ffmpeg's complaint that says what is wrong."""
    if "moov atom not found" in stderr:
        # An MP4/M4A's index is written last; ffmpeg's final line would only say "invalid data".
        return "moov atom not found: the MP4/M4A is incomplete (cut short, or its recording never finished)"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        if "Error opening input" in line or "Invalid data" in line:
            cause = line.split(": ", 1)[-1]
            # Invalid data while opening means it is no audio file; while decoding, only that part is bad.
            if "Invalid data" in cause and opening:
                return "not an audio file ffmpeg can read (invalid data found when processing input)"
            return cause
    return lines[-1] if lines else "ffmpeg failed without a message"


def _without_tags(stderr: str) -> str:
    """ffmpeg's report without its Metadata blocks: tags are the file's own text (a title may read "Duration:
    99:00:00" or "Stream #0:1: Audio: ..."), and only ffmpeg's own lines say what the file holds. A block is
    the lines indented under its "Metadata:" line (a tag's value over several lines included)."""
    kept, block = [], None  # the indentation of the Metadata: line whose block is being skipped
    for line in stderr.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if block is not None and indent > block:
            continue
        block = indent if line.strip() == "Metadata:" else None
        if block is None:
            kept.append(line)
    return "\n".join(kept)


def _channel_count(layout: str) -> int:
    layout = layout.split("(")[0].strip()
    if layout in _CHANNELS:
        return _CHANNELS[layout]
    count = re.match(r"(\d+) channels", layout)
    return int(count.group(1)) if count else 1


def probe(path: Path | str) -> AudioInfo:
    """Identify a file (sha256 of its bytes) and read its format, codec, rate, channels and duration."""
    path = Path(path)
    size = _check_readable(path)
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", _ffmpeg_input(path)],
        capture_output=True,
        text=True,
        errors="replace",
    )
    # Without an output file ffmpeg always exits 1; what matters is whether it found an input.
    out = _without_tags(result.stderr)
    input_match = _INPUT.search(out)
    if not input_match:
        raise AudioError(path, _ffmpeg_cause(out))
    if input_match["format"] in _REFERENCING_FORMATS:
        raise AudioError(path, f"a {input_match['format']} file names other files to play: give the recording itself")
    stream = _AUDIO_STREAM.search(out)
    if not stream:
        raise AudioError(path, "no audio stream in this file")
    duration_match = _DURATION.search(out)
    duration = (
        int(duration_match["h"]) * 3600 + int(duration_match["m"]) * 60 + float(duration_match["s"])
        if duration_match
        else 0.0
    )
    sha256 = file_sha256(path)
    _check_unchanged(path, size)
    return AudioInfo(
        path=path,
        sha256=sha256,
        size_bytes=size,
        format=input_match["format"],
        codec=stream["codec"],
        sample_rate=int(stream["rate"]),
        channels=_channel_count(stream["layout"]),
        duration=duration,
    )


def _read_into(stream, samples: np.ndarray, filled: int) -> int:
    """Read ffmpeg's output into samples from byte `filled` on; the views are released on return,
    so the array can be resized (no other reference to it exists)."""
    with samples.data as whole, whole.cast("B") as view, view[filled : filled + _READ_BLOCK] as block:
        return stream.readinto(block)


def _decode_samples(info: AudioInfo, mono: list[str]) -> tuple[np.ndarray, int, str]:
    """ffmpeg's 16 kHz float32 samples of the first audio stream, made mono by the `mono` options, streamed into one
    array sized from the declared duration; with ffmpeg's exit code and its errors."""
    path = info.path
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-i",
        _ffmpeg_input(path),
        "-map",
        "0:a:0",
        "-vn",
        *mono,
        "-ar",
        str(SAMPLE_RATE),
        "-f",
        "f32le",
        "-",
    ]
    import numpy as np  # here: probing and hashing a file need no numpy, and the CLI starts faster without it

    capacity = int((info.duration or 60.0) * SAMPLE_RATE) + SAMPLE_RATE
    samples = np.empty(capacity, dtype=np.float32)
    filled = 0  # bytes
    # stderr goes to a file: a corrupt file can make ffmpeg write more errors than a pipe holds.
    with tempfile.TemporaryFile() as err, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err) as proc:
        assert proc.stdout is not None
        while True:
            if filled == samples.nbytes:
                if filled // 4 >= MAX_DURATION * SAMPLE_RATE:
                    proc.kill()
                    raise AudioError(path, f"more than {MAX_DURATION / 3600:.0f} h of audio")
                # The container understated its length: grow by half, in place where realloc can.
                # (np.resize would copy into a 2x array and keep it: three times the audio at the peak.)
                samples.resize(int(len(samples) * 1.5), refcheck=False)
            n = _read_into(proc.stdout, samples, filled)
            if not n:
                break
            filled += n
        returncode = proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    # Give back what the declared length reserved but the file did not hold (truncated files):
    # a slice would keep all of it alive. Shrinking in place does not copy.
    samples.resize(filled // 4, refcheck=False)
    return samples, returncode, stderr


def _rms(samples: np.ndarray) -> float:
    return float(samples @ samples / len(samples)) ** 0.5 if len(samples) else 0.0  # no squared copy of the audio


def _riff_size(path: Path) -> int | None:
    """The bytes a RIFF WAV's header says the file has; None where it says nothing (a recorder that never finished
    it writes 0, a stream 0xFFFFFFFF, RF64 leaves it to another chunk)."""
    with open(path, "rb") as f:
        header = f.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:] != b"WAVE":
        return None
    size = int.from_bytes(header[4:8], "little")
    return size + 8 if 0 < size < 0xFFFFFFFF else None


def _first_channel_rms(info: AudioInfo) -> float:
    """The RMS of the first channel of the first audio stream, measured by ffmpeg (volumedetect) as it decodes."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", _ffmpeg_input(info.path), "-map", "0:a:0"]
    measure = ["-af", "pan=mono|c0=c0,volumedetect", "-f", "null", "-"]
    result = subprocess.run([*cmd, *measure], capture_output=True, text=True, errors="replace")
    level = re.search(r"mean_volume: (-?[\d.]+|-inf) dB", result.stderr)
    return 10 ** (float(level[1]) / 20) if level else 0.0


def decode(info: AudioInfo) -> DecodedAudio:
    """Decode to 16 kHz mono float32. Channels that cancel out when mixed (one wired or recorded out of phase: the
    mix is near silence) give their first channel alone instead."""
    path = info.path
    _check_readable(path)
    if info.duration > MAX_DURATION:
        raise AudioError(
            path, f"declares {info.duration / 3600:.1f} h of audio, more than the {MAX_DURATION / 3600:.0f} h limit"
        )
    samples, returncode, stderr = _decode_samples(info, ["-ac", "1"])
    # A quiet mix of channels (only quiet, or cancelled?) is checked against its first channel, measured alone.
    cancelled = (
        info.channels > 1 and (mixed := _rms(samples)) < QUIET_RMS and _first_channel_rms(info) > CANCELLED * mixed
    )
    if cancelled:
        del samples  # one copy of a recording's audio in memory at a time
        samples, returncode, stderr = _decode_samples(info, ["-af", "pan=mono|c0=c0"])
    _check_unchanged(path, info.size_bytes)
    if returncode != 0 and len(samples) == 0:
        raise AudioError(path, f"ffmpeg could not decode it: {_ffmpeg_cause(stderr, opening=False)}")
    decoded = DecodedAudio(samples)
    if cancelled:
        decoded.warnings.append(
            f"{path}: its channels cancel out when mixed to mono (one is out of phase): transcribed the first alone"
        )
    if returncode != 0 or stderr.strip():
        decoded.warnings.append(
            f"{path}: decoding errors ({_ffmpeg_cause(stderr, opening=False)}); kept what could be decoded"
        )
    declared = _riff_size(path) if info.format == "wav" else None
    if declared and declared > info.size_bytes:  # ffmpeg takes a WAV's length from its size: it cannot tell
        decoded.warnings.append(
            f"{path}: truncated? the file holds {info.size_bytes:,} of the {declared:,} bytes its header declares"
            " (copied in part?)"
        )
    elif info.duration and decoded.duration < info.duration - max(1.0, 0.05 * info.duration):
        decoded.warnings.append(
            f"{path}: truncated? decoded {decoded.duration:.1f} s of the {info.duration:.1f} s the file declares"
        )
    if info.sample_rate < SAMPLE_RATE:
        decoded.warnings.append(
            f"{path}: recorded at {info.sample_rate} Hz, below 16 kHz; recognition may be less accurate"
        )
    return decoded
