"""The collection in numbers, counted by the database (GROUP BY, never a row per segment into Python):
each coder's decisions for the agreement between coders, theme frequency, co-occurrence and how much of
each interview is coded and reviewed. The arithmetic on these counts is pipeline.analysis's.

A segment is reviewed by a coder when they decided a theme on it (accepted, rejected, added), or when it
belongs to a recording whose codes they brought back from ELAN or a QDA program (they coded its whole
transcript there). `scope` is the recordings to count (None: all); callers pass only those the person
may see (pipeline.access).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    CTE,
    Integer,
    String,
    and_,
    case,
    cast,
    distinct,
    exists,
    func,
    literal,
    null,
    select,
    text,
    union,
    union_all,
)
from sqlalchemy.orm import Session

from pipeline.records import (
    COVERAGE_KINDS,
    FREQUENCY_DIMENSIONS,
    CollectionCounts,
    CoverageRow,
    DecisionCounts,
    Disagreement,
)
from pipeline.store.database import by_code_point
from pipeline.store.models import AnnotationRow, DecisionRow, RecordingRow, SegmentRow, SpeakerRow, StageRow

Scope = Sequence[int] | None
TENTHS = 10
# Memory for one sort or hash of the counts, on PostgreSQL (its default, 4 MB, sends the grouping of a large
# collection to disk: measured at 1M segments, frequency 4.1 -> 2.1 s with 64 MB); for the counting's
# transaction only.
POSTGRES_WORK_MEM = "64MB"


def _room_to_group(s: Session) -> None:
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text(f"SET LOCAL work_mem = '{POSTGRES_WORK_MEM}'"))


def _in_scope(query: Any, scope: Scope, column: Any = SegmentRow.recording_id) -> Any:  # a Select of any columns
    return query if scope is None else query.where(column.in_(scope))


def coders(s: Session, scope: Scope) -> list[str]:
    """Everyone who decided a theme on these recordings, by name."""
    query = select(DecisionRow.coder).join(SegmentRow, DecisionRow.segment_id == SegmentRow.id).distinct()
    return sorted(s.scalars(_in_scope(query, scope)))


def _reviewed(scope: Scope, names: Sequence[str]) -> CTE:
    """(segment_id, coder, recording_id): the segments each coder reviewed, and their recordings."""
    decided = _in_scope(
        select(DecisionRow.segment_id, DecisionRow.coder, SegmentRow.recording_id)
        .join(SegmentRow, DecisionRow.segment_id == SegmentRow.id)
        .where(DecisionRow.coder.in_(names)),
        scope,
    )
    imported = (
        _in_scope(
            select(SegmentRow.recording_id, DecisionRow.coder)
            .join(SegmentRow, DecisionRow.segment_id == SegmentRow.id)
            .where(DecisionRow.via == "import", DecisionRow.coder.in_(names)),
            scope,
        )
        .distinct()
        .subquery()
    )
    whole = select(SegmentRow.id.label("segment_id"), imported.c.coder, SegmentRow.recording_id).join(
        imported, SegmentRow.recording_id == imported.c.recording_id
    )
    return union(decided, whole).cte("reviewed")


def _shared(reviewed: CTE) -> CTE:
    """(segment_id, m): the segments two or more of the coders reviewed, and by how many."""
    query = select(reviewed.c.segment_id, func.count().label("m")).group_by(reviewed.c.segment_id)
    return query.having(func.count() >= 2).cte("shared")


def _present() -> Any:
    return case((DecisionRow.present.is_(True), 1), else_=0)


def _count(kind: str, *, coder: Any = None, theme: Any = None, m: Any = None, k: Any = None, both: Any = None) -> Any:
    """A Select of one kind of count, as rows of the one statement decision_counts runs:
    (kind, coder, theme, m, k, n, both), the columns a kind has not NULL."""

    def given(value: Any, type_: Any) -> Any:
        return cast(null(), type_) if value is None else value

    return select(
        literal(kind, String).label("kind"),
        given(coder, String).label("coder"),
        given(theme, String).label("theme"),
        given(m, Integer).label("m"),
        given(k, Integer).label("k"),
        func.count().label("n"),
        given(both, Integer).label("both"),
    )


def decision_counts(s: Session, scope: Scope, names: Sequence[str]) -> DecisionCounts:
    """The counts behind the agreement of these coders, and of the tagger with each of them: one statement,
    so that the database works out the segments each coder reviewed once (as six statements it did so six
    times: 7 of PostgreSQL's 9 s at 1M segments)."""
    _room_to_group(s)
    reviewed = _reviewed(scope, names)
    shared = _shared(reviewed)
    units = (
        select(DecisionRow.theme, shared.c.m, func.sum(_present()).label("k"))
        .join(shared, DecisionRow.segment_id == shared.c.segment_id)
        .where(DecisionRow.coder.in_(names))
        .group_by(DecisionRow.segment_id, DecisionRow.theme, shared.c.m)
        .subquery()
    )
    # The tagger against each coder, on the segments the coder reviewed in recordings the tagger ran on.
    tagged = select(StageRow.recording_id).where(StageRow.stage == "tag", StageRow.status == "done")
    seen = select(reviewed.c.segment_id, reviewed.c.coder).where(reviewed.c.recording_id.in_(tagged)).cte("seen")
    suggested = and_(AnnotationRow.segment_id == seen.c.segment_id, AnnotationRow.source == "auto")
    said = and_(
        DecisionRow.segment_id == seen.c.segment_id,
        DecisionRow.coder == seen.c.coder,
        DecisionRow.present.is_(True),
    )
    tagger_too = exists().where(
        AnnotationRow.segment_id == DecisionRow.segment_id,
        AnnotationRow.theme == DecisionRow.theme,
        AnnotationRow.source == "auto",
    )
    counts = union_all(
        _count("shared", m=shared.c.m).group_by(shared.c.m),
        _count("present", theme=units.c.theme, m=units.c.m, k=units.c.k)
        .where(units.c.k > 0)
        .group_by(units.c.theme, units.c.m, units.c.k),
        _count("marginal", coder=DecisionRow.coder, theme=DecisionRow.theme)
        .join(shared, DecisionRow.segment_id == shared.c.segment_id)
        .where(DecisionRow.coder.in_(names), DecisionRow.present.is_(True))
        .group_by(DecisionRow.theme, DecisionRow.coder),
        _count("seen", coder=seen.c.coder).group_by(seen.c.coder),
        _count("suggested", coder=seen.c.coder, theme=AnnotationRow.theme)
        .join(AnnotationRow, suggested)
        .group_by(seen.c.coder, AnnotationRow.theme),
        _count("said", coder=seen.c.coder, theme=DecisionRow.theme, both=func.sum(case((tagger_too, 1), else_=0)))
        .join(DecisionRow, said)
        .group_by(seen.c.coder, DecisionRow.theme),
    )
    by_reviewers: dict[int, int] = {}
    present: dict[tuple[str, int, int], int] = {}
    marginals: dict[tuple[str, str], int] = {}
    tagger_reviewed: dict[str, int] = {}
    by_tagger: dict[tuple[str, str], int] = {}
    by_coder: dict[tuple[str, str], tuple[int, int]] = {}
    for kind, coder, theme, m, k, n, both in s.execute(counts):
        if kind == "shared":
            by_reviewers[m] = n
        elif kind == "present":
            present[theme, m, int(k)] = n  # PostgreSQL may sum as numeric
        elif kind == "marginal":
            marginals[theme, coder] = n
        elif kind == "seen":
            tagger_reviewed[coder] = n
        elif kind == "suggested":
            by_tagger[coder, theme] = n
        else:
            by_coder[coder, theme] = (n, int(both or 0))
    tagger = {key: (by_tagger.get(key, 0), *by_coder.get(key, (0, 0))) for key in by_tagger.keys() | by_coder.keys()}
    return DecisionCounts(tuple(names), by_reviewers, present, marginals, tagger_reviewed, tagger)


def disagreements(s: Session, scope: Scope, names: Sequence[str]) -> Iterator[Disagreement]:
    """The segments and themes on which the coders who reviewed them differ, in transcript order; streamed."""
    reviewed = _reviewed(scope, names)
    shared = _shared(reviewed)
    split = (
        select(DecisionRow.segment_id, DecisionRow.theme)
        .join(shared, DecisionRow.segment_id == shared.c.segment_id)
        .where(DecisionRow.coder.in_(names))
        .group_by(DecisionRow.segment_id, DecisionRow.theme, shared.c.m)
        .having(and_(func.sum(_present()) > 0, func.sum(_present()) < shared.c.m))
        .cte("split")
    )
    own = and_(
        DecisionRow.segment_id == split.c.segment_id,
        DecisionRow.theme == split.c.theme,
        DecisionRow.coder == reviewed.c.coder,
    )
    suggested = exists().where(
        AnnotationRow.segment_id == split.c.segment_id,
        AnnotationRow.theme == split.c.theme,
        AnnotationRow.source == "auto",
    )
    query = (
        select(
            split.c.segment_id,
            split.c.theme,
            RecordingRow.path,
            SegmentRow.start,
            SegmentRow.end,
            SegmentRow.speaker,
            SegmentRow.text,
            suggested.label("tagger"),
            reviewed.c.coder,
            DecisionRow.present,
        )
        .join(SegmentRow, SegmentRow.id == split.c.segment_id)
        .join(RecordingRow, RecordingRow.id == SegmentRow.recording_id)
        .join(reviewed, reviewed.c.segment_id == split.c.segment_id)
        .outerjoin(DecisionRow, own)
        .order_by(
            by_code_point(RecordingRow.path),
            SegmentRow.start,
            split.c.segment_id,
            by_code_point(split.c.theme),
            by_code_point(reviewed.c.coder),
        )
    )
    current: Disagreement | None = None
    for row in s.execute(query.execution_options(yield_per=2000)):
        if current is None or (current.segment_id, current.theme) != (row.segment_id, row.theme):
            if current is not None:
                yield current
            current = Disagreement(
                row.segment_id, row.theme, row.path, row.start, row.end, row.speaker, row.text, bool(row.tagger), {}
            )
        current.decisions[row.coder] = None if row.present is None else bool(row.present)
    if current is not None:
        yield current


def _tenth() -> Any:
    """Which tenth of its interview a segment starts in (0-9), by its start over the recording's length."""
    return case(
        *((SegmentRow.start < RecordingRow.duration * (i + 1) / TENTHS, literal(i)) for i in range(TENTHS - 1)),
        else_=literal(TENTHS - 1),
    )


def _frequency(s: Session, scope: Scope) -> dict[str, dict[tuple[str, str, str], int]]:
    """Segments carrying each standing theme, by status and by each of FREQUENCY_DIMENSIONS: one pass over
    the annotations grouped by recording, speaker role and tenth (interviewee and place go with the
    recording), then each dimension summed from that in the same statement (GROUPING SETS, which SQLite
    lacks, as a UNION ALL)."""
    speaker = and_(SpeakerRow.recording_id == SegmentRow.recording_id, SpeakerRow.label == SegmentRow.speaker)
    keys = {
        "recording": RecordingRow.id,
        "interviewee": func.coalesce(RecordingRow.interviewee, ""),
        "place": func.coalesce(RecordingRow.place, ""),
        "role": func.coalesce(SpeakerRow.role, ""),
        "position": _tenth(),
    }
    grouped = (*keys.values(), AnnotationRow.theme, AnnotationRow.status)
    standing = _in_scope(
        select(*(key.label(name) for name, key in keys.items()), AnnotationRow.theme, AnnotationRow.status)
        .add_columns(func.count().label("n"))
        .select_from(AnnotationRow)
        .join(SegmentRow, AnnotationRow.segment_id == SegmentRow.id)
        .join(RecordingRow, RecordingRow.id == SegmentRow.recording_id)
        .outerjoin(SpeakerRow, speaker)
        .where(AnnotationRow.status != "rejected")
        .group_by(*grouped),
        scope,
    ).cte("standing")
    by_dimension = union_all(
        *(
            select(
                literal(name).label("dimension"),
                cast(standing.c[name], String).label("value"),
                standing.c.theme,
                standing.c.status,
                func.sum(standing.c.n),
            ).group_by(standing.c[name], standing.c.theme, standing.c.status)
            for name in FREQUENCY_DIMENSIONS
        )
    )
    frequency: dict[str, dict[tuple[str, str, str], int]] = {name: {} for name in FREQUENCY_DIMENSIONS}
    for name, value, theme, status, n in s.execute(by_dimension):
        frequency[name][value, theme, status] = int(n)
    return frequency


def collection_counts(s: Session, scope: Scope) -> CollectionCounts:
    """Theme frequency by each dimension, co-occurrence in a segment and in a turn, and coverage."""
    _room_to_group(s)
    return CollectionCounts(
        _frequency(s, scope), _cooccurrence_in_segments(s, scope), _cooccurrence_in_turns(s, scope), coverage(s, scope)
    )


# Themes per bit mask: SQLite's and PostgreSQL's integers have 63 bits for a sum of distinct powers of two.
BITS = 62


def _pairs(s: Session, scope: Scope, *unit: Any) -> dict[tuple[str, str], int]:
    """(theme, theme) -> units (segments, turns: `unit` names one by its SegmentRow columns) carrying both
    among their standing themes; the diagonal too. The database gives each unit its set of themes as bit
    masks (a GROUP BY, no join of the themes with themselves) and counts the units of each set; the pairs
    are read off those few sets here."""
    standing = AnnotationRow.status != "rejected"
    themes = sorted(s.scalars(select(AnnotationRow.theme).where(standing).distinct()))
    if not themes:
        return {}
    chunks = [themes[k : k + BITS] for k in range(0, len(themes), BITS)]
    masks = [
        func.sum(
            distinct(case({theme: 1 << j for j, theme in enumerate(chunk)}, value=AnnotationRow.theme, else_=0))
        ).label(f"mask{k}")
        for k, chunk in enumerate(chunks)
    ]
    grouped = select(*masks).where(standing).group_by(*unit)
    if scope is not None or any(column.table is SegmentRow.__table__ for column in unit):
        grouped = _in_scope(grouped.join(SegmentRow, AnnotationRow.segment_id == SegmentRow.id), scope)
    sets = grouped.subquery()
    columns = [sets.c[f"mask{k}"] for k in range(len(chunks))]
    pairs: Counter[tuple[str, str]] = Counter()
    for *found, n in s.execute(select(*columns, func.count()).group_by(*columns)):
        bits = [int(mask) for mask in found]  # PostgreSQL may sum as numeric
        carried = [
            theme for chunk, mask in zip(chunks, bits, strict=True) for j, theme in enumerate(chunk) if mask >> j & 1
        ]
        pairs.update(dict.fromkeys(((a, b) for i, a in enumerate(carried) for b in carried[i:]), n))
    return dict(pairs)


def _cooccurrence_in_segments(s: Session, scope: Scope) -> dict[tuple[str, str], int]:
    return _pairs(s, scope, AnnotationRow.segment_id)


def _cooccurrence_in_turns(s: Session, scope: Scope) -> dict[tuple[str, str], int]:
    """A turn is a run of consecutive segments of one speaker: the store numbers them as it saves segments."""
    return _pairs(s, scope, SegmentRow.recording_id, SegmentRow.turn)


def coverage(s: Session, scope: Scope) -> list[CoverageRow]:
    """How much of each recording is marked in each of COVERAGE_KINDS, in segments and seconds. A new kind
    (doubtful words, say) is one more entry in `marked`: the table, chart and CSV follow COVERAGE_KINDS."""
    length = SegmentRow.end - SegmentRow.start
    marked = {
        "suggested": select(AnnotationRow.segment_id).where(AnnotationRow.status == "suggested"),
        "coded": select(AnnotationRow.segment_id).where(AnnotationRow.status == "accepted"),
        "reviewed": select(DecisionRow.segment_id),
    }
    counts: dict[str, dict[int, tuple[int, float]]] = {}
    for kind in COVERAGE_KINDS:
        ids = marked[kind].distinct().subquery()
        query = _in_scope(
            select(SegmentRow.recording_id, func.count(), func.sum(length))
            .join(ids, ids.c.segment_id == SegmentRow.id)
            .group_by(SegmentRow.recording_id),
            scope,
        )
        counts[kind] = {rid: (n, float(seconds or 0)) for rid, n, seconds in s.execute(query)}
    recording = (RecordingRow.id, RecordingRow.path, RecordingRow.duration, RecordingRow.doubtful)
    totals = _in_scope(
        select(*recording, func.count(SegmentRow.id), func.sum(length))
        .outerjoin(SegmentRow, SegmentRow.recording_id == RecordingRow.id)
        .group_by(*recording)
        .order_by(by_code_point(RecordingRow.path), RecordingRow.id),
        scope,
        RecordingRow.id,
    )
    return [
        CoverageRow(
            rid,
            path,
            float(duration),
            n,
            float(seconds or 0),
            {k: counts[k].get(rid, (0, 0.0)) for k in COVERAGE_KINDS},
            doubtful,
        )
        for rid, path, duration, doubtful, n, seconds in s.execute(totals)
    ]
