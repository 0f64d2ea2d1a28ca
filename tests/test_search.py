"""Search through the store, on SQLite and (with OHP_TEST_POSTGRES_URL) PostgreSQL: the same queries
find the same segments; and `ohp search` / `ohp import` on the command line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from alembic import command
from saving import save_speakers, save_tags, save_transcription
from sqlalchemy import Text, create_engine, literal_column, select, text
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.records import AudioInfo, SearchFilters, Segment, SpeakerRecord, ThemeSuggestion, Transcript
from pipeline.search.textindex import parse_query
from pipeline.store import Store, alembic_config, database
from pipeline.store.database import folded
from pipeline.utils import fold_case

from conftest import EVERY_COLLATION, POSTGRESQL, POSTGRESQL_C

ZHANG = [  # (text, original as the recogniser wrote it, speaker)
    ("你们的工资是怎么算的？", "你們的工資是怎麼算的？", "S1"),
    ("我们拿工资是计件的，老板拖欠了三个月。", "我們拿工資是計件的，老闆拖欠了三個月。", "S2"),
    ("户口还在老家，孩子在这边上不了学。", "戶口還在老家，孩子在這邊上不了學。", "S2"),
]
LI = [
    ("They held back our wages for two months.", "They held back our wages for two months.", "S2"),
    ("I was waged by the hour, the wage was low.", "I was waged by the hour, the wage was low.", "S2"),
    ("Where is your household registration?", "Where is your household registration?", "S1"),
]


def info(name: str, sha: str) -> AudioInfo:
    return AudioInfo(Path(f"/audio/{name}"), sha * 32, 1000, "wav", "pcm_s16le", 16000, 1, 30.0)


def save(store: Store, name: str, sha: str, lines, language: str) -> int:
    segments = [Segment(i * 10.0, i * 10.0 + 8.0, t, o, language, speaker=sp) for i, (t, o, sp) in enumerate(lines)]
    return save_transcription(
        store, info(name, sha), Transcript(language, 1.0, segments, "faster-whisper", "base"), {}, "k", {}
    )


@pytest.fixture
def corpus(store):
    zhang = save(store, "zhang.wav", "aa", ZHANG, "zh")
    li = save(store, "li.wav", "bb", LI, "en")
    store.set_metadata(zhang, interviewee="Zhang Changhua", place="Dongguan", recorded_on="2019-01-20")
    store.set_metadata(li, interviewee="Li Mei", place="Shenzhen", recorded_on="2021-06-02")
    seg = {s.text: s.id for r in (zhang, li) for s in store.segments(r)}
    save_tags(store, zhang, {seg[ZHANG[1][0]]: [ThemeSuggestion("wages", 0.9, ((2, 4),))]}, {}, "t", {}, "k")
    save_tags(store, li, {seg[LI[0][0]]: [ThemeSuggestion("wages", 0.9, ((19, 24),))]}, {}, "t", {}, "k")
    return store, zhang, li


def texts(store: Store, q: str, filters: SearchFilters = SearchFilters()) -> list[str]:
    return sorted(h.text for h in store.search(parse_query(q), filters).hits)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("工资", [ZHANG[0][0], ZHANG[1][0]]),  # inside 拿工资, and in the traditional original too
        ("工資", [ZHANG[0][0], ZHANG[1][0]]),
        ("戶口", [ZHANG[2][0]]),
        ("户口", [ZHANG[2][0]]),
        ("老家", [ZHANG[2][0]]),
        ("wage", [LI[0][0], LI[1][0]]),
        ("wages", [LI[0][0], LI[1][0]]),
        ('"held back"', [LI[0][0]]),
        ('"back held"', []),
        ("工资 AND 拖欠", [ZHANG[1][0]]),
        ("工资 NOT 拖欠", [ZHANG[0][0]]),
        ("拖欠 OR registration", [ZHANG[1][0], LI[2][0]]),
        ("regist*", [LI[2][0]]),
        ("household -registration", []),
    ],
)
def test_queries_find_the_same_segments_on_every_database(corpus, query, expected):
    store, _, _ = corpus
    assert texts(store, query) == sorted(expected)


def test_filters(corpus):
    store, _, li = corpus
    assert texts(store, "工资 OR wages", SearchFilters(themes=("wages",))) == sorted([ZHANG[1][0], LI[0][0]])
    assert texts(store, "工资 OR wages", SearchFilters(themes=("wages",), theme_status=("accepted",))) == []
    assert texts(store, "工资", SearchFilters(speaker="S1")) == [ZHANG[0][0]]
    assert texts(store, "工资 OR wages", SearchFilters(recording=li)) == sorted([LI[0][0], LI[1][0]])
    assert texts(store, "工资 OR wages", SearchFilters(language="en")) == sorted([LI[0][0], LI[1][0]])
    assert texts(store, "工资 OR wages", SearchFilters(interviewee="zhang")) == sorted([ZHANG[0][0], ZHANG[1][0]])
    assert texts(store, "工资 OR wages", SearchFilters(place="shenzhen")) == sorted([LI[0][0], LI[1][0]])
    assert texts(store, "工资 OR wages", SearchFilters(date_from="2020-01-01")) == sorted([LI[0][0], LI[1][0]])
    assert texts(store, "工资 OR wages", SearchFilters(date_to="2020-01-01")) == sorted([ZHANG[0][0], ZHANG[1][0]])


def test_hits_carry_their_place_in_the_audio_and_themes(corpus):
    store, zhang, _ = corpus
    results = store.search(parse_query("拖欠"))
    assert results.total == 1
    [hit] = results.hits
    assert (hit.recording_id, hit.recording_path, hit.start, hit.end, hit.speaker, hit.themes) == (
        zhang,
        "/audio/zhang.wav",
        10.0,
        18.0,
        "S2",
        ("wages",),
    )


def test_ranking_and_ties(corpus):
    store, _, _ = corpus
    save(store, "wang.wav", "cc", [("工资工资，又是工资。", "工资工资，又是工资。", None)], "zh")
    hits = store.search(parse_query("工资")).hits
    assert hits[0].text == "工资工资，又是工资。"  # the most relevant first
    assert [h.rank for h in hits] == sorted((h.rank for h in hits), reverse=True)
    assert store.search(parse_query("工资"), limit=1).total == 3


def test_the_index_follows_retranscription(corpus):
    store, _, _ = corpus
    save(store, "zhang.wav", "aa", [("现在的收入还可以。", "現在的收入還可以。", "S2")], "zh")
    assert texts(store, "拖欠") == []
    assert texts(store, "收入") == ["现在的收入还可以。"]
    assert texts(store, "收入", SearchFilters(language="zh")) == ["现在的收入还可以。"]


# Names in several scripts, as an interview holds them: each found by what it is, whatever is beside it.
MARKED = [  # (text, original as the recogniser wrote it, speaker)
    ("Élodie Жёлкин из Йошкар-Олы", "Élodie Жёлкин из Йошкар-Олы", "S1"),
    ("Жёлкин", "Жёлкин", "S2"),
    ("Η Αθήνα, ο Οδυσσέας", "Η Αθήνα, ο Οδυσσέας", "S2"),
    ("В Москве платили мало.", "В Москве платили мало.", "S2"),
    ("They held back our wages in Zhytomyr.", "They held back our wages in Zhytomyr.", "S1"),
    ("工资很低", "工資很低", "S2"),
]
MARKED_QUERIES = [
    ("Жёлкин", [MARKED[0][0], MARKED[1][0]]),
    ("Желкин", [MARKED[0][0], MARKED[1][0]]),
    ("Йошкар", [MARKED[0][0]]),
    ("Иошкар", []),
    ("Αθήνα", [MARKED[2][0]]),
    ("Οδυσσεας", [MARKED[2][0]]),
    ("Москве", [MARKED[3][0]]),
    ("elodie", [MARKED[0][0]]),
]


def test_a_marked_name_is_found_whatever_else_the_segment_holds(store):
    """An accented Latin letter in a segment made the index drop every mark of it: "Élodie Жёлкин" was indexed as
    желкин, and a search for Жёлкин (жёлкин) found "Жёлкин" alone but not it."""
    save(store, "elodie.wav", "dd", MARKED, "ru")
    assert {query: texts(store, query) for query, _ in MARKED_QUERIES} == {
        query: sorted(expected) for query, expected in MARKED_QUERIES
    }


# What the index held of MARKED's first segments before revision 0016: marks dropped only beside an accented
# Latin letter (ё as е and й as и there, kept elsewhere), Greek's kept, Σ at a word's end as ς.
OLD_TERMS = {
    MARKED[0][0]: "elodi желкин из иошкар олы",
    MARKED[1][0]: "жёлкин",
    MARKED[2][0]: "η αθήνα ο οδυσσέας",
}
UNTOUCHED = "notreindexed"  # stands for the index row of a segment whose terms did not change


def test_upgrading_reindexes_the_segments_the_old_rule_indexed_otherwise(db_url):
    with Store(db_url) as store:
        rid = save(store, "elodie.wav", "dd", MARKED, "ru")
        ids = {s.text: s.stored_id for s in store.segments(rid)}
    command.downgrade(alembic_config(db_url), "0015")
    engine = create_engine(db_url)
    if engine.dialect.name == "sqlite":
        rewrite = text("UPDATE segment_index SET terms = :terms WHERE rowid = :id")
        stored = text("SELECT rowid, terms FROM segment_index")
    else:
        rewrite = text("UPDATE segment_index SET vector = to_tsvector('simple', :terms) WHERE segment_id = :id")
        stored = text("SELECT segment_id, vector::text FROM segment_index")
    old = OLD_TERMS | {MARKED[4][0]: UNTOUCHED, MARKED[5][0]: UNTOUCHED}  # English and Chinese: no mark to fold
    with engine.begin() as conn:
        conn.execute(rewrite, [{"id": ids[t], "terms": terms} for t, terms in old.items()])
        before = dict(conn.execute(stored).all())
    with Store(db_url) as store:  # upgrades to the newest revision
        assert {query: texts(store, query) for query, _ in MARKED_QUERIES} == {
            query: sorted(expected) for query, expected in MARKED_QUERIES
        }
        with engine.connect() as conn:
            after = dict(conn.execute(stored).all())
    engine.dispose()
    changed = {t for t, i in ids.items() if after[i] != before[i]}
    assert changed == set(OLD_TERMS)
    assert UNTOUCHED in after[ids[MARKED[4][0]]] and UNTOUCHED in after[ids[MARKED[5][0]]]


# --- the command line ---------------------------------------------------------------------------

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_cli_search_json(tmp_path):
    url = f"sqlite:///{tmp_path / 'ohp.db'}"
    with Store(url) as store:
        save(store, "zhang.wav", "aa", ZHANG, "zh")
    result = invoke("search", "拖欠", "--json", "--db", url)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["total"] == 1
    [hit] = document["hits"]
    assert set(hit) == {
        "recording",
        "recording_path",
        "segment_id",
        "start",
        "end",
        "speaker",
        "speaker_name",
        "speaker_role",
        "text",
        "snippet",
        "themes",
    }
    assert (hit["recording"], hit["start"], hit["speaker"]) == ("zhang.wav", 10.0, "S2")
    text = invoke("search", "拖欠", "--db", url).stdout
    assert "zhang.wav 00:00:10 S2:" in text


@pytest.mark.parametrize("query", ['"unbalanced', "AND", "工资 OR", "(工资", "%%%", "NOT 工资", ""])
def test_cli_malformed_queries_get_a_message_and_exit_2(tmp_path, query):
    result = invoke("search", query, "--db", f"sqlite:///{tmp_path / 'ohp.db'}")
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output


def test_cli_a_query_may_start_with_an_exclusion(tmp_path):
    url = f"sqlite:///{tmp_path / 'ohp.db'}"
    with Store(url) as store:
        save(store, "zhang.wav", "aa", ZHANG, "zh")
        save(store, "li.wav", "bb", LI, "en")
    result = invoke("search", "-held wages", "--json", "--db", url)
    assert result.exit_code == 0, result.output
    assert [hit["text"] for hit in json.loads(result.stdout)["hits"]] == ["I was waged by the hour, the wage was low."]


@pytest.mark.parametrize("option", ["--from", "--to"])
def test_cli_a_date_that_is_no_date_is_named_by_its_option(tmp_path, option):
    result = invoke("search", "工资", option, "2019-31-01", "--db", f"sqlite:///{tmp_path / 'ohp.db'}")
    assert result.exit_code == 2
    assert option in result.output and "must be an ISO date (YYYY-MM-DD), not '2019-31-01'" in result.output


def test_cli_search_of_an_empty_database_says_so(tmp_path):
    result = invoke("search", "工资", "--db", f"sqlite:///{tmp_path / 'ohp.db'}")
    assert result.exit_code == 0 and "nothing to search" in result.output


def test_cli_import_then_search_and_bad_files_import_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'ohp.db'}"
    good = tmp_path / "zhang.vtt"
    good.write_text("WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v 张长华>我们工资被拖欠了三个月。\n", encoding="utf-8")
    bad = tmp_path / "broken.srt"
    bad.write_text(
        "1\n00:00:01,000 --> 00:00:04,000\n第一句\n\n2\n00:00:09,000 --> 00:00:05,000\n倒过来的时间\n", encoding="utf-8"
    )
    result = invoke("import", str(good), str(bad), "--db", url)
    assert result.exit_code == 1
    assert "broken.srt" in result.output and "line 6" in result.output
    with Store(url) as store:
        assert [Path(r.path).name for r in store.list_recordings()] == ["zhang.vtt"]
    found = json.loads(invoke("search", "拖欠", "--json", "--db", url).stdout)
    assert found["hits"][0]["speaker"] == "张长华" and found["hits"][0]["themes"] == ["wages"]


def test_cli_a_speaker_imported_as_interviewer_has_the_role_and_is_found_by_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'ohp.db'}"
    srt = tmp_path / "chen.srt"
    cues = [
        "Interviewer: When did your wages stop?",
        "陈秀兰: 工资从三月就停了。",
        "采访者：那你怎么办？",
        "陈秀兰: 回老家。",
        "Interviewer: And then?",
        "陈秀兰: 种地。",
    ]
    srt.write_text(
        "\n".join(f"{i}\n00:00:0{i},000 --> 00:00:0{i},900\n{cue}\n" for i, cue in enumerate(cues, 1)),
        encoding="utf-8",
    )
    assert invoke("import", str(srt), "--db", url).exit_code == 0
    with Store(url) as store:
        [rid] = [r.id for r in store.list_recordings()]
        roles = {s.label: s.role for s in store.speakers(rid)}
    assert roles == {"Interviewer": "interviewer", "陈秀兰": None, "采访者": "interviewer"}
    found = json.loads(invoke("search", "wages OR 怎么办", "--speaker", "interviewer", "--json", "--db", url).stdout)
    assert sorted(h["text"] for h in found["hits"]) == ["When did your wages stop?", "那你怎么办？"]
    shown = invoke("search", "wages", "--db", url).stdout
    assert "Interviewer: When did" in shown and "(interviewer)" not in shown  # the label says the role already


def test_cli_an_unknown_theme_is_an_error_naming_the_known_ones(corpus, db_url):
    url = db_url  # the store's own URL prints its password as ***
    result = invoke("search", "工资", "--theme", "salary", "--db", url)
    assert result.exit_code == 2 and "salary" in result.output
    assert "wages (Wages / 工资)" in result.output and "Traceback" not in result.output
    by_label = invoke("search", "拖欠", "--theme", "工资", "--db", url)  # a label names the theme too
    assert by_label.exit_code == 0 and "[Wages / 工资]" in by_label.stdout


# --- speakers ------------------------------------------------------------------------------------


def test_speaker_filter_matches_label_name_or_role(corpus):
    store, zhang, li = corpus
    for rid in (zhang, li):
        save_speakers(
            store, rid, [SpeakerRecord("S1", role="interviewer"), SpeakerRecord("S2", role="interviewee")], {}, "k", {}
        )
    store.rename_speaker(zhang, "S2", "Zhang Changhua", "mei")
    wages = "工资 OR wages OR wage"
    # "What did the interviewees say about wages": not the interviewer's question.
    assert texts(store, wages, SearchFilters(speaker="interviewee")) == sorted([ZHANG[1][0], LI[0][0], LI[1][0]])
    assert texts(store, wages, SearchFilters(speaker="Interviewer")) == [ZHANG[0][0]]
    assert texts(store, wages, SearchFilters(speaker="zhang changhua")) == [ZHANG[1][0]]  # any case
    assert texts(store, wages, SearchFilters(speaker="S2")) == sorted([ZHANG[1][0], LI[0][0], LI[1][0]])
    assert texts(store, wages, SearchFilters(speaker="Zhang")) == []  # a whole name, not a part
    store.set_role(li, "S2", "other", "mei")
    assert texts(store, wages, SearchFilters(speaker="interviewee")) == [ZHANG[1][0]]


def test_cli_search_by_speaker_role(tmp_path):
    url = f"sqlite:///{tmp_path / 'ohp.db'}"
    with Store(url) as store:
        rid = save(store, "zhang.wav", "aa", ZHANG, "zh")
        save_speakers(
            store, rid, [SpeakerRecord("S1", role="interviewer"), SpeakerRecord("S2", role="interviewee")], {}, "k", {}
        )
    found = json.loads(invoke("search", "工资", "--speaker", "interviewee", "--json", "--db", url).stdout)
    assert [(h["speaker"], h["text"]) for h in found["hits"]] == [("S2", ZHANG[1][0])]


# Case folding: filters compare interviewee, place, speaker name and language in any case, the same on SQLite and
# on PostgreSQL whatever the database's locale (C folds ASCII only, glibc's folds İ as Turkish does).
FOLDED = [  # ((filter, value), the recordings found: a, b or neither)
    (("interviewee", "élodie"), {"a"}),
    (("interviewee", "ÉLODIE ÄRGER"), {"a"}),
    (("place", "жИТОМИР"), {"a"}),
    (("speaker", "ａｎｎａ ｌｉ"), {"a"}),  # full-width letters fold to full-width letters
    (("speaker", "anna li"), set()),  # not to ASCII: that is not their case
    (("speaker", "äRGER"), {"b"}),
    (("language", "ΕΛΛΗΝΙΚΆ"), {"a"}),
    # İ folds to i, as Turkish lower-cases it and the full-text index folds it: izmir, İzmir and i̇zmir all find
    # İZMİR. Dotless ı is a letter of its own, and I is i (Unicode's lower case, no language's in particular).
    (("place", "izmir"), {"b"}),
    (("place", "İzmir"), {"b"}),
    (("place", "i\u0307zmir"), {"b"}),
    (("place", "ızmir"), set()),
    (("interviewee", "ILKAY"), {"b"}),
    (("interviewee", "işık"), {"b"}),  # Işık: I is i
    (("interviewee", "IŞIK"), set()),  # and ı is ı, in either case
]


@EVERY_COLLATION
def test_filters_fold_case_beyond_ascii_the_same_on_every_database(store):
    """PostgreSQL's lower() folds case by the database's locale: on one made with the C locale --interviewee
    élodie did not find Élodie (nor any letter but ASCII's), on glibc's UTF-8 ones İzmir was izmir there and
    i̇zmir on SQLite."""
    rid = {}
    for name, interviewee, place, speaker, language in (
        ("a", "Élodie Ärger", "Житомир", "ＡＮＮＡ Ｌｉ", "Ελληνικά"),
        ("b", "İlkay Işık", "İZMİR", "Ärger", "tr"),
    ):
        segments = [Segment(0.0, 2.0, "工资很低", "工资很低", language, speaker="S1")]
        transcript = Transcript(language, 1.0, segments, "faster-whisper", "base")
        rid[name] = save_transcription(store, info(f"{name}.wav", name * 2), transcript, {}, "k", {})
        store.set_metadata(rid[name], interviewee=interviewee, place=place)
        save_speakers(store, rid[name], [SpeakerRecord("S1")], {}, "k", {})
        store.rename_speaker(rid[name], "S1", speaker, "mei")
    names = {recording_id: name for name, recording_id in rid.items()}
    found = {
        (field, value): {
            names[h.recording_id] for h in store.search(parse_query("工资"), SearchFilters(**{field: value})).hits
        }
        for (field, value), _ in FOLDED
    }
    assert found == dict(FOLDED)


# Every character of the four planes that have letters (the others hold tags, variation selectors and private use
# only), but the surrogates and NUL (no text of either database's holds those); and words in which Σ is final or
# not (Python and ICU lower it by what is around it).
EVERY_LETTER_PLANE = [chr(c) for c in range(1, 0x40000) if not 0xD800 <= c <= 0xDFFF]
SIGMA = ["ΟΔΥΣΣΕΑΣ", "ΣΑΣ.", "ΑΣ Β", "Α.Σ"]


@EVERY_COLLATION
def test_the_database_folds_every_letter_as_the_query_is_folded(store):
    """The filters fold what is stored in SQL (database.folded) and what is typed in Python (fold_case): the two
    must agree, character for character, on every database, or a filter misses what it should find."""
    values = EVERY_LETTER_PLANE + SIGMA
    with store._session() as s:
        conn = s.connection()
        if store.dialect == "sqlite":
            typed = text("SELECT value FROM json_each(:values)")
        else:
            typed = text("SELECT value FROM json_array_elements_text(CAST(:values AS json))")
        value = typed.columns(value=Text).subquery().c.value
        stored = dict(conn.execute(select(value, folded(conn, value)), {"values": json.dumps(values)}).all())
    assert {v: f for v, f in stored.items() if f != fold_case(v)} == {}
    assert len(stored) == len(values)


@pytest.mark.parametrize("db_url", [POSTGRESQL, POSTGRESQL_C], indirect=True)
def test_a_server_without_icu_folds_as_the_database_does_and_says_so(db_url, request, monkeypatch, caplog):
    """PostgreSQL built without ICU: the database's own lower(), which folds ASCII only in the C locale (and a final
    Σ as σ in glibc's, where Python makes it ς), and a warning, once, when the store opens."""
    monkeypatch.setattr(database, "FOLD_COLLATION", "no-such-collation")
    with caplog.at_level(logging.WARNING, logger=database.__name__), Store(db_url) as store, store._session() as s:
        folds = s.scalar(select(folded(s.connection(), literal_column("'Élodie'", Text))))
    warned = [r.getMessage() for r in caplog.records if r.name == database.__name__]
    assert folds == ("Élodie" if request.node.callspec.params["db_url"] == "postgresql-c" else "élodie")
    assert len(warned) == 1 and "no ICU collation no-such-collation" in warned[0], warned
