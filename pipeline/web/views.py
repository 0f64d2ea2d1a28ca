"""What the pages and the API show, gathered from the store (the same library calls as the CLI)."""

from __future__ import annotations

import functools
import stat
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

from pipeline import access
from pipeline.errors import NotFoundError
from pipeline.records import (
    NOT_REJECTED,
    AnnotationRecord,
    AnnotationStatus,
    RecordingExport,
    RecordingRecord,
    SearchFilters,
    speaker_title,
)
from pipeline.search.textindex import highlight, parse_query
from pipeline.stages.audio import file_sha256
from pipeline.stages.codebook import Codebook
from pipeline.stages.doubt import Passage, doubtful_passages
from pipeline.store import Store, UserRecord
from pipeline.utils import clock, fold_case, in_language

SORTS = ("path", "duration", "language", "interviewee", "place", "waiting", "doubtful")


PALETTE = 10  # theme colours in style.css: .t0 ... .t9
MATCH = "match"  # what a search hit's marked words are


@dataclass(frozen=True)
class Piece:
    """A stretch of a segment's text: what it is evidence of (theme ids, or MATCH; () for none) and, in a
    doubtful passage, the time the passage starts."""

    text: str
    marks: tuple[str, ...]
    doubtful: float | None = None


def pieces(text: str, spans: list[tuple[int, int, str]], doubtful: Sequence[Passage] = ()) -> list[Piece]:
    """The text cut wherever a span (start, end, what it marks) or a doubtful passage starts or ends; each
    stretch says which spans cover it, in the order given, and when the passage it lies in starts."""
    spans = [(max(a, 0), min(b, len(text)), key) for a, b, key in spans if min(b, len(text)) > max(a, 0)]
    passages = [(p.chars, p.start) for p in doubtful if p.chars]
    cuts = sorted(
        {0, len(text), *(e for a, b, _ in spans for e in (a, b)), *(e for chars, _ in passages for e in chars)}
    )
    out: list[Piece] = []
    for start, end in pairwise(cuts):
        marks = tuple(dict.fromkeys(key for a, b, key in spans if a <= start and end <= b))
        at = next((time for (a, b), time in passages if a <= start < b), None)
        if out and out[-1].marks == marks and out[-1].doubtful == at:
            out[-1] = Piece(out[-1].text + text[start:end], marks, at)
        else:
            out.append(Piece(text[start:end], marks, at))
    return out or [Piece(text, ())]


# The media type of each container ffmpeg decodes that a browser may play (ffmpeg's format names).
AUDIO_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "aac": "audio/aac",
    "aiff": "audio/aiff",
    "mov,mp4,m4a,3gp,3g2,mj2": "audio/mp4",
    "matroska,webm": "audio/webm",
}


def audio_type(recording: RecordingRecord) -> str | None:
    """The media type to serve a recording's file as: by the format ohp decoded, audio (or bytes to
    download, for a format no browser plays); None when it has no audio (a transcript imported alone,
    whose file could be anything)."""
    if not recording.has_audio:
        return None
    return AUDIO_TYPES.get(recording.format, "application/octet-stream")


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, modified_ns: int, inode: int) -> str:
    # Keyed by what changes when the file does: a player's range requests hash it once, not once each.
    return file_sha256(Path(path))


def _is_file_of(path: Path, recording: RecordingRecord) -> bool:
    """Whether the file at `path` is the recording's: its size, then its sha256. Another recording's file can
    be at the path the store holds (the files were moved, and a run found the other one there), and the path
    alone would serve it as this one, to people who may not hear that one."""
    try:
        found = path.stat()
        if not stat.S_ISREG(found.st_mode) or found.st_size != recording.size_bytes:
            return False
        return _sha256(str(path), found.st_size, found.st_mtime_ns, found.st_ino) == recording.sha256
    except OSError:  # gone, or unreadable: not there to serve
        return False


def recording_audio(store: Store, recording_id: int, user: UserRecord) -> tuple[Path, str]:
    """The recording's audio file and the media type to serve it as, if the user may see the recording and
    its file is still where the store says (NotFoundError otherwise)."""
    found = recording_record(store, recording_id, user)
    media_type = audio_type(found)
    if media_type is None:
        raise NotFoundError(f"recording {recording_id} has no audio")
    path = Path(found.path)
    if not _is_file_of(path, found):
        raise NotFoundError(f"the audio of recording {recording_id} is not at {path.name} any more")
    return path, media_type


def account(store: Store, user: UserRecord, name: str, action: str) -> UserRecord:
    """The account named, if the user may do `action` (access.ACCOUNT_ACTIONS) to it; NotFoundError if
    there is none (told only to those who may manage accounts)."""
    found = store.user(name)
    access.check_account_change(user, action, found)
    if found is None:
        raise NotFoundError(f"no user {name!r}")
    return found


def account_json(user: UserRecord) -> dict:
    """An account as the API shows it: no session version."""
    return {"id": user.id, "name": user.name, "role": user.role, "created_at": user.created_at}


def theme_colour(codebook: Codebook, theme: str) -> int:
    """A theme's colour, the same on every page and every day: its place in the codebook (a theme the
    codebook no longer has, by a checksum of its id)."""
    ids = codebook.ids
    return (ids.index(theme) if theme in ids else zlib.crc32(theme.encode())) % PALETTE


def recording_summary(
    recording: RecordingRecord, stages: dict[str, str], failures: dict[str, str], statuses: dict[str, int]
) -> dict:
    return {
        **asdict(recording),
        "name": Path(recording.path).name,
        "has_audio": recording.has_audio,
        "stages": stages,
        "failures": failures,  # a stage's error, where its last run failed (done, its last result kept, or failed)
        "access": recording.access(),
        **{status.value: statuses.get(status, 0) for status in AnnotationStatus},
    }


def recording_record(store: Store, recording_id: int, user: UserRecord) -> RecordingRecord:
    """The recording, if the user may see it (NotFoundError otherwise, as for one that does not exist)."""
    return access.check_see(user, store.recording(recording_id))


def recordings(
    store: Store, user: UserRecord, sort: str = "path", descending: bool = False, contains: str = "", language: str = ""
) -> list[dict]:
    """Every recording the user may see, with its stages and how many suggestions wait, filtered and sorted."""
    by_recording = store.status_counts()
    stages, failures = store.stage_listing()
    visible = access.visible(user, store.list_recordings())
    found = [
        recording_summary(rec, stages.get(rec.id, {}), failures.get(rec.id, {}), by_recording.get(rec.id, {}))
        for rec in visible
    ]
    needle = fold_case(contains)  # as search's filters fold it
    found = [
        r
        for r in found
        if (not needle or any(needle in fold_case(r[k] or "") for k in ("path", "interviewee", "place")))
        and (not language or in_language(r["language"], language))
    ]
    key = "suggested" if sort == "waiting" else sort if sort in SORTS else "path"
    # Unknown values last, whichever the direction: "most doubtful first" does not start with the untranscribed.
    known = sorted((r for r in found if r[key] is not None), key=lambda r: r[key], reverse=descending)
    return known + [r for r in found if r[key] is None]


def recording(
    store: Store, recording_id: int, user: UserRecord, annotations: list[AnnotationRecord] | None = None
) -> dict:
    """A recording with its stages and its themes counted by status (from `annotations` if given)."""
    found = recording_record(store, recording_id, user)
    statuses: dict[str, int] = {}
    for annotation in store.annotations(recording_id) if annotations is None else annotations:
        statuses[annotation.status] = statuses.get(annotation.status, 0) + 1
    ran = store.stages(recording_id)
    stages = {stage.stage: stage.status for stage in ran}
    failures = {stage.stage: stage.error for stage in ran if stage.error is not None}
    return recording_summary(found, stages, failures, statuses)


def annotation_json(annotation: AnnotationRecord, codebook: Codebook) -> dict:
    return {
        **vars(annotation),
        "evidence": [list(span) for span in annotation.evidence],
        "label": codebook.label(annotation.theme),
        "colour": theme_colour(codebook, annotation.theme),
    }  # vars: asdict deep-copies, slowly


def segments(
    store: Store,
    codebook: Codebook,
    recording_id: int,
    user: UserRecord,
    export: RecordingExport | None = None,
) -> list[dict]:
    """A recording's segments with their speaker, version, themes and each theme's evidence marked, and their
    doubtful passages underlined (`risk`: the mean probability of the likeliest wrong one, None without any),
    in transcript order; from `export` if given. Read as one state: a pass saving the recording meanwhile gave
    segments whose versions had not been read."""
    recording_record(store, recording_id, user)
    export = export or store.recording_export(recording_id)
    speakers = {s.label: s for s in export.speakers}
    out = []
    for seg in export.segments:
        annotations = export.annotations.get(seg.stored_id, [])
        spans = [(*span, a.theme) for a in annotations if a.status != "rejected" for span in a.evidence]
        passages = doubtful_passages([seg])
        speaker = speakers.get(seg.speaker or "")
        name, role = (speaker.name, speaker.role) if speaker else (None, None)
        out.append(
            {
                "id": seg.id,
                "start": seg.start,
                "end": seg.end,
                "clock": clock(seg.start),
                "speaker": seg.speaker,
                "speaker_name": name,
                "speaker_role": role,
                "speaker_title": speaker_title(seg.speaker, name, role) if seg.speaker else None,
                "text": seg.text,
                "language": seg.language,
                "version": seg.version,
                "annotations": [annotation_json(a, codebook) for a in annotations],
                "pieces": [evidence_piece(p, codebook) for p in pieces(seg.text, spans, passages)],
                "confidence": seg.confidence,
                "risk": min((p.probability for p in passages), default=None),
            }
        )
    return out


def evidence_piece(piece: Piece, codebook: Codebook) -> dict:
    """A stretch of text for a page: the colour of the first theme it is evidence of, all their labels."""
    if not piece.marks:
        return vars(piece)
    title = "; ".join(codebook.label(theme) for theme in piece.marks)
    return {**vars(piece), "colour": theme_colour(codebook, piece.marks[0]), "title": title}


def transcript(store: Store, codebook: Codebook, recording_id: int, user: UserRecord) -> tuple[dict, list[dict]]:
    """A recording and its segments, for its page: read once for both, as one state, in one thread."""
    export = store.recording_export(recording_id)
    annotations = [annotation for found in export.annotations.values() for annotation in found]
    return (
        recording(store, recording_id, user, annotations),
        segments(store, codebook, recording_id, user, export),
    )


def review_segments(segs: list[dict]) -> list[dict]:
    """The segments with themes, each with the one before and the one after it as context (the question
    asked, the answer going on); `gap` where segments were left out before it."""
    keep = sorted(
        {i + d for i, seg in enumerate(segs) if seg["annotations"] for d in (-1, 0, 1)} & set(range(len(segs)))
    )
    return [
        {**segs[i], "context": not segs[i]["annotations"], "gap": n > 0 and i - keep[n - 1] > 1}
        for n, i in enumerate(keep)
    ]


def legend(codebook: Codebook, segs: list[dict]) -> list[dict]:
    """The themes on these segments with their colours and labels, in codebook order."""
    shown = {a["theme"] for seg in segs for a in seg["annotations"]}
    order = {theme: i for i, theme in enumerate(codebook.ids)}
    return [
        {"theme": t, "label": codebook.label(t), "colour": theme_colour(codebook, t)}
        for t in sorted(shown, key=lambda t: (order.get(t, len(order)), t))
    ]


def history(store: Store, user: UserRecord, recording_id: int | None = None, segment_id: int | None = None) -> list:
    """Changes to a recording or a segment, oldest first, if the user may see the recording (a segment of
    one they may not see is not found, as a segment that does not exist)."""
    if segment_id is not None:
        recording = store.recording(store.segment_recording(segment_id))
        access.check_see(user, recording, missing=f"no segment with id {segment_id}")
    changes = store.history(recording_id=recording_id, segment_id=segment_id)
    shown = {change.recording_id for change in changes}
    if recording_id is not None:
        shown.add(recording_id)
    for rid in shown:
        recording_record(store, rid, user)
    return changes


def turns(segs: list[dict]) -> list[dict]:
    """Consecutive segments of one speaker, as one turn (segments left out between them end it)."""
    out: list[dict] = []
    for seg in segs:
        if out and out[-1]["speaker"] == seg["speaker"] and not seg.get("gap"):
            out[-1]["segments"].append(seg)
        else:
            out.append(
                {
                    "speaker": seg["speaker"],
                    "title": seg["speaker_title"],
                    "role": seg["speaker_role"],
                    "clock": seg["clock"],
                    "gap": seg.get("gap", False),
                    "segments": [seg],
                }
            )
    return out


@dataclass(frozen=True)
class SearchParams:
    """`ohp search`'s query and filters, as a page or the API receives them."""

    q: str
    theme: str | None = None
    status: tuple[str, ...] = NOT_REJECTED
    speaker: str | None = None
    recording: int | None = None
    language: str | None = None
    interviewee: str | None = None
    place: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    limit: int = 20
    offset: int = 0
    doubtful: bool = False  # only segments with doubtful words


def search(store: Store, codebook: Codebook, params: SearchParams, user: UserRecord) -> dict:
    """Hits with snippets and the moment to open; InvalidInputError (QuerySyntaxError among them) for bad input."""
    query = parse_query(params.q)
    theme = codebook.theme_id(params.theme) if params.theme else None  # an unknown theme is an error
    themes = (theme, *codebook.descendants(theme)) if theme else ()
    filters = SearchFilters(
        themes=themes,
        theme_status=params.status,
        speaker=params.speaker or None,
        recording=params.recording,
        language=params.language or None,
        interviewee=params.interviewee or None,
        place=params.place or None,
        date_from=params.date_from or None,
        date_to=params.date_to or None,
        hide_closed=access.hides_closed(user),
        doubtful=params.doubtful,
    )
    results = store.search(query, filters, limit=params.limit, offset=params.offset)
    hits = []
    for hit in results.hits:
        snippet = highlight(hit.text, query)
        hits.append(
            {
                "recording_id": hit.recording_id,
                "recording": Path(hit.recording_path).name,
                "segment_id": hit.segment_id,
                "start": round(hit.start, 3),
                "end": round(hit.end, 3),
                "clock": clock(hit.start),
                "speaker": hit.speaker,
                "speaker_name": hit.speaker_name,
                "speaker_role": hit.speaker_role,
                "speaker_title": speaker_title(hit.speaker, hit.speaker_name, hit.speaker_role)
                if hit.speaker
                else None,
                "language": hit.language,
                "text": hit.text,
                "snippet": snippet.text,
                "pieces": [vars(p) for p in pieces(snippet.text, [(a, b, MATCH) for a, b in snippet.spans])],
                "themes": list(hit.themes),
                "theme_labels": [codebook.label(t) for t in hit.themes],
                "link": f"/recordings/{hit.recording_id}?t={round(hit.start, 3)}#s{hit.segment_id}",
            }
        )
    return {"total": results.total, "hits": hits}
