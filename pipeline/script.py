"""Chinese script policy: simplified, traditional, or the recogniser's own output.

Whisper writes Mandarin in either script, often traditional, whatever was spoken. The policy converts
with OpenCC; callers keep the original text beside the converted one.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache

from pipeline.errors import InvalidInputError


class Script(StrEnum):
    SIMPLIFIED = "simplified"
    TRADITIONAL = "traditional"  # OpenCC's standard forms (喫 for 吃), as in print dictionaries
    TRADITIONAL_TW = "traditional-tw"  # as written in Taiwan, with its words (軟體, not 軟件)
    TRADITIONAL_HK = "traditional-hk"  # as written in Hong Kong
    ORIGINAL = "original"  # as the recogniser wrote it


# The OpenCC conversion to each script; Taiwan's is phrase-level, since its vocabulary differs too.
OPENCC_CONFIGS = {
    Script.SIMPLIFIED: "t2s",
    Script.TRADITIONAL: "s2t",
    Script.TRADITIONAL_TW: "s2twp",
    Script.TRADITIONAL_HK: "s2hk",
}


SCRIPTS = tuple(Script)
CHINESE_LANGUAGES = frozenset({"zh", "yue"})


@cache
def _converter(config: str):
    import opencc

    return opencc.OpenCC(config)


def check_script(script: str) -> None:
    """InvalidInputError, naming the choices, unless the script is one of SCRIPTS."""
    if script not in SCRIPTS:
        raise InvalidInputError(f"unknown script {script!r}: choose one of {', '.join(SCRIPTS)}")


def convert(text: str, script: str) -> str:
    """Text in the given script; "original" leaves it as it is."""
    check_script(script)  # first, so a misspelt script fails on the first call, not on the first Chinese text
    if script == Script.ORIGINAL or not text:
        return text
    return _converter(OPENCC_CONFIGS[Script(script)]).convert(text)


def convert_pieces(pieces: list[str], script: str) -> list[str]:
    """Convert a text given in pieces (words) as a whole, so phrase-level rules see whole phrases,
    and hand it back in the same pieces; piece by piece where the conversion changes the length."""
    whole = "".join(pieces)
    converted = convert(whole, script)
    if len(converted) != len(whole):
        return [convert(p, script) for p in pieces]
    out, pos = [], 0
    for piece in pieces:
        out.append(converted[pos : pos + len(piece)])
        pos += len(piece)
    return out


def to_simplified(text: str) -> str:
    return convert(text, Script.SIMPLIFIED)


@cache
def simplified_form(char: str) -> str:
    """A character in its simplified form, whichever traditional standard wrote it: OpenCC's (衛), Hong Kong's
    (衞) or Taiwan's (啟), which OpenCC's t2s leaves as they are. The character alone: no phrase rules."""
    return _converter("tw2s").convert(_converter("hk2s").convert(char))
