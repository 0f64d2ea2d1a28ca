"""Exports keep who coded what: ELAN writes a themes tier per theme and coder, REFI-QDA a coding per coder
(its creatingUser, the coders as users), from each coder's own decisions; exported and imported again,
every coder's codes come back as theirs. Hostile coder names too. On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import pympi
import pytest
import xmlschema
from lxml import etree
from saving import save_tags, save_transcription, saved_meanwhile

from pipeline.errors import ConflictError
from pipeline.formats.elan import read_eaf, to_eaf
from pipeline.formats.export import gather
from pipeline.formats.qdpx import NS, read_qdpx, to_qdpx
from pipeline.formats.readers import TranscriptFormatError
from pipeline.formats.redact import Redactor
from pipeline.imports import import_codings
from pipeline.records import (
    UNNAMED_CODER,
    AudioInfo,
    Coding,
    ImportedCodings,
    RecordingExport,
    Segment,
    ThemeSuggestion,
    Transcript,
)
from pipeline.stages.codebook import load_codebook
from pipeline.store import Store
from pipeline.store import annotations as store_annotations

from conftest import SQLITE_ONLY, STANDARDS, corpus_path

CODEBOOK = load_codebook()
INFO = AudioInfo(Path("/audio/li.wav"), "ab" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 40.0)
COPY = replace(INFO, path=Path("/audio/li-copy.wav"), sha256="cd" * 32)  # the same interview, stored again
TEXTS = [
    "They held back our wages for two months.",
    "Eight of us slept in one dormitory room.",
    "My children stayed with their grandparents.",
    "The boss paid us late again.",
]
# Names people and files give coders: markup, quotes, the tagger's own name, right-to-left, the longest.
HOSTILE = ['<b>"Zoë" & O\'Brien</b>', "ohp", "\u202eevil", "x" * 255]


def _recording(store: Store, info: AudioInfo) -> int:
    segments = [Segment(i * 10.0, i * 10.0 + 8.0, t, t, "en", speaker="S1") for i, t in enumerate(TEXTS)]
    rid = save_transcription(store, info, Transcript("en", 0.99, segments, "faster-whisper", "base"), {}, "k", {})
    ids = [s.id for s in store.segments(rid)]
    found = {ids[0]: [ThemeSuggestion("wages", 0.8, ((14, 19),))], ids[3]: [ThemeSuggestion("wages", 0.6, ())]}
    save_tags(store, rid, found, {}, "t1", {}, "t1")
    return rid


@pytest.fixture
def coded(store) -> tuple[Store, int]:
    """alice accepts wages on segment 0; bob's codes come from ELAN (wages on 0, housing on 1); the hostile
    names each add left_behind_children on 2; carol rejects wages on 0 after them; wages on 3 stays a
    suggestion."""
    rid = _recording(store, INFO)
    ids = [s.id for s in store.segments(rid)]
    wages = next(a for a in store.annotations(rid) if a.segment_id == ids[0])
    store.decide(wages.id, "accepted", "alice")
    bob = [Coding("wages", "bob", 0.0, 8.0), Coding("housing", "bob", 10.0, 18.0)]
    import_codings(ImportedCodings(Path("bob.eaf"), "eaf", {INFO.sha256: bob}), store)
    store.add_annotations([(ids[2], "left_behind_children", name, ()) for name in HOSTILE])
    store.decide(wages.id, "rejected", "carol")
    return store, rid


def _there(store: Store, rid: int) -> set[tuple[int, str, str]]:
    """(segment index, theme, coder) for every coder's own decision that a theme is there."""
    index = {s.id: i for i, s in enumerate(store.segments(rid))}
    return {(index[d.segment_id], d.theme, d.coder) for d in store.decisions(rid) if d.present}


def _as_copy(data: bytes) -> bytes:
    """An exported file pointed at the copy of the recording (its sha256 is how codes find it)."""
    return data.replace(INFO.sha256.encode(), COPY.sha256.encode())


def _rezipped(qdpx: bytes, change) -> bytes:
    """The project with each of its files changed by `change` (bytes to bytes)."""
    with zipfile.ZipFile(io.BytesIO(qdpx)) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name, data in members.items():
            target.writestr(name, change(data))
    return buffer.getvalue()


def _renamed(qdpx: bytes, old: str, new: str) -> bytes:
    return _rezipped(qdpx, lambda data: data.replace(f'name="{old}"'.encode(), f'name="{new}"'.encode()))


EXPECTED = {
    (0, "wages", "alice"),
    (0, "wages", "bob"),
    (1, "housing", "bob"),
    *((2, "left_behind_children", name) for name in HOSTILE),
}


def test_every_coders_codes_are_exported_as_theirs(coded, tmp_path):
    store, rid = coded
    assert _there(store, rid) == EXPECTED  # carol's rejection is no coding; the annotation says rejected
    export = gather(store, store.recording(rid), CODEBOOK)
    eaf = tmp_path / "li.eaf"
    eaf.write_text(to_eaf(export), encoding="utf-8")
    tiers = {(t.get("TIER_ID"), t.get("ANNOTATOR")) for t in etree.parse(str(eaf)).getroot().iterfind("TIER")}
    assert {("wages (alice)", "alice"), ("wages (bob)", "bob"), ("housing (bob)", "bob")} <= tiers
    assert ("left_behind_children (ohp)", "ohp") in tiers  # a coder named ohp is a coder
    assert ("wages (suggested by ohp)", "ohp") in tiers  # the open suggestion on segment 3
    back = read_eaf(eaf, CODEBOOK).codings[INFO.sha256]
    assert {(c.theme, c.coder) for c in back} == {(theme, who) for _, theme, who in EXPECTED}

    project = to_qdpx([export], CODEBOOK)
    with zipfile.ZipFile(io.BytesIO(project)) as archive:
        root = etree.fromstring(archive.read("project.qde"))
    users = {u.get("guid"): u.get("name") for u in root.iter(f"{{{NS}}}User")}
    assert set(users.values()) == {"alice", "bob", "ohp", *HOSTILE}
    codings = [(c.getparent().get("creatingUser"), c) for c in root.iter(f"{{{NS}}}Coding")]
    assert all(user == coding.get("creatingUser") for user, coding in codings)
    assert sorted(users[user] for user, _ in codings) == sorted(who for _, _, who in EXPECTED)
    path = tmp_path / "project.qdpx"
    path.write_bytes(project)
    back = read_qdpx(path, CODEBOOK).codings[INFO.sha256]
    assert sorted((c.theme, c.coder) for c in back) == sorted((theme, who) for _, theme, who in EXPECTED)


@pytest.mark.parametrize("fmt", ["eaf", "qdpx"])
def test_a_round_trip_keeps_who_coded_what(coded, tmp_path, fmt):
    store, rid = coded
    copy = _recording(store, COPY)
    export = gather(store, store.recording(rid), CODEBOOK)
    path = tmp_path / f"li.{fmt}"
    if fmt == "eaf":
        path.write_bytes(_as_copy(to_eaf(export).encode("utf-8")))
        imported = read_eaf(path, CODEBOOK)
    else:
        path.write_bytes(_rezipped(to_qdpx([export], CODEBOOK), _as_copy))
        imported = read_qdpx(path, CODEBOOK)
    report = import_codings(imported, store)
    assert report.recordings == [copy] and not report.warnings
    assert _there(store, copy) == EXPECTED
    assert (import_codings(imported, store).added, _there(store, copy)) == (0, EXPECTED)  # again: nothing new


def _tiers(export: RecordingExport) -> set[tuple[str, str]]:
    """The ELAN export's tiers, (name, annotator)."""
    return {(t.get("TIER_ID"), t.get("ANNOTATOR")) for t in etree.fromstring(to_eaf(export).encode()).iter("TIER")}


def test_redacted_exports_give_each_coder_a_pseudonym(coded):
    """Coders are people too: with names redacted each is "Coder N" (hostile names and a person called ohp
    alike), one coder one pseudonym in every recording and format of the export, so that who coded what with
    whom still reads; the tagger's suggestions stay the tagger's. Places alone leave the coders as they are."""
    store, rid = coded
    store.set_metadata(rid, interviewee="Li Hua")
    copy = _recording(store, COPY)
    store.decide(store.annotations(copy)[0].id, "accepted", "bob")  # bob coded both recordings
    exports = [gather(store, store.recording(recording), CODEBOOK) for recording in (rid, copy)]
    redacted, done = Redactor({"names"}).redact(exports)
    coders = {r.found: r.replacement for r in done if r.field == "coder"}
    assert set(coders) == {"alice", "bob", "carol", *HOSTILE} and len(set(coders.values())) == len(coders)
    assert all(re.fullmatch(r"Coder \d+", pseudonym) for pseudonym in coders.values())
    assert [[replace(d, coder=coders[d.coder]) for d in ds] for e in exports for ds in e.decisions.values()] == [
        ds for e in redacted for ds in e.decisions.values()
    ]
    bob, alice = (f"wages ({coders['bob']})", coders["bob"]), (f"wages ({coders['alice']})", coders["alice"])
    assert {bob, alice, ("wages (suggested by ohp)", "ohp")} <= _tiers(redacted[0])
    assert bob in _tiers(redacted[1])
    with zipfile.ZipFile(io.BytesIO(to_qdpx(redacted, CODEBOOK))) as archive:
        users = {u.get("name") for u in etree.fromstring(archive.read("project.qde")).iter(f"{{{NS}}}User")}
    assert users == {"ohp"} | {coders[name] for name in ("alice", "bob", *HOSTILE)}  # carol rejected, coded nothing
    [kept], _ = Redactor({"places"}).redact(exports[:1])
    assert (kept.decisions, kept.annotations) == (exports[0].decisions, exports[0].annotations)


def test_a_coder_name_longer_than_the_database_holds_is_refused(coded, tmp_path):
    store, rid = coded
    text = to_eaf(gather(store, store.recording(rid), CODEBOOK))
    path = tmp_path / "long.eaf"
    path.write_text(text.replace('ANNOTATOR="alice"', f'ANNOTATOR="{"y" * 256}"'), encoding="utf-8")
    with pytest.raises(TranscriptFormatError, match="256 characters long"):
        read_eaf(path, CODEBOOK)
    project = to_qdpx([gather(store, store.recording(rid), CODEBOOK)], CODEBOOK)
    path = tmp_path / "long.qdpx"
    path.write_bytes(_renamed(project, "alice", "y" * 256))
    with pytest.raises(TranscriptFormatError, match="256 characters long"):
        read_qdpx(path, CODEBOOK)


def test_a_project_of_several_coders_is_valid_against_the_schema(coded):
    store, rid = coded
    project = to_qdpx([gather(store, store.recording(rid), CODEBOOK)], CODEBOOK)
    schema = xmlschema.XMLSchema(str(corpus_path("refi-qda-Project-mrt2019.xsd", STANDARDS)))
    with zipfile.ZipFile(io.BytesIO(project)) as archive:
        schema.validate(archive.read("project.qde").decode("utf-8"))


@pytest.mark.parametrize("fmt", ["eaf", "qdpx"])
def test_an_import_never_overturns_a_theme_a_person_rejected(coded, tmp_path, fmt):
    """carol rejected wages on segment 0 after alice and bob coded it. The file exported before, coded further
    elsewhere (dana: wages on 0, housing on 3), comes back: wages stays rejected, each code on it a kept
    decision the report names (the coders' own decisions kept as theirs, for agreement); the rest goes in."""
    store, rid = coded
    ids = [s.id for s in store.segments(rid)]
    export = gather(store, store.recording(rid), CODEBOOK)
    path = tmp_path / f"li.{fmt}"
    if fmt == "eaf":
        path.write_text(to_eaf(export), encoding="utf-8")
        imported = read_eaf(path, CODEBOOK)
    else:
        path.write_bytes(to_qdpx([export], CODEBOOK))
        imported = read_qdpx(path, CODEBOOK)
    imported.codings[INFO.sha256] += [Coding("wages", "dana", 0.0, 8.0), Coding("housing", "dana", 30.0, 38.0)]
    rejected = next(a for a in store.annotations(rid) if (a.segment_id, a.theme) == (ids[0], "wages"))

    report = import_codings(imported, store)
    wages = next(a for a in store.annotations(rid) if (a.segment_id, a.theme) == (ids[0], "wages"))
    assert (wages.status, wages.updated_by, wages.version) == ("rejected", "carol", rejected.version)
    assert sorted((k.segment_id, k.theme, k.coder, k.decided_by) for k in report.kept) == [
        (ids[0], "wages", coder, "carol") for coder in ("alice", "bob", "dana")
    ]
    assert all((k.recording_id, k.start, k.end) == (rid, 0.0, 8.0) for k in report.kept)
    # The rest as before: dana's housing, bob's housing and the hostile names' (their quoted words new evidence
    # in a project's codings).
    assert report.added + report.unchanged == 6 and len(report.kept) + 6 == report.codings
    assert _there(store, rid) == EXPECTED | {(0, "wages", "dana"), (3, "housing", "dana")}
    assert not [h for h in store.history(recording_id=rid) if h.annotation_id == wages.id and h.changed_by == "dana"]

    before = (store.annotations(rid), _there(store, rid))
    again = import_codings(imported, store)  # the same file again changes nothing, and says so again
    assert (again.added, len(again.kept)) == (0, 3) and (store.annotations(rid), _there(store, rid)) == before


def test_an_import_keeps_a_coders_own_rejection(coded):
    """bob's housing on segment 1 (his ELAN import): he rejects it in review, then dana accepts it. A file of
    bob's carrying the code again does not turn his own rejection back into a code."""
    store, rid = coded
    ids = [s.id for s in store.segments(rid)]
    housing = next(a for a in store.annotations(rid) if (a.segment_id, a.theme) == (ids[1], "housing"))
    store.decide(housing.id, "accepted", "dana")
    rejected = store.decide(housing.id, "rejected", "bob")
    store.decide(housing.id, "accepted", "dana", version=rejected.version)
    before = store.annotations(rid)
    bob = ImportedCodings(Path("bob.eaf"), "eaf", {INFO.sha256: [Coding("housing", "bob", 10.0, 18.0)]})
    report = import_codings(bob, store)
    [kept] = report.kept
    assert (kept.segment_id, kept.theme, kept.coder, kept.decided_by) == (ids[1], "housing", "bob", "bob")
    assert report.added == 0
    own = {(d.segment_id, d.theme, d.coder): d.present for d in store.decisions(rid)}
    assert own[ids[1], "housing", "bob"] is False and store.annotations(rid) == before


def _coded_by_tiers(store: Store, rid: int, path: Path) -> ImportedCodings:
    """The recording exported to ELAN and coded there on two tiers without an annotator, as annotators split their
    work (themes-A: housing on segment 1, themes-B: housing on 1 and 3), read back."""
    path.write_text(to_eaf(gather(store, store.recording(rid), CODEBOOK)), encoding="utf-8")
    eaf = pympi.Elan.Eaf(str(path))
    for tier, spans in (("themes-A", [(10000, 18000)]), ("themes-B", [(10000, 18000), (30000, 38000)])):
        eaf.add_tier(tier, ling="theme", part="Li Hua")
        for start, end in spans:
            eaf.add_annotation(tier, start, end, "housing")
    eaf.to_file(str(path))
    return read_eaf(path, CODEBOOK)


TIERS = {(1, "housing", "tier/themes-A"), (1, "housing", "tier/themes-B"), (3, "housing", "tier/themes-B")}


def test_tier_coders_go_round_ohps_own_export_and_are_pseudonymised(coded, tmp_path):
    """Tiers without an annotator are coders of their own ("tier/NAME"); ohp's ELAN export writes each as an
    annotator, so that the export re-imported (a copy of the recording) keeps them as they were; redacted, each is
    "Coder N" like any coder, its tier's name looked for in the text (it may be a person's), but not "tier"."""
    store, rid = coded
    import_codings(_coded_by_tiers(store, rid, tmp_path / "tiers.eaf"), store)
    assert _there(store, rid) == EXPECTED | TIERS
    copy = _recording(store, COPY)
    export = gather(store, store.recording(rid), CODEBOOK)
    assert {("housing (tier/themes-A)", "tier/themes-A"), ("housing (tier/themes-B)", "tier/themes-B")} <= _tiers(
        export
    )
    path = tmp_path / "again.eaf"
    path.write_bytes(_as_copy(to_eaf(export).encode("utf-8")))
    imported = read_eaf(path, CODEBOOK)
    import_codings(imported, store)
    assert _there(store, copy) == EXPECTED | TIERS
    assert (import_codings(imported, store).added, _there(store, copy)) == (0, EXPECTED | TIERS)

    redactor = Redactor({"names"})
    assert {"themes-A", "themes-B"} <= set(redactor.terms([export])) and "tier" not in redactor.terms([export])
    _, done = redactor.redact([export])
    coders = {r.found: r.replacement for r in done if r.field == "coder"}
    assert re.fullmatch(r"Coder \d+", coders["tier/themes-A"]) and coders["tier/themes-A"] != coders["tier/themes-B"]


def test_codes_stored_under_unknown_stay_when_the_file_is_imported_again(coded, tmp_path):
    """Older versions stored every tier without an annotator under one coder, `unknown`. Those decisions are
    neither lost nor rewritten: the same file imported again adds each tier's codes beside them, by the tier."""
    store, rid = coded
    imported = _coded_by_tiers(store, rid, tmp_path / "tiers.eaf")
    old = [replace(c, coder=UNNAMED_CODER) for c in imported.codings[INFO.sha256] if c.coder.startswith("tier/")]
    import_codings(ImportedCodings(imported.path, "eaf", {INFO.sha256: old}), store)
    merged = {(1, "housing", UNNAMED_CODER), (3, "housing", UNNAMED_CODER)}
    assert _there(store, rid) == EXPECTED | merged
    report = import_codings(imported, store)
    assert report.added == 3  # the tiers' codes; the rest of the file (alice's, bob's) was there already
    assert _there(store, rid) == EXPECTED | merged | TIERS
    assert {"tier/themes-A", "tier/themes-B", UNNAMED_CODER} <= set(store.coders([rid]))


@SQLITE_ONLY
def test_an_export_reads_a_recording_as_one_state_while_a_pass_saves_it(store, db_url, monkeypatch):
    """gather read the themes, the decisions, the segments, the speakers and the entities each in a transaction of
    its own: a pass saving the recording again in between (ohp run beside ohp export) gave an export of the new
    segments with the themes of the old ones, which named segments no longer there, so the file had no themes."""
    rid = _recording(store, INFO)
    retold = [Segment(i * 10.0, i * 10.0 + 8.0, t + " Yes.", t + " Yes.", "en") for i, t in enumerate(TEXTS)]
    transcript = Transcript("en", 0.99, retold, "faster-whisper", "base")
    saved_meanwhile(  # ohp run, transcribing it again
        monkeypatch,
        store_annotations,
        "decisions",
        db_url,
        lambda other: save_transcription(other, INFO, transcript, {}, "k2", {}),
    )
    export = gather(store, store.recording(rid), CODEBOOK)
    assert len(export.annotations) == 2 and set(export.annotations) <= {s.id for s in export.segments}


@SQLITE_ONLY
def test_codes_matched_to_a_segment_corrected_meanwhile_are_not_imported_onto_other_words(store, monkeypatch):
    """import_codings matched the codes to the segments as it read them, then saved them in another transaction:
    a correction made in between (the web app beside ohp import) put the coder's evidence on other words of the
    new text ("in one " for "dormitory"), unsaid. Codes are saved only on the segments as they were matched, else a
    conflict and nothing is saved."""
    rid = _recording(store, INFO)
    second = store.segments(rid)[1]  # "Eight of us slept in one dormitory room.", no theme yet
    read = store.decisions

    def corrected_meanwhile(recording_id):
        store.correct_text(second.id, "Back then eight of us slept in one dormitory room.", "ann", second.version)
        return read(recording_id)

    monkeypatch.setattr(store, "decisions", corrected_meanwhile)
    codes = ImportedCodings(Path("bob.eaf"), "eaf", {INFO.sha256: [Coding("housing", "bob", 10.0, 18.0, "dormitory")]})
    with pytest.raises(ConflictError, match="changed meanwhile"):
        import_codings(codes, store)
    assert [a for a in store.annotations(rid) if a.segment_id == second.id] == []
    monkeypatch.undo()
    assert import_codings(codes, store).added == 1  # again: matched to the text as it is now
    [housing] = [a for a in store.annotations(rid) if a.segment_id == second.id]
    assert {store.segments(rid)[1].text[a:b] for a, b in housing.evidence} == {"dormitory"}
