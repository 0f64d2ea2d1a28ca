"""openai-whisper's tokenizer module loaded from its file gives what the imported package gives (the package is
imported here only to compare): the same languages and the same tokens for a hint."""

from __future__ import annotations

import subprocess
import sys

from pipeline.stages.vocabulary import HINT_SEPARATOR, _tokenizer
from pipeline.whisper_tables import whisper_tokenizer

from conftest import REPO

HINTS = ["钦点", "Foxconn", "留守儿童 hukou 123", "犹地亚 ...!!", "  spaces\tand\nlines ", "廣東話 Cantonese"]


def test_loaded_without_the_package_it_gives_the_package_s_languages_and_tokens(monkeypatch):
    probe = (
        "import sys; from pipeline.whisper_tables import whisper_tokenizer as t; m = t(); "
        "print(len(m.LANGUAGES), 'whisper' in sys.modules, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    monkeypatch.delitem(sys.modules, "whisper.tokenizer", raising=False)
    loaded = whisper_tokenizer.__wrapped__()  # from the file, whatever this process imported before
    assert result.stdout.split() == [str(len(loaded.LANGUAGES)), "False", "False"]

    from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE, get_tokenizer

    assert loaded is not sys.modules["whisper.tokenizer"]
    assert loaded.LANGUAGES == LANGUAGES and loaded.TO_LANGUAGE_CODE == TO_LANGUAGE_CODE
    ours, packaged = loaded.get_encoding("multilingual"), get_tokenizer(multilingual=True)
    for hint in HINTS:
        assert ours.encode(HINT_SEPARATOR + hint) == packaged.encode(HINT_SEPARATOR + hint)
    assert _tokenizer().encode(HINT_SEPARATOR + HINTS[0]) == packaged.encode(HINT_SEPARATOR + HINTS[0])
