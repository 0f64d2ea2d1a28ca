"""What people did to a recording, carried over to its new segments when it is transcribed or split again.

A re-transcription (or the speakers stage splitting segments anew) replaces a recording's segments; what
people decided must survive it: text corrections, accepted, rejected and person-added themes, and the names
and roles they gave speakers. `plan_carry` works out where each goes, over records and without a database;
the store applies the plan in the transaction that saves the new segments, and writes each move to the
history (`Move.before`, `Move.after`). The tagger's open suggestions are not carried: tagging makes them anew.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from difflib import Match, SequenceMatcher

from rapidfuzz import fuzz

from pipeline.records import AnnotationRecord, CoderDecision, Segment, SpeakerRecord
from pipeline.utils import overlap

Evidence = tuple[tuple[int, int], ...]


def reanchor(evidence: Sequence[Sequence[int]], old_text: str, new_text: str) -> Evidence:
    """Evidence spans moved to where their words are in a segment's new text (dropped if gone). Words that occur
    there more than once go to the place nearest to where the text around them went: a word said twice in a
    segment keeps its evidence on the one it was on."""
    spans = []
    blocks: list[Match] | None = None
    for start, end in evidence or ():
        words = old_text[start:end]
        found = _occurrences(new_text, words) if end > start else []
        if len(found) > 1:
            blocks = blocks or SequenceMatcher(None, old_text, new_text).get_matching_blocks()
            # Where the old text's start went: by the last stretch both texts share that begins at or before it.
            before = [block for block in blocks if block.a <= start] or [Match(0, 0, 0)]
            a, b, _ = before[-1]
            found = [min(found, key=lambda at: abs(at - (b + start - a)))]
        if found:
            spans.append((found[0], found[0] + end - start))
    return tuple(spans)


def _occurrences(text: str, words: str) -> list[int]:
    """Every place `words` start in `text`, overlapping ones too."""
    found: list[int] = []
    at = text.find(words)
    while at >= 0:
        found.append(at)
        at = text.find(words, at + 1)
    return found


def annotation_state(annotation) -> dict:
    """What the history keeps of an annotation (a record or a stored row) before and after a change."""
    return {
        "segment_id": annotation.segment_id,
        "theme": annotation.theme,
        "source": annotation.source,
        "status": annotation.status,
        "score": annotation.score,
        "evidence": [list(span) for span in annotation.evidence or ()],
    }


def speaker_state(speaker) -> dict:
    """What the history keeps of a speaker (a record or a stored row) before and after a change."""
    return {
        "label": speaker.label,
        "name": speaker.name,
        "named_by": speaker.named_by,
        "role": speaker.role,
        "role_by": speaker.role_by,
    }


@dataclass(frozen=True)
class CarriedCorrection:
    """A person's correction of an old segment's text: it goes to the new segment `target` (an index into the
    new segments), or is dropped (None) when no new segment covers the same stretch of audio."""

    old: Segment
    target: int | None
    segment_id: int | None  # the target's id, when the new segments have theirs

    @property
    def action(self) -> str:
        return "dropped" if self.target is None else "carried"

    @property
    def version(self) -> int:
        return self.old.version + 1

    @property
    def before(self) -> dict:
        return {"text": self.old.text, "start": self.old.start, "end": self.old.end}

    @property
    def after(self) -> dict | None:
        return None if self.target is None else {"text": self.old.text}


@dataclass(frozen=True)
class MovedAnnotation:
    """A decided or person-added annotation, moved to the new segment `target` with its evidence re-anchored."""

    old: AnnotationRecord
    target: int
    segment_id: int | None
    evidence: Evidence

    action = "moved"

    @property
    def before(self) -> dict:
        return {**annotation_state(self.old), "annotation_id": self.old.id}

    @property
    def after(self) -> dict:
        evidence = [list(span) for span in self.evidence]
        return {**annotation_state(self.old), "segment_id": self.segment_id, "evidence": evidence}


@dataclass(frozen=True)
class DroppedAnnotation:
    """A decided or person-added annotation with nowhere to go: no new segments, or its new segment has the
    theme already from another old segment (the first one kept). Noted in the history, as a dropped correction."""

    old: AnnotationRecord

    action = "dropped"
    after = None

    @property
    def before(self) -> dict:
        return {**annotation_state(self.old), "annotation_id": self.old.id}


@dataclass(frozen=True)
class MovedSpeaker:
    """The name and role people gave an old speaker, given to the new speaker `label` who talks when they did."""

    old: SpeakerRecord
    label: str

    action = "speaker moved"

    @property
    def before(self) -> dict:
        return speaker_state(self.old)

    @property
    def after(self) -> dict:
        """The new speaker as it starts out: only what a person set, the stage fills in the rest."""
        named, roled = self.old.named_by is not None, self.old.role_by is not None
        return {
            "label": self.label,
            "name": self.old.name if named else None,
            "named_by": self.old.named_by,
            "role": self.old.role if roled else None,
            "role_by": self.old.role_by,
        }


@dataclass(frozen=True)
class CarryPlan:
    corrections: list[CarriedCorrection]
    annotations: list[MovedAnnotation]
    speakers: list[MovedSpeaker]
    texts: list[str]  # each new segment's text once the corrections are on it
    dropped: list[DroppedAnnotation] = field(default_factory=list)  # the annotations not moved

    @property
    def moves(self) -> list[CarriedCorrection | MovedAnnotation | DroppedAnnotation | MovedSpeaker]:
        return [*self.corrections, *self.annotations, *self.dropped, *self.speakers]


def carry_corrections(old: Sequence[Segment], new: Sequence[Segment]) -> list[CarriedCorrection]:
    """Each corrected old segment (its text a person's) to the new segment that overlaps it most, when most of both
    overlap; else dropped (its text stays in the history)."""
    carried = []
    for segment in old:
        if not segment.corrected:
            continue
        shared = [overlap(segment.start, segment.end, n.start, n.end) for n in new]
        best = max(range(len(new)), key=shared.__getitem__, default=None)
        if best is not None and shared[best] <= 0.5 * max(segment.end - segment.start, new[best].end - new[best].start):
            best = None
        carried.append(CarriedCorrection(segment, best, None if best is None else new[best].id))
    return carried


def nearest(was: Segment, new: Sequence[Segment]) -> int | None:
    """The new segment that overlaps an old one most (the nearest by start when none does). New segments without
    times (a plain-text transcript imported over a timed one: every line at 0 s) say nothing by time; there it is
    the one whose text is most like the old one's, the first of equals."""
    if new and all(segment.end <= segment.start for segment in new):
        return max(range(len(new)), key=lambda i: fuzz.partial_ratio(was.text, new[i].text))
    return max(
        range(len(new)),
        key=lambda i: (overlap(was.start, was.end, new[i].start, new[i].end), -abs(new[i].start - was.start)),
        default=None,
    )


def move_decisions(
    decisions: Sequence[CoderDecision], old: Sequence[Segment], new: Sequence[Segment]
) -> list[CoderDecision]:
    """Each coder's own decisions to the new segment their old one goes to (as `move_annotations` moves the
    annotation), with the new segment's id; one per theme, segment and coder, the first one kept."""
    by_id = {segment.id: segment for segment in old}
    moved, taken = [], set()
    for decision in decisions:
        target = nearest(by_id[decision.segment_id], new)
        if target is None or (target, decision.theme, decision.coder) in taken:
            continue
        taken.add((target, decision.theme, decision.coder))
        moved.append(replace(decision, segment_id=new[target].stored_id))
    return moved


def move_annotations(
    decided: Sequence[AnnotationRecord], old: Sequence[Segment], new: Sequence[Segment], texts: Sequence[str]
) -> list[MovedAnnotation]:
    """Each decided or person-added annotation to the new segment that overlaps its old one most (the
    nearest by start when none does), evidence re-anchored on the same words in `texts` (the new segments'
    texts); one annotation per theme and segment, the first one kept."""
    by_id = {segment.id: segment for segment in old}
    moved, taken = [], set()
    for annotation in decided:
        was = by_id[annotation.segment_id]
        target = nearest(was, new)
        if target is None or (target, annotation.theme) in taken:
            continue
        taken.add((target, annotation.theme))
        evidence = reanchor(annotation.evidence, was.text, texts[target])
        moved.append(MovedAnnotation(annotation, target, new[target].id, evidence))
    return moved


def talk_overlap(old: Sequence[Segment], new: Sequence[Segment]) -> dict[tuple[str, str], float]:
    """Seconds during which each (old label, new label) pair speak at once."""
    spoken = sorted((s.start, s.end, s.speaker) for s in old if s.speaker)
    starts = [start for start, _, _ in spoken]
    longest = max((end - start for start, end, _ in spoken), default=0.0)
    found: defaultdict[tuple[str, str], float] = defaultdict(float)
    for segment in new:
        if not segment.speaker:
            continue
        nearby = spoken[bisect_left(starts, segment.start - longest) : bisect_left(starts, segment.end)]
        for start, end, label in nearby:
            shared = overlap(start, end, segment.start, segment.end)
            if shared > 0:
                found[label, segment.speaker] += shared
    return found


def move_speakers(
    people_set: Sequence[SpeakerRecord], old: Sequence[Segment], new: Sequence[Segment]
) -> list[MovedSpeaker]:
    """Names and roles people gave old speakers, to the new speakers who talk when they did: pairs by the
    longest time speaking together, each old and new speaker in one pair at most. A speaker nobody now
    talks like loses what people set (the history keeps it)."""
    wanted = {speaker.label: speaker for speaker in people_set if speaker.named_by or speaker.role_by}
    moved, paired = [], set()
    # Longest first; sorted is stable, so ties keep their first-seen order (as Counter.most_common did).
    longest_first = sorted(talk_overlap(old, new).items(), key=lambda pair: pair[1], reverse=True)
    for (old_label, label), _ in longest_first:
        if old_label in wanted and label not in paired:
            paired.add(label)
            moved.append(MovedSpeaker(wanted.pop(old_label), label))
    return moved


def plan_carry(
    old: Sequence[Segment],
    decided: Sequence[AnnotationRecord],
    people_set: Sequence[SpeakerRecord],
    new: Sequence[Segment],
) -> CarryPlan:
    """Where people's work on the `old` segments goes among the `new` ones: corrections first, so that
    the decisions' evidence is re-anchored on the text the new segments end up with."""
    corrections = carry_corrections(old, new)
    texts = [segment.text for segment in new]
    for correction in corrections:
        if correction.target is not None:
            texts[correction.target] = correction.old.text
    moved = move_annotations(decided, old, new, texts)
    kept = {move.old.id for move in moved}
    dropped = [DroppedAnnotation(annotation) for annotation in decided if annotation.id not in kept]
    return CarryPlan(corrections, moved, move_speakers(people_set, old, new), texts, dropped)
