"""ohp's configuration, read once: flags over environment variables over defaults.

The CLI builds a `Config` when it starts (`create_app` does for the web app when given none) and passes
what each part needs down to it; no other module reads the environment. The README's "Configuration"
table lists every setting with its flag, variable and default.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidInputError
from pipeline.stages.codebook import DEFAULT_CODEBOOK, DEFAULT_MODEL
from pipeline.utils import inert, resolved

DEFAULT_DATABASE_URL = "sqlite:///ohp.db"
PROJECT_CODEBOOK = Path("annotations/codebook.yaml")  # a project's own, in the folder ohp runs in
PROJECT_VOCABULARY = Path("annotations/vocabulary.txt")  # the words the recogniser is told to expect
PROJECT_THEMES_MODEL = Path("annotations/themes-model.json")  # what `ohp tag-learn` learned from its decisions


class Device(StrEnum):
    """Where models run: auto is CUDA where torch sees a GPU, decided where a model loads."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


DEVICES = tuple(Device)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Each setting's environment variable.
ENVIRONMENT = {
    "database_url": "OHP_DATABASE_URL",
    "home": "OHP_HOME",
    "codebook": "OHP_CODEBOOK",
    "vocabulary": "OHP_VOCABULARY",
    "themes_model": "OHP_THEMES_MODEL",
    "device": "OHP_DEVICE",
    "secret": "OHP_SECRET",
    "log_level": "OHP_LOG_LEVEL",
    "log_file": "OHP_LOG_FILE",
    "user": "OHP_USER",
    "trusted_proxies": "OHP_TRUSTED_PROXIES",
    "secure_cookies": "OHP_SECURE_COOKIES",
}


def default_home() -> Path:
    return Path.home() / ".cache" / "ohp"


@dataclass(frozen=True)
class Config:
    database_url: str = DEFAULT_DATABASE_URL
    home: Path = field(default_factory=default_home)  # model cache, partial transcripts, the web secret
    codebook: Path = DEFAULT_CODEBOOK
    # The project's vocabulary (pipeline.stages.vocabulary), where `ohp vocabulary suggest` adds terms too;
    # the recogniser is hinted only when the file exists.
    vocabulary: Path = PROJECT_VOCABULARY
    themes_model: Path = DEFAULT_MODEL  # the tagger's learned model
    device: str = "auto"  # auto: CUDA where torch sees a GPU, decided where a model loads
    secret: str | None = None  # the web app's session secret; None: one made once and kept in home
    log_level: str = "WARNING"  # of what reaches standard error
    log_file: Path | None = None  # gets INFO and up (DEBUG with --verbose)
    user: str | None = None  # who is deciding, for the commands that record it
    # The web app's: addresses or networks of proxies whose X-Forwarded-For and -Proto are believed
    # (none: the peer's address is the client's, as it must be when nothing stands in front).
    trusted_proxies: tuple[str, ...] = ()
    secure_cookies: bool = False  # the session cookie only over HTTPS (it is anyway on a request that came by HTTPS)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            choices = ", ".join(DEVICES)
            raise InvalidInputError(f"device {self.device!r}: choose one of {choices} ({ENVIRONMENT['device']})")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                variable = ENVIRONMENT["trusted_proxies"]
                raise InvalidInputError(f"trusted proxy {proxy!r} is no IP address or network ({variable})") from None
        if self.log_level not in LOG_LEVELS:
            choices, variable = ", ".join(LOG_LEVELS), ENVIRONMENT["log_level"]
            raise InvalidInputError(f"log level {self.log_level!r}: choose one of {choices} ({variable})")

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **flags: object) -> Config:
        """Flags (None: not given) over environment variables (unset or empty: not given) over defaults.
        The codebook's default is the project's annotations/codebook.yaml when the working folder has
        one, else the codebook that ships with ohp; the themes model's likewise annotations/themes-model.json."""
        environ = os.environ if environ is None else environ
        from_environment = {name: environ.get(variable) or None for name, variable in ENVIRONMENT.items()}
        project = {
            name: resolved(path)
            for name, path in (("codebook", PROJECT_CODEBOOK), ("themes_model", PROJECT_THEMES_MODEL))
            if path.is_file()
        }
        return cls().given(**project).given(**from_environment).given(**flags)

    def given(self, **values: object) -> Config:
        """This configuration with the values given (None: not given) in place of its own."""
        changes: dict[str, Any] = {}  # field by name; __post_init__ checks the values
        for name, value in values.items():
            if value is None:
                continue
            if name in ("home", "codebook", "vocabulary", "themes_model", "log_file"):
                value = Path(str(value)).expanduser()
            elif name == "log_level":
                value = str(value).upper()
            elif name == "device":
                value = str(value).lower()
            elif name == "trusted_proxies" and isinstance(value, str):  # "10.0.0.1, 10.0.1.0/24"
                value = tuple(part.strip() for part in value.split(",") if part.strip())
            elif name == "secure_cookies" and isinstance(value, str):
                value = value.strip().lower() in ("1", "true", "yes", "on")
            changes[name] = value
        return replace(self, **changes)


def torch_device(device: str) -> str:
    """The torch device for a configured one: "auto" is CUDA when torch sees a GPU, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class StandardError(logging.StreamHandler):
    """A handler writing to whatever sys.stderr is when a record comes: a progress display (or a test
    runner) that replaces it gets the records too."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        # Records quote file names and messages about outside text: their control characters would act on
        # the terminal. The log file keeps them as they are.
        return inert(super().format(record))


class WithoutQuery(logging.Filter):
    """Leaves the query out of the web server's access lines (uvicorn's, which go to standard error): a
    search's words (what was said, a person's name) and its filters are in it, and logs go into bug reports."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Any argument that has one: the request's target need not start with "/" (a request in absolute form,
        # http://host/search?q=..., is logged as it came), and the others (address, method, version) hold no "?".
        if isinstance(record.args, tuple):
            record.args = tuple(arg.split("?", 1)[0] if isinstance(arg, str) else arg for arg in record.args)
        return True


WITHOUT_QUERY = WithoutQuery()


def setup_logging(config: Config) -> None:
    """Log records to standard error from the configured level, and to the log file (if any) from INFO
    (DEBUG when that is the level). Other libraries' records count from INFO at most, so --verbose shows
    ohp's own debugging and not theirs. Calling it again replaces what an earlier call set up."""
    level = logging.getLevelName(config.log_level)
    handlers: list[logging.Handler] = [StandardError()]
    handlers[0].setLevel(level)
    if config.log_file:
        config.log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(config.log_file, encoding="utf-8"))
        handlers[1].setLevel(min(level, logging.INFO))
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == __name__]:
        root.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(LOG_FORMAT)
    for handler in handlers:
        handler.set_name(__name__)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    lowest = min(h.level for h in handlers)
    root.setLevel(max(lowest, logging.INFO))
    logging.getLogger("pipeline").setLevel(lowest)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO is set-up chatter; the store logs migrations
    # On the logger, not a handler: uvicorn's own handlers write its access lines (addFilter adds it once).
    logging.getLogger("uvicorn.access").addFilter(WITHOUT_QUERY)
