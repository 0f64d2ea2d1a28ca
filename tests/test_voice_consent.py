"""An enrolled voice follows the consent of the recordings it came from (pipeline.access.voice_withheld) in a run:
the speakers stage looks for it only where it is not withheld, and looks again once its recording is released.
On SQLite, and on PostgreSQL when OHP_TEST_POSTGRES_URL is set."""

from __future__ import annotations

from pathlib import Path

from saving import save_speakers, save_transcription

from pipeline.batch import FileRun
from pipeline.process import RunOptions, speaker_settings
from pipeline.records import AudioInfo, Segment, SpeakerRecord, Transcript, settings_key
from pipeline.stages.audio import probe

from test_save_result import quiet_wav

CLOSED = AudioInfo(Path("/audio/zhang.wav"), "ab" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 20.0)
OPTIONS = RunOptions(out_dir=None)  # the speakers stage, no tagging, no files
TRANSCRIBED = settings_key(OPTIONS.settings())


def transcript() -> Transcript:
    return Transcript("zh", 0.9, [Segment(0.0, 0.9, "你好。", "你好。", "zh", speaker="S1")], "faster-whisper", "base")


def test_a_run_looks_for_a_voice_from_a_closed_recording_only_in_it_and_everywhere_once_released(store, tmp_path):
    source = save_transcription(store, CLOSED, transcript(), {}, "t", {})
    store.set_metadata(source, consent="closed", release_on="2040-01-01")
    zhang = store.enroll("Zhang", [1.0] * 256, "mei", origins=[CLOSED.sha256])
    other = quiet_wav(tmp_path / "li.wav")
    stored = save_transcription(store, probe(other), transcript(), OPTIONS.settings(), TRANSCRIBED, {})
    assert OPTIONS.speakers is not None
    without_voices = speaker_settings(OPTIONS.speakers, [])
    save_speakers(store, stored, [SpeakerRecord("S1")], without_voices, settings_key(without_voices), {})

    # Transcribed, its speakers found without the voice: nothing to do while the voice is withheld.
    assert FileRun(other, store, OPTIONS).plan() is None

    store.set_metadata(source, consent="open")  # released: the speakers are found again, with the voice
    planned = FileRun(other, store, OPTIONS).plan()
    assert planned is not None and [p.id for p in planned.people] == [zhang.id]


def test_a_voice_from_a_closed_recording_is_looked_for_in_that_recording(store, tmp_path):
    own = quiet_wav(tmp_path / "zhang.wav")
    info = probe(own)
    source = save_transcription(store, info, transcript(), OPTIONS.settings(), TRANSCRIBED, {})
    store.set_metadata(source, consent="closed")
    zhang = store.enroll("Zhang", [1.0] * 256, "mei", origins=[info.sha256])
    planned = FileRun(own, store, OPTIONS).plan()
    assert planned is not None and [p.id for p in planned.people] == [zhang.id]
