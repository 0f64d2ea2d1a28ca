"""openai-whisper's tokenizer module, for its table of languages and its byte-pair vocabulary, loaded from its
file without importing the `whisper` package: the package's `__init__` imports torch (2 s of start-up), the
module itself only tiktoken."""

from __future__ import annotations

import sys
from functools import cache
from importlib.util import module_from_spec, spec_from_file_location
from types import ModuleType

from pipeline.utils import package_folder


@cache
def whisper_tokenizer() -> ModuleType:
    """openai-whisper's `whisper.tokenizer` (LANGUAGES, TO_LANGUAGE_CODE, get_encoding, ...)."""
    if "whisper.tokenizer" in sys.modules:  # imported already (the openai-whisper engine): the same tables
        return sys.modules["whisper.tokenizer"]
    path = package_folder("whisper", "its tokenizer holds Whisper's languages") / "tokenizer.py"
    spec = spec_from_file_location("ohp_whisper_tokenizer", path)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"cannot load openai-whisper's tokenizer from {path}")
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
