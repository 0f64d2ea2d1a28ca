"""The tagger that learns: training, the model file (and hostile ones), how the model's suggestions combine
with the codebook's patterns, `origin` stored and shown, and `ohp tag-learn` (SQLite and PostgreSQL)."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from saving import save_transcription
from typer.testing import CliRunner

from pipeline import learning
from pipeline.batch import tag_recording
from pipeline.cli import app
from pipeline.errors import InvalidInputError
from pipeline.formats.export import gather, to_json
from pipeline.process import tag_settings
from pipeline.records import AudioInfo, Segment, Transcript, settings_key
from pipeline.stages.codebook import DEFAULT_MODEL, load_codebook
from pipeline.stages.learned import LanguageModel, ThemeModel, load_model, save_model
from pipeline.stages.tag import tag_segments, tag_text
from pipeline.store import Store

CODEBOOK = load_codebook()
SMALL = [r for r in learning.load_labelled() if r["language"] == "zh"][:60]  # Chinese only: quick to learn from


def crafted(weights: dict[str, dict[str, float]]) -> ThemeModel:
    """A Chinese model that is sure of a theme exactly where one of its features occurs: {theme: {feature: w}}."""
    features = sorted({f for by_feature in weights.values() for f in by_feature})
    themes = tuple(weights)
    coef = np.array([[weights[t].get(f, 0.0) for f in features] for t in themes])
    model = LanguageModel({f: i for i, f in enumerate(features)}, np.ones(len(features)), themes, coef, -np.ones(2))
    return ThemeModel({"zh": model}, {}, "crafted")


# 缝纫 (sewing) is no pattern of the codebook's: only the model finds working_conditions in it.
SEWING = crafted({"working_conditions": {"缝纫": 10.0}, "wages": {"工资": 10.0}})


def test_learning_is_deterministic(tmp_path):
    first, second = (learning.learn(CODEBOOK, labelled=SMALL) for _ in range(2))
    assert first.version == second.version
    save_model(first, tmp_path / "a.json")
    save_model(second, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert learning.learn(CODEBOOK, labelled=SMALL[:-5]).version != first.version


def test_the_model_file_round_trips(tmp_path):
    model = learning.learn(CODEBOOK, labelled=SMALL)
    save_model(model, tmp_path / "model.json")
    loaded = load_model(tmp_path / "model.json")
    assert loaded.version == model.version and loaded.trained_on == model.trained_on
    text = "孩子放在老家给奶奶带，一年见一次"
    assert tag_text(text, "zh", CODEBOOK, loaded) == tag_text(text, "zh", CODEBOOK, model)
    assert not list(tmp_path.glob("*.partial"))


def test_ohp_ships_a_model_learned_from_its_examples():
    shipped = load_model(DEFAULT_MODEL)
    assert shipped.trained_on["labelled"] == len(learning.load_labelled())
    assert set(shipped.languages) == {"zh", "en"} and set(shipped.languages["zh"].themes) <= set(CODEBOOK.ids)


@functools.cache
def _saved_model() -> str:
    """A small model's file, as text (learned once for all the hostile variants made of it)."""
    with tempfile.TemporaryDirectory() as folder:
        save_model(learning.learn(CODEBOOK, labelled=SMALL[:20]), Path(folder) / "model.json")
        return (Path(folder) / "model.json").read_text(encoding="utf-8")


def _hostile(tmp_path: Path, change) -> Path:
    document = json.loads(_saved_model())
    path = tmp_path / "hostile.json"
    path.write_text(change(document) if callable(change) else change, encoding="utf-8")
    return path


def _set(document: dict, path: tuple, value) -> str:
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(document)


def _zh(key: str, value) -> object:
    """A change to the Chinese model's `key`; `value` may be a function of the number of themes."""
    return lambda d: _set(
        d, ("languages", "zh", key), value(len(d["languages"]["zh"]["themes"])) if callable(value) else value
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("not json {", "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
        (lambda d: json.dumps(d).replace('"idf": [', '"idf": [NaN, ', 1), "not JSON"),
        (lambda d: _set(d, ("format",), "pickle"), "format"),
        (lambda d: _set(d, ("format_version",), 99), "format_version"),
        (_zh("idf", [1.0]), "idf must be numbers"),
        (_zh("intercept", lambda n: [True] * n), "intercept"),
        (_zh("coef", "__import__('os')"), "coef must be numbers"),
        (
            lambda d: _set(d, ("languages", "zh", "features"), ["x" * 1000] * len(d["languages"]["zh"]["features"])),
            "features",
        ),
        (_zh("themes", lambda n: [1] * n), "themes"),
        (_zh("extra", 1), "expected features"),
        (lambda d: _zh("intercept", lambda n: ["BIG"] * n)(d).replace('"BIG"', "1e400"), "finite"),
        (_zh("intercept", lambda n: [9.0] * n), "version"),
    ],
)
def test_a_hostile_model_file_is_refused_by_name(tmp_path, change, why):
    path = _hostile(tmp_path, change)
    with pytest.raises(InvalidInputError) as refused:
        load_model(path)
    assert str(path) in str(refused.value) and why in str(refused.value)


def test_a_model_file_too_large_or_missing_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.stages.learned.MAX_FILE_BYTES", 100)
    path = _hostile(tmp_path, lambda d: json.dumps(d))
    with pytest.raises(InvalidInputError, match="too big for a themes model"):
        load_model(path)
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_model(tmp_path / "nowhere.json")


def test_a_model_that_is_a_fifo_nobody_writes_to_is_refused_not_waited_for(tmp_path):
    """OHP_THEMES_MODEL naming a FIFO hung every command that tags: the file was opened blocking."""
    path = tmp_path / "model.json"
    os.mkfifo(path)
    with pytest.raises(InvalidInputError, match="not a themes model ohp can use: not JSON"):
        load_model(path)


def test_patterns_keep_what_they_find_and_the_model_adds_with_evidence():
    texts = ["我在家里踩缝纫机", "老板拖欠工资三个月", "拖欠工资，天天踩缝纫机"]
    alone = tag_segments(texts, ["zh"] * 3, CODEBOOK, context=False)
    combined = tag_segments(texts, ["zh"] * 3, CODEBOOK, model=SEWING, context=False)
    assert alone[0].themes == []
    [added] = combined[0].themes
    assert (added.theme, added.origin) == ("working_conditions", "model")
    assert [texts[0][a:b] for a, b in added.evidence] == ["缝纫"]
    # What the patterns found is kept as they found it (the model also finds wages in 工资: the pattern's stays).
    assert combined[1].themes == alone[1].themes and {t.origin for t in combined[1].themes} == {"pattern"}
    themes = {t.theme: t for t in combined[2].themes}
    assert themes["wages"] == next(t for t in alone[2].themes if t.theme == "wages")
    assert themes["working_conditions"].origin == "model"


def test_the_model_needs_less_where_the_patterns_found_some_evidence():
    unsure = crafted({"working_conditions": {"缝纫": 1.0}, "wages": {"工资": 1.0}})  # probability 0.5 where present
    assert tag_text("我在家里踩缝纫机", "zh", CODEBOOK, unsure).themes == []
    # 车间 alone is too little for the patterns (0.3), the model alone too unsure: together they suggest the theme.
    text = "我在车间里踩缝纫机"
    assert tag_text(text, "zh", CODEBOOK).themes == []
    [found] = tag_text(text, "zh", CODEBOOK, unsure).themes
    assert (found.theme, found.origin) == ("working_conditions", "model")
    assert [text[a:b] for a, b in found.evidence] == ["车间", "缝纫"]


class _Unlisted(dict):
    """A model's features that may be looked up but not listed."""

    def items(self):
        raise AssertionError("the model's every feature was listed to name a segment's evidence")

    __iter__ = keys = values = items


def test_a_suggestions_evidence_is_named_from_the_segments_features_not_by_listing_the_models():
    # The shipped models have ~10,000 features a language: listing them for each suggestion was most of the tagging.
    language = SEWING.languages["zh"]
    model = ThemeModel({"zh": replace(language, features=_Unlisted(language.features))}, {}, "unlisted")
    text = "我在家里踩缝纫机"
    [found] = tag_text(text, "zh", CODEBOOK, model).themes
    assert found == tag_text(text, "zh", CODEBOOK, SEWING).themes[0]
    assert [text[a:b] for a, b in found.evidence] == ["缝纫"]


def test_english_features_are_lemmas_pairs_and_runs_of_characters_standing_where_their_word_does():
    from pipeline.stages.learned import english_features
    from pipeline.stages.tag import pipeline

    text = "Soldering hurts."
    found = english_features(pipeline("en", CODEBOOK)(text))
    assert ("soldering", 0, 9) in found and ("soldering hurt", 0, 15) in found
    assert ("# so", 0, 9) in found and ("#ing ", 0, 9) in found and ("#urts ", 10, 15) in found
    assert not any("." in f for f, _, _ in found)  # punctuation is no word


def test_the_model_never_tags_what_the_codebook_says_carries_no_theme():
    assert CODEBOOK.no_theme  # the shipped codebook has the section
    text = "这台缝纫机是放在录音笔旁边的"  # 录音笔: the interview's own business
    assert tag_text(text, "zh", CODEBOOK, SEWING).themes == []
    # The patterns still find what they find there.
    assert {t.theme for t in tag_text("工资的事，录音笔关了再说", "zh", CODEBOOK, SEWING).themes} == {"wages"}


def test_the_model_gives_no_theme_on_a_themes_exclusion():
    # 留守老人 is excluded from left_behind_children in the codebook: evidence there is no evidence.
    model = crafted({"left_behind_children": {"留守老人": 10.0}, "wages": {"工资": 0.0}})
    assert tag_text("村里都是留守老人", "zh", CODEBOOK, model).themes[0].theme == "family_separation"
    assert "left_behind_children" not in {t.theme for t in tag_text("村里都是留守老人", "zh", CODEBOOK, model).themes}


def test_a_codebook_without_no_theme_keeps_its_version_and_a_bad_section_is_a_problem(tmp_path):
    from pipeline.stages.codebook import parse_codebook

    text = "themes:\n  - id: wages\n    label: {en: Wages, zh: 工资}\n    patterns:\n      zh: [工资]\n"
    plain, _ = parse_codebook(text)
    with_section, problems = parse_codebook(text + "no_theme:\n  zh: [录音笔]\n")
    assert plain and with_section and not problems and plain.version != with_section.version
    assert plain.no_theme == () and with_section.no_theme[0].term == "录音笔"
    _, problems = parse_codebook(text + "no_theme:\n  fr: [bonjour]\n")
    assert problems and problems[0].line == 7


INFO = AudioInfo(Path("/audio/li.wav"), "ab" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 30.0)
TEXTS = ["我在车间里踩缝纫机", "老板拖欠工资三个月", "孩子在老家跟爷爷奶奶"]


def _recording(store: Store) -> int:
    segments = [Segment(i * 5.0, i * 5.0 + 4.0, t, t, "zh") for i, t in enumerate(TEXTS)]
    return save_transcription(store, INFO, Transcript("zh", 0.9, segments, "faster-whisper", "base"), {}, "k", {})


def test_origin_is_stored_exported_and_listed(db_url):
    with Store(db_url) as store:
        recording_id = _recording(store)
        tag_recording(store, recording_id, CODEBOOK, model=SEWING)
        origins = {(a.theme, a.origin) for a in store.annotations(recording_id)}
        assert {("working_conditions", "model"), ("wages", "pattern")} <= origins
        document = json.loads(to_json(gather(store, store.recording(recording_id), CODEBOOK)))
        exported = {t["id"]: t["origin"] for s in document["segments"] for t in s["themes"]}
        assert exported["working_conditions"] == "model" and exported["wages"] == "pattern"
        # Tagging again without the model withdraws its suggestion and leaves the patterns'.
        tag_recording(store, recording_id, CODEBOOK)
        assert "working_conditions" not in {a.theme for a in store.annotations(recording_id)}


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def test_tag_learn_changes_the_version_and_retagging_keeps_decisions(db_url, tmp_path, monkeypatch):
    small = tmp_path / "labelled.jsonl"
    small.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in SMALL), encoding="utf-8")
    monkeypatch.setattr(learning, "LABELLED", small)  # ohp's examples, fewer of them: the test is about the flow
    env = {"OHP_THEMES_MODEL": str(tmp_path / "annotations" / "themes-model.json")}
    with Store(db_url) as store:
        recording_id = _recording(store)
        tag_recording(store, recording_id, CODEBOOK, model=load_model())
        segments = store.segments(recording_id)
        wages = next(a for a in store.annotations(recording_id) if a.theme == "wages")
        store.decide(wages.id, "rejected", "mei")
        store.add_annotation(segments[0].id, "working_conditions", "mei", ((5, 8),))
        decided = {(a.theme, a.segment_id, a.status, a.source) for a in store.annotations() if a.status != "suggested"}

    result = invoke("tag-learn", "--db", db_url, env=env)
    assert result.exit_code == 0, result.output
    learned = load_model(Path(env["OHP_THEMES_MODEL"]))
    assert learned.version != load_model().version and learned.trained_on["decisions"] == 2

    result = invoke("tag", "--db", db_url, env=env)
    assert result.exit_code == 0, result.output
    with Store(db_url) as store:
        after = {(a.theme, a.segment_id, a.status, a.source) for a in store.annotations() if a.status != "suggested"}
        stage = store.stage(recording_id, "tag")
    assert after == decided  # every human decision as it was
    assert stage is not None and stage.settings_key == settings_key(tag_settings(CODEBOOK, learned))
    again = invoke("tag", "--db", db_url, env=env)
    assert "already tagged" in again.output and learned.version in again.output


def test_a_hostile_model_file_stops_the_command_with_its_name(tmp_path):
    path = tmp_path / "themes-model.json"
    path.write_text('{"format": "ohp-themes-model", "format_version": 1}', encoding="utf-8")
    result = invoke("tag-text", "工资", env={"OHP_THEMES_MODEL": str(path)})
    assert result.exit_code == 2 and str(path) in result.output
