"""The transcripts: segments and their words, replaced whole by new ones (a pass that transcribed or split
them anew) with people's work carried over (pipeline.carry), and corrected one segment at a time by people
(with revert)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, delete, func, insert, select, update
from sqlalchemy.orm import Session

from pipeline.carry import annotation_state, move_decisions, plan_carry, reanchor
from pipeline.errors import ConflictError, InvalidInputError, NotFoundError, TextChangedError
from pipeline.realign import realign
from pipeline.records import (
    MAX_TEXT_CHARS,
    CoderDecision,
    HistoryRecord,
    Segment,
    Transcript,
    Word,
)
from pipeline.stages.doubt import mark_segment
from pipeline.store.annotations import annotation_record, forget_decision, history_record
from pipeline.store.database import by_code_point
from pipeline.store.models import (
    AnnotationRow,
    DecisionRow,
    EntityRow,
    HistoryRow,
    SegmentRow,
    SpeakerRow,
    StageRow,
    WordRow,
    check_values,
    iso,
    now,
)
from pipeline.store.recordings import count_doubt, recording_row
from pipeline.store.search import index_rows, unindex_recording
from pipeline.store.speakers import speaker_record

_NO_SYNC = {"synchronize_session": False}  # plain DELETEs: the rows are not loaded as ORM objects


def segments(s: Session, recording_id: int) -> list[Segment]:
    """A recording's segments with their words, ordered by start (two queries in all)."""
    return _segments(s, recording_id, SegmentRow.start, SegmentRow.idx)


def transcript(s: Session, recording_id: int) -> Transcript:
    """A recording's stored transcript: its segments with words, ids and versions in transcript order, its
    language, and the engine and model that made it (what a pass that does not transcribe works on)."""
    rec = recording_row(s, recording_id)
    query = select(SegmentRow.engine, SegmentRow.model).where(SegmentRow.recording_id == recording_id).limit(1)
    made_by = s.execute(query).first()
    transcribed = s.get(StageRow, (recording_id, "transcribe"))
    probability = (transcribed.report or {}).get("language_probability", 1.0) if transcribed else 1.0
    return Transcript(rec.language, probability, _segments(s, recording_id, SegmentRow.idx), *(made_by or ("", "")))


def _segments(s: Session, recording_id: int, *order: Any) -> list[Segment]:
    query = select(SegmentRow.__table__).where(SegmentRow.recording_id == recording_id).order_by(*order)
    seg_rows = s.execute(query).all()
    word_rows = s.execute(
        select(
            WordRow.segment_id,
            WordRow.start,
            WordRow.end,
            WordRow.text,
            WordRow.probability,
            WordRow.doubtful,
            WordRow.corrected,
        )
        .join(SegmentRow, WordRow.segment_id == SegmentRow.id)
        .where(SegmentRow.recording_id == recording_id)
        .order_by(WordRow.segment_id, WordRow.idx)
    ).all()
    words: dict[int, list[Word]] = defaultdict(list)
    for w in word_rows:
        words[w.segment_id].append(
            Word(w.start, w.end, w.text, w.probability, doubtful=w.doubtful, corrected=w.corrected)
        )
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
            version=r.version,
            corrected=r.corrected,
            confidence=r.confidence,
        )
        for r in seg_rows
    ]


def count_segments(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(SegmentRow)) or 0


def correct_text(s: Session, segment_id: int, text_: str, user: str, version: int) -> tuple[Segment, int]:
    """A person's correction of a segment's text, based on `version` of it; the segment and its version
    now. Times and themes stay (evidence is re-anchored on its words), the earlier text goes into the
    history with its words (_text_state: what a revert puts back), the index follows. TextChangedError, carrying
    the current text and version, if someone changed it since. The text it has already changes nothing: no
    new version, nothing in the history. InvalidInputError past MAX_TEXT_CHARS, what an import takes."""
    if len(text_) > MAX_TEXT_CHARS:
        raise InvalidInputError(f"a segment's text is at most {MAX_TEXT_CHARS:,} characters ({len(text_):,} given)")
    row = s.get(SegmentRow, segment_id)
    if row is None:
        raise NotFoundError(f"no segment with id {segment_id}")
    if row.text == text_:
        return _segment(row), row.version
    # The version check is in the UPDATE itself, so it holds on PostgreSQL's read committed too.
    old_text = row.text  # if the update below applies, nobody changed it since this version
    updated = s.execute(
        update(SegmentRow.__table__)
        .where(SegmentRow.id == segment_id, SegmentRow.version == version)
        .values(text=text_, version=version + 1)
    )
    done = cast(CursorResult[Any], updated).rowcount  # an UPDATE's result is a CursorResult (typed as Result)
    s.refresh(row)
    if not done:
        raise TextChangedError(f"segment {segment_id} was changed since version {version}", _segment_state(s, row))
    # The update holds the row: its words, confidence and who wrote it are still those of this version.
    words = _words_of(s, row.id)
    before = {**_text_state(row, words), "text": old_text, "version": version}
    row.corrected = True
    _after_correction(s, row, old_text, words)
    s.add(
        HistoryRow(
            recording_id=row.recording_id,
            segment_id=segment_id,
            action="corrected",
            changed_by=user,
            before=before,
            after={"text": text_, "version": version + 1},
        )
    )
    return _segment(row), version + 1


def check_version(s: Session, segment_id: int, version: int) -> None:
    """TextChangedError, carrying the segment's text and version now, if its text changed since `version` (what is
    said of its words, offsets into the text one read, would land on other words); NotFoundError if it is gone."""
    row = s.get(SegmentRow, segment_id, with_for_update=True)  # held: no correction between this and the write
    if row is None:
        raise NotFoundError(f"no segment with id {segment_id}")
    if row.version != version:
        raise TextChangedError(f"segment {segment_id} was changed since version {version}", _segment_state(s, row))


def revert(s: Session, history_id: int, user: str) -> HistoryRecord:
    """Undo one change: a text correction or an annotation's status change, if it is still the
    latest one (ConflictError otherwise). The undoing is itself a change in the history."""
    change = s.get(HistoryRow, history_id)
    if change is None:
        raise NotFoundError(f"no change with id {history_id}")
    if not history_record(change).revertable:
        raise InvalidInputError(f"a change of kind {change.action!r} cannot be reverted")
    before = change.before or {}
    if "text" in before:
        row = s.get(SegmentRow, change.segment_id)
        # The segment's text changes, not its annotations'.
        texts = (HistoryRow.segment_id == change.segment_id, HistoryRow.annotation_id.is_(None))
        if row is None:  # "revert the later change first" would send one looking for what cannot be reverted
            raise ConflictError(
                f"segment {change.segment_id} is no longer there: the recording was transcribed again since (its "
                "history says where the text went)"
            )
        if not _still_standing(s, change, *texts):
            raise ConflictError(
                "the text was changed again since: revert the later change first", _segment_state(s, row)
            )
        words = _words_of(s, row.id)
        state = _text_state(row, words)
        row.text, row.version = before["text"], row.version + 1
        if "words" in before:
            _restore_text(s, row, state["text"], before)
        else:  # a change the history kept no words of (made before it kept them): the text is a person's now
            row.corrected = True
            _after_correction(s, row, state["text"], words)
        undo = HistoryRow(
            recording_id=row.recording_id,
            segment_id=row.id,
            action="reverted",
            changed_by=user,
            before=state,  # with its words: the revert can be reverted in turn
            after={"text": row.text, "version": row.version, "reverts": change.id},
        )
    else:
        annotation = s.get(AnnotationRow, change.annotation_id)
        if annotation is None:
            raise ConflictError(
                f"annotation {change.annotation_id} is no longer there: the tagger withdrew it, or the recording was "
                "transcribed again since (its history says where the theme went)"
            )
        if not _still_standing(s, change, HistoryRow.annotation_id == change.annotation_id):
            raise ConflictError(
                "the annotation was changed again since: revert the later change first",
                annotation_record(annotation, change.recording_id),
            )
        state = annotation_state(annotation)
        annotation.status, annotation.updated_by, annotation.updated_at, annotation.version = (
            before["status"],
            user,
            now(),
            annotation.version + 1,
        )
        if change.action in ("accepted", "rejected", "added"):  # the decision is taken back: its coder's goes
            forget_decision(s, annotation.segment_id, annotation.theme, change.changed_by)
        undo = HistoryRow(
            recording_id=change.recording_id,
            segment_id=annotation.segment_id,
            annotation_id=annotation.id,
            action="reverted",
            changed_by=user,
            before=state,
            after={**annotation_state(annotation), "reverts": change.id},
        )
    s.add(undo)
    s.flush()
    return history_record(undo)


def _still_standing(s: Session, change: HistoryRow, *same: ColumnElement[bool]) -> bool:
    """Whether what `change` left is what the thing it changed (`same`) has now: it is the latest change to it, or
    the later ones are reverts that came back to it (undo, redo, undo). A later change leaving the same text or
    status again (A to B, B to C, C to B) is a change of its own, which reverting `change` would undo unseen."""
    query = select(HistoryRow.id, HistoryRow.after).where(
        HistoryRow.recording_id == change.recording_id, HistoryRow.id >= change.id, *same
    )
    rows = s.execute(query.order_by(HistoryRow.id)).all()
    place = {row.id: i for i, row in enumerate(rows)}  # rows[0] is `change`
    i = len(rows) - 1
    while i > 0 and (rows[i].after or {}).get("reverts") in place:  # a revert: what the change before it left
        i = place[rows[i].after["reverts"]] - 1
    return i == 0


def _segment(row: SegmentRow) -> Segment:
    return Segment(
        start=row.start,
        end=row.end,
        text=row.text,
        original_text=row.original_text,
        language=row.language,
        avg_logprob=row.avg_logprob,
        no_speech_prob=row.no_speech_prob,
        compression_ratio=row.compression_ratio,
        speaker=row.speaker,
        id=row.id,
        version=row.version,
        corrected=row.corrected,
        confidence=row.confidence,
    )


def _segment_state(s: Session, row: SegmentRow) -> dict[str, Any]:
    """A segment's text as it is now, and who last changed it: what a conflicting editor is shown."""
    last = s.scalars(
        select(HistoryRow)
        .where(HistoryRow.segment_id == row.id, HistoryRow.before.is_not(None))
        .order_by(HistoryRow.id.desc())
        .limit(1)
    ).first()
    return {
        "segment_id": row.id,
        "text": row.text,
        "version": row.version,
        "changed_by": last.changed_by if last else None,
        "changed_at": iso(last.changed_at) if last else None,
    }


def _text_state(row: SegmentRow, words: list[Word]) -> dict[str, Any]:
    """What the history keeps of a segment's text before a correction or a revert changes it: the text and its
    version, whether a person wrote it, the segment's confidence and its stored words as they were (the
    recogniser's times, probabilities and doubt, or a person's), so that a revert puts back exactly what was
    there."""
    return {
        "text": row.text,
        "version": row.version,
        "corrected": row.corrected,
        "confidence": row.confidence,
        "words": [asdict(w) for w in words],
    }


def _words_of(s: Session, segment_id: int) -> list[Word]:
    return [
        Word(r.start, r.end, r.text, r.probability, doubtful=r.doubtful, corrected=r.corrected)
        for r in s.scalars(select(WordRow).where(WordRow.segment_id == segment_id).order_by(WordRow.idx))
    ]


def _reanchor(s: Session, row: SegmentRow, old_text: str) -> None:
    """A segment's themes' evidence and its named entities moved to their words in its new text; an entity whose
    words are gone goes (its offsets would point at other words: the JSON export's, the exports' redaction)."""
    for annotation in s.scalars(select(AnnotationRow).where(AnnotationRow.segment_id == row.id)):
        annotation.evidence = [list(span) for span in reanchor(annotation.evidence, old_text, row.text)]
    for entity in s.scalars(select(EntityRow).where(EntityRow.segment_id == row.id)):
        moved = reanchor([(entity.start, entity.end)], old_text, row.text)
        if moved:
            (entity.start, entity.end), *_ = moved
        else:
            s.delete(entity)


def _after_correction(s: Session, row: SegmentRow, old_text: str, words: list[Word]) -> None:
    """Keep a corrected segment's themes and named entities on their words, its stored `words` on its new text
    (pipeline.realign) and its index entry on its new text (the engine's original no longer matches it, so only
    the text is indexed); a person read it, so it is not doubtful any more."""
    _reanchor(s, row, old_text)
    _realign_words(s, replace(_segment(row), words=words))
    index_rows(s.connection(), row.recording_id, [(row.id, row.text, row.text)])
    _clear_doubt(s, row.id)
    count_doubt(s, row.recording_id)


def _restore_text(s: Session, row: SegmentRow, old_text: str, state: dict[str, Any]) -> None:
    """Put back what the history kept of a segment's text (_text_state) under its text, reverted to it: its
    words, confidence and whether a person wrote it; the recogniser's text is doubtful again where it was, and
    indexed with the engine's original beside it, as when it was saved."""
    _reanchor(s, row, old_text)
    _store_words(s, row.id, [Word(**word) for word in state["words"]])
    row.corrected, row.confidence = state["corrected"], state["confidence"]
    index_rows(s.connection(), row.recording_id, [(row.id, row.text, row.text if row.corrected else row.original_text)])
    count_doubt(s, row.recording_id)


def _clear_doubt(s: Session, segment_id: int) -> None:
    """A segment a person corrected: none of its words doubtful, and it as sure as can be."""
    no_sync = {"synchronize_session": False}
    s.execute(update(WordRow).where(WordRow.segment_id == segment_id).values(doubtful=False), execution_options=no_sync)
    s.execute(update(SegmentRow).where(SegmentRow.id == segment_id).values(confidence=1.0), execution_options=no_sync)


def _realign_words(s: Session, segment: Segment) -> list[Word]:
    """A stored segment's words realigned to its text (pipeline.realign), and stored so where they changed."""
    realigned = realign(segment.words, segment.text, segment.start, segment.end)
    if realigned is not segment.words:
        _store_words(s, segment.stored_id, realigned)
    return realigned


def _store_words(s: Session, segment_id: int, words: list[Word]) -> None:
    """A stored segment's words replaced by `words`."""
    s.execute(delete(WordRow).where(WordRow.segment_id == segment_id), execution_options=_NO_SYNC)
    if words:
        s.execute(insert(WordRow.__table__), _word_rows(segment_id, words))


def _word_rows(segment_id: int, words: list[Word]) -> list[dict[str, Any]]:
    return [
        dict(
            segment_id=segment_id,
            idx=j,
            start=w.start,
            end=w.end,
            text=w.text,
            probability=w.probability,
            doubtful=w.doubtful,
            corrected=w.corrected,
        )
        for j, w in enumerate(words)
    ]


def replace_segments(s: Session, recording_id: int, transcript: Transcript) -> list[Segment]:
    """Put a transcript's segments, with their words, index entries and a speaker row per label, in place of
    a recording's, and carry people's work on the old segments over to them (pipeline.carry): corrections,
    decided and person-added themes, and the names and roles people gave speakers, each move (and each theme
    with nowhere to go) in the history. The tagger's open suggestions and the entities go with the old
    segments. Returns the segments as stored (with their ids), in the transcript's order."""
    # Plain rows, not ORM objects: nothing of the deleted rows stays in the session.
    old = [
        Segment(
            r.start,
            r.end,
            r.text,
            r.original_text,
            r.language,
            speaker=r.speaker,
            id=r.id,
            version=r.version,
            corrected=r.corrected,
        )
        for r in s.execute(select(SegmentRow.__table__).where(SegmentRow.recording_id == recording_id))
    ]
    decided = [
        annotation_record(row, recording_id)
        for row in s.execute(
            select(AnnotationRow.__table__)
            .join(SegmentRow, AnnotationRow.segment_id == SegmentRow.id)
            .where(SegmentRow.recording_id == recording_id)
            .where((AnnotationRow.status != "suggested") | (AnnotationRow.source != "auto"))
            .order_by(SegmentRow.start, SegmentRow.id, by_code_point(AnnotationRow.theme))  # alike on every database
        )
    ]
    decisions = [
        CoderDecision(row.segment_id, row.theme, row.coder, row.present, row.via, iso(row.decided_at) or "")
        for row in s.execute(
            select(DecisionRow.__table__)
            .join(SegmentRow, DecisionRow.segment_id == SegmentRow.id)
            .where(SegmentRow.recording_id == recording_id)
            .order_by(SegmentRow.start, DecisionRow.id)
        )
    ]
    query = select(SpeakerRow.__table__).where(SpeakerRow.recording_id == recording_id).order_by(SpeakerRow.id)
    people_set = [speaker_record(row) for row in s.execute(query) if row.named_by or row.role_by]
    unindex_recording(s.connection(), recording_id)
    old_ids = select(SegmentRow.id).where(SegmentRow.recording_id == recording_id)
    s.execute(delete(WordRow).where(WordRow.segment_id.in_(old_ids)), execution_options=_NO_SYNC)
    # Annotations and entities go with their segments (ON DELETE CASCADE).
    s.execute(delete(SegmentRow).where(SegmentRow.recording_id == recording_id), execution_options=_NO_SYNC)
    s.execute(delete(SpeakerRow).where(SpeakerRow.recording_id == recording_id), execution_options=_NO_SYNC)
    segments = _insert_segments(s, recording_id, transcript)
    plan = plan_carry(old, decided, people_set, segments)

    def note(move: Any, **ids: int | None) -> None:
        """A move in the history, made by ohp."""
        action, before, after = move.action, move.before, move.after
        s.add(HistoryRow(recording_id=recording_id, changed_by="ohp", action=action, before=before, after=after, **ids))

    for correction in plan.corrections:
        if correction.target is not None:
            text_, version = correction.old.text, correction.version
            target = replace(segments[correction.target], text=text_, version=version, corrected=True)
            target = replace(target, words=_realign_words(s, target))
            # A person's text: none of it doubtful (mark_segment clears a corrected segment's doubt).
            segments[correction.target] = mark_segment(target, target.language)
            s.execute(
                update(SegmentRow.__table__)
                .where(SegmentRow.id == correction.segment_id)
                .values(text=text_, version=version, corrected=True)
            )
            # The engine's original no longer matches the corrected text: only the text is indexed.
            index_rows(s.connection(), recording_id, [(target.stored_id, text_, text_)])
            _clear_doubt(s, target.stored_id)
        note(correction, segment_id=correction.segment_id)
    for move in plan.annotations:
        was = move.old
        row = AnnotationRow(
            segment_id=move.segment_id,
            theme=was.theme,
            source=was.source,
            status=was.status,
            score=was.score,
            evidence=[list(span) for span in move.evidence],
            tagger=was.tagger,
            origin=was.origin,
            updated_by=was.updated_by,
            updated_at=datetime.fromisoformat(was.updated_at),
            version=was.version + 1,
        )
        s.add(row)
        s.flush()
        note(move, segment_id=move.segment_id, annotation_id=row.id)
    for lost in plan.dropped:
        note(lost, annotation_id=lost.old.id)
    moved_decisions = [
        {**asdict(d), "decided_at": datetime.fromisoformat(d.decided_at)}
        for d in move_decisions(decisions, old, segments)
    ]
    if moved_decisions:
        s.execute(insert(DecisionRow.__table__), moved_decisions)
    speakers = {
        label: SpeakerRow(recording_id=recording_id, label=label)
        for label in dict.fromkeys(seg.speaker for seg in segments if seg.speaker)
    }
    for speaker_move in plan.speakers:
        speaker, after = speakers[speaker_move.label], speaker_move.after
        speaker.name, speaker.named_by = after["name"], after["named_by"]
        speaker.role, speaker.role_by = after["role"], after["role_by"]
        note(speaker_move)
    s.add_all(speakers.values())
    s.flush()
    return segments


def _insert_segments(s: Session, recording_id: int, transcript: Transcript) -> list[Segment]:
    """Insert a transcript's segments with their words and index entries; the segments with their ids."""
    if not transcript.segments:
        return []
    # Core executemany, no ORM bookkeeping per row; then the new ids in one query (RETURNING
    # would cost one statement per row on SQLite when the ids must come back in order).
    turns = turn_numbers(transcript.segments)
    rows = [
        dict(
            recording_id=recording_id,
            idx=i,
            start=seg.start,
            end=seg.end,
            text=seg.text,
            original_text=seg.original_text,
            language=seg.language,
            speaker=seg.speaker,
            avg_logprob=seg.avg_logprob,
            no_speech_prob=seg.no_speech_prob,
            compression_ratio=seg.compression_ratio,
            engine=transcript.engine,
            model=transcript.model,
            version=seg.version,
            corrected=seg.corrected,
            confidence=seg.confidence,
            turn=turns[i],
        )
        for i, seg in enumerate(transcript.segments)
    ]
    conn = s.connection()
    if conn.dialect.name == "sqlite":  # tuples straight to the driver: half the cost per row (bench/search.py)
        check_values(SegmentRow.__table__, rows)  # what the column types check on the way through SQLAlchemy
        columns = ", ".join(f'"{name}"' for name in rows[0])
        conn.exec_driver_sql(
            f"INSERT INTO segments ({columns}) VALUES ({', '.join('?' * len(rows[0]))})",
            [tuple(row.values()) for row in rows],
        )
    else:
        s.execute(insert(SegmentRow.__table__), rows)
    ids = dict(s.execute(select(SegmentRow.idx, SegmentRow.id).where(SegmentRow.recording_id == recording_id)).all())
    words = [row for i, seg in enumerate(transcript.segments) for row in _word_rows(ids[i], seg.words)]
    if words:
        s.execute(insert(WordRow.__table__), words)
    index_rows(conn, recording_id, [(ids[i], seg.text, seg.original_text) for i, seg in enumerate(transcript.segments)])
    return [replace(seg, id=ids[i]) for i, seg in enumerate(transcript.segments)]


def turn_numbers(segments: Sequence[Segment]) -> list[int]:
    """Each segment's speaker turn (1, 2, ...), by its place in `segments`: a turn is a run of segments of one
    speaker in order of start (then of place); a segment without a speaker is a turn of its own. Migration
    0012 numbers stored segments the same way in SQL."""
    turns = [0] * len(segments)
    turn, previous = 0, None
    for i in sorted(range(len(segments)), key=lambda i: (segments[i].start, i)):
        speaker = segments[i].speaker
        if speaker is None or speaker != previous:
            turn += 1
        turns[i], previous = turn, speaker
    return turns


def check_unchanged(s: Session, recording_id: int, segments: list[Segment]) -> None:
    """ConflictError unless the stored segments a pass made new ones from (the speakers stage's parts: the first
    keeps the stored one's id and version, the others have no id) are as the pass read them. A correction made
    meanwhile would be split away (each part too little of the segment to carry it over) and a revert undone by
    the pass's copy: the next run does the pass again on the text as it is now."""
    query = select(SegmentRow.id, SegmentRow.version).where(SegmentRow.recording_id == recording_id)
    now = dict(s.execute(query).all())
    for segment in segments:
        if segment.id is None:
            continue
        if segment.id not in now:
            raise ConflictError(
                f"recording {recording_id} was transcribed again while it was worked on (segment {segment.id} is gone)"
            )
        if now[segment.id] != segment.version:
            raise ConflictError(
                f"segment {segment.id} was changed while the pass ran (version {segment.version} read, "
                f"{now[segment.id]} now): run it again to work on the text as it is now"
            )


def as_stored(s: Session, recording_id: int, segments: list[Segment]) -> list[Segment]:
    """Stored segments a pass worked on, with the text they have now: a person may have corrected one
    while the pass ran."""
    now_text = dict(
        s.execute(select(SegmentRow.id, SegmentRow.text).where(SegmentRow.recording_id == recording_id)).all()
    )
    gone = [seg.stored_id for seg in segments if seg.stored_id not in now_text]
    if gone:
        raise ConflictError(
            f"recording {recording_id} was transcribed again while it was worked on (segment {gone[0]} is gone)"
        )
    return [
        seg if seg.text == now_text[seg.stored_id] else replace(seg, text=now_text[seg.stored_id]) for seg in segments
    ]
