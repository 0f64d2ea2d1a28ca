"""What error messages, logs and the files ohp keeps beside its work tell of a closed recording: nothing that the
listings and exports leave out. SQLite only: none of it depends on the database."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from saving import save_transcription

from pipeline.errors import NotFoundError
from pipeline.process import Checkpoint
from pipeline.records import AudioInfo, Segment, Transcript
from pipeline.stages.transcribe import ChunkResult

from conftest import SQLITE_ONLY

CLOSED = AudioInfo(Path("/audio/li.wav"), "ab" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 20.0)


def closed_recording(store) -> int:
    segments = [Segment(0.0, 0.9, "我叫李秀英。", "我叫李秀英。", "zh", speaker="S1")]
    rid = save_transcription(store, CLOSED, Transcript("zh", 0.9, segments, "faster-whisper", "base"), {}, "t", {})
    store.set_metadata(rid, consent="closed")
    return rid


@SQLITE_ONLY
def test_an_unknown_voice_is_not_answered_with_the_names_of_voices_from_closed_recordings(store):
    closed_recording(store)
    store.enroll("李秀英", [1.0] * 256, "mei", origins=[CLOSED.sha256])  # her name: `ohp speakers list` hides it
    store.enroll("Chen Jie", [1.0] * 256, "mei", origins=["cd" * 32])
    with pytest.raises(NotFoundError) as raised:
        store.forget_person("Chen Jia")
    assert "李秀英" not in str(raised.value)
    assert "Chen Jie" in str(raised.value)  # a voice anyone may list is still offered for a typo


def test_a_checkpoint_of_chunks_is_readable_by_its_owner_only(tmp_path):
    """Its lines are the transcript, of a closed recording too (ohp run writes no files of it), and one stays
    in OHP_HOME after a run killed or failed: with the umask's 0644 anyone on the machine read it."""
    home = tmp_path / "home"
    previous = os.umask(0o022)
    try:
        checkpoint = Checkpoint(CLOSED, "key", home)
        checkpoint.add(0, ChunkResult([Segment(0.0, 0.9, "我叫李秀英。", "我叫李秀英。", "zh")], {}))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(checkpoint.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(checkpoint.path.stat().st_mode) == 0o600
