"""The web app in a real headless Chromium (Debian's, driven by Playwright) against a real server:
log in, play from a segment and follow the highlight, review, add a theme from a selection, correct
text and find it, a conflict between two people, and axe-core and the keyboard alone on every page. Screenshots go
to tests/screenshots/ (git ignores it).

Skips without /usr/bin/chromium or Playwright, unless OHP_REQUIRE_BROWSER=1 (then it fails)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from saving import save_tags, save_transcription

from pipeline.config import Config
from pipeline.imports import import_file
from pipeline.records import TRANSCRIPT_FORMAT, AudioInfo, Segment, ThemeSuggestion, Transcript, Word
from pipeline.stages.audio import probe
from pipeline.stages.codebook import load_codebook
from pipeline.stages.doubt import mark_doubt
from pipeline.store import Store
from pipeline.web import create_app

from conftest import corpus_path

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).with_name("screenshots")
AUDIO = "en/k2-fsa_sherpa___static_fun-asr-nano-2025-12-30_noise_en.wav"  # 10.6 s of English speech
PASSWORD = "a long enough password"
SEGMENTS = [
    (0.0, 3.4, "S1", "So what's interesting here is I feel that you know"),
    (3.4, 7.2, "S2", "brands knowing this when people sort of speak to the voice assistance at home"),
    (7.2, 10.5, "S1", "and if you want to be the brand."),
]
CHEN = [  # an interview transcribed by people, imported without its audio
    "采访者：你们的工资是怎么算的？",
    "陈秀兰：我们拿计件工资，老板拖欠了三个月的工资。",
    "采访者：今天天气不错。",
    "陈秀兰：是啊。",
    "采访者：孩子呢？谁在带？",
    "陈秀兰：孩子在老家跟爷爷奶奶，我一年只回去一次。",
    "采访者：住的地方怎么样？",
    "陈秀兰：我们住在厂里的宿舍，八个人一间，很挤。",
]


def _playwright():
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed"
    if reason is None and not CHROMIUM.exists():
        reason = f"no browser at {CHROMIUM} (apt-get install chromium)"
    if reason:
        if os.environ.get("OHP_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (OHP_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A seeded database and a real uvicorn server on a free loopback port; yields (base URL, store, recording id)."""
    sync_playwright = _playwright()
    SHOTS.mkdir(exist_ok=True)
    folder = tmp_path_factory.mktemp("web")
    audio = folder / "interview.wav"
    shutil.copy(corpus_path(AUDIO), audio)
    store = Store(f"sqlite:///{folder / 'ohp.db'}")
    for name, role in (("ann", "annotator"), ("rita", "researcher")):
        store.add_user(name, PASSWORD, role)
    segments = [Segment(a, b, text, text, "en", speaker=speaker) for a, b, speaker, text in SEGMENTS]
    rid = save_transcription(
        store, probe(audio), Transcript("en", 0.99, segments, "faster-whisper", "base"), {}, "k", {}
    )
    store.set_metadata(rid, interviewee="Abbie <b>Claflin</b>", place="Leeds", recorded_on="2024-05-01")
    ids = [s.id for s in store.segments(rid)]
    save_tags(
        store,
        rid,
        {ids[1]: [ThemeSuggestion("working_conditions", 0.7, ((0, 6),)), ThemeSuggestion("housing", 0.6, ((70, 77),))]},
        {},
        "t1",
        {},
        "t1",
    )
    srt = folder / "chen.srt"
    srt.write_text(
        "\n".join(
            f"{i}\n00:00:{i * 4:02d},000 --> 00:00:{i * 4 + 3:02d},500\n{line}\n" for i, line in enumerate(CHEN, 1)
        ),
        encoding="utf-8",
    )
    chen = import_file(srt, store, codebook=load_codebook())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = create_app(store, Config(secret="browser-test"))
    server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield {"url": f"http://127.0.0.1:{port}", "store": store, "rid": rid, "chen": chen, "browser": browser}
        browser.close()
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


def logged_in(site, name: str, shot: str | None = None):
    # bypass_csp: the page's CSP forbids eval, which wait_for_function uses
    context = site["browser"].new_context(viewport={"width": 1200, "height": 800}, bypass_csp=True)
    page = context.new_page()
    page.goto(site["url"] + f"/recordings/{site['rid']}")
    assert "/login" in page.url
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    if shot:
        page.screenshot(path=SHOTS / shot)
    page.click("button[type=submit]")
    page.wait_for_selector(".segment")
    # The segments are in the document before the page's script has run: a click on Edit before then would do
    # nothing (it timed out under a load of 5). The script is in the page, so it has run by the load event.
    page.wait_for_load_state("load")
    return page


def segment(page, index: int):
    return page.locator(".segment").nth(index)


def test_play_from_a_segment_and_the_highlight_follows(site):
    page = logged_in(site, "ann", "login.png")
    assert page.locator("h1").inner_text() == "interview.wav"
    assert "Abbie <b>Claflin</b>" in page.locator(".meta").inner_text()  # shown as text, not markup
    assert "Keyboard shortcuts" in page.content()
    segment(page, 1).locator(".clock").click()
    page.wait_for_function("document.querySelector('.segment.playing') && !document.getElementById('audio').paused")
    assert segment(page, 1).get_attribute("class").split().count("playing") == 1
    # 3.8 s later the third segment is playing, and highlighted instead
    page.wait_for_function("document.querySelectorAll('.segment')[2].classList.contains('playing')", timeout=10_000)
    assert not segment(page, 1).evaluate("e => e.classList.contains('playing')")
    page.screenshot(path=SHOTS / "recording.png", full_page=True)
    page.keyboard.press("Space")  # pause
    page.wait_for_function("document.getElementById('audio').paused")
    page.goto(site["url"] + "/")
    page.screenshot(path=SHOTS / "recordings.png", full_page=True)
    page.context.close()


def test_accept_and_reject_suggestions(site):
    page = logged_in(site, "ann")
    page.goto(site["url"] + f"/recordings/{site['rid']}/review")
    themes = page.locator(".theme")
    assert themes.count() == 2 and page.locator("mark").count() == 2  # evidence marked
    themes.nth(0).locator("button.reject").click()
    themes.nth(1).locator("button.accept").click()
    page.wait_for_function("document.getElementById('decided').textContent === '2'")
    page.screenshot(path=SHOTS / "review.png", full_page=True)
    decided = {a.theme: (a.status, a.updated_by) for a in site["store"].annotations(site["rid"])}
    assert decided == {"housing": ("rejected", "ann"), "working_conditions": ("accepted", "ann")}
    page.context.close()


def test_add_a_theme_from_a_selection(site):
    page = logged_in(site, "ann")
    text = segment(page, 2).locator(".text")
    # Select "the brand" as a person would, by dragging over it.
    box = text.bounding_box()
    page.evaluate(
        """el => {
        const node = el.firstChild, range = document.createRange();
        range.setStart(node, node.textContent.indexOf('the brand'));
        range.setEnd(node, node.textContent.indexOf('the brand') + 'the brand'.length);
        const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
    }""",
        text.element_handle(),
    )
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
    page.mouse.up()
    page.wait_for_selector("#add-theme:not([hidden])")
    assert page.locator("#selected").inner_text() == "the brand"
    page.select_option("#add-theme select", "working_conditions")
    # The segment may hold an accepted theme already (another test's decision): wait for one more, the new one.
    accepted = segment(page, 2).locator(".theme.accepted").count()
    page.click("#add-theme button[type=submit]")
    page.wait_for_function(
        f"document.querySelectorAll('.segment')[2].querySelectorAll('.theme.accepted').length > {accepted}"
    )
    page.screenshot(path=SHOTS / "add-theme.png", full_page=True)
    [added] = [
        a
        for a in site["store"].annotations(site["rid"])
        if a.segment_id == int(segment(page, 2).get_attribute("data-id"))
    ]
    start, end = added.evidence[0]
    assert (added.theme, added.source, SEGMENTS[2][3][start:end]) == ("working_conditions", "ann", "the brand")
    page.context.close()


def test_correct_text_and_find_it(site):
    page = logged_in(site, "ann")
    segment(page, 0).locator("button.edit").click()
    page.fill(".editor textarea", "So what's interesting here is I feel that you know kumquats")
    page.click(".editor button:text('Save')")
    page.wait_for_function("!document.querySelector('.editor')")
    assert "kumquats" in segment(page, 0).locator(".text").inner_text()
    page.goto(site["url"] + "/search?q=kumquats")
    page.screenshot(path=SHOTS / "search.png", full_page=True)
    page.click(".hits a")
    page.wait_for_selector(".segment.playing")
    assert "?t=0.0" in page.url and "kumquats" in page.locator(".segment.playing .text").inner_text()
    page.goto(site["url"] + f"/history?recording={site['rid']}")
    assert "kumquats" in page.locator("table.history").inner_text()
    page.screenshot(path=SHOTS / "history.png", full_page=True)
    page.context.close()


def test_two_people_editing_one_segment_see_a_conflict(site):
    ann, rita = logged_in(site, "ann"), logged_in(site, "rita")
    for page in (ann, rita):
        segment(page, 1).locator("button.edit").click()
    ann.fill(".editor textarea", "brands know this when people speak to voice assistants at home")
    ann.click(".editor button:text('Save')")
    ann.wait_for_function("!document.querySelector('.editor')")
    rita.fill(".editor textarea", "brands knowing this, when people speak to the voice assistant at home")
    rita.click(".editor button:text('Save')")
    conflict = rita.locator(".conflict")
    conflict.wait_for()
    assert "ann saved this segment first" in conflict.inner_text()
    assert "brands know this when people speak to voice assistants at home" in conflict.inner_text()
    rita.screenshot(path=SHOTS / "conflict.png", full_page=True)
    [now] = [s for s in site["store"].segments(site["rid"]) if s.start == SEGMENTS[1][0]]
    assert now.text == "brands know this when people speak to voice assistants at home"  # not overwritten
    for page in (ann, rita):
        page.context.close()


def test_a_researcher_closes_a_recording_and_a_viewer_no_longer_sees_it(site):
    page = logged_in(site, "rita")
    page.click("details.details summary")
    page.select_option("select[name=consent]", "closed")
    page.fill("input[name=release_on]", "2040-01-01")
    page.click("details.details button[type=submit]")
    page.wait_for_selector("h1 .consent.closed")
    assert page.locator("h1 .consent").inner_text() == "closed until 2040-01-01"
    page.click("details.details summary")
    page.screenshot(path=SHOTS / "consent.png", full_page=True)
    page.context.close()
    site["store"].add_user("vic", PASSWORD, "viewer")
    viewer = site["browser"].new_context(viewport={"width": 1200, "height": 800}).new_page()
    viewer.goto(site["url"] + "/login")
    viewer.fill("input[name=name]", "vic")
    viewer.fill("input[name=password]", PASSWORD)
    viewer.click("button[type=submit]")
    viewer.wait_for_selector("table.recordings")
    assert "interview.wav" not in viewer.content()
    assert viewer.goto(site["url"] + f"/recordings/{site['rid']}").status == 404
    viewer.context.close()
    site["store"].set_metadata(site["rid"], consent="open", release_on="")


def doubtful_recording(site, name: str, mark: int) -> int:
    """A copy of the recording's audio, whose words the doubt stage marked: "interesting" and "feel" in the
    first segment, "brand." in the last; its id. The copy's last byte (of its last sample) is changed by `mark`,
    so that it is a recording of its own (a sha256 of its own) whose audio the app serves as its."""
    store = site["store"]
    audio = Path(store.recording(site["rid"]).path)
    copy = audio.with_name(name)
    data = bytearray(audio.read_bytes())
    data[-1] ^= mark
    copy.write_bytes(data)
    pieces = [
        (0.0, 3.4, "So what's interesting here is I feel that you know", {"interesting": 0.2, "feel": 0.2}),
        (3.4, 7.2, "brands knowing this when people sort of speak", {}),
        (7.2, 10.5, "and if you want to be the brand.", {"brand.": 0.05}),
    ]
    segments = []
    for start, end, text, unsure in pieces:
        said = text.split()
        step = (end - start) / len(said)
        words = [Word(start + i * step, start + (i + 1) * step, w, unsure.get(w, 0.95)) for i, w in enumerate(said)]
        segments.append(Segment(start, end, text, text, "en", words))
    transcript = mark_doubt(Transcript("en", 0.6, segments, "faster-whisper", "base"))
    return save_transcription(store, probe(copy), transcript, {}, "k", {})


def test_doubtful_words_are_underlined_and_d_plays_each_from_a_little_before(site):
    rid = doubtful_recording(site, "doubtful.wav", 1)
    page = logged_in(site, "ann")
    page.goto(site["url"] + f"/recordings/{rid}")
    underlined = page.locator("u.doubtful")
    assert underlined.all_inner_texts() == ["interesting", "feel", "brand."]
    assert "Likely poor: language unsure (en at 60%)" in page.locator(".warnings").inner_text()
    page.keyboard.press("d")  # the first passage, from 1.5 s before it (the recording's start here)
    page.wait_for_function("document.querySelector('u.doubtful.current')")
    assert underlined.nth(0).get_attribute("class") == "doubtful current"
    page.keyboard.press("d")
    page.keyboard.press("d")  # "brand." starts at 9.64 s: played from 8.14 s
    page.wait_for_function("document.querySelectorAll('u.doubtful')[2].classList.contains('current')")
    played_from = page.evaluate("document.getElementById('audio').currentTime")
    assert 8.1 <= played_from < 9.64, played_from
    page.wait_for_function("document.querySelectorAll('.segment')[2].classList.contains('playing')", timeout=10_000)
    page.screenshot(path=SHOTS / "doubtful.png", full_page=True)
    page.keyboard.press("Space")
    # The queue by risk: the segment with the likeliest wrong passage ("brand.", 0.05) first.
    page.goto(site["url"] + f"/recordings/{rid}/doubtful")
    assert page.locator(".segment .text").all_inner_texts()[0] == "and if you want to be the brand."
    assert page.locator(".segment").count() == 2
    page.screenshot(path=SHOTS / "doubtful-first.png", full_page=True)
    page.goto(site["url"] + "/?sort=doubtful&desc=true")
    first = page.locator("table.recordings tbody tr").first
    assert "doubtful.wav" in first.inner_text() and "⚠" in first.inner_text()
    page.screenshot(path=SHOTS / "recordings-by-doubt.png", full_page=True)
    page.goto(site["url"] + "/search?q=brand&doubtful=true")
    assert page.locator(".hits li").count() == 1 and "doubtful.wav" in page.locator(".hits").inner_text()


def test_once_a_doubtful_segment_is_corrected_d_goes_on_to_the_next_passage(site):
    """d went on through the passages the page had at its load: after a correction saved in place took a
    segment's underlines away, it played them still, from nowhere on the page. And a save that changed nothing
    took the underlines away too, where the words stayed doubtful (in the queue, the list, search)."""
    rid = doubtful_recording(site, "corrected.wav", 2)
    page = logged_in(site, "ann")
    page.goto(site["url"] + f"/recordings/{rid}")
    page.wait_for_load_state("load")
    page.keyboard.press("d")  # "interesting", in the first segment: the one e edits
    page.wait_for_function("document.querySelector('u.doubtful.current')")
    # Saved as it was, the text changes nothing (no new version): its words stay doubtful, and underlined.
    page.keyboard.press("e")
    page.click(".editor button:text('Save')")
    page.wait_for_function("!document.querySelector('.segment .editor')")
    assert page.locator("u.doubtful").all_inner_texts() == ["interesting", "feel", "brand."]
    page.keyboard.press("e")
    page.fill(".editor textarea", "So what's interesting here is I think that you know")
    page.click(".editor button:text('Save')")
    page.wait_for_function("!document.querySelector('.segment .editor')")
    assert page.locator("u.doubtful").all_inner_texts() == ["brand."]
    page.keyboard.press("d")  # not "feel", corrected away: "brand."
    page.wait_for_function("document.querySelector('u.doubtful.current')")
    assert page.locator("u.doubtful.current").inner_text() == "brand."
    assert "playing" in (segment(page, 2).get_attribute("class") or "")
    page.keyboard.press("Space")


# --- what annotators meet: speakers, theme labels and colours, context, a page without audio ---------


def test_speakers_show_their_names_and_roles_and_renames_are_in_the_history(site):
    store, rid = site["store"], site["rid"]
    store.rename_speaker(rid, "S1", "Mei Lin", "rita")
    store.set_role(rid, "S1", "interviewer", "rita")
    store.set_role(rid, "S2", "interviewee", "rita")
    page = logged_in(site, "ann")
    assert page.locator(".turn .speaker").all_inner_texts()[:2] == [
        "Mei Lin (interviewer) 00:00:00",
        "S2 (interviewee) 00:00:03",
    ]
    page.goto(site["url"] + f"/recordings/{rid}/review")
    assert "S2 (interviewee)" in page.locator(".turn .speaker").all_inner_texts()[1]
    page.goto(site["url"] + "/search?q=brand")
    assert page.locator(".hits .speaker").all_inner_texts()[0] == "Mei Lin (interviewer):"
    page.goto(site["url"] + f"/history?recording={rid}")
    rows = [row.locator("td").all_inner_texts() for row in page.locator("table.history tbody tr").all()]
    changes = {(r[2], r[3], r[4]) for r in rows}
    assert ("renamed speaker S1", "S1", "Mei Lin") in changes
    assert ("role speaker S1", "Mei Lin", "Mei Lin (interviewer)") in changes
    assert ("role speaker S2", "S2", "S2 (interviewee)") in changes
    page.screenshot(path=SHOTS / "history-speakers.png", full_page=True)
    page.context.close()


def test_a_transcript_without_audio_shows_labels_colours_and_no_player(site):
    page = logged_in(site, "ann")
    page.goto(site["url"] + f"/recordings/{site['chen']}")
    page.wait_for_selector(".segment")
    assert page.locator("audio").count() == 0 and page.locator(".no-audio").is_visible()
    assert page.locator(".keys li").first.is_visible()  # the shortcuts are on the page, not folded away
    assert page.locator(".turn .speaker").first.inner_text().startswith("采访者 (interviewer)")
    legend = page.locator(".legend li").all_inner_texts()
    assert "Wages / 工资" in legend and "Housing / 住房" in legend
    # Each theme's evidence in its own colour, the legend's
    colours = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('.legend li')].map(li => [li.dataset.theme,"
        " getComputedStyle(li.querySelector('.swatch')).backgroundColor]))"
    )
    marks = page.evaluate(
        "() => [...document.querySelectorAll('mark')].map(m => [m.title, getComputedStyle(m).backgroundColor])"
    )
    assert len(set(colours.values())) == len(colours) >= 2
    assert {colour for _, colour in marks} == set(colours.values())
    assert ["Wages / 工资", colours["wages"]] in marks
    assert page.locator(".segment .theme .name").first.inner_text() == "Wages / 工资"
    font = page.evaluate("getComputedStyle(document.querySelector('.segment .text')).fontFamily")
    assert "Noto Sans CJK SC" in font and "WenQuanYi Micro Hei" in font
    page.screenshot(path=SHOTS / "no-audio-chinese.png", full_page=True)
    # Without audio a click or j still moves through the segments.
    page.locator(".segment").nth(1).locator(".clock").click()
    page.keyboard.press("j")
    assert "playing" in page.locator(".segment").nth(2).get_attribute("class")
    # The status line is not there while empty; shown, it covers nothing at the bottom.
    assert not page.locator("#message").is_visible()
    page.locator(".segment .theme button.accept").first.click()
    page.wait_for_function("document.getElementById('message').textContent.includes('accepted')")
    assert page.locator("#message").inner_text() == "Wages / 工资: accepted"
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    last = page.locator(".segment").last.bounding_box()
    bar = page.locator("#message").bounding_box()
    assert last["y"] + last["height"] <= bar["y"]
    page.screenshot(path=SHOTS / "no-audio-chinese-bottom.png")
    page.context.close()


def test_review_shows_the_question_before_and_labels_to_add(site):
    page = logged_in(site, "ann")
    page.goto(site["url"] + f"/recordings/{site['chen']}/review")
    page.wait_for_selector(".segment")
    # Each suggestion with the segment before it (the question) and after it; the rest left out, marked.
    shown = page.evaluate(
        "() => [...document.querySelectorAll('.segment, .gap')].map(e => e.classList.contains('gap') ? '…' :"
        " (e.classList.contains('context') ? 'context: ' : '') + e.querySelector('.text').textContent)"
    )
    assert shown[1:5] == [
        "我们拿计件工资，老板拖欠了三个月的工资。",
        "context: 今天天气不错。",
        "…",
        "context: 孩子呢？谁在带？",
    ]
    assert "是啊。" not in str(shown)
    options = page.locator("#add-theme select option").all_inner_texts()
    assert "Left-behind children / 留守儿童" in options
    assert page.locator("#add-theme select option").first.get_attribute("value") == "family_separation"
    page.screenshot(path=SHOTS / "review-context.png", full_page=True)
    page.goto(site["url"] + "/search?q=工资")
    hit = page.locator(".hits li").first.inner_text()
    assert "陈秀兰:" in hit and "[Wages / 工资]" in hit
    assert "Wages / 工资" in page.locator("select[name=theme]").inner_text()
    page.screenshot(path=SHOTS / "search-chinese.png", full_page=True)
    page.context.close()


def test_the_collections_charts_draw_under_the_pages_content_security_policy(site):
    """The charts are SVG in the page, as matplotlib writes it: inline style attributes, a <style> element and
    each heatmap's cells a data: PNG, all of which the page's CSP (default-src 'self') refused, so a researcher
    saw black shapes and no heatmap. Nothing in them may need an exception to the policy."""
    context = site["browser"].new_context(viewport={"width": 1200, "height": 800})  # the CSP enforced
    page = context.new_page()
    refused = []
    page.on("console", lambda message: refused.append(message.text) if "Content Security" in message.text else None)
    page.goto(site["url"] + "/login")
    page.fill("input[name=name]", "rita")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("table.recordings")
    page.goto(site["url"] + "/collection")
    page.wait_for_load_state("load")
    assert page.locator(".figure svg").count() >= 8
    page.screenshot(path=SHOTS / "collection.png", full_page=True)
    assert not refused, sorted({message[:80] for message in refused})
    # The heatmap's cells are drawn: the counts' colours, not only the axes.
    fills = page.evaluate(
        "() => [...document.querySelectorAll('#themes-by-recording svg *')].map(e => getComputedStyle(e).fill)"
    )
    assert any(fill.startswith("rgb(8, ") or fill.startswith("rgb(247, ") for fill in fills), set(fills)
    context.close()


def test_a_theme_added_from_a_selection_after_a_character_beyond_the_bmp_has_its_words_as_evidence(site):
    """The page counted a selection's offsets in UTF-16 units, the server in characters: in a name written with a
    character outside the Basic Multilingual Plane (𠮷, common in Chinese names), every character after it was one
    off, so a theme added on 东莞 had 莞， as its evidence (and one at the text's end was refused as outside it)."""
    store = site["store"]
    info = AudioInfo(Path("/nowhere/ji.srt"), "5e" * 32, 100, f"{TRANSCRIPT_FORMAT}srt", "", 0, 0, 4.0)
    text = "𠮷先生在东莞打工。"
    transcript = Transcript("zh", 1.0, [Segment(0.0, 4.0, text, text, "zh")], "import", "srt")
    rid = save_transcription(store, info, transcript, {}, "i", {})
    page = logged_in(site, "ann")
    page.goto(site["url"] + f"/recordings/{rid}")
    text_element = page.locator(".segment .text").first
    page.evaluate(
        """el => {
        const node = el.firstChild, range = document.createRange();
        range.setStart(node, node.textContent.indexOf('东莞'));
        range.setEnd(node, node.textContent.indexOf('东莞') + 2);
        const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
        document.dispatchEvent(new MouseEvent('mouseup'));
    }""",
        text_element.element_handle(),
    )
    page.wait_for_selector("#add-theme:not([hidden])")
    page.select_option("#add-theme select", "working_conditions")
    page.click("#add-theme button[type=submit]")
    page.wait_for_selector(".segment .theme.accepted")
    [added] = store.annotations(rid)
    assert [text[start:end] for start, end in added.evidence] == ["东莞"]
    assert page.locator(".segment .text mark").inner_text() == "东莞"
    page.context.close()


# --- accessibility: axe-core on every page, and the keyboard alone ------------------------------------------------

WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_failures(page) -> list[str]:
    """axe-core's serious and critical violations of the WCAG 2.1 A and AA rules on the page as it is now, each as
    'rule: the elements'. axe-playwright-python brings axe-core's script with it (no download when it runs)."""
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        if os.environ.get("OHP_REQUIRE_BROWSER") == "1":
            pytest.fail("axe-playwright-python is not installed (OHP_REQUIRE_BROWSER=1)")
        pytest.skip("axe-playwright-python is not installed")
    found = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_AA}}).response["violations"]
    return [f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in found if v["impact"] in ("serious", "critical")]


def test_every_page_passes_axe_and_a_recording_is_reviewed_from_the_keyboard_alone(site):
    """axe found nothing on the pages as they load, but the keyboard's paths had holes: Space on the focused
    "Details and consent" or a button played the audio instead of pressing it; the editor's text box and the add-theme
    list had no names; closing the editor dropped the focus to the page's start; j, k and d moved a highlight a screen
    reader never heard of; a theme could be added with the mouse only."""
    rid = doubtful_recording(site, "keyboard.wav", 3)
    page = site["browser"].new_context(viewport={"width": 1200, "height": 800}, bypass_csp=True).new_page()
    failures = {}
    page.goto(site["url"] + "/login")
    failures["login"] = axe_failures(page)
    page.fill("input[name=name]", "rita")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("table.recordings")
    for url in (
        "/",
        f"/recordings/{site['rid']}/review",
        f"/recordings/{site['chen']}",
        "/search?q=工资",
        f"/history?recording={site['rid']}",
        "/vocabulary",
        "/users",
        f"/recordings/{rid}",  # the keyboard's page, below
    ):
        page.goto(site["url"] + url)
        page.wait_for_load_state("load")
        failures[url] = axe_failures(page)

    def focused() -> str:
        return page.evaluate("document.activeElement.id || document.activeElement.tagName")

    first = segment(page, 0).get_attribute("id")
    page.keyboard.press("d")  # the first doubtful passage: its segment has the focus, and the status line says it
    page.wait_for_function("document.querySelector('u.doubtful.current')")
    assert focused() == first
    assert page.locator("#message").inner_text() == "doubtful: “interesting” at 00:00:00"
    page.keyboard.press("e")
    assert focused() == "TEXTAREA"
    failures["editor"] = axe_failures(page)
    page.keyboard.press("Escape")
    assert focused() == first and not page.locator(".editor").count()
    page.keyboard.press("j")
    assert focused() == segment(page, 1).get_attribute("id")
    # t: a theme on the segment's text, chosen and added without the mouse; the focus comes back to the segment.
    page.keyboard.press("t")
    said = "brands knowing this when people sort of speak"
    assert focused() == "SELECT" and page.locator("#selected").inner_text() == said
    failures["add theme"] = axe_failures(page)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("#add-theme[hidden]", state="attached")
    assert focused() == segment(page, 1).get_attribute("id")
    [added] = site["store"].annotations(rid)
    assert added.evidence == ((0, len(said)),)
    page.keyboard.press("Space")  # pause: the focus is on the segment, not on a control
    page.click("#shortcuts")  # turned off (WCAG 2.1.4), j does nothing, on this page and the next
    page.reload()
    page.wait_for_load_state("load")
    page.keyboard.press("j")
    assert focused() == "BODY" and not page.locator(".segment.playing").count()
    page.click("#shortcuts")
    # Space on a focused control presses it: the Details open, the audio stays paused.
    page.focus("details.details summary")
    page.keyboard.press("Space")
    assert page.locator("details.details").evaluate("d => d.open")
    failures["details and consent"] = axe_failures(page)
    assert page.evaluate("document.getElementById('audio').paused")
    # Chinese is marked as Chinese, for a screen reader to read it so: the transcript, and a search's snippets.
    page.goto(site["url"] + "/search?q=工资")
    assert page.locator(".hits .snippet").first.get_attribute("lang") == "zh"
    page.goto(site["url"] + f"/recordings/{site['chen']}")
    assert page.locator(".segment .text").first.get_attribute("lang") == "zh"
    page.context.close()
    assert not any(failures.values()), {where: found for where, found in failures.items() if found}
