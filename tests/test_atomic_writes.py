"""audit-exportfiles: what a write of ohp killed mid-way (SIGKILL, a power cut) leaves in the folder. Nothing under a
final name but whole files; its temporary file, named as ohp's own, is removed by the next write into the folder
once no live process owns it; a live writer's temporary file and files that are not ohp's are left alone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from saving import save_transcription
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.records import AudioInfo, Segment, Transcript
from pipeline.store import Store
from pipeline.utils import private_folder, write_atomic

from test_save_result import quiet_wav

REPO = Path(__file__).resolve().parent.parent

# `ohp` with a hook in os.fsync: a file being written into the folder argv[2] blocks there, its bytes written and its
# final name not yet given, after touching argv[1] to say so.
STUCK_OHP = """
import os, sys, time
from pathlib import Path

marker, folder = Path(sys.argv[1]), os.path.realpath(sys.argv[2])
fsync = os.fsync

def stuck(fd):
    if os.path.dirname(os.readlink(f"/proc/self/fd/{fd}")) != folder:
        return fsync(fd)
    marker.touch()
    time.sleep(600)

os.fsync = stuck
from pipeline.cli import app
app(sys.argv[3:])
"""
NOT_OHPS = (".notes.txt.tmp", "zhang.json.tmp", ".zhang.json.ohp-x.tmp", "~$zhang.docx")


def stuck_ohp(marker: Path, folder: Path, *args: str) -> subprocess.Popen:
    """`ohp ARGS` in a process of its own, returned once it is stuck writing a file into the folder."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_OHP, str(marker), str(folder), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while not marker.exists():  # no deadline: on a loaded machine the start alone can take long
        if proc.poll() is not None:
            pytest.fail(f"ohp {' '.join(args)} ended without writing: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        time.sleep(0.05)
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped: a killed process not yet waited for is still a process


def recording(db: Path, name: str, sha: str) -> str:
    url = f"sqlite:///{db}"
    segments = [Segment(0.0, 2.0, "我在东莞的工厂加班。", "我在东莞的工厂加班。", "zh")]
    info = AudioInfo(Path(f"/audio/{name}"), sha * 32, 1000, "wav", "pcm_s16le", 16000, 1, 2.0)
    with Store(url) as store:
        save_transcription(store, info, Transcript("zh", 0.9, segments, "faster-whisper", "base"), {}, "k", {})
    return url


@pytest.mark.parametrize("command", ["export", "run"])
def test_a_write_killed_mid_way_leaves_nothing_the_next_one_does_not_remove(tmp_path, command):
    out = tmp_path / "out"
    out.mkdir()
    for name in NOT_OHPS:
        (out / name).write_text("not ohp's")
    if command == "export":
        url = recording(tmp_path / "ohp.db", "zhang.wav", "ab")
        args = ["export", "--all", "--format", "json", "--format", "srt", "--out", str(out), "--db", url]
    else:
        url = f"sqlite:///{tmp_path / 'ohp.db'}"
        wav = quiet_wav(tmp_path / "zhang.wav")
        args = ["run", str(wav), "--out", str(out), "--db", url, "--no-tag", "--speakers", "off"]
    kill(stuck_ohp(tmp_path / "killed", out, *args))
    (left,) = {p.name for p in out.iterdir()} - set(NOT_OHPS)  # no zhang.json: nothing half-written is seen
    assert left.startswith(".zhang.json."), left

    live_url = recording(tmp_path / "live.db", "live.wav", "cd")
    live = stuck_ohp(tmp_path / "live", out, "export", "--all", "--out", str(out), "--db", live_url)
    try:
        (live_temporary,) = [p.name for p in out.glob(".live.json.*")]
        again = CliRunner().invoke(app, args)
        assert again.exit_code == 0, again.output
        expected = {"zhang.json", *(["zhang.srt"] if command == "export" else ["zhang.srt", "zhang.vtt", "zhang.txt"])}
        assert {p.name for p in out.iterdir()} == {*expected, *NOT_OHPS, live_temporary}
    finally:
        kill(live)


def test_a_file_whose_name_is_as_long_as_the_file_system_allows_is_written(tmp_path):
    """255 bytes, a recording named in 82 Chinese characters exported as OHMS: its temporary file's name, the final
    one and ohp's characters beside it, was too long to make, and the export failed."""
    path = tmp_path / ("访谈" * 41 + ".ohms.xml")
    assert len(path.name.encode()) == 255
    write_atomic(path, "<ohms/>")
    assert [p.name for p in tmp_path.iterdir()] == [path.name] and path.read_text() == "<ohms/>"


def test_a_leftover_named_with_a_pid_no_process_can_have_does_not_stop_a_write(tmp_path):
    """os.kill raised OverflowError for a pid past the C int: a name in a shared folder stopped every export there."""
    out = tmp_path / "out"
    out.mkdir()
    url = recording(tmp_path / "ohp.db", "zhang.wav", "ab")
    args = ["export", "--all", "--out", str(out), "--db", url]
    kill(stuck_ohp(tmp_path / "killed", out, *args))
    (left,) = out.iterdir()
    left.rename(out / re.sub(r"-[0-9]+-([0-9a-f]{12})\.tmp$", r"-99999999999999999999-\1.tmp", left.name))
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert [p.name for p in out.iterdir()] == ["zhang.json"]


# `session_secret` in a process of its own, blocked once it is making the secret (argv[2], the home) until killed.
STUCK_SECRET = """
import sys, time
from pathlib import Path
from pipeline.web import auth

def stuck(n):
    Path(sys.argv[1]).touch()
    time.sleep(600)

auth.secrets.token_urlsafe = stuck
auth.session_secret(Path(sys.argv[2]))
"""


def test_a_web_secret_whose_making_was_killed_is_made_again_never_empty(tmp_path):
    """The secret file was created empty, then written: a server killed between the two (or a power cut before
    the bytes reached the disk) left an empty secret, which the next server signed every session cookie with."""
    from pipeline.web.auth import session_secret

    home, marker = tmp_path / "home", tmp_path / "making"
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_SECRET, str(marker), str(home)], env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    while not marker.exists() and proc.poll() is None:
        time.sleep(0.05)
    kill(proc)
    secret = session_secret(home)
    assert len(secret) >= 32 and session_secret(home) == secret
    assert (home / "web-secret").stat().st_mode & 0o777 == 0o600


def test_an_empty_web_secret_an_earlier_ohp_left_is_made_again(tmp_path):
    (tmp_path / "web-secret").touch(mode=0o600)
    from pipeline.web.auth import session_secret

    assert len(session_secret(tmp_path)) >= 32


def test_a_private_folder_a_killed_process_left_is_removed_by_the_next(tmp_path):
    """A cluster worker's copy of an interview (sent by the driver) was in a TemporaryDirectory in /tmp: a worker
    killed outright (by the kernel, for memory) left the recording there until the machine's /tmp was cleaned."""
    killed = subprocess.run(
        [sys.executable, "-c", LEFT_BEHIND, str(tmp_path)], env={**os.environ, "PYTHONPATH": str(REPO)}, check=True
    )
    assert killed.returncode == 0
    (left,) = tmp_path.iterdir()
    assert (left / "zhang.wav").read_bytes() == b"RIFF" and left.stat().st_mode & 0o777 == 0o700
    with private_folder(tmp_path) as folder:
        assert list(tmp_path.iterdir()) == [folder] and folder.stat().st_mode & 0o777 == 0o700
        (folder / "li.wav").write_bytes(b"RIFF")
    assert list(tmp_path.iterdir()) == []


# A process that makes a private folder in argv[1], puts a recording in it and ends without leaving the block.
LEFT_BEHIND = """
import os, sys
from pathlib import Path
from pipeline.utils import private_folder

with private_folder(Path(sys.argv[1])) as folder:
    (folder / "zhang.wav").write_bytes(b"RIFF")
    os._exit(0)
"""
