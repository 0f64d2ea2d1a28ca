"""The attacks of issue #15 (tests/attacks.py), each one on FastAPI's test client over SQLite and
PostgreSQL, and the parts of the defences that an attack over HTTP cannot see: the throttle's table and
its waits, sessions across a new app, the store's own limits, `ohp user`."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import attacks
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pipeline.config import Config
from pipeline.errors import InvalidInputError, NotFoundError
from pipeline.search.textindex import QuerySyntaxError, parse_query
from pipeline.store import Store
from pipeline.store.annotations import MAX_EVIDENCE_SPANS
from pipeline.web import auth, create_app


def make_site(store: Store, tmp_path, **settings) -> attacks.Site:
    ids = attacks.prepare(store, tmp_path)
    config = Config(secret="test-secret", home=tmp_path / "home", **settings)
    app = create_app(store, config)
    return attacks.Site(lambda: TestClient(app), ids)


@pytest.fixture
def site(store, tmp_path) -> attacks.Site:
    return make_site(store, tmp_path)


@pytest.fixture
def no_waits(monkeypatch) -> list[float]:
    """The throttle's waits, counted, not sat out."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)  # other logins run meanwhile, as during a real wait

    monkeypatch.setattr(auth, "asyncio", SimpleNamespace(sleep=sleep, to_thread=asyncio.to_thread))
    return waits


def test_every_attack_is_held(site):
    """Each attack on one site (set up once: the attacks leave what they touch as they found it)."""
    given_in = {}
    for name, attack in attacks.ATTACKS.items():
        try:
            attack(site)
        except AssertionError as e:
            given_in[name] = str(e)
    assert not given_in, given_in


def test_sessions_stay_ended_in_a_new_app(store, tmp_path):
    """Logout ends a session for good: the app that restarts over the same database refuses it too."""
    site = make_site(store, tmp_path)
    ann, token = attacks.signed_in(site, "ann")
    copied = {"ohp_session": ann.cookies["ohp_session"]}
    ann.post("/logout", data={"csrf_token": token})
    restarted = TestClient(create_app(store, Config(secret="test-secret", home=tmp_path / "home")))
    restarted.cookies.update(copied)
    assert restarted.get("/api/recordings").status_code == 401


def test_parallel_guesses_count_before_they_wait(store, no_waits):
    """Twenty guesses at once: each counted as it starts, so their waits grow, and past the account's
    limit the rest are refused without checking a password."""
    for name, role in attacks.USERS.items():
        store.add_user(name, attacks.PASSWORD, role)
    checked = []
    check = store.check_password
    store.check_password = lambda name, password: checked.append(password) or check(name, password)
    throttle = auth.Throttle()

    async def guesses():
        tries = [auth.login(store, throttle, "victim", f"guess {n}", "10.0.0.1") for n in range(20)]
        return await asyncio.gather(*tries, return_exceptions=True)

    answers = asyncio.run(guesses())
    assert len(checked) == auth.ACCOUNT_LIMIT
    assert sum(isinstance(a, auth.TooManyFailures) for a in answers) == 20 - auth.ACCOUNT_LIMIT
    assert no_waits == sorted(no_waits) and no_waits[:3] == [0.0, 0.25, 0.5] and max(no_waits) == auth.MAX_WAIT
    # The attacker's own account, from the same address, clears nothing of the victim's.
    assert asyncio.run(auth.login(store, throttle, "mallory", attacks.PASSWORD, "10.0.0.1")) is not None
    with pytest.raises(auth.TooManyFailures):
        asyncio.run(auth.login(store, throttle, "Victim ", "again", "10.0.0.2"))  # the name as compared


def test_the_failure_table_is_bounded_and_expires(monkeypatch):
    throttle = auth.Throttle()
    monkeypatch.setattr(auth, "MAX_ENTRIES", 100)
    for n in range(300):
        throttle.attempt(f"name{n}", f"10.0.{n // 250}.{n % 250}")
    assert len(throttle.failures) == 100
    clock = SimpleNamespace(monotonic=lambda: 10**9)  # much later: every failure has expired
    monkeypatch.setattr(auth, "time", clock)
    assert throttle.attempt("name299", "10.0.1.49") == 0.0
    assert len(throttle.failures) == 2


def test_a_name_longer_than_any_account_is_not_kept(site, no_waits):
    attacks.long_names(site, count=3, size=100_000)
    client = site.new_client()
    app = client.app
    assert all(len(key) < 100 for key in app.state.throttle.failures), list(app.state.throttle.failures)


def test_forwarded_addresses_only_from_trusted_proxies(store, tmp_path, no_waits):
    for name, role in attacks.USERS.items():
        store.add_user(name, attacks.PASSWORD, role)
    for trusted, expected in (((), "client:127.0.0.1"), (("127.0.0.0/8",), "client:203.0.113.9")):
        app = create_app(store, Config(secret="s", home=tmp_path, trusted_proxies=trusted))
        client = TestClient(app, client=("127.0.0.1", 40000))
        site = attacks.Site(lambda client=client: client, {})
        _, answer = attacks.login(site, "vera", "wrong", **{"X-Forwarded-For": "203.0.113.9"})
        assert answer.status_code == 401 and expected in app.state.throttle.failures, list(app.state.throttle.failures)
        https = "secure" in attacks.login(site, "vera", **{"X-Forwarded-Proto": "https"})[1].headers["set-cookie"]
        assert https == bool(trusted)  # Secure where a trusted proxy says the request came by HTTPS


def test_secure_cookies_setting(store, tmp_path):
    site = make_site(store, tmp_path, secure_cookies=True)
    answer = site.new_client().get("/login")  # over plain HTTP, as a TLS proxy in front forwards it
    assert "; secure" in answer.headers["set-cookie"].lower()


def test_accounts_page(site):
    rita, token = attacks.signed_in(site, "rita")
    added = rita.post("/users", data={"name": "Mei", "password": "long enough", "role": "viewer", "csrf_token": token})
    assert added.status_code == 200 and "added Mei" in added.text
    again = rita.post("/users", data={"name": " mei", "password": "long enough", "role": "viewer", "csrf_token": token})
    assert again.status_code == 400 and "taken" in again.text
    slash = rita.post("/users", data={"name": "a/b", "password": "long enough", "role": "viewer", "csrf_token": token})
    assert slash.status_code == 400 and "cannot hold" in slash.text
    assert rita.post("/users/Mei/remove", data={"csrf_token": token}).status_code == 200
    assert rita.post("/users/rita/remove", data={"csrf_token": token}).status_code == 403  # not oneself
    vera, vera_token = attacks.signed_in(site, "vera")
    assert "Add an account" not in vera.get("/users").text
    assert vera.post("/users/ann/password", data={"password": "x" * 9, "csrf_token": vera_token}).status_code == 403
    mine = vera.post(
        "/users/vera/password",
        data={"password": "a new one!", "current_password": attacks.PASSWORD, "csrf_token": vera_token},
    )
    assert mine.url.path == "/login"  # one's own new password ends one's own session too
    assert attacks.login(site, "vera", "a new one!")[1].status_code == 303


def test_ones_own_new_password_needs_the_current_one(site, no_waits):
    """A stolen session must not lock its owner out: the current password, each wrong one a failed login."""
    vera, token = attacks.signed_in(site, "vera")
    no_waits.clear()  # the waits of the guesses below, not of signing in
    new = {"password": "a new one!", "csrf_token": token}
    missing = vera.post("/users/vera/password", data=new)
    assert missing.status_code == 403 and "current password" in missing.text
    wrong = vera.post("/users/vera/password", data=new | {"current_password": "a guess"})
    assert wrong.status_code == 403 and "current password" in wrong.text
    for n in range(auth.ACCOUNT_LIMIT - 1):  # with the page's, the account's limit
        api = vera.put(
            "/api/users/vera/password",
            json={"password": "a new one!", "current_password": f"guess {n}"},
            headers={"X-CSRF-Token": token},
        )
        assert api.status_code == 403
    assert no_waits[:3] == [0.0, 0.25, 0.5]  # slowed down as wrong logins are
    right = {"password": "a new one!", "current_password": attacks.PASSWORD}
    assert vera.put("/api/users/vera/password", json=right, headers={"X-CSRF-Token": token}).status_code == 429
    assert attacks.login(site, "vera")[1].status_code == 429  # the owner's own login waits too, as after guesses
    # A researcher setting another's password needs only the new one (forgotten passwords are reset so).
    rita, rita_token = attacks.signed_in(site, "rita")
    reset = rita.put("/api/users/ann/password", json={"password": "a new one!"}, headers={"X-CSRF-Token": rita_token})
    assert reset.status_code == 200
    assert rita.get("/users").text.count('name="current_password"') == 1  # in her own row's form only


def test_store_limits(store, tmp_path):
    """What the web app refuses, the store refuses too (the CLI and imports reach it without the web)."""
    store.add_user("Anna", "long enough", "annotator")
    for name in ("anna", " Anna ", "ＡＮＮＡ"):
        with pytest.raises(InvalidInputError, match="exists"):
            store.add_user(name, "long enough", "annotator")
    with pytest.raises(InvalidInputError, match="8"):
        store.add_user("bo", "short", "viewer")
    assert store.user("ANNA ").name == "Anna"
    # A name is one segment of the accounts page's addresses (/users/NAME/password): "/" and dot segments
    # would make another path, and the account could not be managed there.
    for name in ("a/b", "/", ".", " .. ", "．．"):
        with pytest.raises(InvalidInputError, match="'/'"):
            store.add_user(name, "long enough", "viewer")
    assert store.add_user("a.b", "long enough", "viewer").name == "a.b"
    ids = attacks.prepare(store, tmp_path)
    with pytest.raises(InvalidInputError, match="interviewee"):
        store.set_metadata(ids["interview"], interviewee="x" * 10_000_000)
    spans = tuple((i % 20, i % 20 + 1) for i in range(MAX_EVIDENCE_SPANS + 1))
    with pytest.raises(InvalidInputError, match="evidence"):
        store.add_annotation(ids["segment"], "wages", "ann", spans)
    store.add_annotation(ids["segment"], "wages", "ann", spans[: MAX_EVIDENCE_SPANS // 2])
    with pytest.raises(InvalidInputError, match="evidence"):  # added up over several additions
        store.add_annotation(ids["segment"], "wages", "ann", tuple((i, i + 2) for i in range(MAX_EVIDENCE_SPANS)))
    segment = store.segments(ids["interview"])[0]
    history = store.history(segment_id=segment.id)
    assert store.correct_text(segment.id, segment.text, "ann", 1) == (segment, 1)
    assert store.history(segment_id=segment.id) == history
    with pytest.raises(NotFoundError):
        store.set_password("nobody", "long enough")


def test_query_limits():
    with pytest.raises(QuerySyntaxError, match="nest"):
        parse_query("(" * 250 + "wages" + ")" * 250)
    assert parse_query("(" * 16 + "wages" + ")" * 16)
    with pytest.raises(QuerySyntaxError, match="characters"):
        parse_query("wages " * 1000)


def test_user_commands(db_url):
    from pipeline.cli import app as cli

    runner = CliRunner()

    def ohp(*args: str, input: str | None = None):
        return runner.invoke(cli, [*args, "--db", db_url], input=input)

    assert ohp("user", "add", "mei", "--role", "annotator", "--password-stdin", input="s3cret pass\n").exit_code == 0
    short = ohp("user", "add", "bo", "--role", "viewer", "--password-stdin", input="x\n")
    assert short.exit_code == 2 and "8" in short.output
    twin = ohp("user", "add", "Mei ", "--role", "viewer", "--password-stdin", input="long enough\n")
    assert twin.exit_code == 2 and "taken" in twin.output
    slash = ohp("user", "add", "mei/ops", "--role", "viewer", "--password-stdin", input="long enough\n")
    assert slash.exit_code == 2 and "'/'" in slash.output
    listed = ohp("user", "list")
    assert listed.exit_code == 0 and "mei" in listed.output and "annotator" in listed.output
    with Store(db_url) as store:
        version = store.user("mei").session_version
    assert ohp("user", "passwd", "MEI", "--password-stdin", input="another one\n").exit_code == 0
    with Store(db_url) as store:
        assert store.check_password("mei", "another one") and store.user("mei").session_version == version + 1
    assert ohp("user", "passwd", "nobody", "--password-stdin", input="another one\n").exit_code == 2
    assert ohp("user", "remove", "mei", "--yes").exit_code == 0
    assert ohp("user", "remove", "mei", "--yes").exit_code == 2
    with Store(db_url) as store:
        assert store.user("mei") is None
