"""Small helpers several stages share."""

from __future__ import annotations

import codecs
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import threading
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

from pipeline.errors import InvalidInputError

log = logging.getLogger(__name__)

# The one table of CJK characters, as ranges for a regular expression's character class.
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"  # ideographs, compatibility, planes 2-3
KANA = "\u3040-\u30ff\u31f0-\u31ff"  # hiragana, katakana, phonetic extensions
HANGUL = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"  # jamo, compatibility jamo, syllables
CJK_LETTERS = HAN + KANA + HANGUL
# Radicals, CJK punctuation, bopomofo, kanbun, strokes, vertical and full-width forms.
CJK_MARKS = "\u2e80-\u2fff\u3000-\u303f\u3100-\u312f\u3190-\u31ef\ufe30-\ufe4f\uff00-\uffef"
HAN_CHAR = re.compile(f"[{HAN}]")
KANA_CHAR = re.compile(f"[{KANA}]")
HANGUL_CHAR = re.compile(f"[{HANGUL}]")
# Text in these scripts runs on without spaces.
CJK = re.compile(f"[{CJK_LETTERS}{CJK_MARKS}]")
# What XML 1.0 cannot hold (python-docx and lxml refuse it): control characters other than tab and newline.
NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
# Half of a UTF-16 pair alone: JSON's "\ud800" escape parses to one, and Python reads an undecodable byte of a
# command's argument as one; no database, encoder or UTF-8 file takes it.
SURROGATES = "\ud800-\udfff"
# What is not text to store or to look for: a surrogate, and NUL, which PostgreSQL's text refuses (SQLite kept
# it, and read it as the end of a LIKE pattern).
NOT_TEXT = re.compile(f"[\x00{SURROGATES}]")


# Characters that act on a terminal rather than show, or hide what the text says: C0 controls but tab and newline
# (ESC starts sequences that clear the screen, move the cursor, recolour or make a hidden link, OSC 8), DEL, C1
# controls (CSI, U+009B, starts the same sequences on a terminal that takes 8-bit controls), the bidi controls that
# reorder what is read (U+202E), and the invisible ones that make two texts look the same (zero-width space, word
# joiner, invisible operators, BOM, interlinear annotation marks, tag characters). ZWJ and ZWNJ stay: emoji and
# Persian need them.
DISGUISING = (
    *(c for c in range(0x20) if chr(c) not in "\t\n"),
    0x7F,
    *range(0x80, 0xA0),
    0x061C,
    0x200B,
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2060, 0x2070),
    0xFEFF,
    *range(0xFFF9, 0xFFFC),
    *range(0xE0000, 0xE0080),
)
# `inert` shows each as one visible character: C0 as its control picture (␛ for ESC), DEL as ␡, the others as
# U+FFFD; one for one, so lengths and spans into the text hold.
_INERT = {c: 0x2400 + c if c < 0x20 else 0x2421 if c == 0x7F else 0xFFFD for c in DISGUISING}
# JSON's escapes of them (a surrogate pair past U+FFFF), for `terminal_json`.
_JSON_ESCAPES = {c: json.dumps(chr(c))[1:-1] for c in DISGUISING}


def fold_case(value: str) -> str:
    """Text as the store compares it in any case (store.database.folded does the same in SQL): in lower case,
    with İ as i, as Turkish writes it and the full-text index folds it (Unicode's lower case of İ is i and a
    combining dot, which izmir would not find)."""
    return value.lower().replace("i\u0307", "i")


def in_language(code: str | None, wanted: str) -> bool:
    """Whether a language code is `wanted` or a subtag of it (zh: zh and zh-TW, not zhx), in any case: the rule of
    search's language filter (store.search, in SQL)."""
    folded_code, folded_wanted = fold_case(code or ""), fold_case(wanted)
    return folded_code == folded_wanted or folded_code.startswith(f"{folded_wanted}-")


def clean_name(name: str) -> str:
    """A person's name as ohp keeps it (an account's, who did a thing): NFKC-normalised, stripped, so that one
    written with other code points for the same letters is the same name."""
    return unicodedata.normalize("NFKC", name).strip()


def inert(text: str) -> str:
    """The text with every character that would act on a terminal or disguise the text replaced by one that shows
    (for what ohp writes to a terminal: the CLI's console and the log on standard error)."""
    return text.translate(_INERT)


def terminal_json(value: object, indent: int | None = None) -> str:
    """The value as JSON for standard output: text as written, not ASCII escapes, but with each character `inert`
    changes written as its \\uXXXX escape, so the JSON still reads back to the same strings."""
    # Outside its strings JSON is ASCII punctuation, digits, spaces and newlines, none of them escaped here; inside,
    # json.dumps has escaped C0 and backslashes already: an escape goes only where a character stood in a string.
    return json.dumps(value, ensure_ascii=False, indent=indent).translate(_JSON_ESCAPES)


# ohp's temporary files: hidden, beside the file each becomes, named by the machine (a hash of its name: its pids are
# its own) and the process writing it, so that a later write can tell one left by a killed process from one being
# written, in a folder that other machines or containers share too.
_MACHINE = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_OUR_TEMPORARY = re.compile(r"\..+\.ohp-(?P<machine>[0-9a-f]{8})-(?P<pid>[0-9]+)-[0-9a-f]{12}\.tmp", re.DOTALL)
_NAME_MAX = 255  # bytes in a file name (ext4, XFS, Btrfs, tmpfs)
_swept: set[str] = set()  # the folders this process has removed leftovers from


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # none has it (OverflowError: none could, past a C int)
        return False
    except PermissionError:  # another user's
        return True
    return True


def remove_leftovers(folder: Path) -> None:
    """Remove the temporary files and folders (private_folder) that ohp's processes left in the folder when they were
    killed (SIGKILL, a power cut): ohp's by their name, of this machine, their process gone. A live process's,
    another machine's and files that are not ohp's stay. A leftover that cannot be removed is logged, not raised:
    the write goes on."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        found = _OUR_TEMPORARY.fullmatch(entry.name)
        if not found or found["machine"] != _MACHINE or _running(int(found["pid"])):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):  # a private_folder's
                shutil.rmtree(entry.path)
            elif entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
            else:
                continue
            log.info("removed %s, left by a write whose process ended before it did", entry.path)
        except OSError as exc:
            log.warning("cannot remove %s, left by a killed write: %s", entry.path, exc.strerror or exc)


@contextmanager
def atomic_file(path: Path, *, private: bool = False, exclusive: bool = False) -> Iterator[BinaryIO]:
    """A file to write `path` through: a temporary file beside it, given the final name only when the block ends
    without an error, its bytes on disk first. Neither a reader nor a crash ever sees half a file under that name;
    the first write of a process into a folder removes the leftovers of killed ones (`remove_leftovers`). `private`:
    readable by its owner only. `exclusive`: FileExistsError, and the file there kept, when one has the name."""
    _sweep_once(path.parent)
    ours = _our_suffix()
    # The name cut to what a file system's 255 bytes leave it: a final name may take them all.
    name = path.name.encode()[: _NAME_MAX - 1 - len(ours)].decode("utf-8", "ignore")
    tmp = path.with_name(f".{name}{ours}")
    # Not mkstemp: its files are private (0600) whatever is asked, and the file would keep that mode.
    mode = 0o600 if private else 0o666  # less the umask
    try:
        with open(tmp, "xb", opener=lambda file, flags: os.open(file, flags, mode)) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the name points at them
        if exclusive:
            os.link(tmp, path)  # unlike a rename, never over a file
        else:
            os.replace(tmp, path)
        log.info("wrote %s", path)
    finally:
        tmp.unlink(missing_ok=True)  # an error's, or the link's other name


@contextmanager
def private_folder(parent: Path) -> Iterator[Path]:
    """A folder of this process's own in `parent`, readable by its owner only, removed with all it holds when the
    block ends. Named as ohp's temporary files are: one that a killed process left (a worker's copy of an interview
    in /tmp, its process killed by the kernel for memory) is removed by the next process to make one there."""
    _sweep_once(parent)
    folder = parent / f".received{_our_suffix()}"
    folder.mkdir(mode=0o700)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _our_suffix() -> str:
    return f".ohp-{_MACHINE}-{os.getpid()}-{secrets.token_hex(6)}.tmp"


def _sweep_once(folder: Path) -> None:
    """remove_leftovers, on a process's first temporary file or folder in the folder."""
    where = os.path.abspath(folder)
    if where not in _swept:
        _swept.add(where)
        remove_leftovers(folder)


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive flock on the folder itself (no lock file beside what it holds, which another user's umask could
    keep others from opening), for processes that read a file there, change it and replace it (`write_atomic`) one
    at a time: two at once would each lose the other's change. Where the folder cannot be locked (NFS takes an
    exclusive lock only on a file open for writing) the block runs unlocked, as it did before there was a lock."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            log.warning("cannot lock the folder %s (%s): going on without", folder, exc.strerror or exc)
        yield
    finally:
        os.close(fd)  # which releases the lock


def write_atomic(path: Path, content: str | bytes, *, private: bool = False) -> None:
    """Write text (as UTF-8) or bytes to `path` whole or not at all (`atomic_file`); `private`: readable by its
    owner only."""
    with atomic_file(path, private=private) as file:
        file.write(content.encode("utf-8") if isinstance(content, str) else content)


class UnreadableFileError(InvalidInputError):
    """A file a user gave that cannot be read as one; `cause` says why, for the caller to put in its terms;
    `line` (1-based) where it is one line's fault, else None."""

    def __init__(self, path: Path, cause: str, line: int | None = None) -> None:
        super().__init__(f"{path}{f', line {line}' if line else ''}: {cause}")
        self.path = path
        self.cause = cause
        self.line = line


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a file a user gave (`what` it should be) of at most `limit` bytes; UnreadableFileError for
    a folder, a file too big or one that cannot be read. A regular file's size is checked before reading it,
    and nothing is read past the limit: a device has no size and a file may grow meanwhile. Opened without
    blocking, so a FIFO nobody writes to reads as empty instead of waiting for ever (`<(...)` still works)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            mode = os.fstat(fd)
            if stat.S_ISDIR(mode.st_mode):
                raise UnreadableFileError(path, f"is a folder, not {what}")
            if stat.S_ISREG(mode.st_mode) and mode.st_size > limit:
                size = f"{mode.st_size / 2**20:.1f} MB"
                raise UnreadableFileError(path, f"{size} is too big for {what} (at most {limit // 2**20} MB)")
            os.set_blocking(fd, True)
            with open(fd, "rb", closefd=False) as f:
                data = f.read(limit + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot read it: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise UnreadableFileError(path, f"too big for {what}: more than {limit // 2**20} MB")
    return data


def resolved(path: Path) -> Path:
    """The path made absolute with its links followed; a link that leads round in a loop (which opening it then
    reports, naming it) made absolute only: Path.resolve raises RuntimeError for one."""
    try:
        return path.resolve()
    except RuntimeError:
        return Path(os.path.abspath(path))


def decode_text(path: Path, data: bytes) -> str:
    """A user's text file's bytes as text (UTF-8, a BOM allowed; UTF-16 with its BOM, as Windows Notepad saves
    "Unicode"), its line ends made "\n"; UnreadableFileError at the line of a byte that is no such text, or of
    a NUL (a binary file)."""
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    even, odd = data[0::2].count(0), data[1::2].count(0)
    if not utf16 and max(even, odd) * 4 > len(data) and min(even, odd) * 20 < len(data):
        # NULs in every other byte only: text in UTF-16 (the NUL halves of ASCII letters) without its mark.
        raise UnreadableFileError(
            path, "not a text file (it has NUL bytes: UTF-16 without a byte-order mark? Save it as UTF-8)", 1
        )
    try:
        text = data.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].decode("utf-16" if utf16 else "utf-8", "replace").count("\n") + 1
        if utf16:
            cause = "not UTF-16 text, though it starts with UTF-16's byte-order mark (cut short?)"
        else:
            cause = (
                f"not UTF-8 text (byte 0x{data[exc.start]:02x} cannot start a character); if it is GBK, Big5 or "
                "Latin-1, convert it first, e.g. iconv -f GBK -t UTF-8"
            )
        raise UnreadableFileError(path, cause, line) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise UnreadableFileError(path, "not a text file (it has NUL bytes)", line)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def package_folder(package: str, needed_for: str) -> Path:
    """The folder of an installed package, found without importing it (silero-vad's and openai-whisper's
    `__init__` import torch, which ohp reads their files without); ModuleNotFoundError saying what it is
    `needed_for` when it is not installed."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed: {needed_for}")
    return Path(next(iter(spec.submodule_search_locations)))


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, which a container, `taskset` or a cluster
    worker narrows (os.cpu_count counts the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def one_blas_thread() -> None:
    """numpy's BLAS on one thread in this process, from now on. On some CPUs (an AMD EPYC here) OpenBLAS rounds a
    product otherwise on one thread than on two, so a word's time (and at times the text) followed the threads a
    process had, a cluster's worker's (Ray sets OMP_NUM_THREADS) or another's. Not a limit set and restored around
    each use: work beside (a second recogniser, the speakers stage) would run under either."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


T = TypeVar("T")


class ContentCache(Generic[T]):
    """What was made of a content, kept by the content's SHA-256 (not the content, which may be megabytes) for
    the `size` contents used last: commands run one after another in one process (a script's, the tests') open
    the same codebook and themes model each time, and parsing them costs a few tenths of a second; the web app
    draws the same chart for every view of a page. A changed content is made anew. What `make` raises is not
    kept. Safe in threads (the web app's): two may make the same content at once, and one result is kept."""

    def __init__(self, size: int = 4) -> None:
        self._made: dict[tuple, T] = {}
        self._size = size
        self._lock = threading.Lock()

    def get(self, content: bytes, make: Callable[[], T], *key: Hashable) -> T:
        """The result for `content` (and `key`: what else `make` depends on), made by `make` if not kept."""
        digest = (hashlib.sha256(content).digest(), *key)
        with self._lock:
            if digest in self._made:
                kept = self._made[digest] = self._made.pop(digest)  # put back last: the order is the order of use
                return kept
        made = make()  # not under the lock: a chart takes a second to draw
        with self._lock:
            self._made.pop(digest, None)
            if len(self._made) >= self._size:
                del self._made[next(iter(self._made))]  # the one used longest ago
            self._made[digest] = made
        return made


def timestamp(seconds: float, separator: str = ".", hours: bool = True) -> str:
    """01:02:03.456 (SRT wants a comma before the milliseconds)."""
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}" if hours or h else f"{m:02d}:{s:02d}{separator}{ms:03d}"


def clock(seconds: float) -> str:
    """00:12:31, for people reading a transcript."""
    return timestamp(seconds)[:8]


def is_wide(char: str) -> bool:
    """A character that takes two columns on screen and in subtitles (Chinese, full-width forms)."""
    return unicodedata.east_asian_width(char) in "WF"


def display_width(text: str) -> int:
    return sum(2 if is_wide(c) else 1 for c in text)


def xml_text(text: str) -> str:
    return NOT_XML.sub("", text)


def spacer(before: str, after: str) -> str:
    """What goes between two pieces of text: nothing next to Chinese (or either empty), else a space."""
    if not before or not after or CJK.match(before[-1]) or CJK.match(after[0]):
        return ""
    return " "


def join_texts(texts: Iterable[str]) -> str:
    """Pieces of text (segments, subtitle lines) as one: Chinese runs on, other words get a space."""
    joined = ""
    for text in texts:
        text = " ".join(text.split())
        joined += spacer(joined, text) + text
    return joined


def overlap(a_start: float, a_end: float, b_start: float, b_end: float) -> float:
    """Seconds two stretches of time share; 0 when they do not meet."""
    return max(0.0, min(a_end, b_end) - max(a_start, b_start))


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) spans in order, those that overlap or touch merged into one."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def as_date(value: str | date, what: str = "recorded_on") -> date | None:
    """A date given as text (ISO) or as a date; "" is none. InvalidInputError names `what` otherwise."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if value == "":
        return None
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be an ISO date (YYYY-MM-DD), not {value!r}") from None
