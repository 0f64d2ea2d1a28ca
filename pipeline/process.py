"""One recording's pass through the pipeline, in memory: decode -> segment -> transcribe (and doubt) -> speakers
-> tag. The speakers stage's work on the audio alone (who speaks when, and which enrolled voices) may run beside
the transcription (`hears_beside_decoding`); its result meets the transcript afterwards.

`process_recording` takes plain inputs (the file, the run options, the enrolled voices, and what the store
has of the recording) and returns a `RecordingResult`, which `Store.save_result` saves in one transaction.
It never touches the database, so a pass can run on another machine.

Stages already done with the same settings are skipped: changed speaker settings or a newly enrolled voice
redo the speakers (the audio is decoded again, not transcribed), a changed codebook redoes the tagging, and a
transcript people made (imported) keeps its speakers and is transcribed only with `force`. A recording being
transcribed checkpoints its finished chunks to a file beside the model cache, so a killed run resumes from
the last one; the checkpoint goes once the result is saved (`clear_checkpoint`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.carry import carry_corrections
from pipeline.config import default_home
from pipeline.formats.export import DEFAULT_FORMATS
from pipeline.realign import realign
from pipeline.records import (
    AudioInfo,
    Chunk,
    PersonRecord,
    RecordingRecord,
    RecordingResult,
    Segment,
    SpeakerRecord,
    SpeakerTurn,
    SpeechRegion,
    StageRecord,
    StageRun,
    Transcript,
    Word,
    settings_key,
)
from pipeline.stages.audio import DecodedAudio, decode, probe
from pipeline.stages.codebook import Codebook
from pipeline.stages.doubt import SECOND_DECODE, confidence, mark_doubt, prepare_doubt
from pipeline.stages.engines import (
    Engine,
    EngineName,
    ctranslate2_device,
    decoder_count,
    default_batch_size,
    default_compute_type,
    load_engine,
)
from pipeline.stages.learned import ThemeModel
from pipeline.stages.segment import VadOptions, segment, speech_regions
from pipeline.stages.speakers import (
    MAX_ESTIMATED_SPEAKERS,
    DiarizeOptions,
    diarize,
    label_roles,
    load_encoder,
    match_profiles,
    speaker_at,
    split_segment,
)
from pipeline.stages.transcribe import ChunkResult, TranscribeOptions, batches, transcribe_twice
from pipeline.stages.vad import load_model as load_vad
from pipeline.stages.vocabulary import Vocabulary, build_hint, codebook_terms
from pipeline.utils import resolved, usable_cores

log = logging.getLogger(__name__)

# The recogniser's arithmetic of every transcript made before it could be chosen: it stays out of the settings.
STORED_COMPUTE_TYPE = "int8"
STAGES = ("transcribe", "speakers", "tag")  # the stages with a row in the store, in the order they run


@dataclass(frozen=True)
class SpeakerOptions:
    count: int | None = None  # None: estimated, at most MAX_ESTIMATED_SPEAKERS

    @property
    def max_speakers(self) -> int:
        return max(MAX_ESTIMATED_SPEAKERS, self.count or 0)

    def settings(self) -> dict:
        """The speakers stage's settings, but for the enrolled voices (see speaker_settings)."""
        return {
            "count": self.count,
            "max_speakers": self.max_speakers,
            "diarize": asdict(DiarizeOptions()),
        }


@dataclass(frozen=True)
class RunOptions:
    transcribe: TranscribeOptions = field(default_factory=TranscribeOptions)
    vad: VadOptions = field(default_factory=VadOptions)
    speakers: SpeakerOptions | None = field(default_factory=SpeakerOptions)  # None skips the speakers stage
    force: bool = False
    out_dir: Path | None = Path("transcripts")
    formats: tuple[str, ...] = DEFAULT_FORMATS
    codebook: Codebook | None = None  # themes to tag with; None skips the tag stage
    model: ThemeModel | None = None  # the learned model that adds to the codebook's patterns; None: patterns alone
    home: Path = field(default_factory=default_home)  # the model cache; partial transcripts are kept there too
    device: str = "auto"  # where models run: auto, cpu or cuda
    # CPU threads for every model (recogniser, VAD, speaker encoder; two recognisers side by side share them):
    # resolved here, when the options are made, and handed to each model; by default every core the process may
    # use (a cluster's worker gives the CPUs it reserved). Not a setting: the same text with any number.
    threads: int = field(default_factory=usable_cores)
    # The project's vocabulary; with it each recording's hint (see for_recording). None: no hint.
    vocabulary: Vocabulary | None = None
    # Decode each recording a second time (greedy), and doubt more the words it writes differently: marks more
    # of the wrong words at the same share of text (bench/RESULTS.md), and costs that second decode.
    second_decode: bool = False

    @property
    def compute_type(self) -> str:
        """The recogniser's arithmetic: as given, else the device's default (int8 on the CPU, float16 on CUDA)."""
        return self.transcribe.compute_type or default_compute_type(self.device)

    def settings(self) -> dict:
        """The transcribe stage's settings: the same settings give the same transcript (and the same doubt). The
        device, the threads and the batch size are not among them (the same arithmetic gives the same text
        anywhere). The compute type is, unless it is int8, which every transcript made before it could be
        chosen was made with; the second decode counts only when asked for: settings made before either
        existed stay the same."""
        transcribe = self.transcribe.settings()
        if self.compute_type != STORED_COMPUTE_TYPE:
            transcribe["compute_type"] = self.compute_type
        settings = {"transcribe": transcribe, "vad": asdict(self.vad)}
        return {**settings, "second_decode": True} if self.second_decode else settings


def for_recording(options: RunOptions, recording: RecordingRecord | None) -> RunOptions:
    """The options for one recording: with a vocabulary, the hint made of the recording's interviewee and place
    (when the store knows them), the vocabulary's terms and the codebook's key terms, in that order. Without a
    vocabulary file, no hint: the interviewee and place alone, or the codebook's key terms alone, made the error
    rate worse where they were not said (bench/RESULTS.md), and a vocabulary's many terms made it better."""
    if options.vocabulary is None:
        return options
    own = (recording.interviewee, recording.place) if recording else ()
    hint = build_hint(own, options.vocabulary.terms, codebook_terms(options.codebook))
    return replace(options, transcribe=replace(options.transcribe, hint=hint))


def speaker_settings(options: SpeakerOptions, people: Sequence[PersonRecord]) -> dict:
    # A newly enrolled voice is looked for in every recording again, as a changed codebook re-tags.
    return {**options.settings(), "people": settings_key({p.name: p.enrolled_at for p in people})}


def tag_settings(codebook: Codebook, model: ThemeModel | None = None) -> dict:
    """The tag stage's settings: a changed codebook or a retrained model tags again."""
    from pipeline.stages.tag import TAGGER_VERSION  # spaCy (and torch under it) load only for a run that tags

    return {"tagger": TAGGER_VERSION, "codebook": codebook.version, "model": model.version if model else None}


def is_done(stage: StageRecord | None, settings: dict) -> bool:
    """Whether the stage is done with these settings."""
    return stage is not None and stage.status == "done" and stage.settings_key == settings_key(settings)


def pending_stages(options: RunOptions, people: Sequence[PersonRecord], stages: Mapping[str, StageRecord]) -> list[str]:
    """The stages a pass over a recording must run, given the stages the store has of it (by name)."""
    transcribed = stages.get("transcribe")
    # A transcript people made (imported) is not the recogniser's to replace, nor its speakers.
    imported = transcribed is not None and transcribed.status == "done" and "imported" in transcribed.settings
    pending = []
    if options.force or not (imported or is_done(transcribed, options.settings())):
        pending.append("transcribe")
    speakers_done = options.speakers and is_done(stages.get("speakers"), speaker_settings(options.speakers, people))
    if options.speakers and (pending or not imported) and (pending or options.force or not speakers_done):
        pending.append("speakers")
    # New segments are tagged anew.
    tagged = options.codebook and is_done(stages.get("tag"), tag_settings(options.codebook, options.model))
    if options.codebook and (pending or options.force or not tagged):
        pending.append("tag")
    return pending


class StageProgress(Protocol):
    """What a pass tells its caller as it goes."""

    def stage_started(self, path: Path, stage: str, audio_seconds: float) -> None: ...
    def audio_done(self, path: Path, audio_seconds: float) -> None: ...


class StageError(Exception):
    """A stage failed on a recording: the message names the file, the stage and the cause (also chained)."""

    def __init__(self, path: Path, stage: str, cause: Exception) -> None:
        super().__init__(f"{path}: {stage}: {type(cause).__name__}: {cause}")
        self.path, self.stage, self.cause = path, stage, cause

    def __reduce__(self) -> tuple:  # pickled whole: a pass on a cluster's worker reports its failure with it
        return type(self), (self.path, self.stage, self.cause)


@contextmanager
def running(
    path: Path, stage: str, progress: StageProgress | None = None, audio_seconds: float = 0.0
) -> Iterator[None]:
    """A stage of a pass: logged, told to the progress, and its failure a StageError naming it."""
    log.debug("%s: %s", path, stage)
    if progress:
        progress.stage_started(path, stage, audio_seconds)
    try:
        yield
    except StageError:
        raise
    except Exception as exc:
        raise StageError(path, stage, exc) from exc


def _segments(stored: list[dict]) -> list[Segment]:
    """Segments as a checkpoint keeps them (JSON) made whole again; ValueError for times no recording has."""
    segments = [Segment(**{**s, "words": [Word(**w) for w in s["words"]], "marks": tuple(s["marks"])}) for s in stored]
    for s in segments:
        times = [s.start, s.end, *(t for w in s.words for t in (w.start, w.end))]
        if not all(isinstance(t, (int, float)) and 0 <= t < math.inf for t in times) or s.end < s.start:
            raise ValueError(f"a segment's times are {s.start}-{s.end}")
    return segments


def _chunk(entry: object) -> tuple[int, ChunkResult]:
    """A checkpoint's line made whole again; KeyError, TypeError or ValueError for one not as ohp writes it."""
    if not isinstance(entry, dict) or not isinstance(entry["index"], int) or not isinstance(entry["guards"], dict):
        raise TypeError("not a finished chunk")
    second = entry.get("second")
    return entry["index"], ChunkResult(
        _segments(entry["segments"]), entry["guards"], None if second is None else _segments(second)
    )


class Checkpoint:
    """Finished chunks of a recording being transcribed, one JSON line each, so a killed run resumes."""

    def __init__(self, info: AudioInfo, key: str, home: Path) -> None:
        folder = home / "partial"
        # Readable by the owner only, as the recording's own copy on a worker is: the lines are its transcript, a
        # closed one's too, and a killed run leaves them.
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = folder / f"{info.sha256}-{key}.jsonl"

    def load(self) -> dict[int, ChunkResult]:
        """The chunks finished before, by index. A line not whole (the one being written when the run was
        killed, maybe cut inside a character) or not as ohp writes it (edited) is not trusted: its chunk is
        transcribed again."""
        done: dict[int, ChunkResult] = {}
        if not self.path.exists():
            return done
        for number, line in enumerate(self.path.read_bytes().splitlines(), 1):
            try:
                index, result = _chunk(json.loads(line))  # bytes: json reads them as UTF-8
            except (ValueError, KeyError, TypeError, RecursionError) as e:  # JSON's and UTF-8's errors too
                log.warning("%s, line %d: not a finished chunk (%s); transcribed again", self.path, number, e)
                continue
            done[index] = result
        return done

    def add(self, index: int, result: ChunkResult) -> None:
        entry: dict = {"index": index, "segments": [asdict(s) for s in result.segments], "guards": result.guards}
        if result.second is not None:
            entry["second"] = [asdict(s) for s in result.second]
        line = json.dumps(entry, ensure_ascii=False)
        with open(self.path, "a", encoding="utf-8", opener=lambda file, flags: os.open(file, flags, 0o600)) as f:
            f.write(line + "\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def clear_checkpoint(result: RecordingResult, home: Path) -> None:
    """Remove the chunks kept while the recording was transcribed: call once its result is saved."""
    if "transcribe" in result.stages:
        Checkpoint(result.info, result.stages["transcribe"].settings_key, home).remove()


Audio = tuple[np.ndarray, list[SpeechRegion]]  # decoded samples and their speech regions
# Speaker turns, the enrolled names of their speakers, and the seconds that hearing them took.
Voices = tuple[list[SpeakerTurn], dict[str, str], float]


def load_recogniser(options: RunOptions, replica: int, count: int) -> Engine:
    """The recogniser's model `replica` of `count` decoding side by side, with its share of the run's threads."""
    threads = options.threads
    return load_engine(
        options.transcribe.engine,
        options.transcribe.model,
        options.home,
        options.device,
        options.compute_type,
        threads // count + (replica < threads % count),
        replica,
    )


def load_models(options: RunOptions) -> None:
    """Load the models a pass with these options reads with, each kept for the process's later passes: the voice
    activity detector, the recogniser (its one model, as for a recording of a few batches) and, with speakers on,
    the voice encoder. A cluster's worker loads them before it says it is ready, so that a pass's time is the
    pass's own (pipeline.cluster.driver)."""
    load_vad(options.device, options.threads)
    load_recogniser(options, 0, 1)
    if options.speakers is not None:
        load_encoder(options.device)


def _decode_and_segment(
    info: AudioInfo, options: RunOptions, progress: StageProgress | None
) -> tuple[DecodedAudio, list[Chunk]]:
    """The recording decoded (stage "decode") and cut into chunks of speech (stage "segment")."""
    with running(info.path, "decode", progress, info.duration):
        decoded = decode(info)
    with running(info.path, "segment", progress, decoded.duration):
        return decoded, segment(decoded.samples, options.vad, options.device, options.threads)


def _transcribe(
    result: RecordingResult,
    options: RunOptions,
    stored: Transcript | None,
    progress: StageProgress | None,
    decoded: DecodedAudio,
    chunks: list[Chunk],
) -> None:
    """Transcribe the chunks (stage "transcribe") into `result`. Corrections people made to a stored transcript
    go onto the new text, so the tagger reads them; then the doubt stage marks the words to check (not those a
    person corrected)."""
    info, started = result.info, time.monotonic()
    settings = options.settings()
    key = settings_key(settings)
    warnings = list(decoded.warnings)
    with running(info.path, "transcribe", progress, decoded.duration):
        checkpoint = Checkpoint(info, key, options.home)
        if options.force:
            checkpoint.remove()
        done = checkpoint.load()

        def chunk_finished(index: int, chunk_result: ChunkResult) -> None:
            if index not in done:
                checkpoint.add(index, chunk_result)
            if progress:
                progress.audio_done(info.path, chunks[index].end)

        second: Transcript | None = None
        if chunks:
            # Models decoding side by side share the threads the run may use; the batches are counted once, and
            # the batch size resolved for the device is the one the transcription takes.
            threads = options.threads
            batch_size = options.transcribe.batch_size or default_batch_size(ctranslate2_device(options.device))
            count = decoder_count(
                options.transcribe.engine, options.device, threads, len(batches(len(chunks), batch_size))
            )

            with ThreadPoolExecutor(1, "model-loader") as loader:
                # The other models load beside the first (CTranslate2 lets go of the GIL while it loads) and while
                # it tells the language; each encodes its first batch as soon as it is loaded (bench/RESULTS.md).
                others = [loader.submit(load_recogniser, options, replica, count) for replica in range(1, count)]
                first = load_recogniser(options, 0, count)
                # With the second decode, the same but the decoding, from the same encoder pass: where they
                # differ, the recogniser wavered.
                transcript, second = transcribe_twice(
                    decoded.samples,
                    chunks,
                    [first, *others],
                    replace(options.transcribe, batch_size=batch_size),
                    SECOND_DECODE if options.second_decode else None,
                    done=done,
                    on_chunk=chunk_finished,
                    on_language=prepare_doubt,
                )
        else:  # silence: a valid recording with nothing to transcribe, and no model to load for it
            warnings.append(f"{info.path}: no speech found")
            transcript = Transcript(None, 0.0, [], options.transcribe.engine, options.transcribe.model)
    for correction in carry_corrections(stored.segments if stored else [], transcript.segments):
        if correction.target is not None:
            new, text = transcript.segments[correction.target], correction.old.text
            words = realign(new.words, text, new.start, new.end)
            transcript.segments[correction.target] = replace(
                new, text=text, version=correction.version, corrected=True, words=words
            )
    transcript = mark_doubt(transcript, second=second)
    transcript.warnings = warnings
    # The decoded length is the truth when a container misstates it (truncated files).
    result.info, result.transcript = replace(info, duration=decoded.duration), transcript
    result.stages["transcribe"] = StageRun(
        settings,
        key,
        {
            "segments": len(transcript.segments),
            "chunks": len(chunks),
            "speech_seconds": round(sum(c.speech_duration for c in chunks), 3),
            "language_probability": transcript.language_probability,
            "guards": transcript.guards,
            "warnings": warnings,
            "quality_warnings": transcript.quality_warnings,
            "resumed_chunks": len(done),
            "seconds": round(time.monotonic() - started, 3),
        },
    )


def _hear_voices(
    audio: Audio, speaker_options: SpeakerOptions, people: Sequence[PersonRecord], device: str, threads: int
) -> Voices:
    """Who speaks when, and which of the enrolled people they are: the part of the speakers stage that reads the
    audio alone, not the transcript."""
    started = time.monotonic()
    samples, regions = audio
    count, most = speaker_options.count, speaker_options.max_speakers
    turns = diarize(samples, regions, count, most, device=device, threads=threads)
    profiles = {p.name: np.asarray(p.profile, dtype=np.float32) for p in people}
    names = match_profiles(samples, turns, profiles, device=device, threads=threads)
    return turns, names, time.monotonic() - started


def hears_beside_decoding(options: RunOptions) -> bool:
    """Whether the speakers stage hears the voices on a thread of its own, with one of the run's threads, while
    faster-whisper decodes: decoding leaves cores waiting on its steps, which the voice encoder then uses
    (bench/RESULTS.md). Not with one thread (nothing to share), nor with openai-whisper, which decodes with
    torch, whose threads are the process's."""
    return options.threads >= 2 and options.transcribe.engine == EngineName.FASTER_WHISPER


def _find_speakers(
    result: RecordingResult,
    speaker_options: SpeakerOptions,
    options: RunOptions,
    people: Sequence[PersonRecord],
    audio: Audio | None,
    progress: StageProgress | None,
    heard: Future[Voices] | None = None,
) -> None:
    """Who speaks when (stage "speakers"): turns, every segment given its speaker and split where the speaker
    changes, roles, and enrolled voices named. `heard`: the voices heard beside the decoding. Without `audio`
    (a recording transcribed earlier) the file is decoded again; the transcript is not redone."""
    info, started = result.info, time.monotonic()
    settings = speaker_settings(speaker_options, people)
    with running(info.path, "speakers", progress, info.duration):
        decoded_again = audio is None
        if heard is not None:
            waiting = time.monotonic()
            turns, names, hearing = heard.result()
            # The stage's seconds: the hearing's own on its thread beside the decoding, not the wait for it.
            started += time.monotonic() - waiting - hearing
        else:
            if audio is None:
                samples = decode(info).samples
                audio = samples, speech_regions(samples, options.vad, options.device, options.threads)
            turns, names, _ = _hear_voices(audio, speaker_options, people, options.device, options.threads)
        before = result.transcript.segments
        # A segment whose text a person corrected is not split (its parts would take the words' text): it
        # keeps its text and takes the speaker who says most of it.
        segments = [
            replace(part, confidence=confidence(part))  # a part's own words' confidence
            for s in before
            for part in (
                [replace(s, speaker=speaker_at(s.start, s.end, turns))] if s.corrected else split_segment(s, turns)
            )
        ]
        roles = label_roles(segments, turns)
    ids = {p.name: p.id for p in people}
    person_ids = {label: ids.get(name) for label, name in names.items()}
    result.transcript = replace(result.transcript, segments=segments)
    result.speakers = [
        SpeakerRecord(label, names.get(label), roles.get(label), person_id=person_ids.get(label))
        for label in dict.fromkeys(turn.speaker for turn in turns)
    ]
    result.stages["speakers"] = StageRun(
        settings,
        settings_key(settings),
        {
            "speakers": len(result.speakers),
            "turns": len(turns),
            "segments": len(segments),
            "segments_split": len(segments) - len(before),
            "roles": roles,
            "enrolled": names,
            "decoded_again": decoded_again,
            "beside_decoding": heard is not None,
            "seconds": round(time.monotonic() - started, 3),
        },
    )


def tag_result(
    result: RecordingResult,
    codebook: Codebook,
    progress: StageProgress | None = None,
    model: ThemeModel | None = None,
) -> None:
    """Tag the result's segments with the codebook's themes (and the model's, if given) and find their entities
    (stage "tag"). What the tagging changes in the store (added, updated, withdrawn) the store adds to the
    report when it saves."""
    from pipeline.stages.tag import TAGGER_VERSION, tag_segments

    settings = tag_settings(codebook, model)
    segments = result.transcript.segments
    with running(result.info.path, "tag", progress, result.info.duration):
        found = tag_segments([s.text for s in segments], [s.language for s in segments], codebook, model=model)
    result.themes = {i: r.themes for i, r in enumerate(found) if r.themes}
    result.entities = {i: r.entities for i, r in enumerate(found) if r.entities}
    result.tagger = f"{TAGGER_VERSION}/{codebook.version}" + (f"/{model.version}" if model else "")
    result.stages["tag"] = StageRun(settings, settings_key(settings), {})


def stored_result(recording: RecordingRecord, transcript: Transcript) -> RecordingResult:
    """A stored recording as a result no stage has run on yet (to tag it again, say)."""
    info = AudioInfo(
        Path(recording.path), recording.sha256, recording.size_bytes, recording.format, "", 0, 0, recording.duration
    )
    return RecordingResult(info, transcript)


def process_recording(
    source: Path | AudioInfo,
    options: RunOptions,
    *,
    people: Sequence[PersonRecord] = (),
    stages: Mapping[str, StageRecord] | None = None,
    stored: Transcript | None = None,
    progress: StageProgress | None = None,
) -> RecordingResult:
    """One recording from its file to a complete result in memory: the stages it needs (pending_stages), no
    database. `stages` and `stored` are what the store has of the recording: its stages by name, and its
    transcript (segments with ids and versions), which a pass that does not transcribe works on."""
    stages = stages or {}
    if isinstance(source, AudioInfo):
        info = source
    else:
        with running(source, "probe", progress):
            info = probe(resolved(source))
    pending = pending_stages(options, people, stages)
    if stored is None and pending and "transcribe" not in pending:
        needed = ", ".join(pending)
        raise ValueError(f"{info.path}: the stored transcript is needed to run {needed} without transcribing")
    nothing = Transcript(None, 0.0, [], options.transcribe.engine, options.transcribe.model)
    result = RecordingResult(info, stored or nothing)
    # pending_stages lists speakers and tag only when the options have what they need.
    speaker_options = options.speakers if "speakers" in pending else None
    audio: Audio | None = None
    heard: Future[Voices] | None = None
    beside = ThreadPoolExecutor(1, "speakers-beside")
    try:
        if "transcribe" in pending:
            decoded, chunks = _decode_and_segment(info, options, progress)
            audio = decoded.samples, [region for chunk in chunks for region in chunk.regions]
            if speaker_options is not None and chunks and hears_beside_decoding(options):
                heard = beside.submit(_hear_voices, audio, speaker_options, people, options.device, 1)
            _transcribe(result, options, stored, progress, decoded, chunks)
        if speaker_options is not None:
            _find_speakers(result, speaker_options, options, people, audio, progress, heard)
    finally:
        # No thread outlives the pass: a failed transcription waits for the voices being heard.
        beside.shutdown(wait=True, cancel_futures=True)
    if "tag" in pending and options.codebook is not None:
        tag_result(result, options.codebook, progress, options.model)
    return result
