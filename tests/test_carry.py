"""Carrying people's work over a new transcript (pipeline.carry), on records, without a database: decisions
move to the new segment that overlaps their old one, evidence re-anchored on the same words; corrections go
where the same audio is or are dropped; speaker names and roles follow the voice by time."""

from __future__ import annotations

import pickle
from pathlib import Path

from pipeline.carry import move_speakers, plan_carry, reanchor, talk_overlap
from pipeline.records import (
    AnnotationRecord,
    AudioInfo,
    Entity,
    RecordingResult,
    Segment,
    SpeakerRecord,
    StageRun,
    ThemeSuggestion,
    Transcript,
    Word,
)


def seg(
    start: float,
    end: float,
    text: str,
    id_: int | None = None,
    speaker: str | None = None,
    version: int = 1,
    corrected: bool = False,
) -> Segment:
    return Segment(start, end, text, text, "zh", speaker=speaker, id=id_, version=version, corrected=corrected)


def decided(
    id_: int, segment_id: int, theme: str, evidence=(), status: str = "accepted", source: str = "auto"
) -> AnnotationRecord:
    return AnnotationRecord(
        id_, segment_id, 1, theme, source, status, 0.8, tuple(evidence), "t1", "mei", "2026-01-01T00:00:00+00:00", 2
    )


OLD = [
    seg(0.0, 4.0, "你的孩子现在在哪里？", 1),
    seg(5.0, 9.0, "在老家，跟爷爷奶奶一起住。", 2),
    seg(10.0, 14.0, "工资是计件的，一个月三千块。", 3),
]
NEW = [
    seg(0.3, 4.3, "你的孩子在哪里？", 11),
    seg(5.3, 9.3, "孩子在老家，跟爷爷奶奶住。", 12),
    seg(10.3, 14.3, "工资计件，一个月三千。", 13),
]


def test_reanchor_moves_spans_to_the_same_words_and_drops_the_lost_ones():
    old, new = "在老家，跟爷爷奶奶一起住。", "孩子在老家，跟爷爷奶奶住。"
    assert reanchor([[1, 3], [5, 9]], old, new) == ((3, 5), (7, 11))
    assert reanchor([[9, 11]], old, new) == ()  # 一起 is gone
    assert reanchor([[2, 2]], old, new) == ()  # an empty span is no evidence


def test_a_decision_moves_to_the_overlapping_segment_with_its_evidence_reanchored():
    plan = plan_carry(OLD, [decided(7, 2, "left_behind_children", [(1, 3), (5, 9)])], [], NEW)
    [moved] = plan.annotations
    assert (moved.target, moved.segment_id) == (1, 12)
    assert [NEW[1].text[a:b] for a, b in moved.evidence] == ["老家", "爷爷奶奶"]
    assert moved.action == "moved"
    assert moved.before == {
        "segment_id": 2,
        "theme": "left_behind_children",
        "source": "auto",
        "status": "accepted",
        "score": 0.8,
        "evidence": [[1, 3], [5, 9]],
        "annotation_id": 7,
    }
    expected = {key: value for key, value in moved.before.items() if key != "annotation_id"}
    assert moved.after == {**expected, "segment_id": 12, "evidence": [[3, 5], [7, 11]]}


def test_rejected_and_person_added_themes_move_too_one_per_theme_and_segment():
    # Two old segments both fall on one new segment: the theme lands there once, the first one kept.
    merged = [seg(0.0, 9.0, "你的孩子在哪里？在老家。", 20)]
    plan = plan_carry(
        OLD,
        [
            decided(1, 1, "schooling", status="rejected"),
            decided(2, 2, "schooling", source="jun"),
            decided(3, 2, "housing", source="jun"),
        ],
        [],
        merged,
    )
    assert [(m.old.id, m.target) for m in plan.annotations] == [(1, 0), (3, 0)]
    assert [(d.old.id, d.action, d.before["source"], d.after) for d in plan.dropped] == [(2, "dropped", "jun", None)]


def test_a_decision_goes_to_the_nearest_segment_when_none_overlaps():
    plan = plan_carry([seg(20.0, 22.0, "好的", 4)], [decided(1, 4, "health")], [], NEW)
    assert [m.segment_id for m in plan.annotations] == [13]
    nowhere = plan_carry(OLD, [decided(1, 2, "health")], [], [])
    assert nowhere.annotations == [] and [d.old.id for d in nowhere.dropped] == [1]  # noted in the history


def test_a_decision_goes_by_its_words_to_a_transcript_without_times():
    """A plain-text transcript imported over a timed one has every segment at 0 s: no time says where a decision
    goes, and every one went to the first line (the nearest start), its evidence lost."""
    untimed = [seg(0.0, 0.0, text, 21 + i) for i, text in enumerate(["我们先说说家里。", *(s.text for s in NEW)])]
    plan = plan_carry(
        OLD, [decided(7, 2, "left_behind_children", [(1, 3), (5, 9)]), decided(8, 3, "wages")], [], untimed
    )
    assert [(m.old.id, m.segment_id) for m in plan.annotations] == [(7, 23), (8, 24)]
    assert [untimed[2].text[a:b] for a, b in plan.annotations[0].evidence] == ["老家", "爷爷奶奶"]


def test_a_correction_is_kept_where_the_same_audio_is_and_dropped_where_it_is_not():
    old = [
        seg(5.0, 9.0, "在老家，跟爷爷奶奶一起住。", 2, version=3, corrected=True),
        seg(30.0, 40.0, "corrected but gone", 5, version=2, corrected=True),
        seg(10.0, 14.0, "工资是计件的，一个月三千块。", 3, version=3),  # corrected, then reverted to the recogniser's
    ]
    plan = plan_carry(old, [], [], NEW)
    kept, dropped = plan.corrections
    assert (kept.action, kept.target, kept.segment_id, kept.version) == ("carried", 1, 12, 4)
    assert kept.before == {"text": "在老家，跟爷爷奶奶一起住。", "start": 5.0, "end": 9.0} and kept.after == {
        "text": "在老家，跟爷爷奶奶一起住。"
    }
    assert (dropped.action, dropped.target, dropped.after) == ("dropped", None, None)
    assert dropped.before["text"] == "corrected but gone"
    assert plan.texts == [
        NEW[0].text,
        "在老家，跟爷爷奶奶一起住。",
        NEW[2].text,
    ]  # an uncorrected segment is not carried, nor one reverted to the recogniser's text


def test_a_correction_needs_most_of_both_segments_to_overlap():
    # The new segment covers the old one's audio, but is mostly something else: the correction is dropped.
    old = [seg(5.0, 7.0, "corrected", 2, version=2, corrected=True)]
    plan = plan_carry(old, [], [], [seg(5.0, 12.0, "much longer", 12)])
    assert [c.action for c in plan.corrections] == ["dropped"]


def test_decisions_are_reanchored_on_the_corrected_text():
    old = [seg(5.0, 9.0, "在老家，跟爷爷奶奶一起住。", 2, version=2, corrected=True)]
    plan = plan_carry(old, [decided(1, 2, "left_behind_children", [(5, 9)])], [], [seg(5.2, 9.1, "在老家跟爷奶住", 12)])
    [moved] = plan.annotations
    assert moved.evidence == ((5, 9),)  # on 爷爷奶奶 in the corrected text the segment keeps


SPLIT = [
    seg(0.0, 1.8, "Where were you born?", 1, "S1"),
    seg(2.2, 4.0, "In Wuhan.", 2, "S2"),
    seg(5.0, 9.0, "We moved in 1998.", 3, "S2"),
]


def test_speaker_names_and_roles_follow_the_voice_by_time():
    swapped = [seg(s.start, s.end, s.text, 10 + i, {"S1": "S2", "S2": "S1"}[s.speaker]) for i, s in enumerate(SPLIT)]
    people_set = [
        SpeakerRecord("S1", role="other", role_by="mei"),
        SpeakerRecord("S2", "Zhang Changhua", "interviewee", named_by="mei"),
    ]
    moves = sorted(move_speakers(people_set, SPLIT, swapped), key=lambda m: m.label)
    assert [(m.old.label, m.label) for m in moves] == [("S2", "S1"), ("S1", "S2")]
    assert moves[0].after == {"label": "S1", "name": "Zhang Changhua", "named_by": "mei", "role": None, "role_by": None}
    assert moves[1].after == {"label": "S2", "name": None, "named_by": None, "role": "other", "role_by": "mei"}
    assert moves[0].before == {
        "label": "S2",
        "name": "Zhang Changhua",
        "named_by": "mei",
        "role": "interviewee",
        "role_by": None,
    }
    assert (
        move_speakers([SpeakerRecord("S1", role="interviewer")], SPLIT, swapped) == []
    )  # the heuristics' choice is not carried


def test_one_pair_per_speaker_by_the_longest_time_together():
    # The new S1 talks over both old voices; old S2 talks most with it, so old S1 pairs with nobody new.
    new = [seg(0.0, 9.0, "everything", 10, "S1")]
    assert talk_overlap(SPLIT, new) == {("S1", "S1"): 1.8, ("S2", "S1"): 1.8 + 4.0}
    people_set = [SpeakerRecord("S1", "Mei", named_by="mei"), SpeakerRecord("S2", "Zhang", named_by="mei")]
    assert [(m.old.label, m.label) for m in move_speakers(people_set, SPLIT, new)] == [("S2", "S1")]


def test_a_result_pickles():
    words = [Word(0.0, 0.5, "好", 0.9)]
    result = RecordingResult(
        AudioInfo(Path("/audio/a.wav"), "ab" * 32, 10, "wav", "pcm_s16le", 16000, 1, 4.2),
        Transcript(
            "zh",
            0.98,
            [Segment(0.0, 0.5, "好", "好", "zh", words, speaker="S1")],
            "faster-whisper",
            "base",
            {"silence": 1},
        ),
        speakers=[SpeakerRecord("S1", "Wang Fang", "interviewer", person_id=3)],
        themes={0: [ThemeSuggestion("wages", 0.6, ((0, 1),))]},
        entities={0: [Entity("PERSON", "好", 0, 1)]},
        tagger="1/abc",
        stages={"transcribe": StageRun({"model": "base"}, "k", {"segments": 1})},
    )
    assert pickle.loads(pickle.dumps(result)) == result
