"""Chinese script policy: simplified, traditional or original, for whole texts and for texts in pieces."""

from __future__ import annotations

import pytest

from pipeline import script
from pipeline.script import convert, convert_pieces, to_simplified

SIMPLIFIED = "我们那时候住在乡下，后来搬到了城里。头发都白了。"
TRADITIONAL = "我們那時候住在鄉下，後來搬到了城裡。頭髮都白了。"


def test_traditional_to_simplified():
    assert convert(TRADITIONAL, "simplified") == SIMPLIFIED
    assert to_simplified(TRADITIONAL) == SIMPLIFIED


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("traditional", "我們喫飯，用軟件和鼠標打印。"),  # OpenCC's standard form of 吃
        ("traditional-tw", "我們吃飯，用軟體和滑鼠列印。"),  # Taiwan's characters and words
        ("traditional-hk", "我們吃飯，用軟件和鼠標打印。"),
    ],
)
def test_regional_traditional_scripts(target, expected):
    assert convert("我们吃饭，用软件和鼠标打印。", target) == expected
    assert convert_pieces(["我们", "吃饭"], target) == [expected[:2], expected[2:4]]


def test_simplified_to_traditional():
    # One simplified character, several traditional ones: 发 is 髮 in 头发 (hair) but 發 in 发展.
    assert convert("头发", "traditional") == "頭髮"
    assert convert("发展", "traditional") == "發展"
    assert convert("后来", "traditional") == "後來"
    assert convert("皇后", "traditional") == "皇后"
    assert convert(SIMPLIFIED, "traditional") == "我們那時候住在鄉下，後來搬到了城裏。頭髮都白了。"


@pytest.mark.parametrize("text", [SIMPLIFIED, TRADITIONAL, "我們那时候", ""])
def test_original_leaves_the_text_as_it_is(text):
    assert convert(text, "original") is text


@pytest.mark.parametrize("target", ["simplified", "traditional"])
def test_text_without_chinese_is_unchanged(target):
    assert convert("Tape 2, side B: 1962-05-01.", target) == "Tape 2, side B: 1962-05-01."
    assert convert("", target) == ""


def test_conversion_is_idempotent():
    assert convert(SIMPLIFIED, "simplified") == SIMPLIFIED
    traditional = convert(SIMPLIFIED, "traditional")
    assert convert(traditional, "traditional") == traditional


@pytest.mark.parametrize("name", ["Simplified", "zh-hans", "simplifed", "", "t2s"])
def test_unknown_script_raises(name):
    for text in ("头发", ""):  # the check does not depend on the text
        with pytest.raises(ValueError, match="unknown script") as e:
            convert(text, name)
        assert "simplified, traditional, traditional-tw, traditional-hk, original" in str(e.value)
    with pytest.raises(ValueError):
        convert_pieces(["头", "发"], name)


def test_convert_pieces_keeps_the_piece_boundaries():
    pieces = ["我們", "那時候", "住在", "鄉下，", "後來"]
    out = convert_pieces(pieces, "simplified")
    assert out == ["我们", "那时候", "住在", "乡下，", "后来"]
    assert [len(p) for p in out] == [len(p) for p in pieces]


def test_convert_pieces_sees_whole_phrases():
    # 头发 split into two words: converted piece by piece 发 would be 發; as a whole it is 髮.
    assert convert_pieces(["头", "发", "很", "长"], "traditional") == ["頭", "髮", "很", "長"]
    assert convert_pieces(["我", "们的", "发", "展"], "traditional") == ["我", "們的", "發", "展"]
    assert "".join(convert_pieces([" 头", "发", " 白了"], "traditional")) == convert(" 头发 白了", "traditional")


def test_convert_pieces_original_and_empty():
    assert convert_pieces(["我們", "那時候"], "original") == ["我們", "那時候"]
    assert convert_pieces([], "traditional") == []
    assert convert_pieces(["", "头", ""], "traditional") == ["", "頭", ""]


def test_convert_pieces_falls_back_to_pieces_when_the_length_changes(monkeypatch):
    real = script.convert
    # A conversion that changes the length cannot be cut back into the pieces by position.
    monkeypatch.setattr(script, "convert", lambda text, target: real(text.replace("头", "头头"), target))
    assert convert_pieces(["头", "发"], "traditional") == ["頭頭", "發"]
