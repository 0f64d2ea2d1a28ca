"""The web app through FastAPI's test client: logins and roles, CSRF, range requests, conflicts,
escaping, search, history and revert. On SQLite, and on PostgreSQL when OHP_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from saving import save_tags, save_transcription, saved_meanwhile

from pipeline.config import Config
from pipeline.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from pipeline.records import MAX_TEXT_CHARS, AudioInfo, Segment, ThemeSuggestion, Transcript
from pipeline.store import Store
from pipeline.store import transcripts as store_transcripts
from pipeline.web import auth, create_app

from conftest import SQLITE_ONLY

TEXTS = [
    "Where are your children now?",
    "They stay with my parents back home.",
    "The wages were <script>alert(1)</script> paid by the piece.",
]
PASSWORD = "correct horse battery"


def add_recording(store, audio: Path) -> int:
    data = bytes(range(256)) * 64  # 16 KiB whose every byte says where it is
    audio.write_bytes(data)
    info = AudioInfo(audio, hashlib.sha256(data).hexdigest(), len(data), "wav", "pcm_s16le", 16000, 1, 15.0)
    segments = [
        Segment(i * 5.0, i * 5.0 + 4.0, t, t, "en", speaker="S1" if i % 2 == 0 else "S2") for i, t in enumerate(TEXTS)
    ]
    rid = save_transcription(store, info, Transcript("en", 0.99, segments, "faster-whisper", "base"), {}, "k", {})
    ids = [s.id for s in store.segments(rid)]
    suggestions = {
        ids[1]: [ThemeSuggestion("left_behind_children", 0.9, ((10, 25),))],
        ids[2]: [ThemeSuggestion("wages", 0.8, ((4, 9),))],
    }
    save_tags(store, rid, suggestions, {}, "t1", {}, "t1")
    return rid


@pytest.fixture
def app(store, tmp_path):
    for name, role in (("vera", "viewer"), ("ann", "annotator"), ("rita", "researcher")):
        store.add_user(name, PASSWORD, role)
    rid = add_recording(store, tmp_path / "interview.wav")
    web = create_app(store, Config(secret="test-secret"))
    web.state.recording_id = rid
    return web


def client_for(app, name: str | None = None) -> tuple[TestClient, str]:
    """A client, logged in as `name` if given, and its CSRF token."""
    client = TestClient(app)
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/login").text).group(1)
    if name:
        response = client.post(
            "/login", data={"name": name, "password": PASSWORD, "csrf_token": token}, follow_redirects=False
        )
        assert response.status_code == 303
        token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)
    return client, token


def segment_ids(client: TestClient, rid: int) -> list[int]:
    return [s["id"] for s in client.get(f"/api/recordings/{rid}/segments").json()]


def test_everything_needs_a_login(app):
    client, _ = client_for(app)
    rid = app.state.recording_id
    for path in (
        "/api/recordings",
        f"/api/recordings/{rid}",
        f"/api/recordings/{rid}/segments",
        f"/api/recordings/{rid}/audio",
        "/api/search?q=wages",
    ):
        assert client.get(path).status_code == 401, path
    for path in (
        "/",
        f"/recordings/{rid}",
        f"/recordings/{rid}/review",
        "/search?q=wages",
        f"/history?recording={rid}",
    ):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
    assert client.patch("/api/segments/1", json={"text": "x", "version": 1}).status_code == 401


def test_openapi_lists_the_api_to_those_logged_in(app):
    anonymous, _ = client_for(app)
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert anonymous.get(path).status_code in (401, 404), path  # the API's description is for users only
    client, _ = client_for(app, "vera")
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/recordings",
        "/api/recordings/{recording_id}",
        "/api/recordings/{recording_id}/segments",
        "/api/recordings/{recording_id}/audio",
        "/api/segments/{segment_id}",
        "/api/segments/{segment_id}/annotations",
        "/api/annotations/{annotation_id}",
        "/api/search",
    ):
        assert path in paths


def test_wrong_passwords_are_refused_and_slowed_down(app, monkeypatch):
    client, token = client_for(app)
    waits = []

    async def sleep(seconds: float) -> None:  # the waits the login asks for, counted, not sat out
        waits.append(seconds)

    monkeypatch.setattr(auth, "asyncio", SimpleNamespace(sleep=sleep, to_thread=asyncio.to_thread))
    for _ in range(3):
        response = client.post("/login", data={"name": "ann", "password": "wrong", "csrf_token": token})
        assert response.status_code == 401 and "wrong name or password" in response.text
    assert waits == [0.0, 0.25, 0.5]  # each wrong password doubles the next one's wait
    assert client.get("/api/recordings").status_code == 401


def test_roles(app):
    rid = app.state.recording_id
    viewer, token = client_for(app, "vera")
    assert viewer.get("/api/recordings").json()[0]["suggested"] == 2
    seg = viewer.get(f"/api/recordings/{rid}/segments").json()[0]
    response = viewer.patch(
        f"/api/segments/{seg['id']}", json={"text": "x", "version": 1}, headers={"X-CSRF-Token": token}
    )
    assert response.status_code == 403 and "annotator" in response.json()["detail"]
    annotator, token = client_for(app, "ann")
    assert (
        annotator.patch(f"/api/recordings/{rid}", json={"place": "Wuhan"}, headers={"X-CSRF-Token": token}).status_code
        == 403
    )
    researcher, token = client_for(app, "rita")
    response = researcher.patch(f"/api/recordings/{rid}", json={"place": "Wuhan"}, headers={"X-CSRF-Token": token})
    assert response.status_code == 200 and response.json()["place"] == "Wuhan"


def test_http_basic_for_other_tools(app):
    client = TestClient(app)
    assert client.get("/api/recordings", auth=("vera", PASSWORD)).status_code == 200
    assert client.get("/api/recordings", auth=("vera", "nope")).status_code == 401


def test_writes_need_the_csrf_token(app):
    client, _ = client_for(app, "ann")
    seg = client.get(f"/api/recordings/{app.state.recording_id}/segments").json()[0]
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        response = client.patch(f"/api/segments/{seg['id']}", json={"text": "x", "version": 1}, headers=headers)
        assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert client.post("/logout", data={}).status_code == 403
    fresh, _ = client_for(app)
    assert fresh.post("/login", data={"name": "ann", "password": PASSWORD}).status_code == 403


def test_audio_range_requests(app, tmp_path):
    client, _ = client_for(app, "vera")
    url = f"/api/recordings/{app.state.recording_id}/audio"
    whole = (tmp_path / "interview.wav").read_bytes()
    assert client.get(url).content == whole
    part = client.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == whole[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(whole)}"
    tail = client.get(url, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == whole[-100:]
    assert client.get(url, headers={"Range": f"bytes={len(whole) + 10}-"}).status_code == 416


def test_audio_serves_only_recordings_in_the_database(app, tmp_path):
    client, _ = client_for(app, "vera")
    (tmp_path / "secret.txt").write_text("not audio")
    for path in (
        "/api/recordings/999/audio",
        "/api/recordings/..%2Fsecret.txt/audio",
        f"/api/recordings/{tmp_path / 'secret.txt'}/audio",
    ):
        response = client.get(path)
        assert response.status_code in (404, 422), path
        assert "not audio" not in response.text
    (tmp_path / "interview.wav").unlink()
    response = client.get(f"/api/recordings/{app.state.recording_id}/audio")
    assert response.status_code == 404 and "not at" in response.json()["detail"]


def test_correction_conflict_returns_the_other_version(app, store):
    rid = app.state.recording_id
    ann, ann_token = client_for(app, "ann")
    rita, rita_token = client_for(app, "rita")
    seg = ann.get(f"/api/recordings/{rid}/segments").json()[1]
    first = ann.patch(
        f"/api/segments/{seg['id']}",
        json={"text": "They stay with my parents in the village.", "version": seg["version"]},
        headers={"X-CSRF-Token": ann_token},
    )
    assert first.status_code == 200 and first.json()["version"] == seg["version"] + 1
    second = rita.patch(
        f"/api/segments/{seg['id']}",
        json={"text": "They stay with grandparents.", "version": seg["version"]},
        headers={"X-CSRF-Token": rita_token},
    )
    assert second.status_code == 409
    current = second.json()["current"]
    assert (current["text"], current["version"], current["changed_by"]) == (
        "They stay with my parents in the village.",
        seg["version"] + 1,
        "ann",
    )
    [now] = [s for s in store.segments(rid) if s.id == seg["id"]]
    assert (now.text, now.start, now.end) == ("They stay with my parents in the village.", seg["start"], seg["end"])
    # its theme stays, its evidence on the same words
    [theme] = [a for a in store.annotations(rid) if a.segment_id == seg["id"]]
    assert [now.text[a:b] for a, b in theme.evidence] == ["with my parents"]


def decide(client, token: str, annotation: dict, status: str):
    """PATCH a decision on `annotation`, on the version read with it."""
    return client.patch(
        f"/api/annotations/{annotation['id']}",
        json={"status": status, "version": annotation["version"]},
        headers={"X-CSRF-Token": token},
    )


def add_theme(client, token: str, segment: dict, theme: str, evidence: list):
    """POST a theme a person puts on `segment`, with the evidence's [start, end) offsets."""
    return client.post(
        f"/api/segments/{segment['id']}/annotations",
        json={"theme": theme, "evidence": evidence},
        headers={"X-CSRF-Token": token},
    )


def test_decisions_and_added_themes(app):
    rid = app.state.recording_id
    client, token = client_for(app, "ann")
    segs = client.get(f"/api/recordings/{rid}/segments").json()
    suggestion = segs[1]["annotations"][0]
    decided = decide(client, token, suggestion, "accepted")
    assert decided.status_code == 200 and decided.json()["status"] == "accepted"
    stale = decide(client, token, suggestion, "rejected")
    assert stale.status_code == 409 and stale.json()["current"]["status"] == "accepted"
    unversioned = client.patch(
        f"/api/annotations/{suggestion['id']}", json={"status": "rejected"}, headers={"X-CSRF-Token": token}
    )
    assert unversioned.status_code == 422  # a decision says which version it was made on
    added = add_theme(client, token, segs[0], "family_separation", [[15, 27]])
    assert added.status_code == 201 and added.json()["evidence"] == [[15, 27]] and added.json()["source"] == "ann"
    outside = add_theme(client, token, segs[0], "wages", [[0, 999]])
    assert outside.status_code == 400
    unknown = add_theme(client, token, segs[0], "nonsense", [])
    assert unknown.status_code == 400


def test_adding_a_theme_someone_rejected_does_not_overturn_it(app):
    rid = app.state.recording_id
    client, token = client_for(app, "ann")
    segs = client.get(f"/api/recordings/{rid}/segments").json()
    wages = segs[2]["annotations"][0]
    rejected = decide(client, token, wages, "rejected")
    assert rejected.status_code == 200
    readded = add_theme(client, token, segs[2], "wages", [[0, 3]])
    assert readded.status_code == 409 and readded.json()["current"]["status"] == "rejected"
    assert client.get(f"/api/recordings/{rid}/segments").json()[2]["annotations"][0]["status"] == "rejected"


def test_transcript_text_is_escaped(app):
    client, _ = client_for(app, "vera")
    rid = app.state.recording_id
    for path in (f"/recordings/{rid}", f"/recordings/{rid}/review", "/search?q=wages"):
        page = client.get(path).text
        assert "<script>alert(1)</script>" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path


def test_search_finds_corrected_text(app):
    rid = app.state.recording_id
    client, token = client_for(app, "ann")
    seg = client.get(f"/api/recordings/{rid}/segments").json()[0]
    assert client.get("/api/search", params={"q": "grandchildren"}).json()["total"] == 0
    client.patch(
        f"/api/segments/{seg['id']}",
        json={"text": "Where are your grandchildren now?", "version": seg["version"]},
        headers={"X-CSRF-Token": token},
    )
    found = client.get("/api/search", params={"q": "grandchildren"}).json()
    assert found["total"] == 1 and found["hits"][0]["link"].startswith(f"/recordings/{rid}?t=0.0")
    assert client.get("/api/search", params={"q": "wages", "theme": "wages"}).json()["total"] == 1
    assert client.get("/api/search", params={"q": "wages", "theme": "housing"}).json()["total"] == 0
    bad = client.get("/api/search", params={"q": '"unclosed'})
    assert bad.status_code == 400 and "character" in bad.json()["detail"]
    assert "grandchildren" in client.get("/search", params={"q": "grandchildren"}).text


def test_history_and_revert(app, store):
    rid = app.state.recording_id
    client, token = client_for(app, "ann")
    seg = client.get(f"/api/recordings/{rid}/segments").json()[0]
    client.patch(
        f"/api/segments/{seg['id']}",
        json={"text": "Where are the kids?", "version": seg["version"]},
        headers={"X-CSRF-Token": token},
    )
    suggestion = client.get(f"/api/recordings/{rid}/segments").json()[2]["annotations"][0]
    decide(client, token, suggestion, "rejected")
    changes = client.get("/api/history", params={"recording": rid}).json()
    corrected = next(c for c in changes if c["action"] == "corrected")
    assert (corrected["changed_by"], corrected["before"]["text"], corrected["after"]["text"]) == (
        "ann",
        TEXTS[0],
        "Where are the kids?",
    )
    assert "Where are the kids?" in client.get("/history", params={"segment": seg["id"]}).text
    assert client.post(f"/api/history/{corrected['id']}/revert", headers={"X-CSRF-Token": token}).status_code == 200
    assert store.segments(rid)[0].text == TEXTS[0]
    assert client.get("/api/search", params={"q": "kids"}).json()["total"] == 0
    again = client.post(f"/api/history/{corrected['id']}/revert", headers={"X-CSRF-Token": token})
    assert again.status_code == 409
    rejected = next(c for c in changes if c["action"] == "rejected")
    assert client.post(f"/api/history/{rejected['id']}/revert", headers={"X-CSRF-Token": token}).status_code == 200
    assert store.annotations(rid)[-1].status == "suggested"


def test_pages_render(app):
    client, _ = client_for(app, "rita")
    rid = app.state.recording_id
    listing = client.get("/", params={"sort": "waiting", "desc": "true"}).text
    assert "interview.wav" in listing and f"/recordings/{rid}/review" in listing
    page = client.get(f"/recordings/{rid}").text
    assert "Keyboard shortcuts" in page and 'data-start="5.0"' in page and '<mark class="t' in page
    assert client.get("/recordings/999").status_code == 404
    assert "no recording" in client.get("/recordings/999").text


def test_retranscription_keeps_corrections(app, store, tmp_path):
    rid = app.state.recording_id
    client, token = client_for(app, "ann")
    seg = client.get(f"/api/recordings/{rid}/segments").json()[1]
    client.patch(
        f"/api/segments/{seg['id']}",
        json={"text": "They stay with grandparents.", "version": seg["version"]},
        headers={"X-CSRF-Token": token},
    )
    rec = store.list_recordings()[0]
    info = AudioInfo(Path(rec.path), rec.sha256, rec.size_bytes, "wav", "pcm_s16le", 16000, 1, 15.0)
    segments = [Segment(i * 5.0 + 0.1, i * 5.0 + 4.1, f"again {i}", f"again {i}", "en") for i in range(3)]
    save_transcription(store, info, Transcript("en", 0.99, segments, "faster-whisper", "base"), {}, "k2", {})
    assert [s.text for s in store.segments(rid)] == ["again 0", "They stay with grandparents.", "again 2"]
    assert client.get("/api/search", params={"q": "grandparents"}).json()["total"] == 1


def test_researchers_add_accounts(app):
    researcher, token = client_for(app, "rita")
    created = researcher.post(
        "/api/users",
        json={"name": "noor", "password": "long enough", "role": "viewer"},
        headers={"X-CSRF-Token": token},
    )
    assert created.status_code == 201 and created.json()["role"] == "viewer" and "password" not in created.text
    assert (
        researcher.post(
            "/api/users",
            json={"name": "noor", "password": "long enough", "role": "viewer"},
            headers={"X-CSRF-Token": token},
        ).status_code
        == 400
    )
    assert TestClient(app).get("/api/recordings", auth=("noor", "long enough")).status_code == 200
    annotator, token = client_for(app, "ann")
    assert (
        annotator.post(
            "/api/users",
            json={"name": "x", "password": "long enough", "role": "researcher"},
            headers={"X-CSRF-Token": token},
        ).status_code
        == 403
    )


def test_errors_show_a_message_not_a_stack_trace(app, monkeypatch, caplog):
    client, _ = client_for(app, "vera")
    client = TestClient(app, raise_server_exceptions=False, cookies=client.cookies)

    def broken(*args, **kwargs):
        return {}["secret internals"]  # a KeyError is a LookupError: a bug all the same, not "not found"

    monkeypatch.setattr(app.state.store, "list_recordings", broken)
    for path in ("/", "/api/recordings"):
        response = client.get(path)
        assert response.status_code == 500, path
        assert (
            "went wrong" in response.text
            and "secret internals" not in response.text
            and "Traceback" not in response.text
        )
    logged = [r for r in caplog.records if r.name == "pipeline.web.app" and r.exc_info]
    assert [r.exc_info[0] for r in logged] == [KeyError, KeyError]
    assert "Traceback" in caplog.text and "in broken" in caplog.text and "KeyError: 'secret internals'" in caplog.text


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFoundError("no recording with id 12"), 404),
        (InvalidInputError("release_on must be an ISO date (YYYY-MM-DD), not 'soon'"), 400),
        (ConflictError("segment 3 was changed since version 1", {"text": "now", "version": 2}), 409),
        (ForbiddenError("changing consent needs the researcher role (yours is viewer)"), 403),
    ],
    ids=["not found", "invalid input", "conflict", "forbidden"],
)
def test_ohp_errors_get_their_status(app, monkeypatch, error, status):
    client, _ = client_for(app, "vera")

    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(app.state.store, "list_recordings", failing)
    answer = client.get("/api/recordings")
    assert answer.status_code == status and answer.json()["detail"] == str(error)
    if isinstance(error, ConflictError):
        assert answer.json()["current"] == {"text": "now", "version": 2}
    page = client.get("/")
    assert page.status_code == status and str(error) in html.unescape(page.text)


def test_user_add_command(db_url):
    from typer.testing import CliRunner

    from pipeline.cli import app as cli

    runner = CliRunner()
    result = runner.invoke(
        cli, ["user", "add", "mei", "--role", "annotator", "--password-stdin", "--db", db_url], input="s3cret pass\n"
    )
    assert result.exit_code == 0, result.output
    again = runner.invoke(
        cli, ["user", "add", "mei", "--role", "annotator", "--password-stdin", "--db", db_url], input="other\n"
    )
    assert again.exit_code == 2 and "exists already" in again.output
    with Store(db_url) as store:
        assert store.check_password("mei", "s3cret pass").role == "annotator"
        assert store.check_password("mei", "wrong") is None


def test_session_secret_is_made_once_and_kept_private(tmp_path):
    from pipeline.web.auth import session_secret

    first = session_secret(tmp_path / "home")
    assert len(first) >= 32 and session_secret(tmp_path / "home") == first
    assert (tmp_path / "home" / "web-secret").stat().st_mode & 0o777 == 0o600


def test_viewers_do_not_see_closed_recordings(app, store):
    rid = app.state.recording_id
    rita, rita_token = client_for(app, "rita")
    closed = {"consent": "closed", "release_on": "2999-01-01"}
    assert (
        rita.patch(f"/api/recordings/{rid}", json=closed, headers={"X-CSRF-Token": rita_token}).json()["consent"]
        == "closed"
    )
    vera, _ = client_for(app, "vera")
    # Not there, the same way as a recording that does not exist: a viewer cannot learn it exists.
    assert vera.get("/api/recordings").json() == []
    for path in (
        f"/api/recordings/{rid}",
        f"/api/recordings/{rid}/segments",
        f"/api/recordings/{rid}/audio",
        f"/api/history?recording={rid}",
    ):
        assert vera.get(path).status_code == 404, path
    assert vera.get(f"/recordings/{rid}").status_code == 404
    assert vera.get("/api/search?q=wages").json()["total"] == 0
    assert "interview.wav" not in vera.get("/").text and "interview.wav" not in vera.get("/search?q=wages").text
    segment = store.segments(rid)[2].id
    assert vera.get(f"/api/history?segment={segment}").status_code == 404
    # Annotators and researchers still work on it, and see why it is marked.
    ann, _ = client_for(app, "ann")
    assert ann.get("/api/search?q=wages").json()["total"] == 1
    assert "closed until 2999-01-01" in ann.get(f"/recordings/{rid}").text
    # Restricted is not closed; and a closed recording opens on its release date.
    store.set_metadata(rid, consent="restricted")
    assert [r["id"] for r in vera.get("/api/recordings").json()] == [rid]
    store.set_metadata(rid, consent="closed", release_on="2000-01-01")
    assert (
        vera.get("/api/search?q=wages").json()["total"] == 1
        and vera.get(f"/api/recordings/{rid}").json()["access"] == "open"
    )
    bad = rita.patch(f"/api/recordings/{rid}", json={"consent": "secret"}, headers={"X-CSRF-Token": rita_token})
    assert bad.status_code == 400 and "open, restricted, closed" in bad.text


@SQLITE_ONLY
def test_a_recordings_page_read_while_a_pass_saves_it_shows_one_state(app, store, db_url, monkeypatch):
    """The page read the segments' versions, the speakers, the themes and the segments each in a transaction of its
    own: a pass saving the recording again in between (ohp run beside the web app) gave segments whose versions had
    not been read, a KeyError and a 500. They are read as one state."""
    rid = app.state.recording_id
    info = store.recording(rid)
    audio = AudioInfo(Path(info.path), info.sha256, 1000, "wav", "pcm_s16le", 16000, 1, 15.0)
    retold = [Segment(i * 5.0, i * 5.0 + 4.0, t + " Yes.", t + " Yes.", "en") for i, t in enumerate(TEXTS)]
    transcript = Transcript("en", 0.99, retold, "faster-whisper", "base")
    saved_meanwhile(  # ohp run, transcribing it again
        monkeypatch,
        store_transcripts,
        "segments",
        db_url,
        lambda other: save_transcription(other, audio, transcript, {}, "k2", {}),
    )
    vera, _ = client_for(app, "vera")
    answer = vera.get(f"/api/recordings/{rid}/segments")
    assert answer.status_code == 200, answer.text
    assert [s["version"] for s in answer.json()] == [s.version for s in store.segments(rid)]


@SQLITE_ONLY
def test_a_details_form_shown_before_a_recording_was_closed_neither_opens_it_nor_undoes_other_changes(app, store):
    """The form sent every field as the page had shown it, and each was written: a researcher fixing the place on a
    page loaded before the recording was closed (the interviewee withdrew) opened it again, unseen, and put back
    an interviewee someone had pseudonymised meanwhile. Only the fields changed on the form are set, and a consent
    changed on a state that is no longer the recording's is a conflict."""
    rid = app.state.recording_id
    rita, _ = client_for(app, "rita")
    page = rita.get(f"/recordings/{rid}").text  # the form as shown, with its CSRF token
    form = dict(re.findall(r'<input (?:type="\w+" )?name="(\w+)" value="([^"]*)">', page))
    form["consent"] = re.search(r"<option selected>(\w+)</option>", page).group(1)
    store.set_metadata(rid, interviewee="X", consent="closed", release_on="2999-01-01", changed_by="mei")

    saved = rita.post(f"/recordings/{rid}/details", data={**form, "place": "东莞"}, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    record = store.recording(rid)
    assert (record.interviewee, record.place, record.consent, record.release_on) == (
        "X",
        "东莞",
        "closed",
        "2999-01-01",
    )
    reopened = rita.post(f"/recordings/{rid}/details", data={**form, "consent": "restricted"})
    assert reopened.status_code == 409 and "changed meanwhile" in reopened.text
    assert store.recording(rid).consent == "closed"


def test_researchers_set_details_and_consent_on_the_recording_page(app, store):
    rid = app.state.recording_id
    ann, ann_token = client_for(app, "ann")
    assert "Details and consent" not in ann.get(f"/recordings/{rid}").text
    form = {
        "interviewee": "李秀英",
        "place": "东莞",
        "recorded_on": "2019-02-03",
        "consent": "restricted",
        "release_on": "2030-01-01",
    }
    assert ann.post(f"/recordings/{rid}/details", data={**form, "csrf_token": ann_token}).status_code == 403
    rita, rita_token = client_for(app, "rita")
    assert "Details and consent" in rita.get(f"/recordings/{rid}").text
    assert rita.post(f"/recordings/{rid}/details", data=form).status_code == 403  # no CSRF token
    saved = rita.post(f"/recordings/{rid}/details", data={**form, "csrf_token": rita_token}, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == f"/recordings/{rid}"
    record = store.recording(rid)
    assert (record.interviewee, record.place, record.recorded_on, record.consent, record.release_on) == (
        "李秀英",
        "东莞",
        "2019-02-03",
        "restricted",
        "2030-01-01",
    )
    assert "restricted until 2030-01-01" in rita.get(f"/recordings/{rid}").text
    bad = rita.post(f"/recordings/{rid}/details", data={**form, "consent": "secret", "csrf_token": rita_token})
    assert bad.status_code == 400 and store.recording(rid).consent == "restricted"
    # Who changed the consent, and to what, is in the recording's history (through the API too); not the names.
    opened = {"consent": "open", "release_on": "", "changed_by": "someone else"}  # the account decides who
    assert rita.patch(f"/api/recordings/{rid}", json=opened, headers={"X-CSRF-Token": rita_token}).status_code == 200
    changes = [c for c in rita.get(f"/api/history?recording={rid}").json() if c["action"] == "consent"]
    assert [(c["changed_by"], c["after"]) for c in changes] == [
        ("rita", {"consent": "restricted", "release_on": "2030-01-01"}),
        ("rita", {"consent": "open", "release_on": None}),
    ]
    page = rita.get(f"/history?recording={rid}").text
    assert "<td>restricted until 2030-01-01</td>" in page and "<td>open</td>" in page and "李秀英" not in page


def test_the_review_page_says_where_each_suggestion_came_from(app, store):
    rid = app.state.recording_id
    ids = [s.id for s in store.segments(rid)]
    found = {
        ids[1]: [ThemeSuggestion("left_behind_children", 0.9, ((10, 25),), origin="model")],
        ids[2]: [ThemeSuggestion("wages", 0.8, ((4, 9),), origin="pattern")],
    }
    save_tags(store, rid, found, {}, "t2", {}, "t2")
    client, _ = client_for(app, "ann")
    page = client.get(f"/recordings/{rid}/review").text
    origins = dict(re.findall(r'data-theme="([a-z_]+)".*?<span class="origin"[^>]*>(\w+)</span>', page, re.S))
    assert origins == {"left_behind_children": "model", "wages": "pattern"}
    assert {
        a["theme"]: a["origin"] for s in client.get(f"/api/recordings/{rid}/segments").json() for a in s["annotations"]
    } == {"left_behind_children": "model", "wages": "pattern"}


def test_the_recordings_list_shows_a_done_stage_whose_last_run_failed(app, store, tmp_path):
    """A failed re-run keeps the stage done (its last result stays): the list said only "done", and nobody
    browsing it learned that the last run had failed, nor why."""
    audio = tmp_path / "interview.wav"
    data = audio.read_bytes()
    info = AudioInfo(audio, hashlib.sha256(data).hexdigest(), len(data), "wav", "pcm_s16le", 16000, 1, 15.0)
    store.fail_stage(info, "transcribe", {}, "", "decode: the file is unreadable now <b>")
    client, _ = client_for(app, "vera")
    (listed,) = client.get("/api/recordings").json()
    assert listed["stages"]["transcribe"] == "done"
    assert listed["failures"] == {"transcribe": "decode: the file is unreadable now <b>"}
    page = client.get("/").text
    assert 'title="decode: the file is unreadable now &lt;b&gt;"' in page
    assert "transcribe: done, its last run failed" in page


def test_the_recordings_list_reads_each_recordings_stages_once(app, store, tmp_path):
    """The list read the stages table twice, for the statuses, then again for the errors of failed runs, each in
    a snapshot of its own; what each recording shows (its stages, its failures) comes from one read now."""
    from sqlalchemy import event

    audio = tmp_path / "interview.wav"
    data = audio.read_bytes()
    info = AudioInfo(audio, hashlib.sha256(data).hexdigest(), len(data), "wav", "pcm_s16le", 16000, 1, 15.0)
    store.fail_stage(info, "transcribe", {}, "", "decode: the file is unreadable now")
    read: list[str] = []

    def reads_stages(conn, cursor, statement, parameters, context, executemany) -> None:
        if re.search(r"\bFROM stages\b", statement):
            read.append(statement)

    client, _ = client_for(app, "vera")
    event.listen(store._engine, "before_cursor_execute", reads_stages)
    try:
        (listed,) = client.get("/api/recordings").json()
    finally:
        event.remove(store._engine, "before_cursor_execute", reads_stages)
    assert (listed["stages"]["transcribe"], listed["failures"]) == (
        "done",
        {"transcribe": "decode: the file is unreadable now"},
    )
    assert len(read) == 1, read


def test_the_recordings_list_filters_by_language_as_search_does(app):
    """The list's language filter was a case-sensitive prefix: EN found nothing, and e found every language
    starting with e; search's finds a code in any case, with its subtags (en finds en-GB), and nothing else."""
    client, _ = client_for(app, "vera")

    def listed(**params: str) -> int:
        return len(client.get("/api/recordings", params=params).json())

    by_language = [listed(language=code) for code in ("en", "EN", "e", "en-GB")]
    assert by_language == [1, 1, 0, 0]
    assert (listed(q="INTERVIEW"), listed(q="İnterview")) == (1, 1)


@SQLITE_ONLY  # the limit is ohp's, the same on every database
def test_a_long_segment_an_import_took_can_be_corrected_and_the_limit_is_the_same_everywhere(app, store):
    """An import takes a segment of up to MAX_TEXT_CHARS (a paragraph of an untimed transcript); the web app refused
    any correction of one over 20,000 characters (422), a comma fixed included, while `ohp review --doubtful` (the
    store) took a correction of any length, a megabyte too. One limit now, the store's."""
    rid = app.state.recording_id
    client, token = client_for(app, "ann")
    seg = client.get(f"/api/recordings/{rid}/segments").json()[0]
    paragraph = "The wages were paid by the piece. " * 600  # 20,400 characters, as an import takes them
    changed = client.patch(
        f"/api/segments/{seg['id']}",
        json={"text": paragraph, "version": seg["version"]},
        headers={"X-CSRF-Token": token},
    )
    assert changed.status_code == 200, changed.text
    too_long = "字" * (MAX_TEXT_CHARS + 1)
    refused = client.patch(
        f"/api/segments/{seg['id']}",
        json={"text": too_long, "version": seg["version"] + 1},
        headers={"X-CSRF-Token": token},
    )
    assert refused.status_code == 422
    with pytest.raises(InvalidInputError, match=f"{MAX_TEXT_CHARS:,} characters"):
        store.correct_text(seg["id"], too_long, "mei", seg["version"] + 1)
    assert store.segments(rid)[0].text == paragraph


@SQLITE_ONLY  # the check is the store's, the same on every database
def test_a_theme_added_on_words_someone_has_just_corrected_is_a_conflict_not_evidence_on_other_words(app, store):
    """Evidence is offsets into the text the page shows: rita corrected the segment (words put before them) while
    ann's page still showed the old text, and ann's theme was saved with its offsets into rita's text, on other
    words. The page sends the version its offsets are into, as a correction does; a changed text is a conflict."""
    rid = app.state.recording_id
    ann, ann_token = client_for(app, "ann")
    rita, rita_token = client_for(app, "rita")
    seg = ann.get(f"/api/recordings/{rid}/segments").json()[1]  # "They stay with my parents back home."
    corrected = rita.patch(
        f"/api/segments/{seg['id']}",
        json={"text": "Now they stay with my parents back home.", "version": seg["version"]},
        headers={"X-CSRF-Token": rita_token},
    )
    assert corrected.status_code == 200
    parents = [TEXTS[1].index("my parents"), TEXTS[1].index("my parents") + len("my parents")]
    added = ann.post(
        f"/api/segments/{seg['id']}/annotations",
        json={"theme": "family_separation", "evidence": [parents], "version": seg["version"]},
        headers={"X-CSRF-Token": ann_token},
    )
    assert added.status_code == 409, added.text
    assert added.json()["current"]["text"] == "Now they stay with my parents back home."
    assert [a.theme for a in store.annotations(rid, segment_id=seg["id"])] == ["left_behind_children"]
