"""The codebook: the shipped one is valid; every kind of problem is reported at its line."""

from __future__ import annotations

import textwrap

import pytest

from pipeline.stages.codebook import (
    DEFAULT_CODEBOOK,
    CodebookError,
    load_codebook,
    parse_codebook,
    validate_codebook,
)

REQUIRED = {
    "family_separation",
    "left_behind_children",
    "schooling",
    "wages",
    "working_conditions",
    "housing",
    "hukou",
    "migration_journey",
    "health",
    "aspirations",
}

GOOD = """\
# a comment
themes:
  - id: wages
    label: {en: Wages, zh: 工资}
    description: Pay.
    patterns:
      zh: [工资, {terms: [钱], weight: 0.3}]
      en:
        - pay
        - {tokens: [{LEMMA: earn}]}
    exclude:
      en: [pay attention]
  - id: arrears
    parent: wages
    label: {en: Arrears, zh: 欠薪}
    patterns:
      zh: [欠薪]
"""


def problems(text: str) -> list[tuple[int, str]]:
    codebook, found = parse_codebook(textwrap.dedent(text))
    assert (codebook is None) == bool(found)
    return [(p.line, p.message) for p in found]


def test_shipped_codebook_is_valid_and_has_the_required_themes():
    assert validate_codebook() == []
    codebook = load_codebook()
    assert set(codebook.ids) >= REQUIRED
    for theme in codebook.themes:
        assert theme.label["en"] and theme.label["zh"] and theme.description
        assert {p.language for p in theme.patterns} == {"zh", "en"}, theme.id


def test_good_codebook_parses_with_lines_weights_and_parents():
    codebook, found = parse_codebook(GOOD)
    assert found == []
    wages = codebook.theme("wages")
    assert [(p.language, p.term, p.weight, p.line) for p in wages.patterns if p.term] == [
        ("zh", "工资", 0.6, 7),
        ("zh", "钱", 0.3, 7),
        ("en", "pay", 0.6, 9),
    ]
    assert wages.patterns[-1].tokens == ({"LEMMA": "earn"},)
    assert [p.term for p in wages.exclude] == ["pay attention"]
    assert codebook.theme("arrears").parent == "wages"
    assert codebook.descendants("wages") == ["arrears"]


def test_version_follows_content_not_comments():
    version = parse_codebook(GOOD)[0].version
    assert parse_codebook(GOOD.replace("# a comment", "# another comment\n# and more"))[0].version == version
    assert parse_codebook(GOOD.replace("weight: 0.3", "weight: 0.4"))[0].version != version
    assert parse_codebook(GOOD.replace("- pay\n", "- paid\n"))[0].version != version


def test_yaml_syntax_error_has_its_line():
    found = problems("themes:\n  - id: a\n    label: {en: A, zh: 甲\n    patterns: {}\n")
    assert found[0][0] in (3, 4) and "not valid YAML" in found[0][1]


def test_unknown_keys_are_reported_at_their_line():
    found = problems("""\
        themes:
          - id: a
            label: {en: A, zh: 甲}
            colour: red
            patterns:
              zh: [甲]
              fr: [a]
        extra: 1
        """)
    assert (
        4,
        "a theme: unknown key 'colour' (expected one of description, exclude, id, label, parent, patterns)",
    ) in found
    assert any(line == 7 and "unknown key 'fr'" in message for line, message in found)
    assert any(line == 8 and "unknown key 'extra'" in message for line, message in found)


def test_missing_id_and_labels():
    found = problems("""\
        themes:
          - label: {en: A, zh: 甲}
            patterns: {zh: [甲]}
          - id: b
            label: {en: B}
            patterns: {zh: [乙]}
          - id: c
            patterns: {zh: [丙]}
        """)
    assert found == [(2, "a theme without an 'id'"), (5, "theme b has no zh label"), (7, "theme c has no 'label'")]


def test_duplicate_ids_name_the_first_line():
    found = problems("""\
        themes:
          - id: a
            label: {en: A, zh: 甲}
            patterns: {zh: [甲]}
          - id: a
            label: {en: A, zh: 甲}
            patterns: {zh: [乙]}
        """)
    assert found == [(5, "theme id 'a' is already used at line 2")]


def test_parent_that_does_not_exist_and_cycles():
    found = problems("""\
        themes:
          - id: a
            parent: nowhere
            label: {en: A, zh: 甲}
            patterns: {zh: [甲]}
          - id: b
            parent: c
            label: {en: B, zh: 乙}
            patterns: {zh: [乙]}
          - id: c
            parent: b
            label: {en: C, zh: 丙}
            patterns: {zh: [丙]}
        """)
    assert found == [
        (2, "theme a: parent 'nowhere' is not a theme"),
        (6, "theme b: parents form a cycle: b -> c -> b"),
        (10, "theme c: parents form a cycle: c -> b -> c"),
    ]


def test_bad_token_patterns_report_spacys_error_at_the_pattern():
    found = problems("""\
        themes:
          - id: a
            label: {en: A, zh: 甲}
            patterns:
              en:
                - fine
                - {tokens: [{LOWERR: left}, {LOWER: behind}]}
                - {tokens: [{LOWER: {REGEX: "(unclosed"}}]}
                - {tokens: []}
              zh:
                - {tokens: [{POS: NOUN}]}
        """)
    lines = [line for line, _ in found]
    assert lines == [7, 8, 9, 11]
    assert "LOWERR" in found[0][1] and "Extra inputs are not permitted" in found[0][1]
    assert "bad en token pattern" in found[1][1] and "missing )" in found[1][1]
    assert "zero tokens" in found[2][1]
    assert "does not set POS" in found[3][1]


def test_empty_and_malformed_patterns():
    found = problems("""\
        themes:
          - id: a
            label: {en: A, zh: 甲}
            patterns:
              zh: []
              en:
                - ""
                - {terms: [x], tokens: [{LOWER: x}]}
                - {terms: [x], weight: 2}
                - {terms: []}
          - id: b
            label: {en: B, zh: 乙}
            patterns: {zh: [戶口]}
        """)
    assert found == [
        (5, "theme a: zh patterns must be a non-empty list"),
        (7, "theme a: a en term must be a non-empty string"),
        (8, "theme a: a pattern needs exactly one of 'terms' or 'tokens'"),
        (9, "theme a: weight must be a number in (0, 1]"),
        (10, "theme a: 'terms' must be a non-empty list"),
        (13, "theme b: write Chinese terms in simplified characters: 戶口 -> 户口"),
    ]


def test_yaml_booleans_in_word_lists_are_caught():
    # YAML 1.1 reads a bare off/no/yes as a boolean: spaCy's check says where.
    found = problems("""\
        themes:
          - id: a
            label: {en: A, zh: 甲}
            patterns:
              en: [{tokens: [{LEMMA: pay}, {LOWER: {IN: [off, back]}}]}]
        """)
    assert [line for line, _ in found] == [5] and "valid string" in found[0][1] and "quote the word" in found[0][1]


def test_a_theme_without_patterns_needs_children():
    text = """\
        themes:
          - id: a
            label: {en: A, zh: 甲}
          - id: b
            parent: a
            label: {en: B, zh: 乙}
            patterns: {zh: [乙]}
        """
    assert problems(text) == []
    assert problems(text.replace("parent: a", "description: no parent")) == [
        (2, "theme a has no patterns and no child themes: it can never be suggested")
    ]


def test_load_raises_with_every_problem_and_validate_reads_files(tmp_path):
    path = tmp_path / "codebook.yaml"
    path.write_text("themes:\n  - id: A\n    label: {en: A, zh: 甲}\n    patterns: {zh: [甲]}\n", encoding="utf-8")
    assert [(p.line, p.message) for p in validate_codebook(path)] == [
        (2, "id 'A': use lower case letters, digits and _")
    ]
    with pytest.raises(CodebookError, match="line 2: id 'A'"):
        load_codebook(path)
    assert DEFAULT_CODEBOOK.exists()


def test_find_names_a_theme_as_other_tools_write_it():
    book = load_codebook()
    wages = book.theme("wages")
    assert book.find("wages") == book.find("  WAGES ") == "wages"
    assert book.find(wages.label["en"].upper()) == "wages" and book.find(wages.label["zh"]) == "wages"
    assert book.find("lunch") is None
