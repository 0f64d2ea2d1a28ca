"""The annotators' commands: tag, tag-text, codebook validate, themes, review (no audio needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from saving import save_speakers, save_tags, save_transcription
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.records import AudioInfo, Segment, SpeakerRecord, ThemeSuggestion, Transcript
from pipeline.stages.codebook import DEFAULT_CODEBOOK
from pipeline.store import Store

runner = CliRunner()
INFO = AudioInfo(Path("/audio/wang.wav"), "ef" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 60.0)
TEXTS = [
    ("你的孩子现在谁在带？", "zh"),
    ("在老家，跟爷爷奶奶一起住，我一年只回去一次。", "zh"),
    ("They held back our wages for two months.", "en"),
    ("今天天气不错。", "zh"),
]


@pytest.fixture
def db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'ohp.db'}"
    segments = [Segment(i * 5.0, i * 5.0 + 4.0, t, t, lang) for i, (t, lang) in enumerate(TEXTS)]
    with Store(url) as store:
        save_transcription(store, INFO, Transcript("zh", 0.9, segments, "faster-whisper", "base"), {}, "k", {})
    return url


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input, env={"COLUMNS": "200"})


def test_tag_text_prints_themes_with_evidence_as_json():
    text = "工資被扣了，孩子在老家跟爷爷奶奶。"
    result = invoke("tag-text", text, "--language", "zh", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) == {"themes", "entities"}
    themes = {t["id"]: t for t in document["themes"]}
    assert {"wages", "left_behind_children"} <= set(themes)
    assert set(themes["wages"]) == {"id", "score", "origin", "evidence"}
    assert themes["wages"]["origin"] == "pattern"
    assert "工資" in [text[a:b] for a, b in themes["wages"]["evidence"]]


def test_tag_text_refuses_a_language_it_has_no_tagger_for():
    result = invoke("tag-text", "Bonjour", "--language", "fr")
    assert result.exit_code == 2 and "fr" in result.output


def test_codebook_validate_reports_problems_by_line(tmp_path):
    assert invoke("codebook", "validate").exit_code == 0
    bad = tmp_path / "codebook.yaml"
    bad.write_text(
        "themes:\n"
        "  - id: wages\n"
        "    label: {en: Wages, zh: 工资}\n"
        "    description: pay\n"
        "    patterns:\n"
        "      en: [wages]\n"
        "  - id: wages\n"
        "    label: {en: Again, zh: 又}\n"
        "    description: a duplicate\n"
        "    parent: nowhere\n"
        "    patterns:\n"
        "      en: [{tokens: [{NOT_AN_ATTRIBUTE: pay}]}]\n",
        encoding="utf-8",
    )
    result = invoke("codebook", "validate", str(bad))
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith(str(bad))]
    assert len(lines) >= 3
    assert any(":7:" in line and "wages" in line for line in lines)  # the duplicate id, on its line
    assert any("nowhere" in line for line in lines)  # the missing parent
    assert any(":12:" in line and "NOT_AN_ATTRIBUTE" in line for line in lines)  # the bad token pattern, on its line


def test_tag_then_review_decisions_survive_retagging(db, tmp_path):
    assert invoke("tag", "--no-model", "--db", db).exit_code == 0  # the patterns' suggestions, in a known order
    with Store(db) as store:
        suggested = {a.theme for a in store.annotations(status="suggested")}
    assert {"left_behind_children", "wages"} <= suggested

    # On the first suggestion add a theme with words as evidence, then accept it; reject the next.
    result = invoke("review", "wang", "--db", db, "--user", "mei", input="t\nfamily_separation\n一年只回去一次\na\nr\n")
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        decided = {(a.theme, a.status, a.updated_by) for a in store.annotations() if a.status != "suggested"}
        added = [a for a in store.annotations() if a.source == "mei"]
    assert len([d for d in decided if d[1] == "accepted" and d[2] == "mei"]) == 2  # the added theme is accepted too
    assert len([d for d in decided if d[1] == "rejected" and d[2] == "mei"]) == 1
    assert [a.theme for a in added] == ["family_separation"]
    assert TEXTS[1][0][added[0].evidence[0][0] : added[0].evidence[0][1]] == "一年只回去一次"

    # A changed codebook re-tags: the tagger's own suggestions change, no human decision does.
    book = DEFAULT_CODEBOOK.read_text(encoding="utf-8")
    changed = tmp_path / "codebook.yaml"
    changed.write_text(book.replace("爷爷奶奶", "外公外婆"), encoding="utf-8")
    assert invoke("tag", "--db", db, "--codebook", str(changed)).exit_code == 0  # and the model's now
    with Store(db) as store:
        after = {(a.theme, a.status, a.updated_by) for a in store.annotations() if a.status != "suggested"}
    assert after == decided

    themes = invoke("themes", "--db", db)
    assert "family_separation" in themes.stdout and "wang.wav" in themes.stdout
    assert "Family separation / 家人分离" in themes.stdout  # as people read it, beside the id


def test_review_asks_before_adding_a_theme_someone_rejected(db):
    assert invoke("tag", "--no-model", "--db", db).exit_code == 0
    with Store(db) as store:
        segment = store.segments(store.list_recordings()[0].id)[1]  # the first suggestion's segment
        theirs = store.add_annotation(segment.id, "family_separation", "jun")
        store.decide(theirs.id, "rejected", "jun", version=theirs.version)
    add = "t\nfamily_separation\n一年只回去一次\n"
    result = invoke("review", "wang", "--db", db, "--user", "mei", input=f"{add}n\n{add}y\nq\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("rejected by jun") == 2  # said each time, before anything is changed
    assert "0 decided, 1 theme(s) added" in result.output  # the one refused is not counted; it said "0 decided"
    with Store(db) as store:
        [now] = store.annotations(segment_id=segment.id, status="accepted")
        history = [(h.action, h.changed_by) for h in store.history(annotation_id=theirs.id)]
    evidence = TEXTS[1][0][slice(*now.evidence[0])]
    assert (now.theme, now.updated_by, evidence) == ("family_separation", "mei", "一年只回去一次")
    assert history[-3:] == [("rejected", "jun"), ("accepted", "mei"), ("added", "mei")]


def test_review_needs_a_user(db, monkeypatch):
    monkeypatch.delenv("OHP_USER", raising=False)
    result = invoke("review", "wang", "--db", db)
    assert result.exit_code == 2 and "OHP_USER" in result.output


def test_review_of_an_unknown_recording(db):
    result = invoke("review", "nobody", "--db", db, "--user", "mei")
    assert result.exit_code == 2 and "nobody" in result.output


@pytest.fixture
def interview(tmp_path) -> str:
    """A question and its answer by two speakers (named, with roles), the answer with two suggestions."""
    url = f"sqlite:///{tmp_path / 'interview.db'}"
    lines = [("S1", TEXTS[0][0]), ("S2", TEXTS[1][0]), ("S1", "还有别的吗？")]
    segments = [Segment(i * 5.0, i * 5.0 + 4.0, t, t, "zh", speaker=sp) for i, (sp, t) in enumerate(lines)]
    with Store(url) as store:
        rid = save_transcription(store, INFO, Transcript("zh", 0.9, segments, "faster-whisper", "base"), {}, "k", {})
        speakers = [SpeakerRecord("S1", role="interviewer"), SpeakerRecord("S2", role="interviewee")]
        save_speakers(store, rid, speakers, {}, "k", {})
        store.rename_speaker(rid, "S2", "王芳", "mei")
        answer = store.segments(rid)[1].id
        suggestions = [ThemeSuggestion("left_behind_children", 0.8, ((5, 9),)), ThemeSuggestion("wages", 0.5, ())]
        save_tags(store, rid, {answer: suggestions}, {}, "t", {}, "k")
    return url


def test_review_shows_who_speaks_and_the_segments_around_and_asks_again_after_a_mistake(interview):
    keys = "t\nsalary\n工资\n不在这里的话\n一年只回去一次\na\nq\n"  # an unknown theme, words not in the text
    result = invoke("review", "wang", "--db", interview, "--user", "mei", input=keys)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Left-behind children / 留守儿童" in out
    assert "S1 (interviewer): 你的孩子现在谁在带？" in out  # the question before
    assert "王芳 (interviewee): 在老家" in out and "还有别的吗？" in out  # the answer, and what follows
    assert "no theme 'salary'" in out and "'不在这里的话' is not in the text" in out
    with Store(interview) as store:
        decided = {(a.theme, a.status, a.evidence) for a in store.annotations() if a.updated_by == "mei"}
    at = TEXTS[1][0].index("一年只回去一次")
    assert decided == {("wages", "accepted", ((at, at + 7),)), ("left_behind_children", "accepted", ((5, 9),))}


def test_review_says_where_each_suggestion_came_from(interview):
    with Store(interview) as store:
        [recording] = store.list_recordings()
        answer = store.segments(recording.id)[1].id
        found = [
            ThemeSuggestion("left_behind_children", 0.8, ((5, 9),), origin="pattern"),
            ThemeSuggestion("wages", 0.5, (), origin="model"),
        ]
        save_tags(store, recording.id, {answer: found}, {}, "t2", {}, "k2")
    result = invoke("review", "wang", "--db", interview, "--user", "mei", input="s\ns\n")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "Left-behind children / 留守儿童 (0.80, pattern)" in out and "Wages / 工资 (0.50, model)" in out
