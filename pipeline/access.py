"""Who may see, export and change what: the one policy the web app, the CLI and the batch ask.

Two things decide it. A person's role: viewer < annotator < researcher, each may do what the roles
before it may. And a recording's consent, as the interviewee agreed: open, restricted or closed, a
restriction ending on its release date (from that day the recording counts as open).

- Seeing (the list, a recording's page and audio, search, history): everyone who is signed in sees the
  open and restricted recordings; closed ones only annotators and researchers. A viewer neither sees a
  closed recording nor learns that it exists: asking for one is "not found", as for one that is not there.
- Exporting: closed recordings are left out unless asked for, and only a researcher may ask. Restricted
  ones are exported, marked as restricted in every format that has a place for it.
- `ohp run` writes no transcript files of a closed recording (a researcher's `ohp export` does), and removes
  those it wrote before the recording was closed. Files that hold a closed recording's (an export, a report a
  researcher asked for) are readable by their owner only (`holds_closed`).
- The command line's reading commands follow the export rule, not the seeing one: the CLI has no sign-in, so
  nothing tells it who runs it, and a closed recording's text, speakers and metadata are left out (saying how
  many on stderr) unless a researcher asks (`--include-restricted --user NAME`): `ohp search`, `ohp themes`,
  `ohp speakers list` (and the enrolled voices that came from closed recordings), `ohp describe` (a closed row
  keeps its file and consent, so that it can be opened). `ohp review` is an annotator's work, decided under
  the account it names (`--user`): it follows the seeing rule for that account (`check_named_sees`). `ohp status`
  lists every recording, as the operator who runs `ohp run` needs, with no transcript text.
- A new recording at the path of a stored one starts with that one's consent (`first_consent`): a closed
  interview's file edited in place has new bytes, so it is a new recording, and must not start open.
- A file imported for a recording (an ohp JSON's consent) never loosens the consent the store has
  (`loosens`): an export made before a recording was closed, imported again, must not open it.
- Changing: CHANGES gives the least role for each kind of change, each a role that sees closed recordings (the
  write routes ask no consent: tests/test_access_audit.py checks that this holds).
- Accounts: a researcher adds, removes and sets the password of others; anyone may set their own
  password, giving the current one; nobody removes their own account (a slip would leave an archive
  without its researcher).
- The collection's numbers (agreement between coders, theme frequency and co-occurrence, coverage): in the
  web app for researchers only, over the recordings they see; `ohp agreement` and `ohp report` count the
  recordings an export would write (closed ones only for a researcher who asks).
- The tagger's learned model (`ohp tag-learn`) learns from the decisions on the recordings an export would
  write, alike: its file, in the project's folder, holds the words it learnt from.
- The vocabulary's suggestions (`ohp vocabulary suggest`) come from the corrections in the recordings an export
  would write, alike; a researcher who asks for closed ones too sees the terms only they have (`closed_ids`)
  marked. The vocabulary file is shared and hinted for every recording: such a term goes into it only when a
  researcher asks (`ohp vocabulary accept --include-restricted --user NAME`, or a second, confirming step on the
  web app's Vocabulary page, which researchers alone see and which marks such terms).

- Enrolled voices: a voice profile is derived from the recordings it was enrolled from, and shares their
  restriction. While any of them is closed, the voice names nobody in another recording (its speakers keep
  their labels); in its own recordings it names them as before. A voice whose origin ohp does not know
  (enrolled before ohp kept it) is withheld alike: it may have been cut from a closed interview.

The store's search applies the seeing rule in SQL (`SearchFilters.hide_closed`, from `hides_closed`);
tests/test_access.py checks that the SQL and this module agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import PurePath

from pipeline.errors import ForbiddenError, NotFoundError
from pipeline.records import CONSENT_LEVELS, ROLES, PersonRecord, RecordingRecord, UserRecord

# The least role for each kind of change to what is stored.
CHANGES = {
    "annotations": "annotator",  # decide, add or revert a theme
    "text": "annotator",  # correct a segment, revert a correction
    "speakers": "annotator",  # speakers' names and roles
    "metadata": "researcher",  # interviewee, place, date
    "consent": "researcher",  # consent and release date
    "users": "researcher",  # accounts
    "vocabulary": "researcher",  # see and accept or ignore the terms corrections suggest
}
SEES_CLOSED = "annotator"  # the least role that sees closed recordings
EXPORTS_CLOSED = "researcher"  # the least role that may export them
SEES_ANALYSIS = "researcher"  # the least role that sees the agreement and collection pages


def consent_in_force(recording: RecordingRecord, today: date | None = None) -> str:
    """The consent level that applies today: a restricted or closed recording is open from its release date."""
    released = recording.release_on and (today or date.today()).isoformat() >= recording.release_on
    return "open" if recording.consent != "open" and released else recording.consent


def loosens(current: RecordingRecord, proposed: RecordingRecord, today: date | None = None) -> bool:
    """Whether the proposed consent (and release date) would let more people see or export the recording than
    its current one, on some day from today: a lower level, or a restriction that ends sooner (or ends, where
    the current one does not). Levels in force change only on release dates: those and today are the days to
    compare."""
    today = today or date.today()
    days = {today, *(date.fromisoformat(d) for d in (current.release_on, proposed.release_on) if d)}
    level = CONSENT_LEVELS.index
    return any(
        level(consent_in_force(proposed, day)) < level(consent_in_force(current, day)) for day in days if day >= today
    )


def first_consent(before: RecordingRecord | None) -> tuple[str, str | None]:
    """The consent (and release date) a new recording starts with: that of `before`, the recording last stored
    at its path, whose file was edited there (trimmed, denoised, converted: the same interview, new bytes);
    open where there was none."""
    return (before.consent, before.release_on) if before else ("open", None)


def consent_label(recording: RecordingRecord) -> str:
    """The recording's consent as agreed, with the day a restriction ends: "closed until 2040-01-01"."""
    return consent_text(recording.consent, recording.release_on)


def consent_text(consent: str, release_on: str | None) -> str:
    """A consent with the day its restriction ends, as people read it (consent_label; the history's changes)."""
    until = f" until {release_on}" if release_on and consent != "open" else ""
    return consent + until


def closed_origins(person: PersonRecord, today: date | None = None) -> list[RecordingRecord]:
    """The recordings the voice was enrolled from that are closed today: its name is theirs to withhold."""
    return [r for r in person.from_recordings if consent_in_force(r, today) == "closed"]


def voice_withheld(person: PersonRecord, recording_sha256: str | None = None, today: date | None = None) -> str | None:
    """Why the enrolled voice may not name a speaker of the recording with this sha256 (None: of a recording that
    is not one of its origins), or None when it may: the store clears the names it gave where it is withheld, and
    a run looks for it only where it is not."""
    if recording_sha256 in person.origins:
        return None
    if not person.origin_known:
        return "where it was enrolled from is not known"
    closed = closed_origins(person, today)
    if closed:
        return "enrolled from " + ", ".join(f"{PurePath(r.path).name}, {consent_label(r)}" for r in closed)
    return None


def has_role(role: str, least: str) -> bool:
    """Whether `role` is `least` or above it. An unknown role is a bug: ValueError."""
    return ROLES.index(role) >= ROLES.index(least)


def may_change(user: UserRecord, change: str) -> bool:
    return has_role(user.role, CHANGES[change])


def check_change(user: UserRecord, *changes: str) -> None:
    """ForbiddenError unless the user may make every one of these changes."""
    for change in changes:
        if not may_change(user, change):
            raise ForbiddenError(f"changing {change} needs the {CHANGES[change]} role (yours is {user.role})")


ACCOUNT_ACTIONS = ("add", "password", "remove")


def check_account_change(user: UserRecord, action: str, account: UserRecord | None = None) -> None:
    """ForbiddenError unless the user may do `action` (ACCOUNT_ACTIONS) to `account` (None: a new one)."""
    own = account is not None and account.id == user.id
    if own and action == "remove":
        raise ForbiddenError("nobody removes their own account: another researcher (or ohp user remove) can")
    if not (own and action == "password"):
        check_change(user, "users")


def needs_current_password(user: UserRecord, account: UserRecord) -> bool:
    """Whether setting `account`'s password needs the user's current one: their own does (a stolen session
    must not lock its owner out); a researcher setting another's does not (that is how a forgotten one is reset)."""
    return account.id == user.id


def hides_closed(user: UserRecord) -> bool:
    """Whether closed recordings are hidden from the user (`SearchFilters.hide_closed`)."""
    return not has_role(user.role, SEES_CLOSED)


def may_see(user: UserRecord, recording: RecordingRecord, today: date | None = None) -> bool:
    return not hides_closed(user) or consent_in_force(recording, today) != "closed"


def check_see(user: UserRecord, recording: RecordingRecord, missing: str | None = None) -> RecordingRecord:
    """The recording, if the user may see it; NotFoundError, in the words used for a recording that does
    not exist (or `missing`: those for a part of it asked for, a segment), if not."""
    if not may_see(user, recording):
        raise NotFoundError(missing or f"no recording with id {recording.id}")
    return recording


def visible(user: UserRecord, recordings: Iterable[RecordingRecord]) -> list[RecordingRecord]:
    """The recordings the user may see."""
    return [recording for recording in recordings if may_see(user, recording)]


def _check_account_role(user: UserRecord | None, name: str, least: str, may: str) -> None:
    """ForbiddenError unless `name` is an account (`user`; None: no such account) of the `least` role or above,
    saying who `may` do what."""
    roles = " or ".join(f"a{'n' if role[0] in 'aeiou' else ''} {role}" for role in ROLES[ROLES.index(least) :])
    refused = f"only {roles} may {may}: {name}"
    if user is None:
        raise ForbiddenError(f"{refused} is not a user (ohp user add)")
    if not has_role(user.role, least):
        raise ForbiddenError(f"{refused} has the {user.role} role")


def check_export_closed(user: UserRecord | None, name: str, may: str = "export closed recordings") -> None:
    """ForbiddenError unless `name` is an account that may export closed recordings (None: no such account), or
    ask for them where the export rule applies (`may`: what for, in the message)."""
    _check_account_role(user, name, EXPORTS_CLOSED, may)


def check_opening(user: UserRecord | None, name: str, current: RecordingRecord, proposed: RecordingRecord) -> None:
    """ForbiddenError unless `name` is an account that may export closed recordings, where the proposed consent
    (and release date) would open a recording that is closed today, on some day from today (`loosens`): opening it
    lets everyone export it after, so it takes whoever may export it now. Closing or restricting a recording, or
    changing one that is not closed, takes a name only (its history keeps who)."""
    if consent_in_force(current) == "closed" and loosens(current, proposed):
        _check_account_role(user, name, EXPORTS_CLOSED, f"open a closed recording ({PurePath(current.path).name})")


def check_named_sees(user: UserRecord | None, name: str, recording: RecordingRecord) -> None:
    """ForbiddenError unless the account `name` (`user`; None: no such account) may see the recording: the command
    line's seeing rule for a person it names, who needs an account only for a closed recording."""
    if consent_in_force(recording) == "closed":
        _check_account_role(user, name, SEES_CLOSED, f"see closed recordings ({PurePath(recording.path).name})")


def exported(recording: RecordingRecord, include_closed: bool, today: date | None = None) -> bool:
    """Whether an export writes the recording: not a closed one, unless asked for (`check_export_closed`
    says who may ask)."""
    return include_closed or consent_in_force(recording, today) != "closed"


def closed_ids(recordings: Iterable[RecordingRecord], today: date | None = None) -> set[int]:
    """The ids of the recordings an export leaves out unless a researcher asks for them."""
    return {recording.id for recording in recordings if not exported(recording, include_closed=False, today=today)}


def holds_closed(recordings: Iterable[RecordingRecord], today: date | None = None) -> bool:
    """Whether files made of these recordings hold a closed one's (a researcher asked for it): ohp writes them
    readable by their owner only, whatever the umask lets others read of the folder's other files."""
    return bool(closed_ids(recordings, today))


def writes_transcript_files(recording: RecordingRecord, today: date | None = None) -> bool:
    """Whether `ohp run` writes the recording's transcript files: not of a closed one."""
    return exported(recording, include_closed=False, today=today)


def may_see_analysis(user: UserRecord) -> bool:
    return has_role(user.role, SEES_ANALYSIS)


def check_analysis(user: UserRecord) -> None:
    """ForbiddenError unless the user may see the agreement and collection pages."""
    if not may_see_analysis(user):
        raise ForbiddenError(f"the collection's numbers are for the {SEES_ANALYSIS} role (yours is {user.role})")
