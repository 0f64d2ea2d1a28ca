"""The tagger: matching rules on a small codebook made for the test, quality on the labelled set."""

from __future__ import annotations

import pytest

import pipeline.stages.tag
from bench.themes import load_labelled, predict, scores
from pipeline.script import convert_pieces
from pipeline.stages.codebook import load_codebook, parse_codebook
from pipeline.stages.tag import pipeline_language, tag_segments, tag_text

CODEBOOK = """\
themes:
  - id: wages
    label: {en: Wages, zh: 工资}
    patterns:
      zh: [工资, {terms: [钱], weight: 0.3}]
      en: [pay, wages, {terms: [money], weight: 0.3}]
    exclude:
      en: [{tokens: [{LEMMA: pay}, {LOWER: attention}]}]
  - id: hukou
    label: {en: Hukou, zh: 户口}
    patterns:
      zh: [户口]
      en: [hukou]
  - id: migration_journey
    label: {en: Journey, zh: 返乡}
    patterns:
      zh: [{tokens: [{TEXT: {IN: [过年, 春节]}}, {OP: "{0,3}"}, {TEXT: 回家}]}]
      en: [train]
  - id: schooling
    label: {en: Schooling, zh: 上学}
    patterns:
      zh: [学校, {terms: [学], weight: 0.3}]
      en: [school, {terms: [teacher], weight: 0.3}]
"""


@pytest.fixture(scope="module")
def codebook():
    codebook, problems = parse_codebook(CODEBOOK)
    assert problems == []
    return codebook


def found(text: str, language: str, codebook) -> dict[str, list[str]]:
    """Each suggested theme with the text its evidence points at."""
    return {s.theme: [text[a:b] for a, b in s.evidence] for s in tag_text(text, language, codebook).themes}


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("They paid us late again.", "paid"),
        ("The pay is bad.", "pay"),
        ("Our wages were low.", "wages"),
        ("A wage like that is nothing.", "wage"),
        ("Wages, wages, always wages.", "Wages"),
    ],
)
def test_english_terms_match_on_lemmas_and_lower_case(codebook, text, word):
    assert found(text, "en", codebook)["wages"][0] == word


def test_exclusions_remove_the_matches_they_overlap(codebook):
    assert found("Pay attention to the teacher, please.", "en", codebook) == {}
    assert found("Pay attention: they did not pay us.", "en", codebook) == {"wages": ["pay"]}


def test_traditional_characters_match_simplified_patterns_and_evidence_slices_the_original(codebook):
    text = "我們沒有本地戶口，工資也低"
    assert found(text, "zh", codebook) == {"hukou": ["戶口"], "wages": ["工資"]}


def test_terms_inside_longer_jieba_words_are_found(codebook):
    import jieba

    assert "工资条" in jieba.lcut("工资条上写着")  # jieba writes it as one word ...
    assert found("工资条上写着", "zh", codebook) == {"wages": ["工资"]}  # ... the term is found all the same
    assert found("拿工资的时候", "zh", codebook) == {"wages": ["工资"]}


def test_token_patterns_see_their_words_whole_whatever_jieba_does(codebook):
    import jieba

    assert jieba.lcut("今年春节回家路上") == ["今年春节", "回家路上"]  # both words the pattern names hidden
    assert found("今年春节回家路上", "zh", codebook) == {"migration_journey": ["春节回家"]}
    assert found("今年过年我们回家", "zh", codebook) == {"migration_journey": ["过年我们回家"]}
    assert found("回家过年", "zh", codebook) == {}  # the pattern says 过年 first


def test_offsets_are_mapped_back_when_conversion_changes_the_length(codebook, monkeypatch):
    # OpenCC keeps the length of these texts; pretend a character became two.
    def widening(pieces: list[str], script: str) -> list[str]:
        return ["XX" if p == "Ω" else convert_pieces([p], script)[0] for p in pieces]

    monkeypatch.setattr(pipeline.stages.tag, "convert_pieces", widening)
    text = "ΩΩ戶口，Ω工資"
    result = tag_text(text, "zh", codebook)
    assert {s.theme: [text[a:b] for a, b in s.evidence] for s in result.themes} == {
        "hukou": ["戶口"],
        "wages": ["工資"],
    }


def test_scores_combine_matches_and_weak_terms_need_support(codebook):
    assert found("钱", "zh", codebook) == {}  # 0.3 alone
    assert found("钱钱钱", "zh", codebook) == {}  # the same word again is no more evidence
    [alone] = tag_text("工资", "zh", codebook).themes
    [both] = tag_text("工资和钱", "zh", codebook).themes
    assert alone.score == 0.6 and both.score == pytest.approx(1 - 0.4 * 0.7) and both.evidence == ((0, 2), (3, 4))


@pytest.mark.parametrize(
    ("code", "pipeline"),
    [("zh", "zh"), ("yue", "zh"), ("zh-TW", "zh"), ("en", "en"), ("en-GB", "en"), ("es", None), ("", None)],
)
def test_language_codes(code, pipeline):
    assert pipeline_language(code) == pipeline


def test_other_languages_get_nothing(codebook):
    assert tag_text("La escuela y el dinero, en Madrid en 2008.", "es", codebook) == pipeline.stages.tag.TagResult(
        [], []
    )
    assert found("我冇户口", "yue", codebook) == {"hukou": ["户口"]}
    assert tag_text("", "zh", codebook) == pipeline.stages.tag.TagResult([], [])


def test_chinese_entities(codebook):
    text = "2008年我在東莞一个月拿三千块，我们组长叫张建国，春节前扣了五十"
    entities = tag_text(text, "zh", codebook).entities
    assert all(text[e.start : e.end] == e.text for e in entities)
    got = {(e.label, e.text) for e in entities}
    assert {
        ("DATE", "2008年"),
        ("PLACE", "東莞"),
        ("MONEY", "三千块"),
        ("PERSON", "张建国"),
        ("DATE", "春节前"),
        ("MONEY", "五十"),
    } <= got
    # 一块 is "together" and 一点 "a little" unless money or a time is said
    assert tag_text("我们一块去，慢一点", "zh", codebook).entities == []


def test_english_entities(codebook):
    text = "In 2008 I worked in Shenzhen for 2,000 yuan a month, and my supervisor Wang Li shouted at us."
    entities = tag_text(text, "en", codebook).entities
    assert all(text[e.start : e.end] == e.text for e in entities)
    assert {("DATE", "2008"), ("PLACE", "Shenzhen"), ("MONEY", "2,000 yuan"), ("PERSON", "Wang Li")} <= {
        (e.label, e.text) for e in entities
    }


def test_neighbours_raise_weak_matches_but_never_give_a_theme_without_evidence(codebook):
    texts = ["你在哪个学校？", "学了三年吧", "嗯", "学了三年吧"]
    results = tag_segments(texts, ["zh"] * 4, codebook)
    assert [[s.theme for s in r.themes] for r in results] == [["schooling"], ["schooling"], [], []]
    weak = results[1].themes[0]
    assert weak.score == pytest.approx(1 - 0.7 * 0.7) and [texts[1][a:b] for a, b in weak.evidence] == ["学"]
    # context off, or the neighbour's evidence too weak itself: no raise
    assert tag_segments(texts, ["zh"] * 4, codebook, context=False)[1].themes == []
    assert tag_segments(["学了", "学了三年吧"], ["zh", "zh"], codebook)[1].themes == []
    # a neighbour in another language counts: themes are the same in both
    assert [s.theme for s in tag_segments(["Which school?", "学了三年"], ["en", "zh"], codebook)[1].themes] == [
        "schooling"
    ]


def test_a_changed_codebook_rebuilds_the_pipeline(codebook):
    assert found("我们的户口", "zh", codebook) == {"hukou": ["户口"]}
    changed, _ = parse_codebook(CODEBOOK.replace("zh: [户口]", "zh: [户籍]"))
    assert changed.version != codebook.version
    assert found("我们的户口", "zh", changed) == {}
    assert found("我们的户口", "zh", codebook) == {"hukou": ["户口"]}


def test_segments_and_languages_must_pair_up(codebook):
    with pytest.raises(ValueError):
        tag_segments(["a", "b"], ["en"], codebook)


def test_the_labelled_set_meets_the_target():
    """The quality gate: micro-F1 >= 0.8 and at most one theme on lines that carry none (deterministic)."""
    codebook = load_codebook()
    rows = load_labelled()
    assert (
        len(rows) >= 80
        and sum(r["language"] == "zh" for r in rows) >= 40
        and sum(r["language"] == "en" for r in rows) >= 40
    )
    for context in (False, True):
        result = scores(rows, predict(rows, codebook, context), codebook.ids)
        assert result["micro"]["f1"] >= 0.8, (context, result["micro"])
        assert result["no_theme_with_several"] == 0, context
