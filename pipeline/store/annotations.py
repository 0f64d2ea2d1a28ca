"""Themes on segments (the tagger's suggestions and people's decisions), named entities, and the history
of every change people and the pipeline make."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Row, and_, delete, func, insert, select, update
from sqlalchemy.orm import Session

from pipeline.carry import annotation_state, reanchor
from pipeline.errors import ConflictError, InvalidInputError, NotFoundError
from pipeline.records import (
    ANNOTATION_STATUSES,
    AnnotationRecord,
    CoderDecision,
    Entity,
    HistoryRecord,
    KeptDecision,
    RecordingResult,
    Segment,
    ThemeDecision,
    ThemeSuggestion,
)
from pipeline.store.database import by_code_point
from pipeline.store.models import (
    AnnotationRow,
    DecisionRow,
    EntityRow,
    HistoryRow,
    RecordingRow,
    SegmentRow,
    iso,
    now,
)


def annotation_record(row: AnnotationRow | Row[Any], recording_id: int) -> AnnotationRecord:  # ORM or Core row
    return AnnotationRecord(
        id=row.id,
        segment_id=row.segment_id,
        recording_id=recording_id,
        theme=row.theme,
        source=row.source,
        status=row.status,
        score=row.score,
        evidence=tuple((int(a), int(b)) for a, b in row.evidence or ()),
        tagger=row.tagger,
        updated_by=row.updated_by,
        updated_at=iso(row.updated_at) or "",
        version=row.version,
        origin=row.origin,
    )


MAX_EVIDENCE_SPANS = 100  # pieces of evidence a theme on a segment may have: a segment is a few sentences


def history_record(row: HistoryRow) -> HistoryRecord:
    return HistoryRecord(
        id=row.id,
        recording_id=row.recording_id,
        segment_id=row.segment_id,
        annotation_id=row.annotation_id,
        action=row.action,
        changed_by=row.changed_by,
        changed_at=iso(row.changed_at) or "",
        before=row.before,
        after=row.after,
    )


def _coders_decision(segment_id: int, theme: str, coder: str) -> ColumnElement[bool]:
    """The WHERE clause of a coder's own decision (DecisionRow) on a theme of a segment: one row at most."""
    return and_(DecisionRow.segment_id == segment_id, DecisionRow.theme == theme, DecisionRow.coder == coder)


def record_decision(s: Session, segment_id: int, theme: str, coder: str, present: bool, via: str) -> None:
    """A coder's own decision on a theme of a segment (DecisionRow), replacing their earlier one."""
    updated = s.execute(
        update(DecisionRow.__table__)
        .where(_coders_decision(segment_id, theme, coder))
        .values(present=present, via=via, decided_at=now())
    )
    if not cast(CursorResult[Any], updated).rowcount:  # an UPDATE's result is a CursorResult
        s.execute(
            insert(DecisionRow.__table__).values(
                segment_id=segment_id, theme=theme, coder=coder, present=present, via=via, decided_at=now()
            )
        )


def forget_decision(s: Session, segment_id: int, theme: str, coder: str) -> None:
    """A coder takes their decision back (put back to suggested, or their change reverted)."""
    s.execute(delete(DecisionRow.__table__).where(_coders_decision(segment_id, theme, coder)))


def recording_of_segment(s: Session, segment_id: int) -> int:
    recording_id = s.scalar(select(SegmentRow.recording_id).where(SegmentRow.id == segment_id))
    if recording_id is None:
        raise NotFoundError(f"no segment with id {segment_id}")
    return recording_id


def save_tags(
    s: Session,
    recording_id: int,
    suggestions: dict[int, list[ThemeSuggestion]],
    entities: dict[int, list[Entity]],
    tagger: str,
) -> dict[str, int]:
    """Store a tagging run over a recording's segments (by segment id); how many annotations it added,
    updated, withdrawn and kept.

    New themes become suggestions; suggestions the tagger still makes are updated, those it no
    longer makes are withdrawn; accepted, rejected and person-added annotations are never
    touched. Every change goes into the history. Entities are replaced.
    """
    counts = {"added": 0, "updated": 0, "withdrawn": 0, "kept": 0}
    segment_ids = set(s.scalars(select(SegmentRow.id).where(SegmentRow.recording_id == recording_id)))
    existing = {
        (row.segment_id, row.theme): row
        for row in s.scalars(select(AnnotationRow).where(AnnotationRow.segment_id.in_(segment_ids)))
    }
    wanted = {(sid, t.theme): t for sid, found in suggestions.items() if sid in segment_ids for t in found}
    for key, stored in existing.items():
        if stored.status != "suggested" or stored.source != "auto":
            counts["kept"] += 1
        elif key not in wanted:
            before = annotation_state(stored)
            s.delete(stored)
            _note(s, recording_id, stored, "withdrawn", "auto", before, gone=True)
            counts["withdrawn"] += 1
    for (segment_id, theme), found in wanted.items():
        evidence = [list(span) for span in found.evidence]
        row = existing.get((segment_id, theme))
        if row is None:
            row = AnnotationRow(
                segment_id=segment_id,
                theme=theme,
                source="auto",
                status="suggested",
                score=found.score,
                evidence=evidence,
                tagger=tagger,
                origin=found.origin,
                updated_by="auto",
            )
            s.add(row)
            s.flush()
            _note(s, recording_id, row, "suggested", "auto")
            counts["added"] += 1
        elif (
            row.status == "suggested"
            and row.source == "auto"
            and (row.score, row.evidence, row.tagger, row.origin) != (found.score, evidence, tagger, found.origin)
        ):
            before = annotation_state(row)
            row.score, row.evidence, row.tagger, row.origin = found.score, evidence, tagger, found.origin
            row.updated_at, row.updated_by, row.version = now(), "auto", row.version + 1
            _note(s, recording_id, row, "retagged", "auto", before)
            counts["updated"] += 1
    no_sync = {"synchronize_session": False}
    s.execute(delete(EntityRow).where(EntityRow.segment_id.in_(segment_ids)), execution_options=no_sync)
    rows = [
        dict(segment_id=sid, label=e.label, text=e.text, start=e.start, end=e.end)
        for sid, found in entities.items()
        if sid in segment_ids
        for e in found
    ]
    if rows:
        s.execute(insert(EntityRow.__table__), rows)
    return counts


def save_result_tags(s: Session, recording_id: int, segments: list[Segment], result: RecordingResult) -> dict[str, int]:
    """A pass's tagging (see save_tags) of `segments`, the result's segments as stored, in its order. Offsets
    are moved to the text as stored where it is not the text the tagger read (a correction carried over,
    or made while the pass ran)."""
    read = result.transcript.segments

    def moved(spans: tuple[tuple[int, int], ...], i: int) -> tuple[tuple[int, int], ...]:
        return spans if segments[i].text == read[i].text else reanchor(spans, read[i].text, segments[i].text)

    suggestions = {
        segments[i].stored_id: [replace(theme, evidence=moved(theme.evidence, i)) for theme in found]
        for i, found in result.themes.items()
    }
    entities = {
        segments[i].stored_id: [Entity(e.label, e.text, a, b) for e in found for a, b in moved(((e.start, e.end),), i)]
        for i, found in result.entities.items()
    }
    return save_tags(s, recording_id, suggestions, entities, result.tagger or "")


def list_decisions(s: Session, scope: Sequence[int] | None = None) -> list[ThemeDecision]:
    """Every theme people decided (accepted, added or rejected) in these recordings (None: all), with its
    segment's text, in segment order."""
    query = (
        select(AnnotationRow, SegmentRow.recording_id, SegmentRow.text, SegmentRow.language)
        .join(SegmentRow, AnnotationRow.segment_id == SegmentRow.id)
        .where(AnnotationRow.status != "suggested")
        .order_by(SegmentRow.recording_id, SegmentRow.start, SegmentRow.id, by_code_point(AnnotationRow.theme))
    )
    if scope is not None:
        query = query.where(SegmentRow.recording_id.in_(scope))
    return [
        ThemeDecision(
            row.segment_id,
            recording_id,
            text,
            language,
            row.theme,
            row.status == "accepted",
            tuple((int(a), int(b)) for a, b in row.evidence or ()),
        )
        for row, recording_id, text, language in s.execute(query).all()
    ]


def list_annotations(
    s: Session, recording_id: int | None = None, *, segment_id: int | None = None, status: str | None = None
) -> list[AnnotationRecord]:
    """Annotations of a recording or a segment (or all), in transcript order."""
    query = select(AnnotationRow, SegmentRow.recording_id).join(SegmentRow, AnnotationRow.segment_id == SegmentRow.id)
    if recording_id is not None:
        query = query.where(SegmentRow.recording_id == recording_id)
    if segment_id is not None:
        query = query.where(AnnotationRow.segment_id == segment_id)
    if status is not None:
        query = query.where(AnnotationRow.status == status)
    query = query.order_by(SegmentRow.recording_id, SegmentRow.start, SegmentRow.id, by_code_point(AnnotationRow.theme))
    return [annotation_record(row, rid) for row, rid in s.execute(query).all()]


def decide(s: Session, annotation_id: int, status: str, user: str, *, version: int | None = None) -> AnnotationRecord:
    """Accept or reject an annotation (or put it back to suggested), as `user`.

    With `version`, the change applies only if nobody changed the annotation since the caller
    read that version; otherwise ConflictError carries the current one. The web API and `ohp review`
    always give it; without it (tests, the benchmark, deciding what was just read) the change applies
    to the annotation as it is now.
    """
    if status not in ANNOTATION_STATUSES:
        raise InvalidInputError(f"unknown status {status!r}: choose one of {', '.join(ANNOTATION_STATUSES)}")
    # Locked as it is read: a decision made meanwhile on the same version (on PostgreSQL, which does not hold
    # a write's lock from its start as SQLite does) waits for this one, then reads its version: a conflict.
    row = s.get(AnnotationRow, annotation_id, with_for_update=True)
    if row is None:
        raise NotFoundError(f"no annotation with id {annotation_id}")
    recording_id = recording_of_segment(s, row.segment_id)
    if version is not None and version != row.version:
        raise ConflictError(
            f"annotation {annotation_id} was changed by {row.updated_by} at {iso(row.updated_at)}",
            annotation_record(row, recording_id),
        )
    if status == "suggested":
        forget_decision(s, row.segment_id, row.theme, user)
    else:
        record_decision(s, row.segment_id, row.theme, user, status == "accepted", "review")
    if row.status != status:
        before = annotation_state(row)
        row.status, row.updated_by, row.updated_at, row.version = status, user, now(), row.version + 1
        _note(s, recording_id, row, status, user, before)
    s.flush()
    return annotation_record(row, recording_id)


def refuse_overturning(row: AnnotationRow | None, recording_id: int) -> None:
    """ConflictError if a person rejected the theme: adding it again must not overturn their decision
    unseen. Overturning it is a decision on the version one saw (`decide`)."""
    if row is not None and row.status == "rejected":
        raise ConflictError(
            f"theme {row.theme} on segment {row.segment_id} was rejected by {row.updated_by} at "
            f"{iso(row.updated_at)}: accept it to overturn that",
            annotation_record(row, recording_id),
        )


# A theme put on a segment: (segment id, theme, user, evidence).
Added = tuple[int, str, str, tuple[tuple[int, int], ...]]


def _coded_segment(s: Session, segment_id: int, evidence: tuple[tuple[int, int], ...]) -> Row[int, float, float, str]:
    """The segment a theme is put on (recording_id, start, end), once the evidence is checked against its text."""
    segment = s.execute(
        select(SegmentRow.recording_id, SegmentRow.start, SegmentRow.end, SegmentRow.text).where(
            SegmentRow.id == segment_id
        )
    ).one_or_none()
    if segment is None:
        raise NotFoundError(f"no segment with id {segment_id}")
    if len(evidence) > MAX_EVIDENCE_SPANS:
        raise InvalidInputError(f"{len(evidence)} pieces of evidence: a theme takes at most {MAX_EVIDENCE_SPANS}")
    for start, end in evidence:
        if not 0 <= start < end <= len(segment.text or ""):
            raise InvalidInputError(
                f"evidence [{start}, {end}] is outside the segment's text ({len(segment.text or '')} characters)"
            )
    return segment


def _annotation_row(s: Session, segment_id: int, theme: str) -> AnnotationRow | None:
    query = select(AnnotationRow).where(AnnotationRow.segment_id == segment_id, AnnotationRow.theme == theme)
    return s.scalars(query).one_or_none()


def _accept(s: Session, recording_id: int, row: AnnotationRow | None, added: Added, via: str) -> AnnotationRecord:
    """The theme on the segment, accepted by the user with the evidence added to it, and their decision (made
    `via` review or import) that it is there; in the history."""
    segment_id, theme, user, evidence = added
    before = None if row is None else annotation_state(row)
    spans = [list(span) for span in dict.fromkeys(evidence)]
    if row is None:
        row = AnnotationRow(
            segment_id=segment_id, theme=theme, source=user, status="accepted", evidence=spans, updated_by=user
        )
        s.add(row)
    else:
        kept = {tuple(span) for span in row.evidence or []}  # a set: thousands of spans must not cost n²
        row.evidence = (row.evidence or []) + [span for span in spans if tuple(span) not in kept]
        if len(row.evidence) > MAX_EVIDENCE_SPANS:
            raise InvalidInputError(f"theme {theme} would have more than {MAX_EVIDENCE_SPANS} pieces of evidence")
        row.status, row.updated_by, row.updated_at, row.version = "accepted", user, now(), row.version + 1
    s.flush()
    record_decision(s, segment_id, theme, user, True, via)
    _note(s, recording_id, row, "added", user, before)
    return annotation_record(row, recording_id)


def add_annotations(s: Session, added: Sequence[Added]) -> list[AnnotationRecord]:
    """Several `add_annotation`s, (segment id, theme, user, evidence) each, in one transaction: all of them or
    none. Each is the user's decision (DecisionRow) that the theme is there, made in review; a theme a person
    rejected is a ConflictError (see refuse_overturning)."""
    out = []
    for item in added:
        segment_id, theme, _, evidence = item
        recording_id = _coded_segment(s, segment_id, evidence).recording_id
        row = _annotation_row(s, segment_id, theme)
        refuse_overturning(row, recording_id)
        out.append(_accept(s, recording_id, row, item, "review"))
    return out


def import_annotations(
    s: Session, added: Sequence[Added], seen: Mapping[int, int] | None = None
) -> tuple[list[AnnotationRecord], list[KeptDecision]]:
    """Codes coded in another tool over a whole transcript, (segment id, theme, coder, evidence) each, in one
    transaction, as add_annotations but made via import: the annotations accepted, and the codes kept out. `seen`:
    the version of each segment as the codes were matched to its text; ConflictError, and nothing saved, where one
    changed since (corrected, or transcribed again), as the evidence would mark other words.

    An import never overturns a rejection made in ohp, which the coder did not see in the other tool: a theme a
    person rejected on the segment stays rejected, and so does a coder's own rejection. Such a code is a
    KeptDecision; where the coder decided nothing on the theme, it is still their own decision that the theme
    is there (for agreement, and their codes exported again)."""
    if seen:
        query = select(SegmentRow.id, SegmentRow.version).where(SegmentRow.id.in_(list(seen)))
        versions = {segment_id: version for segment_id, version in s.execute(query)}
        changed = [segment_id for segment_id, version in seen.items() if versions.get(segment_id) != version]
        if changed:
            raise ConflictError(
                f"{len(changed)} segment(s) the codes were matched to changed meanwhile (corrected, or transcribed "
                "again): nothing imported; import the file again"
            )
    accepted, kept = [], []
    for item in added:
        segment_id, theme, coder, evidence = item
        segment = _coded_segment(s, segment_id, evidence)
        row = _annotation_row(s, segment_id, theme)
        own = s.scalars(select(DecisionRow).where(_coders_decision(segment_id, theme, coder))).one_or_none()
        if own is not None and not own.present:
            rejected_by, rejected_at = coder, own.decided_at
        elif row is not None and row.status == "rejected":
            rejected_by, rejected_at = row.updated_by or row.source, row.updated_at
            if own is None:
                record_decision(s, segment_id, theme, coder, True, "import")
        else:
            accepted.append(_accept(s, segment.recording_id, row, item, "import"))
            continue
        where = (segment.recording_id, segment_id, segment.start, segment.end, theme, coder)
        kept.append(KeptDecision(*where, rejected_by, iso(rejected_at) or ""))
    return accepted, kept


def decisions(s: Session, recording_id: int) -> list[CoderDecision]:
    """Every coder's own decisions on a recording's themes, in transcript order."""
    query = (
        select(DecisionRow)
        .join(SegmentRow, DecisionRow.segment_id == SegmentRow.id)
        .where(SegmentRow.recording_id == recording_id)
        .order_by(SegmentRow.start, SegmentRow.id, by_code_point(DecisionRow.theme), by_code_point(DecisionRow.coder))
    )
    return [
        CoderDecision(row.segment_id, row.theme, row.coder, row.present, row.via, iso(row.decided_at) or "")
        for row in s.scalars(query)
    ]


def history(
    s: Session,
    *,
    recording_id: int | None = None,
    segment_id: int | None = None,
    annotation_id: int | None = None,
) -> list[HistoryRecord]:
    """Changes, oldest first, to a recording, a segment or an annotation."""
    query = select(HistoryRow)
    if recording_id is not None:
        query = query.where(HistoryRow.recording_id == recording_id)
    if segment_id is not None:
        query = query.where(HistoryRow.segment_id == segment_id)
    if annotation_id is not None:
        query = query.where(HistoryRow.annotation_id == annotation_id)
    return [history_record(row) for row in s.scalars(query.order_by(HistoryRow.changed_at, HistoryRow.id))]


def theme_counts(s: Session) -> list[tuple[int, str, str, dict[str, int]]]:
    """(recording id, recording path, theme, {status: count}) for every theme in use."""
    query = (
        select(RecordingRow.id, RecordingRow.path, AnnotationRow.theme, AnnotationRow.status, func.count())
        .join(SegmentRow, SegmentRow.recording_id == RecordingRow.id)
        .join(AnnotationRow, AnnotationRow.segment_id == SegmentRow.id)
        .group_by(RecordingRow.id, RecordingRow.path, AnnotationRow.theme, AnnotationRow.status)
        .order_by(by_code_point(RecordingRow.path), RecordingRow.id, by_code_point(AnnotationRow.theme))
    )
    counts: dict[tuple[int, str, str], dict[str, int]] = {}
    for rid, path, theme, status, n in s.execute(query):
        counts.setdefault((rid, path, theme), dict.fromkeys(ANNOTATION_STATUSES, 0))[status] = n
    return [(rid, path, theme, by_status) for (rid, path, theme), by_status in counts.items()]


def status_counts(s: Session) -> dict[int, dict[str, int]]:
    """{recording id: {status: count}} of the recordings with annotations, every theme together (for listings)."""
    query = (
        select(SegmentRow.recording_id, AnnotationRow.status, func.count())
        .join(SegmentRow, AnnotationRow.segment_id == SegmentRow.id)
        .group_by(SegmentRow.recording_id, AnnotationRow.status)
    )
    counts: dict[int, dict[str, int]] = {}
    for rid, status, n in s.execute(query):
        counts.setdefault(rid, dict.fromkeys(ANNOTATION_STATUSES, 0))[status] = n
    return counts


def entities(s: Session, recording_id: int) -> dict[int, list[Entity]]:
    """A recording's named entities, by segment id."""
    query = (
        select(EntityRow)
        .join(SegmentRow, EntityRow.segment_id == SegmentRow.id)
        .where(SegmentRow.recording_id == recording_id)
        .order_by(EntityRow.segment_id, EntityRow.start)
    )
    found: dict[int, list[Entity]] = defaultdict(list)
    for row in s.scalars(query):
        found[row.segment_id].append(Entity(row.label, row.text, row.start, row.end))
    return dict(found)


def _note(
    s: Session,
    recording_id: int,
    row: AnnotationRow,
    action: str,
    by: str,
    before: dict[str, Any] | None = None,
    *,
    gone: bool = False,
) -> None:
    """A change of an annotation in the history: what it was before (if it was), and what it is after (unless it
    went)."""
    after = None if gone else annotation_state(row)
    s.add(
        HistoryRow(
            recording_id=recording_id,
            segment_id=row.segment_id,
            annotation_id=row.id,
            action=action,
            changed_by=by,
            before=before,
            after=after,
        )
    )
