"""The attacks of issue #15 on the web app, over HTTP: each one a function that tries it against a site
and raises AssertionError if the site gives in. tests/test_web_security.py runs them on FastAPI's test
client; bench/attacks.py on a live `ohp serve` on loopback, where it prints tried / held for each.

A site is a database prepared by `prepare` (users, a recording with audio, transcripts imported without
audio as x.js and x.html, a closed recording) and a way to make HTTP clients for it (`Site.client`)."""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from pipeline.imports import import_file
from pipeline.records import AudioInfo, Segment, Transcript
from pipeline.store import Store

PASSWORD = "correct horse battery"
USERS = {"vera": "viewer", "ann": "annotator", "rita": "researcher", "mallory": "annotator", "victim": "annotator"}
TEXTS = ["Where are your children now?", "They stay with my parents back home.", "The wages were paid by the piece."]
HUGE_ID = 2**63
MISSING_ID = 999_999  # an id nothing in a test database has


@dataclass
class Site:
    """A prepared database served somewhere: `new_client` makes an HTTP client for it (no cookies)."""

    new_client: Callable[[], httpx.Client]
    ids: dict[str, int]
    restart: Callable[[], None] | None = None  # the server again, same database (a live server only)
    notes: list[str] = field(default_factory=list)


def prepare(store: Store, folder: Path) -> dict[str, int]:
    """Users, an interview with audio, the two files of the stored-script attack imported as transcripts
    without audio (the HTML loading the script's "audio"), a closed recording with a corrected segment, and an
    open one whose stored path is where the closed one's file now is."""
    from saving import save_transcription

    for name, role in USERS.items():
        store.add_user(name, PASSWORD, role)
    ids = {}
    for n, name in enumerate(("interview", "closed")):
        audio = folder / f"{name}.wav"
        data = bytes([n]) + bytes(range(256)) * 64  # each file its own bytes: the audio route checks them
        audio.write_bytes(data)
        info = AudioInfo(audio, hashlib.sha256(data).hexdigest(), len(data), "wav", "pcm_s16le", 16000, 1, 15.0)
        segments = [Segment(i * 5.0, i * 5.0 + 4.0, t, t, "en", speaker="S1") for i, t in enumerate(TEXTS)]
        transcript = Transcript("en", 0.99, segments, "faster-whisper", "base")
        ids[name] = save_transcription(store, info, transcript, {}, "k", {})
    # An open recording whose file was moved away, the closed one's moved to where it was: the store holds the
    # open one's old path, where the closed recording's bytes are now.
    info = replace(info, path=folder / "moved.wav", sha256=hashlib.sha256(b"moved").hexdigest())
    ids["moved"] = save_transcription(store, info, transcript, {}, "k", {})
    store.update_path(ids["moved"], str(folder / "closed.wav"))
    ids["closed_segment"] = store.segments(ids["closed"])[0].id
    store.correct_text(ids["closed_segment"], "Where are the children now?", "ann", 1)
    store.set_metadata(ids["closed"], consent="closed")
    ids["segment"] = store.segments(ids["interview"])[1].id
    script = folder / "x.js"
    script.write_text(
        "fetch('/api/segments/1', {method: 'PATCH', body: JSON.stringify({text: 'pwned', version: 1})})\n"
    )
    ids["script"] = import_file(script, store)
    page = folder / "x.html"
    page.write_text(f'<html><body>Hello\n<script src="/api/recordings/{ids["script"]}/audio"></script></body></html>\n')
    ids["page"] = import_file(page, store)
    return ids


def csrf_of(text: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', text).group(1)


def login(site: Site, name: str, password: str = PASSWORD, **headers: str) -> tuple[httpx.Client, httpx.Response]:
    """A client that tried to log in as `name`, and the answer to its try."""
    client = site.new_client()
    token = csrf_of(client.get("/login").text)
    answer = client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token},
        headers=headers,
        follow_redirects=False,
    )
    return client, answer


def signed_in(site: Site, name: str) -> tuple[httpx.Client, str]:
    """A client logged in as `name`, and its CSRF token."""
    client, answer = login(site, name)
    assert answer.status_code == 303, f"{name} cannot log in: {answer.status_code}"
    return client, csrf_of(client.get("/").text)


# ------------------------------------------------------------------------------------ the attacks


def stored_script(site: Site) -> None:
    """1. x.js and x.html imported without audio, opened through the audio route, would run as a script
    in an annotator's session. Only audio is served, by the type ohp decoded, never sniffed."""
    ann, _ = signed_in(site, "ann")
    for which in ("page", "script"):
        answer = ann.get(f"/api/recordings/{site.ids[which]}/audio")
        assert answer.status_code == 404, f"x.{which}'s file is served as {answer.headers.get('content-type')}"
        assert answer.headers.get("x-content-type-options") == "nosniff"
    audio = ann.get(f"/api/recordings/{site.ids['interview']}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert audio.headers.get("x-content-type-options") == "nosniff"


def _cookie_of(client: httpx.Client) -> dict[str, str]:
    return {"ohp_session": client.cookies["ohp_session"]}


def _works(site: Site, cookie: dict[str, str]) -> bool:
    thief = site.new_client()
    thief.cookies.update(cookie)
    return thief.get("/api/recordings").status_code == 200


def session_after_logout(site: Site) -> None:
    """2. A copied session cookie kept working for 12 hours after logout, and across restarts."""
    ann, token = signed_in(site, "ann")
    copied = _cookie_of(ann)
    assert _works(site, copied)
    ann.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert not _works(site, copied), "the copied cookie still works after logout"
    if site.restart:
        site.restart()
        assert not _works(site, copied), "the copied cookie works again after a restart"


def session_after_password_change_and_removal(site: Site) -> None:
    """2. A new password (set by a researcher) and removing the user end the user's sessions."""
    vera, _ = signed_in(site, "vera")
    rita, token = signed_in(site, "rita")
    copied = _cookie_of(vera)
    changed = rita.put("/api/users/vera/password", json={"password": PASSWORD + "!"}, headers={"X-CSRF-Token": token})
    assert changed.status_code == 200, changed.text
    assert not _works(site, copied), "the session survives a new password"
    rita.put("/api/users/vera/password", json={"password": PASSWORD}, headers={"X-CSRF-Token": token})
    mallory, _ = signed_in(site, "mallory")
    copied = _cookie_of(mallory)
    assert rita.delete("/api/users/mallory", headers={"X-CSRF-Token": token}).status_code == 200
    assert not _works(site, copied), "the session survives removing the user"
    added = rita.post(
        "/api/users",
        json={"name": "mallory", "password": PASSWORD, "role": "annotator"},
        headers={"X-CSRF-Token": token},
    )
    assert added.status_code == 201
    assert not _works(site, copied), "a new account of the same name takes over the old one's session"
    assert "mallory" in {account["name"] for account in rita.get("/api/users").json()}


def parallel_guesses(site: Site, guesses: int = 20) -> None:
    """3. Twenty guesses in parallel were all checked at once (the wait was read before any failure
    counted). Now each counts before its wait, and past the account's limit none is checked."""
    answers = _at_once(guesses, lambda n: login(site, "victim", f"guess {n}")[1].status_code)
    refused = answers.count(429)
    assert refused > 0 and answers.count(401) + refused + answers.count(0) == guesses, f"answers: {sorted(answers)}"


def own_login_resets_nothing(site: Site) -> None:
    """3. Logging in to one's own account cleared the counters, so an attacker could spray others' names
    with no wait. (Run after parallel_guesses: the victim's account is at its limit.)"""
    assert login(site, "victim", "one more")[1].status_code == 429, "the victim's account is not at its limit"
    assert login(site, "mallory")[1].status_code == 303, "the attacker cannot log in"
    assert login(site, "victim", "and another")[1].status_code == 429, "the attacker's own login reset the victim's"


def forwarded_for_spray(site: Site, names: int = 60) -> None:
    """3. X-Forwarded-For was believed from loopback: each guess could claim a new client. Spraying
    many names, each from a made-up address, must still count against the one real client."""

    def guess(n: int) -> int:
        return login(site, f"sprayed{n}", "guess", **{"X-Forwarded-For": f"10.9.{n // 250}.{n % 250}"})[1].status_code

    assert _at_once(names, guess).count(429) > 0, "every made-up address got its own counter"


def long_names(site: Site, count: int = 40, size: int = 900_000) -> None:
    """3. Forty 900 KB names grew the failure table (and the server) by 65 MB: a name longer than any
    account's is wrong without being kept or looked up (bench/attacks.py measures the server's memory).
    Sent at once, as an attacker would, rather than sitting out each wait in turn."""
    statuses = _at_once(count, lambda n: login(site, f"{n}" + "x" * size, "x")[1].status_code)
    assert set(statuses) <= {0, 401, 413, 429}, statuses


def _at_once(count: int, call: Callable[[int], int]) -> list[int]:
    """`call(n)` for n in range(count), each in its own thread, all at once; their answers (0: no answer
    in time, from a server too busy checking the others)."""
    answers: list[int] = []

    def one(n: int) -> None:
        try:
            answers.append(call(n))
        except httpx.TimeoutException:
            answers.append(0)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def big_body(site: Site) -> None:
    """5. A request body of any size was read whole."""
    ann, token = signed_in(site, "ann")
    answer = ann.patch(
        f"/api/segments/{site.ids['segment']}",
        content=b'{"text": "' + b"x" * (2 * 1024 * 1024) + b'", "version": 1}',
        headers={"X-CSRF-Token": token, "Content-Type": "application/json"},
    )
    assert answer.status_code == 413, answer.status_code


def many_evidence_spans(site: Site, spans: int = 8000) -> None:
    """5. Thousands of evidence spans made a quadratic merge under the write lock."""
    ann, token = signed_in(site, "ann")
    evidence = [[i % 30, i % 30 + 1] for i in range(spans)]
    answer = ann.post(
        f"/api/segments/{site.ids['segment']}/annotations",
        json={"theme": "wages", "evidence": evidence},
        headers={"X-CSRF-Token": token},
    )
    assert answer.status_code in (400, 422), answer.status_code


def nested_query(site: Site) -> None:
    """5. A search with 250 nested parentheses answered 500 (the parser's recursion); a huge one too."""
    vera, _ = signed_in(site, "vera")
    for q in ("(" * 250 + "wages" + ")" * 250, "wages " * 5000):
        answer = vera.get("/api/search", params={"q": q})
        assert answer.status_code == 400, answer.status_code
        assert vera.get("/search", params={"q": q}).status_code < 500


def huge_ids(site: Site) -> None:
    """5. An id of 2^63 answered 500 (the database's integer overflows); so did one in the doubtful page's
    path, and a search's offset of 2^63 (audit-web)."""
    ann, token = signed_in(site, "ann")
    headers = {"X-CSRF-Token": token}
    answers = {
        "recording": ann.get(f"/api/recordings/{HUGE_ID}"),
        "audio": ann.get(f"/api/recordings/{HUGE_ID}/audio"),
        "page": ann.get(f"/recordings/{HUGE_ID}"),
        "doubtful page": ann.get(f"/recordings/{HUGE_ID}/doubtful"),
        "segment": ann.patch(f"/api/segments/{HUGE_ID}", json={"text": "x", "version": 1}, headers=headers),
        "version": ann.patch(
            f"/api/segments/{site.ids['segment']}", json={"text": "x", "version": HUGE_ID}, headers=headers
        ),
        "decision": ann.patch(
            f"/api/annotations/{HUGE_ID}", json={"status": "accepted", "version": 0}, headers=headers
        ),
        "history": ann.get("/api/history", params={"segment": HUGE_ID}),
        "search": ann.get("/api/search", params={"q": "wages", "recording": HUGE_ID}),
        "search offset": ann.get("/api/search", params={"q": "wages", "offset": HUGE_ID}),
        "negative": ann.get(f"/api/recordings/-{HUGE_ID}"),
    }
    wrong = {what: answer.status_code for what, answer in answers.items() if answer.status_code not in (400, 404, 422)}
    assert not wrong, wrong


def open_docs(site: Site) -> None:
    """6. /docs, /redoc and /openapi.json were open without login."""
    anonymous = site.new_client()
    for path in ("/docs", "/redoc", "/openapi.json"):
        answer = anonymous.get(path, follow_redirects=False)
        assert answer.status_code in (303, 401, 404), f"{path}: {answer.status_code}"


def closed_segment_history(site: Site) -> None:
    """6. A viewer learnt that a closed recording exists through /api/history?segment= (its id in a 404
    where a missing segment gave an empty list)."""
    vera, _ = signed_in(site, "vera")
    closed = vera.get("/api/history", params={"segment": site.ids["closed_segment"]})
    missing = vera.get("/api/history", params={"segment": MISSING_ID})
    assert closed.status_code == missing.status_code == 404
    shown = closed.json()["detail"].replace(str(site.ids["closed_segment"]), "N")
    assert shown == missing.json()["detail"].replace(str(MISSING_ID), "N"), (closed.json(), missing.json())


def closed_audio_at_a_stale_path(site: Site) -> None:
    """audit. A viewer heard a closed recording through an open one whose file had been moved away: the audio
    route served whatever lay at the path the store held, the closed recording's file moved there."""
    vera, _ = signed_in(site, "vera")
    answer = vera.get(f"/api/recordings/{site.ids['moved']}/audio")
    assert answer.status_code == 404, f"{answer.status_code}, {len(answer.content)} bytes of another recording"


def huge_metadata(site: Site) -> None:
    """6. A 10 MB interviewee name was stored."""
    rita, token = signed_in(site, "rita")
    for size in (10 * 1024 * 1024, 5000):
        answer = rita.patch(
            f"/api/recordings/{site.ids['interview']}",
            json={"interviewee": "x" * size},
            headers={"X-CSRF-Token": token},
        )
        assert answer.status_code in (400, 413, 422), answer.status_code


def unchanged_text(site: Site) -> None:
    """6. Saving a segment's text unchanged added a history entry (and a version)."""
    ann, token = signed_in(site, "ann")
    segment = site.ids["segment"]
    before = ann.get("/api/history", params={"segment": segment}).json()
    version = next(
        s["version"] for s in ann.get(f"/api/recordings/{site.ids['interview']}/segments").json() if s["id"] == segment
    )
    text = next(
        s["text"] for s in ann.get(f"/api/recordings/{site.ids['interview']}/segments").json() if s["id"] == segment
    )
    saved = ann.patch(
        f"/api/segments/{segment}", json={"text": text, "version": version}, headers={"X-CSRF-Token": token}
    )
    assert saved.status_code == 200 and saved.json()["version"] == version
    assert ann.get("/api/history", params={"segment": segment}).json() == before


def nul_bytes(site: Site) -> None:
    """audit-web. A NUL byte in a login name, HTTP Basic credentials, a search filter or a correction
    answered 503, "the database cannot be used just now" (PostgreSQL's text holds no NUL), and logged a
    database error: anyone could fill the log and feign an outage. It is input the database cannot hold: 400."""
    _, answer = login(site, "ve\x00ra", "guess")
    basic = base64.b64encode(b"ve\x00ra:guess").decode()
    answers = {
        "login": answer,
        "basic": site.new_client().get("/api/recordings", headers={"Authorization": f"Basic {basic}"}),
    }
    vera, _ = signed_in(site, "vera")
    for name in ("speaker", "interviewee", "place", "language"):
        answers[name] = vera.get("/api/search", params={"q": "wages", name: "a\x00b"})
        answers[f"{name} page"] = vera.get("/search", params={"q": "wages", name: "a\x00b"})
    ann, token = signed_in(site, "ann")
    stale = {"text": "a\x00b", "version": 0}  # where NUL is stored (SQLite), a conflict that changes nothing
    answers["correction"] = ann.patch(
        f"/api/segments/{site.ids['segment']}", json=stale, headers={"X-CSRF-Token": token}
    )
    wrong = {what: answer.status_code for what, answer in answers.items() if answer.status_code >= 500}
    assert not wrong, wrong


def cookies_over_https(site: Site) -> None:
    """6. The session cookie went without Secure behind TLS. On a site served with --secure-cookies, or
    reached by HTTPS through a trusted proxy, it is Secure."""
    _, answer = login(site, "ann", **{"X-Forwarded-Proto": "https"})
    assert "secure" in answer.headers.get("set-cookie", "").lower(), answer.headers.get("set-cookie")


def private_answers_cached(site: Site) -> None:
    """audit-web. Pages, answers and audio behind the login said nothing of caching (the audio had an ETag): the
    browser kept them on disk, so that on a shared workstation the next person could bring back a closed
    interview's text or audio after a logout."""
    ann, _ = signed_in(site, "ann")
    closed = site.ids["closed"]
    private = [f"/recordings/{closed}", f"/api/recordings/{closed}/segments", f"/history?recording={closed}"]
    private += ["/api/search?q=children", f"/api/recordings/{site.ids['interview']}/audio", "/nowhere"]
    cached = {}
    for path in private:
        answer = ann.get(path)
        if answer.headers.get("cache-control") != "no-store":
            cached[path] = (answer.status_code, answer.headers.get("cache-control"))
    assert not cached, cached


ATTACKS: dict[str, Callable[[Site], Any]] = {
    "audit NUL bytes in a login, a search filter, a correction": nul_bytes,  # before the throttle's limits
    "1 stored script through the audio route": stored_script,
    "2 copied cookie after logout (and a restart)": session_after_logout,
    "2 copied cookie after a new password, a removal": session_after_password_change_and_removal,
    "5 2 MB request body": big_body,
    "5 8,000 evidence spans": many_evidence_spans,
    "5 250 nested parentheses, 30,000-character query": nested_query,
    "5 ids of 2^63": huge_ids,
    "6 /docs, /redoc, /openapi.json without login": open_docs,
    "6 closed recording found through history?segment=": closed_segment_history,
    "audit closed recording's audio through an open one's stale path": closed_audio_at_a_stale_path,
    "6 10 MB interviewee name": huge_metadata,
    "6 unchanged text saved": unchanged_text,
    "audit private pages, answers and audio cached": private_answers_cached,
}
