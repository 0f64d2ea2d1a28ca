"""The speakers stage hearing the voices on a thread of its own while the recogniser decodes: the same result as
one after the other, the thread gone when the pass is over, and a failure on it reported as the stage's."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from pipeline import process
from pipeline.process import RunOptions, SpeakerOptions, StageError, process_recording
from pipeline.records import PersonRecord
from pipeline.stages.speakers import voice_profile
from pipeline.stages.transcribe import TranscribeOptions

from conftest import corpus_path

# A two-person phone call (30 s, English), which the speakers tests score against its reference turns.
CALL = "en/pyannote_pyannote-audio__src_pyannote_audio_sample_sample.wav"

pytestmark = [pytest.mark.corpus, pytest.mark.slow]


def options(home, **changes) -> RunOptions:
    made = RunOptions(
        transcribe=TranscribeOptions(language="en"),
        speakers=SpeakerOptions(count=2),
        out_dir=None,
        home=home,
        device="cpu",
        threads=2,
    )
    return dataclasses.replace(made, **changes)


def people() -> list[PersonRecord]:
    from pipeline.stages.audio import decode, probe

    samples = decode(probe(corpus_path(CALL))).samples
    # Enrolled from her reference turns in the first 20 s, as the speakers tests enrol her.
    profile = voice_profile([samples[int(a * 16000) : int(b * 16000)] for a, b in [(14.70, 17.92), (7.55, 8.32)]])
    return [PersonRecord(1, "Sheila", tuple(profile.tolist()), (CALL,), "researcher", "2026-12-02T00:00:00Z")]


def beside_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("speakers-beside")]


def test_voices_heard_beside_the_decoding_give_the_result_of_one_after_the_other(own_ohp_home, monkeypatch):
    heard_on: list[tuple[str, int]] = []
    hearing: list[float] = []
    hear_voices = process._hear_voices

    def recorded(audio, speaker_options, enrolled, device, threads):
        heard_on.append((threading.current_thread().name, threads))
        started = time.monotonic()
        voices = hear_voices(audio, speaker_options, enrolled, device, threads)
        hearing.append(time.monotonic() - started)
        return voices

    monkeypatch.setattr(process, "_hear_voices", recorded)
    enrolled = people()
    beside = process_recording(corpus_path(CALL), options(own_ohp_home), people=enrolled)
    assert len(heard_on) == 1 and heard_on[0][0].startswith("speakers-beside") and heard_on[0][1] == 1
    assert not beside_threads()

    monkeypatch.setattr(process, "hears_beside_decoding", lambda options: False)
    after = process_recording(corpus_path(CALL), options(own_ohp_home, force=True), people=enrolled)
    assert heard_on[1] == (threading.current_thread().name, 2)
    assert beside.transcript.segments == after.transcript.segments
    assert beside.speakers == after.speakers
    assert "Sheila" in {s.name for s in beside.speakers}
    timing = ("seconds", "beside_decoding")
    report = {k: v for k, v in beside.stages["speakers"].report.items() if k not in timing}
    assert report == {k: v for k, v in after.stages["speakers"].report.items() if k not in timing}
    # The stage's seconds count the hearing on its thread, not only the wait for it once the decoding was done.
    beside_report, after_report = beside.stages["speakers"].report, after.stages["speakers"].report
    assert beside_report["beside_decoding"] and not after_report["beside_decoding"]
    assert beside_report["seconds"] >= round(hearing[0], 3) - 0.001


def test_a_failure_beside_the_decoding_is_the_speakers_stages(own_ohp_home, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the voice encoder ran out of memory")

    monkeypatch.setattr(process, "diarize", broken)
    with pytest.raises(StageError) as raised:
        process_recording(corpus_path(CALL), options(own_ohp_home, force=True))
    assert raised.value.stage == "speakers" and isinstance(raised.value.cause, RuntimeError)
    assert str(raised.value.path).endswith(".wav") and "ran out of memory" in str(raised.value)
    assert raised.value.__cause__ is raised.value.cause and raised.value.cause.__traceback__ is not None
    assert not beside_threads()


def test_a_failed_transcription_waits_for_the_voices_and_leaves_no_thread(own_ohp_home, monkeypatch):
    finished: list[bool] = []
    hear_voices = process._hear_voices

    def slow_voices(*args):
        result = hear_voices(*args)
        finished.append(True)
        return result

    def failing_transcription(*args, **kwargs):
        raise RuntimeError("the recogniser's weights are damaged")

    monkeypatch.setattr(process, "_hear_voices", slow_voices)
    monkeypatch.setattr(process, "transcribe_twice", failing_transcription)
    with pytest.raises(StageError) as raised:
        process_recording(corpus_path(CALL), options(own_ohp_home, force=True))
    assert raised.value.stage == "transcribe"
    assert finished == [True]  # waited for, not left running after the pass
    assert not beside_threads()


def test_voices_are_heard_beside_only_with_threads_to_share_and_faster_whisper(tmp_path):
    assert process.hears_beside_decoding(options(tmp_path))
    assert not process.hears_beside_decoding(options(tmp_path, threads=1))
    openai = options(tmp_path, transcribe=TranscribeOptions(engine="openai-whisper"))
    assert not process.hears_beside_decoding(openai)
