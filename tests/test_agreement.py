"""Agreement between coders and the collection at a glance: the arithmetic against hand-computed figures
and the libraries, the store's counts (SQLite and PostgreSQL), `ohp agreement` and `ohp report`."""

from __future__ import annotations

import csv
import io
import os
import random
import re
import stat
import warnings
from collections import Counter
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from saving import save_speakers, save_tags, save_transcription
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from pipeline.analysis.agreement import ALL_THEMES, agreement, cohen_kappa, krippendorff_alpha, percent_agreement
from pipeline.analysis.tables import disagreements_csv
from pipeline.cli import app
from pipeline.config import Config
from pipeline.imports import import_codings
from pipeline.records import (
    AudioInfo,
    Coding,
    DecisionCounts,
    Disagreement,
    ImportedCodings,
    Segment,
    SpeakerRecord,
    ThemeSuggestion,
    Transcript,
)
from pipeline.store import Store
from pipeline.web import create_app

from conftest import SQLITE_ONLY
from test_web_api import PASSWORD, client_for

THEMES = ["wages", "housing"]
INFO = AudioInfo(Path("/audio/zhang.wav"), "ab" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 60.0)
TEXTS = [
    "They held back our wages.",
    "We were paid by the piece.",
    "Eight of us slept in one dormitory room.",
    "The boss paid us late every month.",
    "We rented a room near the factory.",
    "Thank you for talking to me.",
]


def record(present: list[int], absent: list[int]) -> dict:
    return {"present": present, "absent": absent}


# ------------------------------------------------------------------------------------------ the math


def test_kappa_and_alpha_of_a_hand_computed_example():
    # Ten units, two coders: both yes on 4, first only on 1, second only on 1, neither on 4.
    # Observed agreement 0.8; each says yes half the time, so chance agreement 0.5: kappa (0.8-0.5)/0.5 = 0.6.
    # Alpha: 20 values, 10 "yes"; 2 disagreeing units give 4 disagreeing pairable values:
    # 1 - (20 - 1) * 4 / (2 * 10 * 10) = 0.62.
    assert cohen_kappa(4, 1, 1, 4) == pytest.approx(0.6)
    histogram = {(2, 2): 4, (2, 1): 2, (2, 0): 4}
    assert krippendorff_alpha(histogram) == pytest.approx(0.62)
    assert percent_agreement(histogram) == pytest.approx(0.8)
    first = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    second = [1, 1, 1, 1, 0, 1, 0, 0, 0, 0]
    assert cohen_kappa_score(first, second) == pytest.approx(0.6)
    assert krippendorff.alpha(reliability_data=[first, second], level_of_measurement="nominal") == pytest.approx(0.62)


def test_alpha_of_three_coders_matches_the_library_on_random_data():
    rng = np.random.default_rng(7)
    data = (rng.random((3, 200)) < 0.3).astype(float)
    data[2, :40] = np.nan  # the third coder did not review the first 40 units
    histogram: dict[tuple[int, int], int] = {}
    for unit in data.T:
        seen = unit[~np.isnan(unit)]
        if len(seen) >= 2:
            key = (len(seen), int(seen.sum()))
            histogram[key] = histogram.get(key, 0) + 1
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert krippendorff_alpha(histogram) == pytest.approx(expected)


def test_undefined_figures_are_none_not_errors():
    assert cohen_kappa(0, 0, 0, 0) is None  # no units
    assert cohen_kappa(5, 0, 0, 0) is None  # all agree, all in one category: chance agreement is 1
    assert cohen_kappa(0, 0, 0, 5) is None
    assert cohen_kappa(3, 0, 0, 2) == pytest.approx(1.0)  # all agree over both categories
    assert krippendorff_alpha({}) is None
    assert krippendorff_alpha({(2, 0): 9}) is None
    assert percent_agreement({}) is None


def test_report_with_one_coder_or_no_overlap():
    one = DecisionCounts(("alice",), {}, {}, {}, {"alice": 4}, {("alice", "wages"): (2, 1, 1)})
    found = agreement(one, THEMES)
    assert [r.units for r in found.themes] == [0, 0, 0] and found.themes[-1].theme == ALL_THEMES
    assert all(r.kappa is None and r.alpha is None and r.percent is None for r in found.themes)
    wages = next(t for t in found.tagger if t.theme == "wages")
    assert (wages.units, wages.tagger, wages.coder_present, wages.both) == (4, 2, 1, 1)
    assert (wages.precision, wages.recall, wages.percent) == (0.5, 1.0, 0.75)
    apart = DecisionCounts(("alice", "bob"), {}, {}, {}, {}, {})
    assert agreement(apart, THEMES).themes[-1].units == 0


# --------------------------------------------------------------------------------------- the store


@pytest.fixture
def coded(store) -> tuple[Store, int]:
    """Six segments; the tagger suggests wages on 0, 1, 3 and housing on 2. alice accepts wages on 0,
    rejects it on 1, accepts housing on 2 and adds it on 4; bob accepts wages on 0, 1, 3, rejects housing
    on 2. Both reviewed segments 0-2: wages both/bob only/neither, housing alice only/neither/neither."""
    segments = [
        Segment(i * 10.0, i * 10.0 + 8.0, t, t, "en", speaker="S1" if i % 2 else "S2") for i, t in enumerate(TEXTS)
    ]
    rid = save_transcription(store, INFO, Transcript("en", 0.99, segments, "faster-whisper", "base"), {}, "k", {})
    speakers = [SpeakerRecord("S1", None, "interviewer"), SpeakerRecord("S2", None, "interviewee")]
    save_speakers(store, rid, speakers, {}, "k", {})
    store.set_metadata(rid, interviewee="张长华", place="东莞")
    ids = [s.id for s in store.segments(rid)]
    found = {ids[0]: ["wages"], ids[1]: ["wages"], ids[2]: ["housing"], ids[3]: ["wages"]}
    suggestions = {sid: [ThemeSuggestion(t, 0.8, ((0, 4),)) for t in themes] for sid, themes in found.items()}
    save_tags(store, rid, suggestions, {}, "t1", {}, "t1")
    notes = {(a.segment_id, a.theme): a.id for a in store.annotations(rid)}
    for coder, segment, theme, status in (
        ("alice", 0, "wages", "accepted"),
        ("alice", 1, "wages", "rejected"),
        ("alice", 2, "housing", "accepted"),
        ("bob", 0, "wages", "accepted"),
        ("bob", 1, "wages", "accepted"),
        ("bob", 2, "housing", "rejected"),
        ("bob", 3, "wages", "accepted"),
    ):
        store.decide(notes[ids[segment], theme], status, coder)
    store.add_annotation(ids[4], "housing", "alice")
    return store, rid


def test_each_coders_own_decision_is_kept(coded):
    store, rid = coded
    own = {(d.segment_id, d.theme, d.coder): d.present for d in store.decisions(rid)}
    ids = [s.id for s in store.segments(rid)]
    # bob's decisions came after alice's: the annotations say bob's, the decisions keep both.
    assert own[ids[1], "wages", "alice"] is False and own[ids[1], "wages", "bob"] is True
    assert own[ids[2], "housing", "alice"] is True and own[ids[2], "housing", "bob"] is False
    assert store.coders() == ["alice", "bob"]
    # Putting a theme back to suggested takes the coder's decision back.
    note = next(a for a in store.annotations(rid) if a.segment_id == ids[3])
    store.decide(note.id, "suggested", "bob")
    assert (ids[3], "wages", "bob") not in {(d.segment_id, d.theme, d.coder) for d in store.decisions(rid)}


def test_agreement_from_the_store(coded):
    store, _ = coded
    found = agreement(store.decision_counts(None, ["alice", "bob"]), THEMES)
    wages, housing, overall = found.themes[0], found.themes[1], found.themes[-1]
    assert (wages.units, wages.agreed_present, wages.agreed_absent, wages.split) == (3, 1, 1, 1)
    assert wages.present_by == {"alice": 1, "bob": 2}
    # po 2/3, alice yes 1/3, bob yes 2/3: pe 4/9, kappa (2/9)/(5/9) = 0.4
    assert wages.kappa == pytest.approx(0.4)
    assert housing.kappa == pytest.approx(0.0)  # po 2/3 = pe 2/3
    # pooled: 6 units, both 1, alice only 1, bob only 1, neither 3: po 4/6, pe 5/9, kappa 0.25
    assert overall.kappa == pytest.approx(0.25)
    assert overall.percent == pytest.approx(4 / 6)
    assert overall.alpha == pytest.approx(
        krippendorff.alpha(reliability_data=[[1, 0, 0, 0, 0, 1], [1, 1, 0, 0, 0, 0]], level_of_measurement="nominal")
    )
    by = {(t.coder, t.theme): t for t in found.tagger}
    # alice reviewed 0, 1, 2, 4; the tagger said wages on 0 and 1 and housing on 2.
    assert (by["alice", "wages"].tagger, by["alice", "wages"].coder_present, by["alice", "wages"].both) == (2, 1, 1)
    assert (by["alice", "housing"].tagger, by["alice", "housing"].coder_present) == (1, 2)
    assert by["alice", "housing"].units == 4


def test_disagreements_list_who_said_what(coded):
    store, _ = coded
    rows = list(store.disagreements(None, ["alice", "bob"]))
    assert [(r.theme, r.decisions) for r in rows] == [
        ("wages", {"alice": False, "bob": True}),
        ("housing", {"alice": True, "bob": False}),
    ]
    assert rows[0].text == TEXTS[1] and rows[0].tagger


def test_imported_codes_count_the_whole_recording_as_reviewed(coded):
    store, rid = coded
    ids = [s.id for s in store.segments(rid)]
    store.import_annotations([(ids[0], "wages", "carol", ())])
    counts = store.decision_counts(None, ["alice", "carol"])
    # carol coded the whole transcript: the segments alice reviewed (0, 1, 2, 4) are shared with her.
    assert counts.shared == {2: 4}
    found = agreement(counts, THEMES)
    assert found.themes[0].present_by == {"alice": 1, "carol": 1}
    three = agreement(store.decision_counts(None, ["alice", "bob", "carol"]), THEMES)
    assert three.themes[-1].kappa is None and three.themes[-1].alpha is not None


def test_a_second_coders_imported_codes_are_theirs(coded):
    store, rid = coded
    ids = [s.id for s in store.segments(rid)]
    imported = ImportedCodings(Path("dana.eaf"), "eaf", {INFO.sha256: [Coding("wages", "dana", 0.0, 8.0)]})
    # alice and bob accepted wages on segment 0 already: dana's code there is hers all the same.
    assert import_codings(imported, store).added == 1
    own = {(d.segment_id, d.theme, d.coder): (d.present, d.via) for d in store.decisions(rid)}
    assert own[ids[0], "wages", "dana"] == (True, "import")
    again = import_codings(imported, store)
    assert (again.added, again.unchanged) == (0, 1)


def test_decisions_follow_a_retranscription(coded):
    store, rid = coded
    moved = [Segment(i * 10.0 + 0.5, i * 10.0 + 8.5, t, t, "en") for i, t in enumerate(TEXTS)]
    save_transcription(store, INFO, Transcript("en", 0.99, moved, "faster-whisper", "base"), {"v": 2}, "k2", {})
    ids = [s.id for s in store.segments(rid)]
    own = {(d.segment_id, d.theme, d.coder): d.present for d in store.decisions(rid)}
    assert own[ids[1], "wages", "alice"] is False and own[ids[1], "wages", "bob"] is True


def test_collection_counts(coded):
    store, rid = coded
    counts = store.collection_counts()
    # Standing themes (not rejected): wages on 0 (accepted), 1 (accepted by bob), 3; housing on 4.
    by_role = counts.frequency["role"]
    assert by_role["interviewee", "wages", "accepted"] == 1  # segment 0 (S2)
    assert by_role["interviewer", "wages", "accepted"] == 2  # segments 1 and 3 (S1)
    assert by_role["interviewee", "housing", "accepted"] == 1  # segment 4
    assert counts.frequency["interviewee"]["张长华", "wages", "accepted"] == 3
    assert counts.frequency["position"]["0", "wages", "accepted"] == 1  # 0 s of 60: first tenth
    assert counts.frequency["position"]["6", "housing", "accepted"] == 1  # 40 s of 60
    assert counts.in_segments["wages", "wages"] == 3
    assert counts.in_turns["wages", "wages"] == 3  # every segment is its own turn (speakers alternate)
    [row] = counts.coverage
    assert (row.segments, row.marked["coded"][0], row.marked["reviewed"][0]) == (6, 4, 5)
    assert counts == store.collection_counts([rid])
    assert store.collection_counts([]).coverage == []


def _recounted(store: Store) -> tuple[dict, dict, dict, list]:
    """The collection's numbers counted the plain way, in Python from the records: what the database's
    GROUP BYs must give (frequency by dimension, co-occurrence in segments and in turns, coverage)."""
    frequency: dict = {name: Counter() for name in ("recording", "interviewee", "place", "role", "position")}
    in_segments: Counter = Counter()
    in_turns: Counter = Counter()
    coverage = []
    for recording in sorted(store.list_recordings(), key=lambda r: (r.path, r.id)):
        roles = {s.label: s.role or "" for s in store.speakers(recording.id)}
        segments = sorted(store.segments(recording.id), key=lambda s: s.start)
        themes = {s.id: {} for s in segments}
        for a in store.annotations(recording.id):
            if a.status != "rejected":
                themes[a.segment_id][a.theme] = a.status
        reviewed = {d.segment_id for d in store.decisions(recording.id)}
        turns: list[set] = []
        for i, segment in enumerate(segments):
            tenth = next((k for k in range(9) if segment.start < recording.duration * (k + 1) / 10), 9)
            keys = {
                "recording": str(recording.id),
                "interviewee": recording.interviewee or "",
                "place": recording.place or "",
                "role": roles.get(segment.speaker or "", ""),
                "position": str(tenth),
            }
            for theme, status in themes[segment.id].items():
                for name, key in keys.items():
                    frequency[name][key, theme, status] += 1
            ordered = sorted(themes[segment.id])
            in_segments.update((a, b) for a in ordered for b in ordered if a <= b)
            if i and segment.speaker is not None and segments[i - 1].speaker == segment.speaker:
                turns[-1] |= set(ordered)
            else:
                turns.append(set(ordered))
        for turn in turns:
            ordered = sorted(turn)
            in_turns.update((a, b) for a in ordered for b in ordered if a <= b)
        marked = {
            "suggested": [s for s in segments if "suggested" in themes[s.id].values()],
            "coded": [s for s in segments if "accepted" in themes[s.id].values()],
            "reviewed": [s for s in segments if s.id in reviewed],
        }
        coverage.append(
            (
                recording.path,
                len(segments),
                {k: (len(v), sum(s.end - s.start for s in v)) for k, v in marked.items()},
                recording.doubtful,
            )
        )
    return {k: dict(v) for k, v in frequency.items()}, dict(in_segments), dict(in_turns), coverage


def test_the_databases_counts_are_the_plain_counts_of_a_random_collection(store):
    rng = random.Random(16)
    themes = ["wages", "housing", "hukou", "schooling"]
    for r in range(3):
        info = AudioInfo(Path(f"/audio/r{r}.wav"), f"{r:02d}" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 300.0)
        speakers, segments, at = ["S1", "S2", None], [], 0.0
        for i in range(40):
            at += rng.choice([2.0, 5.0, 9.0])
            speaker = speakers[0] if rng.random() < 0.5 else rng.choice(speakers)  # runs of one speaker
            segments.append(Segment(at, at + 1.5, f"line {i}", f"line {i}", "en", speaker=speaker))
        rid = save_transcription(store, info, Transcript("en", 0.9, segments, "faster-whisper", "base"), {}, "k", {})
        roles = [SpeakerRecord("S1", None, "interviewer"), SpeakerRecord("S2", None, None)]
        save_speakers(store, rid, roles, {}, "k", {})
        if r:
            store.set_metadata(rid, interviewee=f"person {r % 2}", place="东莞" if r == 1 else None)
        ids = [s.id for s in store.segments(rid)]
        found = {sid: [ThemeSuggestion(t, 0.7, ()) for t in rng.sample(themes, rng.randint(1, 3))] for sid in ids}
        save_tags(store, rid, {sid: f for sid, f in found.items() if rng.random() < 0.6}, {}, "t", {}, "t")
        for a in store.annotations(rid):
            if rng.random() < 0.5:
                store.decide(a.id, rng.choice(["accepted", "rejected"]), rng.choice(["alice", "bob"]))
        rejected = {(a.segment_id, a.theme) for a in store.annotations(rid, status="rejected")}
        added = [(sid, rng.choice(themes)) for sid in rng.sample(ids, 5)]
        # Adding a theme someone rejected is a conflict: carol's themes are the others.
        store.add_annotations([(sid, theme, "carol", ()) for sid, theme in added if (sid, theme) not in rejected])
    counts = store.collection_counts()
    frequency, in_segments, in_turns, coverage = _recounted(store)
    assert counts.frequency == frequency
    assert counts.in_segments == in_segments and counts.in_turns == in_turns
    assert [
        (row.path, row.segments, {k: (n, pytest.approx(sec)) for k, (n, sec) in row.marked.items()}, row.doubtful)
        for row in counts.coverage
    ] == coverage


# ----------------------------------------------------------------------------------------- the CLI

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_ohp_agreement_prints_figures_and_writes_disagreements(coded, db_url, tmp_path):
    out = tmp_path / "disagreements.csv"
    result = invoke("agreement", "--db", db_url, "--coders", "alice,bob", "--disagreements", str(out))
    assert result.exit_code == 0, result.output
    assert re.search(r"Wages\s.*\s3\s.*0\.400", result.stdout)
    assert "(all themes)" in result.stdout and "0.250" in result.stdout, result.stdout
    assert "counts as not there" in " ".join(result.stdout.split())  # the rule, said plainly
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert [(r["theme"], r["there"], r["not there"]) for r in rows] == [
        ("wages", "bob", "alice (rejected)"),
        ("housing", "alice", "bob (rejected)"),
    ]
    refused = invoke("agreement", "--db", db_url, "--coders", "alice,nobody")
    assert refused.exit_code == 2 and "nobody" in refused.output


def test_ohp_agreement_refuses_a_disagreements_file_it_cannot_write_before_the_figures(coded, db_url, tmp_path):
    for where, said in ((tmp_path / "no" / "d.csv", "folder"), (tmp_path, "is a directory")):
        result = invoke("agreement", "--db", db_url, "--disagreements", str(where))
        assert result.exit_code == 2 and said in result.stderr and "Traceback" not in result.output
        assert "Wages" not in result.stdout  # found out first, not after the report


def test_ohp_agreement_leaves_closed_recordings_out(coded, db_url):
    store, rid = coded
    store.set_metadata(rid, consent="closed")
    result = invoke("agreement", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert "nobody has decided" in result.stdout and "left out 1 closed" in result.output


def test_ohp_report_writes_charts_and_csvs(coded, db_url, tmp_path):
    out = tmp_path / "report"
    result = invoke("report", "--db", db_url, "--out", str(out), "--redact", "names")
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    for table in ("themes-by-recording", "themes-by-role", "cooccurrence-turns", "coverage", "agreement"):
        assert {f"{table}.csv", f"{table}.svg", f"{table}.png"} <= names
    assert (out / "coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from xml.etree import ElementTree

    assert ElementTree.parse(out / "themes-by-place.svg").getroot().tag.endswith("svg")
    by_interviewee = list(csv.reader(io.StringIO((out / "themes-by-interviewee.csv").read_text(encoding="utf-8-sig"))))
    # The labels in the codebook's languages.
    assert by_interviewee[0][:3] == ["interviewee", "Family separation / 家人分离", "Left-behind children / 留守儿童"]
    assert "Wages / 工资" in by_interviewee[0] and by_interviewee[1][0] == "interviewee 1"  # redacted
    assert by_interviewee[1][by_interviewee[0].index("Wages / 工资")] == "3"
    page = (out / "index.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    for path in out.glob("*.svg"):
        assert not re.search(r"""(href|src)=["'](https?:)?//""", path.read_text())


def test_ohp_report_with_names_redacted_numbers_the_coders(coded, db_url, tmp_path):
    """The agreement tables named each coder (columns, rows, the title, index.html), though --redact names
    numbers the interviewees: each coder is "coder N", the same in every table, so agreement still reads."""
    out = tmp_path / "report"
    result = invoke("report", "--db", db_url, "--out", str(out), "--redact", "names")
    assert result.exit_code == 0, result.output
    for path in out.iterdir():
        data = path.read_bytes().lower()
        assert b"alice" not in data and b"bob" not in data, path.name
    agreement = next(csv.reader(io.StringIO((out / "agreement.csv").read_text(encoding="utf-8-sig"))))
    assert [column for column in agreement if column.endswith(" says there")] == [
        "coder 1 says there",
        "coder 2 says there",
    ]
    tagger = csv.DictReader(io.StringIO((out / "agreement-tagger.csv").read_text(encoding="utf-8-sig")))
    assert {row["coder"] for row in tagger} == {"coder 1", "coder 2"}
    assert "Agreement between coder 1 and coder 2" in (out / "index.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------ the web


def test_the_pages_are_for_researchers_and_count_what_they_see(coded):
    store, rid = coded
    for name, role in (("vera", "viewer"), ("ann", "annotator"), ("rita", "researcher")):
        store.add_user(name, PASSWORD, role)
    web = create_app(store, Config(secret="test-secret"))
    for name in ("vera", "ann"):
        client, _ = client_for(web, name)
        for path in ("/agreement", "/collection", "/collection/coverage.csv", "/agreement/disagreements.csv"):
            assert client.get(path).status_code == 403, (name, path)
        assert 'href="/agreement"' not in client.get("/").text
    client, _ = client_for(web, "rita")
    assert 'href="/agreement"' in client.get("/").text
    page = client.get("/agreement?coders=alice,bob")
    assert page.status_code == 200 and "<svg" in page.text and "0.400" in page.text
    assert "counts as not there" in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # nothing from elsewhere
    collection = client.get("/collection")
    assert collection.status_code == 200 and collection.text.count("<svg") >= 8
    png = client.get("/collection/themes-by-role.png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    assert "attachment" in png.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(client.get("/collection/coverage.csv").content.decode("utf-8-sig"))))
    assert rows[1][2] == "6"  # segments
    disputed = client.get("/agreement/disagreements.csv?coders=alice,bob").content.decode("utf-8-sig")
    assert len(list(csv.DictReader(io.StringIO(disputed)))) == 2
    assert client.get("/collection/../etc/passwd.csv").status_code == 404
    assert client.get("/collection/nothing.svg").status_code == 404
    assert client.get("/collection/coverage.exe").status_code == 404
    # A closed recording is left out for someone who may not see it (everyone sees it here: researchers
    # see closed recordings), so the figures stay; the policy says who sees what (pipeline.access).
    store.set_metadata(rid, consent="closed")
    assert "0.400" in client.get("/agreement?coders=alice,bob").text


def test_the_disagreements_csv_keeps_formulas_as_text():
    """Theme ids and labels come from a project's codebook and imported codes: a spreadsheet must not run them."""
    formula = '=HYPERLINK("http://evil.example","x")'
    found = [Disagreement(1, formula, "/a/+1.wav", 0.0, 4.0, "@S1", "-text", True, {"=alice": True, "bob": False})]
    text = "".join(disagreements_csv(found, lambda theme: "\t" + theme))
    [_, row] = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert [cell for cell in row if cell.startswith(("=", "+", "-", "@", "\t", "\r"))] == []
    assert row[5:7] == ["'" + formula, "'\t" + formula]  # Excel's own "this is text" mark, the rest as it was


def test_an_agreement_chart_with_every_measure_undefined_draws_without_warnings():
    """No bar to draw (one coder, or all decisions alike): the legend had nothing to show, and `ohp report` printed
    matplotlib's "No artists with labels found to put in legend" on standard error."""
    from pipeline.analysis.charts import render
    from pipeline.analysis.tables import Table

    columns = ("theme", "Cohen's kappa", "Krippendorff's alpha")
    table = Table("agreement", "Agreement", columns, [("wages", None, None)], "agreement")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert render(table, "svg").startswith(b"<?xml")


@SQLITE_ONLY
def test_disagreements_holding_a_closed_recordings_text_are_readable_by_their_owner_only(coded, db_url, tmp_path):
    """The file quotes each segment disputed: a closed interview's, which a researcher asked for, was written with
    the umask's 0644, for anyone on the machine."""
    store, rid = coded
    store.add_user("rita", "long enough", "researcher")
    out = tmp_path / "disagreements.csv"
    previous = os.umask(0o022)
    try:
        assert invoke("agreement", "--db", db_url, "--disagreements", str(out)).exit_code == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o644  # an open recording's, as ohp's other files
        store.set_metadata(rid, consent="closed")
        asked = invoke(
            "agreement", "--db", db_url, "--disagreements", str(out), "--include-restricted", "--user", "rita"
        )
    finally:
        os.umask(previous)
    assert asked.exit_code == 0, asked.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


@SQLITE_ONLY
def test_a_report_counting_a_closed_recording_is_readable_by_its_owner_only(coded, db_url, tmp_path, monkeypatch):
    """Its tables name the closed interview's interviewee and place (a researcher asked for them): they were written
    with the umask's 0644, for anyone on the machine."""
    monkeypatch.setattr("pipeline.analysis.report.render", lambda table, fmt: "")  # the charts: not what is tested
    store, rid = coded
    store.add_user("rita", "long enough", "researcher")
    store.set_metadata(rid, consent="closed")
    out = tmp_path / "report"
    previous = os.umask(0o022)
    try:
        asked = invoke("report", "--db", db_url, "--out", str(out), "--include-restricted", "--user", "rita")
    finally:
        os.umask(previous)
    assert asked.exit_code == 0, asked.output
    assert "张长华" in (out / "themes-by-interviewee.csv").read_text(encoding="utf-8-sig")
    assert {stat.S_IMODE(path.stat().st_mode) for path in out.iterdir()} == {0o600}
