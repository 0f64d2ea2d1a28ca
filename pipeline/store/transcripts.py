"""The transcripts: segments and their words, replaced whole by a (re-)transcription that carries
people's work over to the new segments, and corrected one segment at a time by people (with revert)."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from pipeline.errors import ConflictError, InvalidInputError, NotFoundError
from pipeline.records import (
    ANNOTATION_STATUSES,
    AudioInfo,
    HistoryRecord,
    Segment,
    Transcript,
    Word,
)
from pipeline.store.annotations import (
    annotation_record,
    annotation_state,
    history_record,
)
from pipeline.store.models import (
    AnnotationRow,
    HistoryRow,
    SegmentRow,
    SpeakerRow,
    StageRow,
    WordRow,
    iso,
    now,
)
from pipeline.store.recordings import upsert_recording
from pipeline.store.search import index_rows, unindex_recording
from pipeline.store.speakers import speaker_state


def save_transcription(s: Session, info: AudioInfo, transcript: Transcript) -> int:
    """Put a file's transcript in place of its recording's (added if new); the recording id."""
    rec = upsert_recording(s, info)
    rec.language = transcript.language
    rec.duration = info.duration
    s.flush()
    _replace_segments(s, rec.id, transcript.segments, transcript.engine, transcript.model)
    return rec.id


def resegment(s: Session, recording_id: int, segments: list[Segment]) -> None:
    """Put `segments` (the recording's transcript split anew, e.g. at speaker changes) in place of its
    segments, as made by the same engine and model."""
    query = select(SegmentRow.engine, SegmentRow.model).where(SegmentRow.recording_id == recording_id).limit(1)
    made_by = s.execute(query).first()
    _replace_segments(s, recording_id, segments, *(made_by or ("", "")))


def segments(s: Session, recording_id: int) -> list[Segment]:
    """A recording's segments with their words, ordered by start (two queries in all)."""
    seg_rows = s.execute(
        select(SegmentRow.__table__)
        .where(SegmentRow.recording_id == recording_id)
        .order_by(SegmentRow.start, SegmentRow.idx)
    ).all()
    word_rows = s.execute(
        select(WordRow.segment_id, WordRow.start, WordRow.end, WordRow.text, WordRow.probability)
        .join(SegmentRow, WordRow.segment_id == SegmentRow.id)
        .where(SegmentRow.recording_id == recording_id)
        .order_by(WordRow.segment_id, WordRow.idx)
    ).all()
    words: dict[int, list[Word]] = defaultdict(list)
    for w in word_rows:
        words[w.segment_id].append(Word(start=w.start, end=w.end, text=w.text, probability=w.probability))
    return [
        Segment(
            start=r.start,
            end=r.end,
            text=r.text,
            original_text=r.original_text,
            language=r.language,
            words=words.get(r.id, []),
            avg_logprob=r.avg_logprob,
            no_speech_prob=r.no_speech_prob,
            compression_ratio=r.compression_ratio,
            speaker=r.speaker,
            id=r.id,
        )
        for r in seg_rows
    ]


def segment_versions(s: Session, recording_id: int) -> dict[int, int]:
    """Each segment's version (see correct_text), by segment id."""
    query = select(SegmentRow.id, SegmentRow.version).where(SegmentRow.recording_id == recording_id)
    return {segment_id: version for segment_id, version in s.execute(query)}


def count_segments(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(SegmentRow)) or 0


def correct_text(s: Session, segment_id: int, text_: str, user: str, version: int) -> Segment:
    """A person's correction of a segment's text, based on `version` of it. Times and themes stay
    (evidence is re-anchored on its words), the earlier text goes into the history, the index
    follows. ConflictError, carrying the current text and version, if someone changed it since."""
    row = s.get(SegmentRow, segment_id)
    if row is None:
        raise NotFoundError(f"no segment with id {segment_id}")
    # The version check is in the UPDATE itself, so it holds on PostgreSQL's read committed too.
    old_text = row.text  # if the update below applies, nobody changed it since this version
    done = s.execute(
        update(SegmentRow.__table__)
        .where(SegmentRow.id == segment_id, SegmentRow.version == version)
        .values(text=text_, version=version + 1)
    ).rowcount
    s.refresh(row)
    if not done:
        raise ConflictError(f"segment {segment_id} was changed since version {version}", _segment_state(s, row))
    before, after = {"text": old_text, "version": version}, {"text": text_, "version": version + 1}
    _after_correction(s, row, before["text"])
    s.add(HistoryRow(recording_id=row.recording_id, segment_id=segment_id, action="corrected", changed_by=user, before=before, after=after))
    return _segment(row)


def revert(s: Session, history_id: int, user: str) -> HistoryRecord:
    """Undo one change: a text correction or an annotation's status change, if it is still the
    latest one (ConflictError otherwise). The undoing is itself a change in the history."""
    change = s.get(HistoryRow, history_id)
    if change is None:
        raise NotFoundError(f"no change with id {history_id}")
    before, after = change.before or {}, change.after or {}
    if "text" in before and change.segment_id is not None:
        row = s.get(SegmentRow, change.segment_id)
        if row is None or row.text != after.get("text"):
            raise ConflictError("the text was changed again since: revert the later change first", row and _segment_state(s, row))
        old_text, row.version = row.text, row.version + 1
        row.text = before["text"]
        _after_correction(s, row, old_text)
        undo = HistoryRow(recording_id=row.recording_id, segment_id=row.id, action="reverted", changed_by=user,
                          before={"text": old_text, "version": row.version - 1}, after={"text": row.text, "version": row.version, "reverts": change.id})  # fmt: skip
    elif change.annotation_id is not None and before.get("status") in ANNOTATION_STATUSES:
        annotation = s.get(AnnotationRow, change.annotation_id)
        if annotation is None or annotation.status != after.get("status"):
            raise ConflictError("the annotation was changed again since: revert the later change first", annotation and annotation_record(annotation, change.recording_id))
        state = annotation_state(annotation)
        annotation.status, annotation.updated_by, annotation.updated_at, annotation.version = before["status"], user, now(), annotation.version + 1
        undo = HistoryRow(recording_id=change.recording_id, segment_id=annotation.segment_id, annotation_id=annotation.id, action="reverted",
                          changed_by=user, before=state, after={**annotation_state(annotation), "reverts": change.id})  # fmt: skip
    else:
        raise InvalidInputError(f"a change of kind {change.action!r} cannot be reverted")
    s.add(undo)
    s.flush()
    return history_record(undo)


def _segment(row: SegmentRow) -> Segment:
    return Segment(
        start=row.start, end=row.end, text=row.text, original_text=row.original_text, language=row.language,
        avg_logprob=row.avg_logprob, no_speech_prob=row.no_speech_prob, compression_ratio=row.compression_ratio,
        speaker=row.speaker, id=row.id,
    )  # fmt: skip


def _segment_state(s: Session, row: SegmentRow) -> dict[str, Any]:
    """A segment's text as it is now, and who last changed it: what a conflicting editor is shown."""
    last = s.scalars(
        select(HistoryRow).where(HistoryRow.segment_id == row.id, HistoryRow.before.is_not(None))
        .order_by(HistoryRow.id.desc()).limit(1)
    ).first()  # fmt: skip
    return {
        "segment_id": row.id, "text": row.text, "version": row.version,
        "changed_by": last.changed_by if last else None, "changed_at": iso(last.changed_at) if last else None,
    }  # fmt: skip


def _after_correction(s: Session, row: SegmentRow, old_text: str) -> None:
    """Keep a corrected segment's themes on their words and its index entry on its new text (the
    engine's original no longer matches it, so only the text is indexed)."""
    for annotation in s.scalars(select(AnnotationRow).where(AnnotationRow.segment_id == row.id)):
        annotation.evidence = _reanchor(annotation.evidence, old_text, row.text)
    index_rows(s.connection(), [(row.id, row.text, row.text)])


def _reanchor(evidence: list, old_text: str, new_text: str) -> list[list[int]]:
    """Evidence spans moved to where their words are in a segment's new text (dropped if gone)."""
    spans = []
    for start, end in evidence or ():
        found = new_text.find(old_text[start:end]) if end > start else -1
        if found >= 0:
            spans.append([found, found + end - start])
    return spans


def _decided_annotations(s: Session, recording_id: int) -> list[tuple[AnnotationRow, float, float, str]]:
    """The annotations a person decided or added, with their segment's times and text."""
    rows = s.execute(
        select(AnnotationRow, SegmentRow.start, SegmentRow.end, SegmentRow.text)
        .join(SegmentRow, AnnotationRow.segment_id == SegmentRow.id)
        .where(SegmentRow.recording_id == recording_id)
        .where((AnnotationRow.status != "suggested") | (AnnotationRow.source != "auto"))
    ).all()
    for row in rows:
        s.expunge(row[0])  # keep its values after the segment (and it) are deleted
    return [tuple(row) for row in rows]


def _carry_decisions(s: Session, recording_id: int, decided: list, segments: list[tuple[int, Segment]]) -> None:
    """Re-attach human decisions to the new segments of a re-transcribed recording.

    Each goes to the new segment that overlaps its old one most in time, its evidence re-anchored on
    the same words in the new text; the move is kept in the history. Suggestions are not carried:
    re-tagging makes them anew.
    """
    taken: set[tuple[int, str]] = set()
    for old, start, end, text in decided:
        if not segments:
            break
        def closeness(item: tuple[int, Segment]) -> tuple[float, float]:
            return min(end, item[1].end) - max(start, item[1].start), -abs(item[1].start - start)

        segment_id, segment = max(segments, key=closeness)
        if (segment_id, old.theme) in taken:
            continue
        taken.add((segment_id, old.theme))
        row = AnnotationRow(
            segment_id=segment_id, theme=old.theme, source=old.source, status=old.status, score=old.score,
            evidence=_reanchor(old.evidence, text, segment.text), tagger=old.tagger, updated_by=old.updated_by,
            updated_at=old.updated_at, version=old.version + 1,
        )  # fmt: skip
        s.add(row)
        s.flush()
        s.add(HistoryRow(
            recording_id=recording_id, segment_id=segment_id, annotation_id=row.id, action="moved",
            changed_by="ohp", before={**annotation_state(old), "annotation_id": old.id}, after=annotation_state(row),
        ))  # fmt: skip


def _replace_segments(s: Session, recording_id: int, segments: list[Segment], engine: str, model: str) -> None:
    """Put `segments` (with their words) in place of a recording's segments, index them, and make a
    speaker row for each of their labels. Human decisions follow by time: annotations (see
    _carry_decisions), and the names and roles people gave speakers (see _carry_speakers)."""
    decided = _decided_annotations(s, recording_id)
    corrected = _corrected_segments(s, recording_id)  # web: people's text corrections, carried below
    old_turns = s.execute(
        select(SegmentRow.start, SegmentRow.end, SegmentRow.speaker)
        .where(SegmentRow.recording_id == recording_id, SegmentRow.speaker.is_not(None))
    ).all()  # fmt: skip
    # Plain rows, not ORM objects: the new speakers may get the ids of the deleted ones.
    people_set = [
        speaker_state(row)
        for row in s.execute(select(SpeakerRow.__table__).where(SpeakerRow.recording_id == recording_id))
        if row.named_by or row.role_by
    ]
    unindex_recording(s.connection(), recording_id)
    old = select(SegmentRow.id).where(SegmentRow.recording_id == recording_id)
    no_sync = {"synchronize_session": False}
    s.execute(delete(WordRow).where(WordRow.segment_id.in_(old)), execution_options=no_sync)
    s.execute(delete(SegmentRow).where(SegmentRow.recording_id == recording_id), execution_options=no_sync)
    s.execute(delete(SpeakerRow).where(SpeakerRow.recording_id == recording_id), execution_options=no_sync)
    # Core executemany, no ORM bookkeeping per row; then the new ids in one query (RETURNING
    # would cost one statement per row on SQLite when the ids must come back in order).
    if segments:
        rows = [
            dict(
                recording_id=recording_id, idx=i, start=seg.start, end=seg.end, text=seg.text,
                original_text=seg.original_text, language=seg.language, speaker=seg.speaker,
                avg_logprob=seg.avg_logprob, no_speech_prob=seg.no_speech_prob,
                compression_ratio=seg.compression_ratio, engine=engine, model=model,
            )
            for i, seg in enumerate(segments)
        ]  # fmt: skip
        conn = s.connection()
        if conn.dialect.name == "sqlite":  # tuples straight to the driver: half the cost per row (bench/search.py)
            columns = ", ".join(f'"{name}"' for name in rows[0])
            conn.exec_driver_sql(
                f"INSERT INTO segments ({columns}) VALUES ({', '.join('?' * len(rows[0]))})",
                [tuple(row.values()) for row in rows],
            )
        else:
            s.execute(insert(SegmentRow.__table__), rows)
        new = select(SegmentRow.idx, SegmentRow.id).where(SegmentRow.recording_id == recording_id)
        ids = dict(s.execute(new).all())
        words = [
            dict(segment_id=ids[i], idx=j, start=w.start, end=w.end, text=w.text, probability=w.probability)
            for i, seg in enumerate(segments)
            for j, w in enumerate(seg.words)
        ]
        if words:
            s.execute(insert(WordRow.__table__), words)
        index_rows(s.connection(), [(ids[i], seg.text, seg.original_text) for i, seg in enumerate(segments)])
        _carry_decisions(s, recording_id, decided, [(ids[i], seg) for i, seg in enumerate(segments)])
    _carry_corrections(s, recording_id, corrected, [(ids[i], seg) for i, seg in enumerate(segments)] if segments else [])
    speakers = {label: SpeakerRow(recording_id=recording_id, label=label) for label in dict.fromkeys(seg.speaker for seg in segments if seg.speaker)}
    s.add_all(speakers.values())
    s.flush()
    if people_set:
        _carry_speakers(s, recording_id, people_set, old_turns, [(seg.start, seg.end, seg.speaker) for seg in segments if seg.speaker], speakers)
    # Later stages worked on the old segments: they run again on the new ones.
    s.execute(delete(StageRow).where(StageRow.recording_id == recording_id, StageRow.stage != "transcribe"), execution_options=no_sync)


def _talk_overlap(old: list[tuple[float, float, str]], new: list[tuple[float, float, str]]) -> Counter[tuple[str, str]]:
    """Seconds during which each (old label, new label) pair speak at once, from (start, end, label) segments."""
    old = sorted(old)
    starts = [start for start, _, _ in old]
    longest = max((end - start for start, end, _ in old), default=0.0)
    found: Counter[tuple[str, str]] = Counter()
    for start, end, label in new:
        for old_start, old_end, old_label in old[bisect_left(starts, start - longest) : bisect_left(starts, end)]:
            if min(end, old_end) > max(start, old_start):
                found[old_label, label] += min(end, old_end) - max(start, old_start)
    return found


def _carry_speakers(
    s: Session, recording_id: int, people_set: list[dict], old: list[tuple[float, float, str]],
    new: list[tuple[float, float, str]], speakers: dict[str, SpeakerRow],
) -> None:  # fmt: skip
    """Names and roles people gave the old speakers, given to the new speakers who talk when they did:
    pairs by the longest time speaking together, each old and new speaker in one pair at most. The
    moves are kept in the history; a speaker nobody now talks like loses what people set."""
    wanted = {state["label"]: state for state in people_set}
    paired: set[str] = set()
    for (old_label, label), _ in _talk_overlap(old, new).most_common():
        if old_label not in wanted or label in paired:
            continue
        state, row = wanted.pop(old_label), speakers[label]
        paired.add(label)
        if state["named_by"]:
            row.name, row.named_by = state["name"], state["named_by"]
        if state["role_by"]:
            row.role, row.role_by = state["role"], state["role_by"]
        s.add(HistoryRow(recording_id=recording_id, action="speaker moved", changed_by="ohp", before=state, after=speaker_state(row)))


def _corrected_segments(s: Session, recording_id: int) -> list[tuple[float, float, str, int]]:
    """(start, end, text, version) of a recording's segments whose text a person corrected."""
    rows = s.execute(
        select(SegmentRow.start, SegmentRow.end, SegmentRow.text, SegmentRow.version)
        .where(SegmentRow.recording_id == recording_id, SegmentRow.version > 1)
    ).all()
    return [tuple(r) for r in rows]


def _carry_corrections(s: Session, recording_id: int, corrected: list, segments: list[tuple[int, Segment]]) -> None:
    """A re-transcription keeps people's corrections: each goes to the new segment covering the same
    stretch of audio (most of both overlapping); one with no such segment is recorded as dropped, its
    text kept in the history."""
    for start, end, text_, version in corrected:
        def overlap(item: tuple[int, Segment]) -> float:
            return min(end, item[1].end) - max(start, item[1].start)

        best = max(segments, key=overlap, default=None)
        same = best is not None and overlap(best) > 0.5 * max(end - start, best[1].end - best[1].start)
        if same:
            s.execute(update(SegmentRow.__table__).where(SegmentRow.id == best[0]).values(text=text_, version=version + 1))
            index_rows(s.connection(), [(best[0], text_, text_)])
        s.add(HistoryRow(
            recording_id=recording_id, segment_id=best[0] if same else None, action="carried" if same else "dropped",
            changed_by="ohp", before={"text": text_, "start": start, "end": end}, after={"text": text_} if same else None,
        ))  # fmt: skip
