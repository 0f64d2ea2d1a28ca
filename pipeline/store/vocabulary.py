"""What corrections teach: the words people wrote in place of the recogniser's, and the suggested terms
researchers chose to ignore (pipeline.stages.vocabulary.suggest turns them into suggestions)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.records import CorrectedWord
from pipeline.store.models import IgnoredTermRow, SegmentRow, WordRow


def corrected_words(s: Session, scope: Sequence[int] | None = None) -> list[CorrectedWord]:
    """Every word a person wrote in a correction in these recordings (None: all), with the recogniser's text of
    its segment and its recording."""
    query = (
        select(WordRow.text, SegmentRow.original_text, SegmentRow.recording_id)
        .join(SegmentRow, WordRow.segment_id == SegmentRow.id)
        .where(WordRow.corrected)
        .order_by(SegmentRow.recording_id, SegmentRow.start, WordRow.idx)
    )
    if scope is not None:
        query = query.where(SegmentRow.recording_id.in_(scope))
    return [CorrectedWord(text, heard, recording_id) for text, heard, recording_id in s.execute(query)]


def ignored_terms(s: Session) -> set[str]:
    return set(s.scalars(select(IgnoredTermRow.term)))


def ignore_term(s: Session, term: str, user: str) -> None:
    """Suggest the term no more (ignoring it twice is ignoring it once)."""
    if s.get(IgnoredTermRow, term) is None:
        s.add(IgnoredTermRow(term=term, ignored_by=user))
