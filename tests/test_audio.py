"""Audio in: probe and decode every format an interview arrives in, identity by sha256, bad input, memory."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pipeline.stages.audio import SAMPLE_RATE, AudioError, decode, ffmpeg_exe, file_sha256, probe

from conftest import REPO

# Left channel 440 Hz, right channel 1000 Hz: mono must hold both (a downmix, not one channel).
LEFT_HZ, RIGHT_HZ = 440, 1000
STEREO_2S = f"sine=f={LEFT_HZ}:r=44100:d=2[l];sine=f={RIGHT_HZ}:r=44100:d=2[r];[l][r]amerge=inputs=2"
# Encoders that pad the start/end (mp3, aac) may change the length slightly; the rest must be exact.
FORMATS = {
    "wav": ([], 0.005),
    "flac": ([], 0.005),
    "mp3": (["-c:a", "libmp3lame", "-b:a", "96k"], 0.1),
    "m4a": (["-c:a", "aac", "-b:a", "96k"], 0.1),
    "ogg": (["-c:a", "libvorbis"], 0.005),
    "aiff": ([], 0.005),
    "mp4": (["-c:a", "aac", "-b:a", "96k"], 0.1),  # a video with an audio track
}
VIDEO_2S = ["-f", "lavfi", "-i", "color=c=black:s=32x32:r=5:d=2"]


def ffmpeg(*args: str | Path) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", *map(str, args)], check=True)


def lavfi(graph: str, out: Path, *options: str) -> Path:
    ffmpeg("-f", "lavfi", "-i", graph, *options, out)
    return out


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """The same 2 s stereo 44.1 kHz signal in every format (and a few odd files), made once."""
    d = tmp_path_factory.mktemp("media")
    files = {}
    for ext, (codec, _) in FORMATS.items():
        out = d / f"signal.{ext}"
        if ext == "mp4":
            ffmpeg(
                *VIDEO_2S,
                "-f",
                "lavfi",
                "-i",
                STEREO_2S,
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                *codec,
                "-shortest",
                out,
            )
        else:
            lavfi(STEREO_2S, out, *codec)
        files[ext] = out
    files["video_only"] = d / "silent_film.mp4"
    ffmpeg(*VIDEO_2S, "-c:v", "libx264", "-pix_fmt", "yuv420p", files["video_only"])
    files["8k_stereo"] = lavfi(f"sine=f={LEFT_HZ}:r=8000:d=2", d / "phone.wav", "-ac", "2")
    # 10 s mp3s: lame writes a Xing/Info header with the frame count; -write_xing 0 leaves it out.
    files["mp3_10s"] = lavfi(f"sine=f={LEFT_HZ}:r=44100:d=10", d / "ten.mp3", "-b:a", "64k")
    files["mp3_10s_no_header"] = lavfi(
        f"sine=f={LEFT_HZ}:r=44100:d=10", d / "ten_raw.mp3", "-b:a", "64k", "-write_xing", "0"
    )
    files["wav_10s"] = lavfi(f"sine=f={LEFT_HZ}:r=16000:d=10", d / "ten.wav")
    return files


def peak_frequencies(samples: np.ndarray, n: int) -> list[float]:
    """The n strongest frequencies (Hz), strongest first, at least 20 Hz apart."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    found: list[float] = []
    for i in np.argsort(spectrum)[::-1]:
        if all(abs(freqs[i] - f) > 20 for f in found):
            found.append(float(freqs[i]))
        if len(found) == n:
            break
    return found


# --- every format ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", list(FORMATS))
def test_probe_and_decode_every_format(media, ext):
    info = probe(media[ext])
    assert info.path == media[ext]
    assert info.size_bytes == media[ext].stat().st_size
    assert (info.sample_rate, info.channels) == (44100, 2)
    assert info.duration == pytest.approx(2.0, abs=FORMATS[ext][1])
    audio = decode(info)
    samples = audio.samples
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert samples.flags.c_contiguous
    assert audio.duration == pytest.approx(2.0, abs=FORMATS[ext][1])
    assert audio.warnings == []
    # Both channels are in the mono mix, at their frequencies (resampling kept the pitch) ...
    assert sorted(peak_frequencies(samples, 2)) == [pytest.approx(LEFT_HZ, abs=2), pytest.approx(RIGHT_HZ, abs=2)]
    # ... with equal weight, at about their level: two sines of amplitude 1/8 mixed down (ffmpeg
    # weights each channel by 1/sqrt(2) or 1/2; RMS between 0.0625 and 0.088).
    spectrum = np.abs(np.fft.rfft(samples))
    left, right = (spectrum[round(hz * len(samples) / SAMPLE_RATE)] for hz in (LEFT_HZ, RIGHT_HZ))
    assert left / right == pytest.approx(1.0, rel=0.1)
    assert 0.058 < np.sqrt(np.mean(samples**2)) < 0.095
    assert np.abs(samples).max() <= 1.0


def test_probe_names_container_and_codec(media):
    assert (probe(media["wav"]).format, probe(media["wav"]).codec) == ("wav", "pcm_s16le")
    assert probe(media["mp3"]).codec == "mp3"
    assert probe(media["ogg"]).codec == "vorbis"
    m4a = probe(media["m4a"])
    assert "mp4" in m4a.format and m4a.codec == "aac"
    assert probe(media["mp4"]).codec == "aac"  # the audio stream, not the h264 video before it


def test_video_without_audio_is_refused(media):
    with pytest.raises(AudioError) as e:
        probe(media["video_only"])
    assert str(media["video_only"]) in str(e.value)
    assert "no audio stream" in e.value.cause


def test_8khz_stereo_becomes_16khz_mono_with_a_warning(media):
    info = probe(media["8k_stereo"])
    assert (info.sample_rate, info.channels) == (8000, 2)
    audio = decode(info)
    assert audio.samples.ndim == 1 and audio.duration == pytest.approx(2.0, abs=0.005)
    assert peak_frequencies(audio.samples, 1) == [pytest.approx(LEFT_HZ, abs=2)]
    assert len(audio.warnings) == 1
    assert "8000 Hz" in audio.warnings[0] and str(media["8k_stereo"]) in audio.warnings[0]


def test_path_with_spaces_and_chinese(media, tmp_path):
    path = tmp_path / "访谈 录音 01.wav"
    shutil.copy(media["wav"], path)
    audio = decode(probe(path))
    assert audio.duration == pytest.approx(2.0, abs=0.005)
    with pytest.raises(AudioError) as e:
        probe(tmp_path / "访谈 录音 02.wav")
    assert "访谈 录音 02.wav" in str(e.value)


def test_relative_path_with_a_colon_is_a_file_not_a_url(media, tmp_path, monkeypatch):
    # ffmpeg reads "2023-05-01T10:30.wav" as protocol "2023-05-01T10" unless told it is a file.
    shutil.copy(media["wav"], tmp_path / "2023-05-01T10:30.wav")
    monkeypatch.chdir(tmp_path)
    audio = decode(probe(Path("2023-05-01T10:30.wav")))
    assert audio.duration == pytest.approx(2.0, abs=0.005)


# --- identity ----------------------------------------------------------------------------------------


def test_sha256_is_the_identity_of_the_bytes(media, tmp_path):
    original = probe(media["flac"])
    assert original.sha256 == hashlib.sha256(media["flac"].read_bytes()).hexdigest()
    renamed = tmp_path / "another name.flac"
    shutil.copy(media["flac"], renamed)
    assert probe(renamed).sha256 == original.sha256
    changed = bytearray(renamed.read_bytes())
    changed[len(changed) // 2] ^= 0x01
    renamed.write_bytes(bytes(changed))
    assert file_sha256(renamed) != original.sha256
    assert probe(renamed).sha256 == hashlib.sha256(changed).hexdigest()


# --- bad input ---------------------------------------------------------------------------------------


def assert_refused(path: Path, *cause_words: str) -> AudioError:
    with pytest.raises(AudioError) as e:
        probe(path)
    message = str(e.value)
    assert message.startswith(f"{path}: "), message
    for word in cause_words:
        assert word in e.value.cause.lower(), message
    return e.value


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    assert_refused(path, "empty", "0 bytes")


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("Interview with Mrs. Wang, 3 May. Tape 2 of 3.\n" * 20)
    assert_refused(path, "not an audio file")


def test_directory(tmp_path):
    path = tmp_path / "tapes.wav"
    path.mkdir()
    assert_refused(path, "directory")


def test_missing_file(tmp_path):
    assert_refused(tmp_path / "gone.wav", "not found")


def test_unreadable_file(media, tmp_path):
    if os.geteuid() != 0:
        path = tmp_path / "locked.wav"
        shutil.copy(media["wav"], path)
        path.chmod(0)
        try:
            assert_refused(path, "permission denied")
        finally:
            path.chmod(0o644)
        return
    # root reads any file: probe as user nobody, on a file in a directory nobody may traverse.
    if not Path("/usr/bin/setpriv").exists():
        pytest.skip("running as root and /usr/bin/setpriv is missing: cannot probe as another user")
    with tempfile.TemporaryDirectory(prefix="ohp-perm-") as d:
        os.chmod(d, 0o755)
        path = Path(d) / "locked.wav"
        shutil.copy(media["wav"], path)
        path.chmod(0o600)
        code = (
            "import sys; from pipeline.stages.audio import probe, AudioError\n"
            "try: probe(sys.argv[1])\n"
            "except AudioError as e: print(e); sys.exit(3)\n"
        )
        result = subprocess.run(
            [
                "/usr/bin/setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                sys.executable,
                "-c",
                code,
                str(path),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
    assert result.returncode == 3, result.stderr
    message = result.stdout.strip()
    assert message.startswith(f"{path}: ") and "permission denied" in message.lower(), message


def cut_in_half(source: Path, out: Path, odd: bool = False) -> Path:
    data = source.read_bytes()
    out.write_bytes(data[: len(data) // 2 | int(odd)])
    return out


def test_truncated_mp3_is_decoded_with_a_warning(media, tmp_path):
    # The Xing/Info header that lame writes states the full length: the decoded half falls short of it.
    path = cut_in_half(media["mp3_10s"], tmp_path / "cut.mp3")
    info = probe(path)
    assert info.duration == pytest.approx(10.0, abs=0.1)
    audio = decode(info)
    assert audio.duration == pytest.approx(5.0, abs=0.3)
    assert peak_frequencies(audio.samples, 1) == [pytest.approx(LEFT_HZ, abs=2)]
    truncated = [w for w in audio.warnings if "truncated" in w]
    assert len(truncated) == 1 and str(path) in truncated[0]


def test_truncated_mp3_without_header_cannot_be_told_from_a_short_one(media, tmp_path):
    # Without a Xing header nothing in the file states its length: ffmpeg estimates it from the size,
    # so the declared length is the truncated one and no truncation can be detected. What the code can
    # truthfully do: decode all that is there, and declare what it decoded.
    path = cut_in_half(media["mp3_10s_no_header"], tmp_path / "cut_raw.mp3")
    info = probe(path)
    audio = decode(info)
    assert audio.duration == pytest.approx(5.0, abs=0.3)
    assert info.duration == pytest.approx(audio.duration, abs=0.1)
    assert peak_frequencies(audio.samples, 1) == [pytest.approx(LEFT_HZ, abs=2)]


def test_truncated_wav_keeps_what_decodes(media, tmp_path):
    # Cut inside a sample: ffmpeg reports invalid data at the end, which is a decoding error of the tail,
    # not "not an audio file".
    path = cut_in_half(media["wav_10s"], tmp_path / "cut.wav", odd=True)
    audio = decode(probe(path))
    assert audio.duration == pytest.approx(5.0, abs=0.05)
    errors, truncated = audio.warnings  # the tail's, and the length its header declares (test_messy_folder)
    assert "decoding errors" in errors and "not an audio file" not in errors
    assert "truncated?" in truncated


def test_truncated_m4a_is_refused_as_incomplete(media, tmp_path):
    # An M4A's index (moov) comes last: without it nothing can be decoded, and "not an audio file" would mislead.
    path = cut_in_half(media["m4a"], tmp_path / "cut.m4a")
    error = assert_refused(path, "moov atom not found", "incomplete")
    assert "not an audio file" not in str(error)


def test_file_deleted_between_probe_and_decode(media, tmp_path):
    path = tmp_path / "moved.wav"
    shutil.copy(media["wav"], path)
    info = probe(path)
    path.unlink()
    with pytest.raises(AudioError, match="not found") as e:
        decode(info)
    assert e.value.path == path


def test_what_a_files_tags_say_is_not_taken_for_what_it_holds(tmp_path):
    # Tags are the file's own text, and ffmpeg prints them among its lines: a title was read as the length
    # (a 2 s file then refused as 99 h long), a comment as an audio stream of a film without one.
    lying = lavfi("sine=d=2", tmp_path / "lying.mp3", "-metadata", "title=x Duration: 99:00:00.00, start")
    info = probe(lying)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert decode(info).duration == pytest.approx(2.0, abs=0.1)
    film = tmp_path / "film.mp4"
    stream = "Stream #0:1: Audio: mp3, 44100 Hz, stereo"
    ffmpeg(*VIDEO_2S, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-metadata", f"comment=x\n  {stream}", film)
    with pytest.raises(AudioError, match="no audio stream"):
        probe(film)


def test_a_script_naming_other_recordings_is_no_recording(media, tmp_path):
    # ffmpeg reads an ffconcat script by its content, whatever its name: this one's "audio" was the closed
    # interview beside it, twice, under the script's hash and as a recording of its own.
    shutil.copy(media["wav"], tmp_path / "closed.wav")
    script = tmp_path / "new.wav"
    script.write_text("ffconcat version 1.0\nfile closed.wav\nfile closed.wav\n", encoding="utf-8")
    with pytest.raises(AudioError, match="names other files"):
        probe(script)


# --- memory ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ten_minutes(tmp_path_factory) -> Path:
    """10 min at 16 kHz: silence, then a 440 Hz tone in the last second (FLAC keeps it ~150 kB)."""
    out = tmp_path_factory.mktemp("long") / "ten_minutes.flac"
    return lavfi("aevalsrc='if(gt(t,599),0.1*sin(2*PI*440*t),0)':s=16000:d=600", out)


def decode_measured(info) -> tuple[np.ndarray, int]:
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    try:
        tracemalloc.reset_peak()
        samples = decode(info).samples
        return samples, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_ten_minutes(samples: np.ndarray) -> None:
    assert len(samples) == 600 * SAMPLE_RATE
    assert np.abs(samples[: 598 * SAMPLE_RATE]).max() == 0.0
    assert np.abs(samples[-SAMPLE_RATE // 2 :]).max() == pytest.approx(0.1, abs=0.01)  # the end was decoded


def test_decode_holds_the_audio_once(ten_minutes):
    samples, peak = decode_measured(probe(ten_minutes))
    assert_ten_minutes(samples)
    assert peak < 1.3 * samples.nbytes, f"peak {peak / samples.nbytes:.2f}x the decoded audio"


def test_decode_grows_when_the_container_understates_its_length(media):
    # A container that declares 0.5 s of its 10 s: decode starts with room for 1.5 s and grows 5 times.
    info = probe(media["wav_10s"])
    samples, peak = decode_measured(dataclasses.replace(info, duration=0.5))
    assert np.array_equal(samples, decode(info).samples)
    assert samples.base is None or samples.base.nbytes == samples.nbytes  # no spare capacity kept alive
    assert peak < 1.6 * samples.nbytes, f"peak {peak / samples.nbytes:.2f}x the decoded audio"
