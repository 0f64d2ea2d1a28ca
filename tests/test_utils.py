"""The small helpers several stages share: the one CJK character table, intervals and spans."""

from __future__ import annotations

import re
import unicodedata

import pytest

from pipeline.utils import (
    CJK,
    CJK_LETTERS,
    HAN,
    HAN_CHAR,
    HANGUL,
    HANGUL_CHAR,
    KANA,
    KANA_CHAR,
    ContentCache,
    merge_spans,
    overlap,
)


def chars(ranges: str) -> list[str]:
    """Every character of a character-class range string such as "\\u3040-\\u30ff"."""
    return [chr(c) for a, b in re.findall(r"(.)-(.)", ranges, re.S) for c in range(ord(a), ord(b) + 1)]


@pytest.mark.parametrize(
    "ranges, names",
    [
        (HAN, ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH")),
        (KANA, ("HIRAGANA", "KATAKANA")),
        (HANGUL, ("HANGUL",)),
    ],
    ids=["han", "kana", "hangul"],
)
def test_each_script_of_the_table_holds_only_its_own_characters(ranges, names):
    named = [c for c in chars(ranges) if unicodedata.name(c, "")]
    assert len(named) > 50
    assert all(any(name in unicodedata.name(c) for name in names) for c in named)


def test_the_table_covers_the_scripts_written_without_spaces():
    for text in ("工资", "這個", "𠀀", "ひらがな", "カタカナ", "한국어", "ㄱ"):
        assert all(re.fullmatch(f"[{CJK_LETTERS}]", c) for c in text), text
        assert all(CJK.match(c) for c in text), text
    assert HAN_CHAR.match("资") and not HAN_CHAR.match("か") and not HAN_CHAR.match("한")
    assert KANA_CHAR.match("か") and not KANA_CHAR.match("资")
    assert HANGUL_CHAR.match("한") and not HANGUL_CHAR.match("か")


def test_cjk_punctuation_runs_on_but_is_not_a_letter():
    for mark in "，。、：？！「」（）　":
        assert CJK.match(mark) and not re.match(f"[{CJK_LETTERS}]", mark), mark
    for other in "a,.:?! 1éд":
        assert not CJK.match(other), other


@pytest.mark.parametrize(
    "a, b, shared",
    [
        ((0, 10), (5, 20), 5),
        ((0, 10), (10, 20), 0),
        ((0, 10), (12, 20), 0),
        ((2, 3), (0, 10), 1),
        ((5, 20), (0, 10), 5),
    ],
)
def test_overlap(a, b, shared):
    assert overlap(*a, *b) == shared == overlap(*b, *a)


def test_merge_spans_joins_those_that_overlap_or_touch():
    assert merge_spans([(8, 10), (0, 3), (2, 5), (5, 6), (12, 12)]) == [(0, 6), (8, 10), (12, 12)]
    assert merge_spans([]) == []


def test_a_content_is_made_once_a_changed_one_anew_and_a_failure_not_kept():
    made: list[bytes] = []

    def make(content: bytes):
        def parse():
            made.append(content)
            if content == b"broken":
                raise ValueError("not valid")
            return content.decode().upper()

        return parse

    cache: ContentCache[str] = ContentCache(size=2)
    assert cache.get(b"wages", make(b"wages")) == cache.get(b"wages", make(b"wages")) == "WAGES"
    assert cache.get(b"wages", make(b"wages"), "labels only") == "WAGES"  # another key: made again
    assert made == [b"wages", b"wages"]
    for _ in range(2):
        with pytest.raises(ValueError):
            cache.get(b"broken", make(b"broken"))
    assert made.count(b"broken") == 2
    cache.get(b"hukou", make(b"hukou"))  # a third content: the first kept goes
    cache.get(b"wages", make(b"wages"))
    assert made.count(b"wages") == 3
    # The one used longest ago goes, not the one made first: hukou, used since wages was made again, stays.
    cache.get(b"hukou", make(b"hukou"))
    cache.get(b"dormitory", make(b"dormitory"))
    cache.get(b"hukou", make(b"hukou"))
    assert made.count(b"hukou") == 1 and made.count(b"wages") == 3


def test_a_codebook_and_a_themes_model_edited_between_two_loads_are_read_anew(tmp_path):
    import json

    from pipeline.errors import InvalidInputError
    from pipeline.stages.codebook import DEFAULT_CODEBOOK, DEFAULT_MODEL, load_codebook
    from pipeline.stages.learned import load_model

    codebook = tmp_path / "codebook.yaml"
    text = DEFAULT_CODEBOOK.read_text(encoding="utf-8")
    codebook.write_text(text, encoding="utf-8")
    shipped = load_codebook(codebook)
    codebook.write_text(text.replace("label:", "label: ", 1), encoding="utf-8")  # layout only: same themes
    assert load_codebook(codebook) == shipped
    codebook.write_text(text.replace("description: ", "description: Edited. ", 1), encoding="utf-8")
    assert load_codebook(codebook).version != shipped.version

    model = tmp_path / "themes-model.json"
    document = json.loads(DEFAULT_MODEL.read_text(encoding="utf-8"))
    model.write_text(json.dumps(document), encoding="utf-8")
    assert load_model(model).version == document["version"]
    document["trained_on"]["edited"] = True
    model.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(InvalidInputError, match="edited"):
        load_model(model)


def test_a_content_cache_used_by_many_threads_at_once_gives_each_its_own_result():
    """The web app draws its charts in a pool of threads through one cache: a thread that found a content kept
    could see another take it away before it was read (a KeyError), and one made twice was kept twice."""
    import sys
    import threading

    cache: ContentCache[str] = ContentCache(size=3)
    contents = [f"theme {n}".encode() for n in range(5)]
    failed: list[BaseException] = []

    def use() -> None:
        try:
            for n in range(2000):
                content = contents[n % len(contents)]
                assert cache.get(content, content.decode) == content.decode()
        except BaseException as e:  # handed to the test
            failed.append(e)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switched as often as they may be
    try:
        threads = [threading.Thread(target=use) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failed == []
    assert len(cache._made) == 3
