"""The full-text index of the segments, and the search over it.

The index is not in the ORM metadata: its shape differs by database (migration 0003). SQLite has an
FTS5 table keyed by the segment's rowid and ranks by bm25; PostgreSQL a tsvector per segment id,
ranked by ts_rank_cd. Every write of segment text goes through `index_rows`.

bm25 weighs a word by the statistics of the whole table it searches (how many rows hold it, their average
length): on SQLite the segments of recordings closed today are in a second FTS5 table, segment_index_closed
(migration 0018), so a viewer's ranking counts nothing a viewer may not see. `index_rows` writes a
recording's rows to the table its consent in force says, and `place_recording` moves them when its consent
changes. A closed recording whose release date passes stays in the closed table until it is written again, the
store is next opened or a viewer searches (Store moves the rows of `released_in_closed_index` before a viewer's
search ranks anything); a viewer's search also reads that table, for released recordings only, in case one was
released between that move and the search.
ts_rank_cd reads the segment alone: PostgreSQL has one table.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import (
    ColumnElement,
    ColumnExpressionArgument,
    CompoundSelect,
    Select,
    column,
    exists,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
    union_all,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import TableClause

from pipeline.records import SearchFilters, SearchHit, SearchResults
from pipeline.search.textindex import Query, index_terms, to_fts5, to_tsquery
from pipeline.store.database import by_code_point, folded
from pipeline.store.models import AnnotationRow, RecordingRow, SegmentRow, SpeakerRow, WordRow
from pipeline.utils import as_date, fold_case

SEGMENT_INDEX = table("segment_index", column("rowid"), column("terms"), column("segment_id"), column("vector"))
CLOSED_INDEX = table("segment_index_closed", column("rowid"), column("terms"))  # SQLite only


def segment_terms(text_: str, original_text: str) -> str:
    """What the index holds of a segment: the terms of its text, and of the original where it differs."""
    terms = index_terms(text_)
    if original_text == text_:  # most segments (imported ones always): index the text once
        return terms
    original = index_terms(original_text)
    return terms if original == terms else f"{terms} {original}"  # simplified and traditional are one


def index_rows(conn: Connection, recording_id: int, rows: list[tuple[int, str, str]]) -> None:
    """Index a recording's segments given as (id, text, original text), replacing what the index had of them;
    on SQLite in the table its consent in force says, where its other rows are moved too (a released
    recording's, still in the closed table: a segment in both would be found twice)."""
    if rows:
        write_index(conn, rows, place_recording(conn, recording_id))


def write_index(conn: Connection, rows: list[tuple[int, str, str]], table: str = SEGMENT_INDEX.name) -> None:
    """Index segments given as (id, text, original text) in `table` (SQLite's; PostgreSQL has one), replacing
    what it had of them. The store writes through index_rows; the migrations before 0018 had one table."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        # OR REPLACE: FTS5 first drops what it had of the rowid (one lookup when it had nothing). Plain
        # tuples to the driver: this runs for every segment stored.
        conn.exec_driver_sql(
            f"INSERT OR REPLACE INTO {table} (rowid, terms) VALUES (?, ?)",  # table: one of the two
            [(sid, segment_terms(t, o)) for sid, t, o in rows],
        )
    else:
        params = [{"id": sid, "terms": segment_terms(t, o)} for sid, t, o in rows]
        conn.execute(
            text(
                "INSERT INTO segment_index (segment_id, vector) VALUES (:id, to_tsvector('simple', :terms)) "
                "ON CONFLICT (segment_id) DO UPDATE SET vector = excluded.vector"
            ),
            params,
        )


def place_recording(conn: Connection, recording_id: int) -> str:
    """Move a recording's index rows to the table its consent in force says, and name that table: on SQLite after
    a change of consent or release date (in its transaction), before index_rows writes, and for the recordings
    released since they were indexed. PostgreSQL has one table. Rows already in place are not touched (one
    lookup: a correction's index_rows comes here every time)."""
    if conn.dialect.name != "sqlite":
        return SEGMENT_INDEX.name
    shown = conn.scalar(select(_shown_to_everyone()).where(RecordingRow.id == recording_id))
    to, source = (SEGMENT_INDEX, CLOSED_INDEX) if shown else (CLOSED_INDEX, SEGMENT_INDEX)  # NULL: closed for good
    if conn.scalar(select(_holds_recording(source)).where(RecordingRow.id == recording_id)):
        held = f"FROM {source.name} WHERE rowid IN (SELECT id FROM segments WHERE recording_id = ?)"
        conn.exec_driver_sql(
            f"INSERT OR REPLACE INTO {to.name} (rowid, terms) SELECT rowid, terms {held}", (recording_id,)
        )
        conn.exec_driver_sql(f"DELETE {held}", (recording_id,))
    return to.name


def released_in_closed_index(conn: Connection) -> list[int]:
    """The recordings whose rows are in SQLite's closed index table though every signed-in user sees them now:
    released since they were written (few: a closed recording with a release date that has passed)."""
    if conn.dialect.name != "sqlite":
        return []
    closed_held = _holds_recording(CLOSED_INDEX)
    return list(
        conn.scalars(select(RecordingRow.id).where(RecordingRow.consent == "closed", _shown_to_everyone(), closed_held))
    )


def _holds_recording(index: TableClause) -> ColumnElement[bool]:
    """Whether the SQLite index table `index` holds the rows of the recording (RecordingRow, of the enclosing
    query). A recording's rows are all in one table (place_recording moves them together): its first segment's
    tells."""
    # (Correlated by hand: nested in EXISTS, SQLAlchemy would take the min over every recording's segments.)
    of_recording = select(func.min(SegmentRow.id)).where(SegmentRow.recording_id == RecordingRow.id)
    first = of_recording.correlate(RecordingRow).scalar_subquery()
    return select(index.c.rowid).where(index.c.rowid == first).exists()


def unindex_recording(conn: Connection, recording_id: int) -> None:
    # PostgreSQL's index rows go with their segments (ON DELETE CASCADE); an FTS5 table has no foreign keys.
    if conn.dialect.name == "sqlite":
        for index in (SEGMENT_INDEX.name, CLOSED_INDEX.name):
            conn.execute(
                text(f"DELETE FROM {index} WHERE rowid IN (SELECT id FROM segments WHERE recording_id = :rid)"),
                {"rid": recording_id},
            )


def _shown_to_everyone() -> ColumnElement[bool]:
    """Whether a recording is seen by every signed-in user today: pipeline.access.may_see for a viewer, in SQL
    (closed and not released is hidden; a NULL release_on compares as NULL, not true: no release date, no
    release). tests/test_access.py checks that the two agree."""
    return or_(RecordingRow.consent != "closed", RecordingRow.release_on <= date.today())


def search(s: Session, query: Query, filters: SearchFilters, limit: int, offset: int) -> SearchResults:
    """Segments matching a query (see pipeline.search.textindex), most relevant first, ties by recording path and
    time (then segment id); `total` counts every match. bm25 ranks on SQLite, ts_rank_cd on PostgreSQL.

    One statement: the matches' ids and ranks are computed once (a materialized CTE), the rank of the
    last wanted hit found in it, and only the matches ranked as high (ties included) are joined to
    their segments and recordings and sorted, however many match."""
    wanted = limit + offset
    conn = s.connection()
    matches = _matches_query(conn, query, filters).cte("matches").prefix_with("MATERIALIZED")
    cut = select(matches.c.rank).order_by(matches.c.rank.desc()).limit(1).offset(wanted - 1).scalar_subquery()
    total = select(func.count()).select_from(matches).scalar_subquery()
    rows = s.execute(
        select(
            SegmentRow.id,
            SegmentRow.recording_id,
            RecordingRow.path,
            SegmentRow.start,
            SegmentRow.end,
            SegmentRow.speaker,
            SegmentRow.text,
            SegmentRow.language,
            SpeakerRow.name.label("speaker_name"),
            SpeakerRow.role.label("speaker_role"),
            matches.c.rank,
            total.label("total"),
        )
        .select_from(matches)
        .join(SegmentRow, SegmentRow.id == matches.c.segment_id)
        .join(RecordingRow, RecordingRow.id == SegmentRow.recording_id)
        .outerjoin(
            SpeakerRow, (SpeakerRow.recording_id == SegmentRow.recording_id) & (SpeakerRow.label == SegmentRow.speaker)
        )
        .where(matches.c.rank >= func.coalesce(cut, matches.c.rank))  # all, when fewer match
        # The segment's id last: hits tied in all else (recordings at one path) get one order, so pages never
        # repeat or skip one (PostgreSQL's top-N sort of a page chooses among ties anew).
        .order_by(matches.c.rank.desc(), by_code_point(RecordingRow.path), SegmentRow.start, SegmentRow.id)
        .limit(limit)
        .offset(offset)
    ).all()
    if rows:
        count = rows[0].total
    else:  # nothing matches, or fewer than offset do
        unranked = _matches_query(conn, query, filters, ranked=False).subquery()
        count = s.scalar(select(func.count()).select_from(unranked)) or 0
    themes: dict[int, list[str]] = defaultdict(list)
    if rows:
        for segment_id, theme in s.execute(
            select(AnnotationRow.segment_id, AnnotationRow.theme)
            .where(AnnotationRow.segment_id.in_([r.id for r in rows]), AnnotationRow.status != "rejected")
            .order_by(by_code_point(AnnotationRow.theme))
        ):
            themes[segment_id].append(theme)
    hits = [
        SearchHit(
            r.recording_id,
            r.path,
            r.id,
            r.start,
            r.end,
            r.speaker,
            r.text,
            r.language,
            tuple(themes[r.id]),
            float(r.rank),
            r.speaker_name,
            r.speaker_role,
        )
        for r in rows
    ]
    return SearchResults(count, hits)


def _matches_query(
    conn: Connection, query: Query, filters: SearchFilters, ranked: bool = True
) -> Select[Any] | CompoundSelect[Any]:
    """A select of (segment_id, rank) for the segments matching a query and the filters, higher rank
    better (without the rank when not `ranked`: counting needs none).

    On SQLite the matches of both index tables, each ranked by its own table's bm25: the closed table's
    statistics are the closed recordings' alone, so its hits' ranks are not strictly comparable with the
    others'. A viewer's filters (hide_closed) let through only the released recordings in it."""
    if conn.dialect.name == "sqlite":
        phrase = to_fts5(query)
        return union_all(
            *(
                _table_matches(
                    conn,
                    filters,
                    index,
                    index.c.rowid,
                    literal_column(index.name).op("MATCH")(phrase),
                    -func.bm25(literal_column(index.name)) if ranked else None,  # bm25: lower is better
                )
                for index in (SEGMENT_INDEX, CLOSED_INDEX)
            )
        )
    tsquery = func.to_tsquery("simple", to_tsquery(query))
    vector = SEGMENT_INDEX.c.vector
    rank = func.ts_rank_cd(vector, tsquery) if ranked else None
    return _table_matches(conn, filters, SEGMENT_INDEX, SEGMENT_INDEX.c.segment_id, vector.op("@@")(tsquery), rank)


def _table_matches(
    conn: Connection,
    filters: SearchFilters,
    index: TableClause,
    segment_id: ColumnElement[Any],
    match: ColumnElement[Any],
    rank: ColumnElement[Any] | None,
) -> Select[Any]:
    """_matches_query over one index table (`segment_id` its column of segment ids).

    The index table is the first table: every segment is in one (the store keeps it so on every write), so a
    search without filters, or with a theme filter only, never touches the segments."""
    found = select(segment_id.label("segment_id"), *([rank.label("rank")] if rank is not None else []))
    found = found.select_from(index)
    if filters != SearchFilters(themes=filters.themes, theme_status=filters.theme_status):  # more than a theme
        found = found.join(SegmentRow, SegmentRow.id == segment_id).join(
            RecordingRow, RecordingRow.id == SegmentRow.recording_id
        )
    return found.where(match, *_filter_clauses(conn, filters, segment_id))


def _filter_clauses(
    conn: Connection, filters: SearchFilters, segment_id: ColumnExpressionArgument[Any] = SegmentRow.id
) -> list[ColumnElement[bool]]:
    """WHERE clauses for the filters, on SegmentRow and RecordingRow; `segment_id` is the column the
    theme filter looks up annotations by (a full-text index's own id column will do). Text compared in any
    case is folded alike on every database (database.folded)."""
    clauses: list[ColumnElement[bool]] = []
    if filters.themes:
        # EXISTS: one look-up in (segment_id, theme) per match. An IN list of every segment with the
        # theme would read the whole annotations table on every search (it has no index by theme).
        clauses.append(
            exists().where(
                AnnotationRow.segment_id == segment_id,
                AnnotationRow.theme.in_(filters.themes),
                AnnotationRow.status.in_(filters.theme_status),
            )
        )
    if filters.doubtful:
        clauses.append(exists().where(WordRow.segment_id == segment_id, WordRow.doubtful))
    if filters.speaker is not None:
        clauses.append(_speaker_clause(conn, filters.speaker))
    if filters.recording is not None:
        clauses.append(SegmentRow.recording_id == filters.recording)
    if filters.language:
        # The code and its subtags (zh finds zh-TW), in any case (SQLite's LIKE folds case, PostgreSQL's does
        # not: both sides folded), and as written: % and _ in it are no wildcards.
        language, stored = fold_case(filters.language), folded(conn, SegmentRow.language)
        clauses.append(or_(stored == language, stored.startswith(f"{language}-", autoescape=True)))
    if filters.interviewee:
        clauses.append(folded(conn, RecordingRow.interviewee).contains(fold_case(filters.interviewee), autoescape=True))
    if filters.place:
        clauses.append(folded(conn, RecordingRow.place).contains(fold_case(filters.place), autoescape=True))
    if filters.date_from:
        clauses.append(RecordingRow.recorded_on >= as_date(filters.date_from))
    if filters.date_to:
        clauses.append(RecordingRow.recorded_on <= as_date(filters.date_to))
    if filters.hide_closed:
        clauses.append(_shown_to_everyone())
    return clauses


def _speaker_clause(conn: Connection, speaker: str) -> ColumnElement[bool]:
    """Segments whose speaker is `speaker`: the label, the display name (any case) or the role."""
    typed = fold_case(speaker)
    return or_(
        SegmentRow.speaker == speaker,
        exists().where(
            SpeakerRow.recording_id == SegmentRow.recording_id,
            SpeakerRow.label == SegmentRow.speaker,
            or_(folded(conn, SpeakerRow.name) == typed, SpeakerRow.role == typed),
        ),
    )
