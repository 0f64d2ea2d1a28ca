"""The access policy's audit (pipeline.access) over every read path, on SQLite and PostgreSQL: a viewer (the
web app's least role) and an anonymous visitor must not learn a closed recording's content nor its existence,
and a researcher's export, report or agreement of the open recordings must be what it would be without the
closed ones. Each test compares with a twin: a closed recording that does not exist, or the answers from
before it was added. The closed twin says everything the open interview says (the same words, speaker name,
interviewee, place, themes, coders, corrections and file stem), so that any part of it that leaks shows."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import wave
import zipfile
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from saving import save_speakers, save_tags, save_transcription
from typer.testing import CliRunner

from pipeline import access
from pipeline.batch import FileResult, plan_batch
from pipeline.cli import app as cli_app
from pipeline.config import Config
from pipeline.process import RunOptions
from pipeline.records import AudioInfo, Segment, SpeakerRecord, ThemeSuggestion, Transcript
from pipeline.store import Store
from pipeline.web import create_app

from test_web_api import PASSWORD, client_for

MISSING = 999_999  # an id nothing in a test database has
TEXTS = [
    ("S1", "Where are your children now?"),
    ("S2", "They stay with my parents back home in Shimen."),
    ("S2", "The wages were paid by the piece."),
]


def add_interview(store: Store, audio: Path, fill: int, *, consent: str | None = None) -> int:
    """An interview by Zhang Wei at `audio` (bytes of its own, so a sha256 of its own), with speakers, themes
    decided by two coders and a correction, and the consent given (else as the store has it: new, open); its id."""
    audio.parent.mkdir(parents=True, exist_ok=True)
    audio.write_bytes(bytes([fill]) * 4096 + bytes(range(256)) * 16)
    data = audio.read_bytes()
    info = AudioInfo(audio, hashlib.sha256(data).hexdigest(), len(data), "wav", "pcm_s16le", 16000, 1, 15.0)
    segments = [Segment(i * 5.0, i * 5.0 + 4.0, text, text, "en", speaker=who) for i, (who, text) in enumerate(TEXTS)]
    rid = save_transcription(store, info, Transcript("en", 0.99, segments, "faster-whisper", "base"), {}, "k", {})
    speakers = [SpeakerRecord("S1", "Wang Mei", "interviewer"), SpeakerRecord("S2", "Zhang Wei", "interviewee")]
    save_speakers(store, rid, speakers, {}, "s", {})
    ids = [s.id for s in store.segments(rid)]
    suggestions = {
        ids[1]: [ThemeSuggestion("left_behind_children", 0.9, ((5, 9),))],
        ids[2]: [ThemeSuggestion("wages", 0.8, ((4, 9),))],
    }
    save_tags(store, rid, suggestions, {}, "t1", {}, "t1")
    for annotation in store.annotations(rid):
        store.decide(annotation.id, "accepted", "alice")
        store.decide(annotation.id, "rejected" if annotation.theme == "wages" else "accepted", "bob")
    store.correct_text(ids[0], "Where are your children now, Zhang Wei?", "alice", 1)
    store.set_metadata(rid, interviewee="Zhang Wei", place="Dongguan", recorded_on="2019-02-03", consent=consent)
    return rid


@pytest.fixture
def web(store, tmp_path) -> TestClient:
    for name, role in (("vera", "viewer"), ("ann", "annotator"), ("rita", "researcher")):
        store.add_user(name, PASSWORD, role)
    web = create_app(store, Config(secret="test-secret", home=tmp_path / "home"))
    web.state.open_id = add_interview(store, tmp_path / "audio" / "zhang.wav", 1)
    return web


def routes(app) -> list[tuple[str, APIRoute]]:
    """Every route of the app with its whole path, those of the routers it includes too."""
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            found.append((route.path, route))
        elif hasattr(route, "original_router"):  # FastAPI 0.16x keeps an included router as one route
            prefix = route.include_context.prefix
            found += [(prefix + path, each) for path, each in routes(route.original_router)]
    return found


# ------------------------------------------------------------------------------------------ the web app


def test_the_audio_route_serves_a_recordings_own_bytes_only(web, store, tmp_path):
    """The closed interview's file was moved to where the open one's was (the open one moved too, but no run
    has seen it since): the store holds that path for both. The open recording's audio was the closed
    recording's bytes, to anyone who may hear the open one."""
    open_id = web.state.open_id
    opened = tmp_path / "audio" / "zhang.wav"
    closed_id = add_interview(store, tmp_path / "closed" / "zhang-2.wav", 2, consent="closed")
    closed_bytes = Path(store.recording(closed_id).path).read_bytes()
    opened.rename(tmp_path / "audio" / "zhang-1.wav")
    (tmp_path / "closed" / "zhang-2.wav").rename(opened)
    store.update_path(closed_id, str(opened))  # as `ohp run audio/zhang.wav` records the closed one found there
    for name in ("vera", "ann"):
        client, _ = client_for(web, name)
        answer = client.get(f"/api/recordings/{open_id}/audio")
        assert answer.status_code == 404 and closed_bytes not in answer.content, name
        assert answer.json()["detail"] == f"the audio of recording {open_id} is not at zhang.wav any more"
    ann, _ = client_for(web, "ann")
    assert ann.get(f"/api/recordings/{closed_id}/audio").content == closed_bytes  # its own file is served
    # Rewritten in place, later, with other bytes of the same size: not the recording's audio either.
    served = opened.stat()
    opened.write_bytes(bytes(reversed(closed_bytes)))
    os.utime(opened, ns=(served.st_atime_ns, served.st_mtime_ns + 1_000_000_000))  # a clock's tick can be coarse
    assert ann.get(f"/api/recordings/{closed_id}/audio").status_code == 404


def _same_answer(first, second, first_id: int, second_id: int) -> tuple:
    """A response as a viewer reads it, with the id asked for made the same."""

    def read(response, rid: int) -> tuple:
        return response.status_code, re.sub(rf"\b{rid}\b", "N", response.text)

    return read(first, first_id), read(second, second_id)


def test_a_closed_recording_answers_as_one_that_does_not_exist(web, store, tmp_path):
    """Every route of the app that takes a recording or a segment, read and written: a viewer gets the same
    status and the same words for the closed recording (or its segment, its annotation) as for an id nothing
    has; an anonymous visitor is sent to log in either way. The routes are read from the app, so a route added
    later is checked too."""
    closed_id = add_interview(store, tmp_path / "closed" / "zhang.wav", 2, consent="closed")
    closed = {
        "recording_id": closed_id,
        "segment_id": store.segments(closed_id)[0].id,
        "annotation_id": store.annotations(closed_id)[0].id,
        "history_id": store.history(recording_id=closed_id)[0].id,
    }
    vera, token = client_for(web, "vera")
    anonymous, _ = client_for(web)
    checked = []
    for template, route in routes(web):
        names = set(route.param_convertors)
        if not names or not names <= set(closed):
            continue
        for method in route.methods:
            asked = {}
            for which in ("closed", "missing"):
                path = template.format(**{n: closed[n] if which == "closed" else MISSING for n in names})
                form = {} if method == "GET" else {"data": {"csrf_token": token}}
                asked[which] = vera.request(method, path, headers={"X-CSRF-Token": token}, **form)
                shut_out = anonymous.request(method, path, follow_redirects=False)
                assert shut_out.status_code in (303, 401, 403), (method, path)
            (name,) = names
            first, second = _same_answer(asked["closed"], asked["missing"], closed[name], MISSING)
            assert first == second, (method, template)
            checked.append((method, template))
    assert ("GET", "/api/recordings/{recording_id}/audio") in checked and len(checked) >= 10
    for page, which in itertools.product(("/api/history", "/history"), ("segment", "recording")):
        given = closed[f"{which}_id"]
        asked = [vera.get(page, params={which: rid}) for rid in (given, MISSING)]
        first, second = _same_answer(*asked, given, MISSING)
        assert first == second, (page, which)
    searched = [vera.get("/api/search", params={"q": "wages", "recording": rid}).json() for rid in (closed_id, MISSING)]
    assert searched[0] == searched[1] == {"total": 0, "hits": []}


def test_no_route_a_viewer_or_a_visitor_reaches_shows_a_closed_recording(web, store, tmp_path):
    """Every GET route of the app (read from it: one added later is checked too), with the open recording's
    ids where it takes one and a search for what both interviews say: not a word that only the closed one has
    (its file's name, interviewee, speaker, text) reaches a viewer or an anonymous visitor; the researchers'
    pages (vocabulary, agreement, collection) refuse the viewer."""
    closed_id = add_interview(store, tmp_path / "closed" / "secret-tape.wav", 2, consent="closed")
    segment = store.segments(closed_id)[2]
    store.correct_text(segment.id, "The wages Xiuying got were paid by the piece.", "alice", 1)
    store.rename_speaker(closed_id, "S2", "Li Xiuying", "alice")
    store.set_metadata(closed_id, interviewee="Li Xiuying", place="Huangshan")
    store.add_user("noor", PASSWORD, "annotator")
    opened = {
        "recording_id": web.state.open_id,
        "segment_id": store.segments(web.state.open_id)[0].id,
        "kind": "collection",
        "name": "coverage",
        "fmt": "csv",
    }
    query = {"q": "wages", "recording": web.state.open_id, "segment": opened["segment_id"]}
    vera, _ = client_for(web, "vera")
    anonymous, _ = client_for(web)
    refused = set()
    for template, route in routes(web):
        if "GET" not in route.methods or not set(route.param_convertors) <= set(opened):
            continue
        path = template.format(**{n: opened[n] for n in route.param_convertors})
        for client in (vera, anonymous):
            answer = client.get(path, params=query, follow_redirects=False)
            shown = answer.text + answer.headers.get("content-disposition", "")
            assert not re.search("xiuying|secret|huangshan", shown, re.I), (path, answer.status_code)
        if answer.status_code != 303 or vera.get(path, params=query).status_code == 403:
            refused.add(template)
    assert {"/vocabulary", "/agreement", "/collection", "/{kind}/{name}.{fmt}"} <= refused
    ann, _ = client_for(web, "noor")
    assert "Xiuying" in ann.get("/api/search", params={"q": "wages"}).text  # there, for those who see it


def test_every_change_needs_a_role_that_sees_closed_recordings():
    """The write routes (text, themes, speakers, reverts, metadata) ask no consent, which holds only while every
    change needs a role that sees closed recordings: a change open to viewers would tell them of closed ones
    (a 409 answers with the current text, a segment of a closed recording would not be 404)."""
    assert all(access.has_role(least, access.SEES_CLOSED) for least in access.CHANGES.values())


VIEWER_READS = [
    "/api/recordings",
    "/api/recordings?q=zhang",
    "/",
    "/?sort=doubtful&desc=true",
    "/api/search?q=wages",
    "/api/search?q=children&speaker=Zhang%20Wei&interviewee=zhang&place=dongguan&from=2019-01-01",
    "/api/search?q=wages&theme=wages&status=accepted&status=rejected",
    "/api/search?q=Shimen&limit=1&offset=5",
    "/api/search?q=wag*&doubtful=false",
    "/search?q=wages",
    "/search?q=zhang&speaker=interviewee",
    "/api/recordings/{open}",
    "/api/recordings/{open}/segments",
    "/recordings/{open}",
    "/recordings/{open}/review",
    "/recordings/{open}/doubtful",
    "/api/history?recording={open}",
    "/history?recording={open}",
]


def test_what_a_viewer_reads_is_the_same_with_a_closed_recording_as_without(web, store, tmp_path):
    """Lists, counts, search (hits, totals, pagination, every filter), a recording's pages and its history:
    byte for byte what they were before a closed interview saying all the same things was added."""
    vera, _ = client_for(web, "vera")
    paths = [path.format(open=web.state.open_id) for path in VIEWER_READS]
    before = {path: (r.status_code, r.text) for path in paths for r in [vera.get(path)]}
    assert before["/api/search?q=wages"][0] == 200 and json.loads(before["/api/search?q=wages"][1])["total"] == 1
    add_interview(store, tmp_path / "closed" / "zhang.wav", 2, consent="closed")
    after = {path: (r.status_code, r.text) for path in paths for r in [vera.get(path)]}
    assert after == before
    ann, _ = client_for(web, "ann")
    assert ann.get("/api/search?q=wages").json()["total"] == 2  # the closed one is there, for those who see it


# ----------------------------------------------------------------------------- exports, report, agreement

runner = CliRunner()


def ohp(*args: object):
    result = runner.invoke(cli_app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result


MADE_AT = re.compile(rb' (DATE|creationDateTime|modifiedDateTime|w:date)="[^"]*"|<dcterms:(created|modified)[^<]*<')


def content(path: Path) -> bytes | dict[str, bytes]:
    """A file's content without the moments it was made (ELAN's DATE, REFI-QDA's and Word's times); a zip's
    (docx, qdpx) as its members."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return {name: MADE_AT.sub(b"", archive.read(name)) for name in archive.namelist()}
    return MADE_AT.sub(b"", path.read_bytes())


def files_in(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes | dict[str, bytes]]:
    return {p.name: content(p) for p in sorted(folder.iterdir()) if p.suffix not in skip}


def test_an_open_export_is_the_same_with_a_closed_recording_as_without(store, db_url, tmp_path):
    """`ohp export` of every recording it may write (consent: the open ones), redacted or not, and the report of
    the redactions: the same files, named the same, with the same content, as before a closed interview of the
    same file stem and the same words was added."""
    add_interview(store, tmp_path / "audio" / "zhang.wav", 1)
    formats = [f"--format={fmt}" for fmt in ("json", "txt", "docx", "srt", "vtt", "eaf", "ohms", "csv", "qdpx")]

    def exported(run: str) -> tuple[dict, dict]:
        plain, redacted = tmp_path / run / "plain", tmp_path / run / "redacted"
        ohp("export", "--all", *formats, "--out", plain, "--db", db_url)
        ohp("export", "--all", "--format", "json", "--redact", "names,places", "--out", redacted, "--db", db_url)
        report = (tmp_path / run / "redacted-redactions.csv").read_bytes()
        return files_in(plain), {**files_in(redacted), "report": report}

    before = exported("before")
    assert "zhang.json" in before[0] and b"Zhang Wei" in before[1]["report"]  # names were found and redacted
    add_interview(store, tmp_path / "closed" / "zhang.wav", 2, consent="closed")
    after = exported("after")
    assert [sorted(files) for files in after] == [sorted(files) for files in before]  # not zhang-<its hash>.json
    assert after == before


def test_the_report_and_agreement_of_the_open_recordings_leave_no_trace_of_a_closed_one(store, db_url, tmp_path):
    """`ohp report` (every table, with and without pseudonyms) and `ohp agreement` (its figures and the
    disagreements' CSV) count what an export writes: the same with a closed interview as without it."""
    add_interview(store, tmp_path / "audio" / "zhang.wav", 1)

    def counted(run: str) -> dict:
        folder = tmp_path / run
        ohp("report", "--out", folder / "report", "--db", db_url)
        ohp("report", "--out", folder / "redacted", "--redact", "names,places", "--db", db_url)
        figures = ohp("agreement", "--disagreements", folder / "split.csv", "--db", db_url).stdout
        return {
            "report": files_in(folder / "report", skip=(".png", ".svg")),
            "redacted": files_in(folder / "redacted", skip=(".png", ".svg")),
            "split": (folder / "split.csv").read_bytes(),
            "figures": figures.replace(str(folder), "FOLDER"),
        }

    before = counted("before")
    assert b"wages" in before["split"].lower() and "alice" in before["figures"]
    add_interview(store, tmp_path / "closed" / "zhang.wav", 2, consent="closed")
    assert counted("after") == before


def test_a_run_names_an_open_recordings_files_as_the_export_does_beside_a_closed_one(store, tmp_path):
    """`ohp run` over an open and a closed recording of one file name (both transcribed already: skipped, their
    files written again): the closed one writes no files, so it takes no stem, and the open one's files have
    the plain name its export gives them, no hash that tells of the other."""
    open_id = add_interview(store, tmp_path / "audio" / "zhang.wav", 1)
    closed_id = add_interview(store, tmp_path / "closed" / "zhang.wav", 2, consent="closed")
    files = {rid: Path(store.recording(rid).path) for rid in (open_id, closed_id)}
    options = RunOptions(out_dir=tmp_path / "out", formats=("json",))
    batch = plan_batch(list(files.values()), store, options)
    for rid, path in files.items():
        assert not batch.writes(path)  # a stem two files of the batch have: written once the batch knows which read
        batch.finished(FileResult(path, "skipped", recording_id=rid))
    batch.write_waiting(store, options)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["zhang.json"]
    assert json.loads((tmp_path / "out" / "zhang.json").read_text(encoding="utf-8"))["recording"]["id"] == open_id


def test_the_learned_model_holds_no_words_of_a_closed_recording(store, db_url, tmp_path, monkeypatch):
    """`ohp tag-learn` writes the model into the project's folder (annotations/themes-model.json), plain JSON
    whose features are the words (in Chinese, runs of characters) of the segments people decided on: learnt from
    a closed interview's decisions, it held the interviewee's name and village. It learns from the recordings an
    export writes, closed ones only when a researcher asks, as `ohp report` counts them."""
    from pipeline import learning

    labelled = tmp_path / "labelled.jsonl"
    rows = [r for r in learning.load_labelled() if r["language"] == "zh"][:40]  # few: the test is about the input
    labelled.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    monkeypatch.setattr(learning, "LABELLED", labelled)
    store.add_user("rita", PASSWORD, "researcher")
    store.add_user("vera", PASSWORD, "viewer")
    said = {"open": "老板拖欠工资三个月", "closed": "秀英在石门村的鞋厂加班工资很低"}
    for n, (consent, text) in enumerate(said.items()):
        audio = tmp_path / f"{consent}.wav"
        info = AudioInfo(audio, f"{n:064x}", 1000, "wav", "pcm_s16le", 16000, 1, 5.0)
        transcript = Transcript("zh", 0.9, [Segment(0.0, 4.0, text, text, "zh")], "faster-whisper", "base")
        rid = save_transcription(store, info, transcript, {}, "k", {})
        store.add_annotation(store.segments(rid)[0].id, "wages", "alice")
        store.set_metadata(rid, consent=consent)

    def learned(*extra: str) -> str:
        model = tmp_path / "annotations" / "themes-model.json"
        model.unlink(missing_ok=True)
        ohp("tag-learn", "--out", model, "--db", db_url, *extra)
        return model.read_text(encoding="utf-8")

    shared = learned()
    assert "拖欠" in shared and not [word for word in ("秀英", "石门", "鞋厂") if word in shared]
    assert json.loads(shared)["trained_on"]["decisions"] == 1
    asked = learned("--include-restricted", "--user", "rita")
    assert "秀英" in asked and json.loads(asked)["trained_on"]["decisions"] == 2
    refused = runner.invoke(cli_app, ["tag-learn", "--include-restricted", "--user", "vera", "--db", db_url])
    assert refused.exit_code != 0 and "only a researcher" in refused.output


def test_an_imported_file_never_opens_a_recording_further_than_the_store_has_it(store, tmp_path, caplog):
    """`ohp import FILE --audio AUDIO` takes what an ohp JSON file says of its recording, consent included (so
    that a closed interview does not come back open). But a file exported before a researcher closed the
    recording, imported again (text corrected elsewhere, an older copy restored), opened it: viewers saw it and
    exports wrote it. The file's consent now counts only where it is as strict as the stored one or stricter,
    on every day from today."""
    from pipeline.formats.export import gather, to_json
    from pipeline.imports import import_file

    audio = tmp_path / "li.wav"
    with wave.open(str(audio), "wb") as sound:
        sound.setnchannels(1), sound.setsampwidth(2), sound.setframerate(16000)
        sound.writeframes(bytes(32000))
    said = {"recording": {"consent": "open"}, "segments": [{"start": 0.0, "end": 1.0, "text": "The wages were low."}]}
    first = tmp_path / "first.json"
    first.write_text(json.dumps(said), encoding="utf-8")
    rid = import_file(first, store, audio)
    exported_then = tmp_path / "exported-while-open.json"
    exported_then.write_text(to_json(gather(store, store.recording(rid))), encoding="utf-8")

    def imported(consent: str, release_on: str | None = None) -> tuple[str, str | None]:
        document = json.loads(exported_then.read_text(encoding="utf-8"))
        document["recording"].update(consent=consent, release_on=release_on)
        again = tmp_path / f"{consent}-{release_on}.json"
        again.write_text(json.dumps(document), encoding="utf-8")
        assert import_file(again, store, audio) == rid
        found = store.recording(rid)
        return found.consent, found.release_on

    store.set_metadata(rid, consent="closed", release_on="2999-01-01")
    assert import_file(exported_then, store, audio) == rid
    assert (store.recording(rid).consent, store.recording(rid).release_on) == ("closed", "2999-01-01")
    kept = f"recording {rid}: its consent stays closed until 2999-01-01, where the file imported says open"
    assert kept in caplog.text
    assert imported("restricted") == ("closed", "2999-01-01")
    assert imported("closed", "2030-01-01") == ("closed", "2999-01-01")  # released sooner: more open
    assert imported("closed", "3000-01-01") == ("closed", "3000-01-01")  # later: stricter, taken
    store.set_metadata(rid, consent="open", release_on="")
    assert imported("restricted", "2999-01-01") == ("restricted", "2999-01-01")  # stricter than open
    assert imported("closed") == ("closed", "2999-01-01")  # stricter still (the file names no release date)


def test_a_closed_recordings_file_edited_in_place_stays_closed(store, tmp_path):
    """A closed interview's file edited where it is (trimmed, denoised, converted): its bytes are another
    recording's (ohp knows recordings by their sha256), which started open, so the next `ohp run` wrote its
    transcript files and viewers read it. A recording new at the path of a stored one starts with that one's
    consent (the newest there); one at a path of its own starts open, as ever."""
    closed = tmp_path / "audio" / "li.wav"
    closed_id = add_interview(store, closed, 1, consent="closed")
    store.set_metadata(closed_id, release_on="2999-01-01")
    edited = add_interview(store, closed, 2)  # the same path, other bytes: as ohp run saves it
    assert edited != closed_id
    assert (store.recording(edited).consent, store.recording(edited).release_on) == ("closed", "2999-01-01")
    assert store.recording(add_interview(store, tmp_path / "audio" / "wang.wav", 3)).consent == "open"
