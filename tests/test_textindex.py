"""Index terms and queries, checked against real full-text indexes: an in-memory SQLite FTS5 table, and
a PostgreSQL tsvector table when OHP_TEST_POSTGRES_URL is set (the same cases, the same rows)."""

from __future__ import annotations

import contextlib
import os
import random
import re
import sqlite3
import unicodedata

import pytest

from pipeline.search.textindex import (
    And,
    Not,
    Phrase,
    QuerySyntaxError,
    Term,
    highlight,
    index_terms,
    parse_query,
    to_fts5,
    to_tsquery,
)

POSTGRES_URL = os.environ.get("OHP_TEST_POSTGRES_URL")

SEGMENTS = {
    1: "我去拿工资了",
    2: "工资条上写的跟实际拿到的不一样",
    3: "老闆拖欠工資，一拖就是大半年",  # traditional
    4: "他的戶口本丟了",  # traditional
    5: "农村户口的孩子不能在城里考大学",
    6: "我们老家人都出去打工了",
    7: "小孩子在家没人管",
    8: "我们那时候 没有身份证",  # jieba cuts 那/时候: 那时 is still found
    9: "We were paid low wages in the factory.",
    10: "The boss waged a war against the union.",
    11: "A living wage was all we asked for.",
    12: "My wife stayed with the children in the village.",
    13: "我买了一个iPhone手机，花了两千块钱",
    14: "1998年以后我们搬到了深圳",
    15: "我和平时一样去上班",
    16: "Wagner played on the radio.",
    17: "孩子们都走了",
    18: "他整天看著電視",  # traditional 著: OpenCC's t2s keeps it
    19: "Ｆｕｌｌ－ｗｉｄｔｈ ＷＡＧＥＳ and a café",
    # Marked letters: a word's terms never depend on the other words of the segment (an accented Latin letter
    # beside them made ё е and й и, and left them alone elsewhere).
    20: "Élodie Жёлкин",
    21: "Жёлкин",
    22: "Йошкар-Ола, café",
    23: "Йошкар-Ола",
    24: "Η Αθήνα και ο Οδυσσέας",
    25: "ΑΘΗΝΑ, ΟΔΥΣΣΕΑΣ, Élodie",
    26: "ἡ ἀρχή",
    27: "моло́ко",  # a stress mark, as in a dictionary
    28: "Київ",
}

CASES = [
    # Chinese words inside longer words, either script
    ("工资", {1, 2, 3}),
    ("工資", {1, 2, 3}),
    ("户口", {4, 5}),
    ("戶口", {4, 5}),
    ("老家", {6}),
    ("孩子", {5, 7, 17}),
    ("那时", {8}),
    ("身份证", {8}),
    ("时候没有", {8}),  # across the space in the transcript
    ("看着", {18}),
    ("看著", {18}),
    ("钱", {13}),  # one character: at the end of its run
    ("拿", {1, 2}),
    ("和平", {15}),  # a substring, as people expect of a search box, though not a word there
    # English stems
    ("wage", {9, 10, 11, 19}),
    ("wages", {9, 10, 11, 19}),
    ("WAGED", {9, 10, 11, 19}),
    ("cafe", {19, 22}),
    ("café", {19, 22}),
    ("full-width", {19}),
    # phrases
    ('"living wage"', {11}),
    ('"wages in the factory"', {9}),
    ('"wage in the"', {9}),
    ('"factory wages"', set()),
    ('"拖欠工资"', {3}),
    ('"拖欠 工资"', {3}),
    ("拖欠工资", {3}),
    ('"工资条"', {2}),
    ('"工资 条"', {2}),
    ("“拖欠工资”", {3}),  # Chinese quotes
    # AND / OR / NOT
    ("拖欠 工资", {3}),
    ("工资 AND 拿", {1, 2}),
    ("工资 OR 户口", {1, 2, 3, 4, 5}),
    ("工资 NOT 拖欠", {1, 2}),
    ("工资 -拖欠", {1, 2}),
    ("wage -union", {9, 11, 19}),
    ("(wage OR 户口) -village -本", {9, 10, 11, 19, 5}),
    ("孩子 NOT 小孩子", {5, 17}),
    ("wage OR 孩子 AND 农村", {9, 10, 11, 19, 5}),  # AND binds tighter than OR
    ("(wage OR 孩子) AND 农村", {5}),
    ("wage NOT (union OR factory)", {11, 19}),
    ("wage NOT (boss NOT union)", {9, 10, 11, 19}),  # 10 has the boss and the union
    # prefix
    ("wag*", {9, 10, 11, 16, 19}),
    ("wagn*", {16}),
    ("happy*", set()),
    ('"living wa"*', {11}),
    ("工*", {1, 2, 3, 6}),
    # two characters, numbers and mixed text
    ("深圳", {14}),
    ("1998年", {14}),
    ("1998年以后", {14}),
    ("1998", {14}),
    ("iphone", {13}),
    ("iPhone手机", {13}),
    ('"iphone 手机"', {13}),
    ('"一个iphone"', {13}),
    ("手机 wage", set()),
    # what FTS5 would have read as syntax is only text here
    ("col:wage", set()),
    ("^wage", {9, 10, 11, 19}),
    ("NEAR/2 wage", set()),
    ("wage+boss", set()),
    ("wage & 孩子", set()),
    ("{wage}", {9, 10, 11, 19}),
    # marks: Latin and Greek ones dropped, ё as е, Cyrillic letters with a mark of their own (й ї) kept
    ("Жёлкин", {20, 21}),
    ("Желкин", {20, 21}),
    ("ЖЁЛКИН", {20, 21}),
    ("Йошкар", {22, 23}),
    ("Иошкар", set()),
    ("Αθήνα", {24, 25}),
    ("αθηνα", {24, 25}),
    ("Οδυσσέας", {24, 25}),
    ("Οδυσσεα*", {24, 25}),
    ("αρχη", {26}),
    ("ἀρχή", {26}),
    ("молоко", {27}),
    ("Київ", {28}),
    ("Киів", set()),
    ("elodie", {20, 25}),
]


@pytest.fixture(scope="module")
def fts5():
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE seg USING fts5(terms)")
    db.executemany("INSERT INTO seg(rowid, terms) VALUES (?, ?)", [(i, index_terms(t)) for i, t in SEGMENTS.items()])
    yield db
    db.close()


def fts5_rows(db: sqlite3.Connection, query: str) -> set[int]:
    expression = to_fts5(parse_query(query))
    return {row[0] for row in db.execute("SELECT rowid FROM seg WHERE seg MATCH ? ORDER BY rank", (expression,))}


@pytest.mark.parametrize("query,expected", CASES, ids=[q for q, _ in CASES])
def test_fts5_finds_exactly(fts5, query, expected):
    assert fts5_rows(fts5, query) == expected


@pytest.fixture(scope="module")
def postgres():
    if not POSTGRES_URL:
        pytest.skip("OHP_TEST_POSTGRES_URL is not set")
    from sqlalchemy import create_engine

    engine = create_engine(POSTGRES_URL)
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TEMP TABLE seg (id int PRIMARY KEY, terms text, tsv tsvector)")
        for i, text in SEGMENTS.items():
            conn.exec_driver_sql(
                "INSERT INTO seg VALUES (%(id)s, %(terms)s, to_tsvector('simple', %(terms)s))",
                {"id": i, "terms": index_terms(text)},
            )
        yield conn
    engine.dispose()


def pg_rows(conn, query: str) -> set[int]:
    rows = conn.exec_driver_sql(
        "SELECT id FROM seg WHERE tsv @@ to_tsquery('simple', %(q)s)", {"q": to_tsquery(parse_query(query))}
    )
    return {row[0] for row in rows}


@pytest.mark.parametrize("query,expected", CASES, ids=[q for q, _ in CASES])
def test_postgres_finds_the_same(postgres, query, expected):
    assert pg_rows(postgres, query) == expected


# ------------------------------------------------------------------------------------- index terms


def test_index_terms():
    assert index_terms("拿工資條") == "拿工 工资 资条 条"
    assert index_terms("钱") == "钱"
    assert index_terms("We were paid WAGES; they waged war.") == "we were paid wage they wage war"
    assert index_terms("Don't ask about the children’s iPhone手机") == "dont ask about the children iphon 手机 机"
    assert index_terms("１９９８年，ＡＢＣ") == "1998 年 abc"
    assert index_terms("naïve café") == "naiv cafe"
    assert index_terms("") == index_terms("  ，。!!") == ""


def test_scripts_are_one_for_search():
    assert index_terms("我們的戶口和工資") == index_terms("我们的户口和工资")


# Words of every script whose marks the index decides about, and words of the scripts it must leave alone.
MARKED_WORDS = [
    "Жёлкин",
    "Йошкар",
    "Київ",
    "Ўладзімір",
    "моло́ко",
    "Αθήνα",
    "Οδυσσέας",
    "ἀρχή",
    "Łódź",
    "İzmir",
    "naïve",
]
CJK_WORDS = ["ガギグ", "パン", "ｶﾞｷﾞ", "한국어", "工资"]
CONTEXTS = ["Élodie", "café", "Ärger", "Αθήνα", "Жёлкин", "wages", "Łódź"]


@pytest.mark.parametrize("word", MARKED_WORDS + CJK_WORDS)
def test_a_words_terms_depend_only_on_the_word(word):
    """An accented Latin letter anywhere in the text made every mark go: "Élodie Жёлкин" was indexed as желкин, and
    a search for Жёлкин (жёлкин) missed it."""
    alone = index_terms(word)
    for context in CONTEXTS:
        assert index_terms(f"{context} {word}. {context}") == f"{index_terms(context)} {alone} {index_terms(context)}"


def test_what_marks_are_folded():
    assert index_terms("Жёлкин ЁЛКА") == index_terms("Желкин ЕЛКА") == "желкин елка"  # ё is е, as Russian writes it
    assert index_terms("Йошкар Київ Ўладзімір Ѓорѓи") == "йошкар київ ўладзімір ѓорѓи"  # letters of their own
    assert index_terms("моло́ко") == "молоко"  # a mark no letter holds: a stress mark
    assert index_terms("Αθήνα ἀρχή Ἄρης ᾠδή ΐ") == "αθηνα αρχη αρησ ωδη ι"  # accents and breathings
    assert index_terms("ΟΔΥΣΣΕΑΣ Οδυσσέας") == "οδυσσεασ οδυσσεασ"  # final sigma: σ wherever it is
    assert index_terms("Łódź naïve İzmir Ærø") == "łodz naiv izmir ærø"  # Latin as before


def test_every_letter_with_a_mark_is_folded_but_cyrillic_ones_of_their_own():
    """The folding looks letters up in a table of the blocks that hold them: no letter outside it (NFKC aside)
    may carry a Latin, Greek or Cyrillic mark."""
    marked = [
        c
        for c in map(chr, range(0x110000))
        if not 0xD800 <= ord(c) <= 0xDFFF and re.search("[\u0300-\u036f]", unicodedata.normalize("NFKD", c))
    ]
    kept = {
        c: folded
        for c in marked
        for folded in index_terms(c)
        if folded != " " and unicodedata.normalize("NFD", folded) != folded
    }
    assert set(kept.values()) == set("йїўѓќѐѝӂӑӓӗӛӝӟӣӥӧӫӭӯӱӳӵӹѷ")  # ё is е


@pytest.mark.parametrize("word", MARKED_WORDS + CJK_WORDS)
def test_decomposed_and_composed_text_has_the_same_terms(word):
    for form in ("NFC", "NFD", "NFKC", "NFKD"):
        assert index_terms(unicodedata.normalize(form, word)) == index_terms(word), form


def test_kana_and_hangul_keep_their_terms():
    assert index_terms("ガギグ パン") == "ガギ ギグ グパ パン ン"
    assert index_terms("ｶﾞｷﾞ") == "ガギ ギ"
    assert index_terms("한국어") == "한국 국어 어"
    assert index_terms("café ガギ 한국") == "cafe ガギ ギ한 한국 국"


def test_terms_are_letters_and_digits_only():
    text = "he said \"NEAR(wage)\" col:term ^x * AND -y 'q' \\ 工资：“户口”"
    for term in index_terms(text).split():
        assert term.isalnum(), term


def test_long_words_are_cut():
    assert index_terms("a" * 500) == "a" * 64
    assert fts5_query_matches(index_terms("a" * 500), "a" * 500)


def fts5_query_matches(terms: str, query: str) -> bool:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(terms)")
    db.execute("INSERT INTO t VALUES (?)", (terms,))
    return bool(db.execute("SELECT 1 FROM t WHERE t MATCH ?", (to_fts5(parse_query(query)),)).fetchall())


# ------------------------------------------------------------------------------------------- query


def test_query_ast():
    assert parse_query("工资").root == Term("工资")
    assert parse_query("工资条").root == Phrase((Term("工资"), Term("资条")))
    assert parse_query("钱").root == Term("钱", prefix=True)
    assert parse_query("wages -boss").root == And((Term("wage"), Not(Term("boss"))))
    assert parse_query("happy*").root == Term("happ", prefix=True)  # the stem is happi
    assert parse_query("a b (c d)").root == And((Term("a"), Term("b"), Term("c"), Term("d")))


def test_renderings():
    query = parse_query('"living wage" OR 工资条 -boss*')
    assert to_fts5(query) == '("live" + "wage" OR ("工资" + "资条") NOT ("boss"*))'
    assert to_tsquery(query) == "(('live' <-> 'wage') | (('工资' <-> '资条') & !'boss':*))"


@pytest.mark.parametrize(
    "query,message,position",
    [
        ("", "the query is empty", 0),
        ("   ", "the query is empty", 0),
        ("AND", "AND needs something to search for before it", 0),
        ("wages AND", "AND needs something to search for after it", 6),
        ("wages AND OR boss", "AND needs something to search for after it", 6),
        ("wages OR", "OR needs something to search for after it", 6),
        ("OR wages", "OR needs something to search for before it", 0),
        ("NOT", "NOT must be followed by what to leave out", 0),
        ("wages NOT", "NOT must be followed by what to leave out", 6),
        ("wages -", "- must be followed, without a space, by what to leave out", 6),
        ("wages - boss", "- must be followed, without a space, by what to leave out", 6),
        ("NOT wages", "NOT and - only leave words out of a search for something else", 0),
        ("-wages -boss", "NOT and - only leave words out of a search for something else", 0),
        ("wages OR -boss", "NOT and - only leave words out of a search for something else", 9),
        ("wages NOT NOT boss", "NOT must be followed by what to leave out", 6),
        ('"living wage', 'the quote " is never closed', 0),
        ('wage "', 'the quote " is never closed', 5),
        ("“工资", "the quote “ is never closed", 0),
        ("(wages OR boss", "this ( is never closed", 0),
        ("wages)", "this ) has no ( before it", 5),
        ("()", "nothing to search for inside these parentheses", 0),
        ("%%%", "nothing to search for: the query has no letters, digits or Chinese characters", 0),
        ("***", "nothing to search for", 0),
        ("* ^ :", "nothing to search for", 0),
        ('""', "the quoted phrase has nothing to search for", 0),
        ("w*", "a prefix search needs at least 2 letters before the *", 0),
        ("NEAR(", "this ( is never closed", 4),
    ],
)
def test_malformed_queries(query, message, position):
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query)
    assert caught.value.message.startswith(message)
    assert caught.value.position == position
    assert f"at character {position + 1}" in str(caught.value)


def test_symbols_between_words_are_skipped(fts5):
    assert fts5_rows(fts5, "wages %%% union") == {10}


INJECTIONS = [
    '"',
    "*",
    "NEAR(",
    "NEAR(a b)",
    "col:term",
    "^",
    "wage:*",
    "a'b",
    "\\",
    "'",
    "!",
    "&",
    "|",
    "<->",
    "(",
    ")",
    '"a" "',
    "wage)*",
    "-",
    "--",
    "- -",
    "NOT(",
    "*wage",
    "wage**",
    '"*"',
    "\x00",
    "工资'|!'",
    "{seg}: wage",
]


@pytest.mark.parametrize("query", INJECTIONS)
def test_injection_is_text_or_a_syntax_error(fts5, query):
    with contextlib.suppress(QuerySyntaxError):
        fts5_rows(fts5, query)


def test_random_queries_never_reach_the_database_as_syntax(fts5):
    pieces = [
        '"',
        "'",
        "(",
        ")",
        "*",
        "-",
        "^",
        ":",
        "+",
        "NEAR",
        "AND",
        "OR",
        "NOT",
        "wage",
        "工资",
        "戶",
        " ",
        " ",
        "\\",
        "{",
        "}",
        "|",
        "&",
        "!",
        "<->",
        "。",
        "“",
    ]
    rng = random.Random(4)
    checked = 0
    for _ in range(3000):
        query = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        try:
            expression = to_fts5(parse_query(query))
        except QuerySyntaxError:
            continue
        fts5.execute("SELECT rowid FROM seg WHERE seg MATCH ?", (expression,)).fetchall()  # never sqlite3.Error
        checked += 1
    assert checked > 500


def test_random_queries_on_postgres(postgres):
    pieces = ['"', "'", "(", ")", "*", "-", ":", "NOT", "OR", "wage", "工资", " ", "\\", "|", "&", "!", "<->"]
    rng = random.Random(5)
    for _ in range(500):
        query = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        try:
            expression = to_tsquery(parse_query(query))
        except QuerySyntaxError:
            continue
        postgres.exec_driver_sql("SELECT id FROM seg WHERE tsv @@ to_tsquery('simple', %(q)s)", {"q": expression}).all()


# --------------------------------------------------------------------------------------- highlight


def marked(snippet) -> str:
    out, pos = [], 0
    for start, end in snippet.spans:
        out += [snippet.text[pos:start], "[", snippet.text[start:end], "]"]
        pos = end
    return "".join(out) + snippet.text[pos:]


def test_highlight_traditional_text_for_a_simplified_query():
    snippet = highlight("老闆拖欠工資，一拖就是大半年", parse_query("工资"))
    assert marked(snippet) == "老闆拖欠[工資]，一拖就是大半年"


def test_highlight_stems_and_phrases():
    assert marked(highlight("We were paid low wages.", parse_query("wage"))) == "We were paid low [wages]."
    assert marked(highlight("A living wage was all.", parse_query('"living wages"'))) == "A [living wage] was all."
    assert marked(highlight("Wagner and wages", parse_query("wag*"))) == "[Wagner] and [wages]"
    assert marked(highlight("1998年以后我们搬到了深圳", parse_query("1998年 深圳"))) == "[1998年]以后我们搬到了[深圳]"
    assert marked(highlight("块钱", parse_query("钱"))) == "块[钱]"


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_highlight_marked_words_as_they_are_indexed(form):
    """The snippet folds its text a character at a time: a letter and the marks that follow it fold together, or
    a decomposed й was и and a mark, and a search for Йошкар found a segment it did not mark."""
    text = unicodedata.normalize(form, "Élodie Жёлкин из Йошкар-Олы, ἀρχή, 한국에서 ガス")
    snippet = highlight(text, parse_query("Желкин йошкар* αρχη 한국 ガス"))
    assert marked(snippet) == unicodedata.normalize(form, "Élodie [Жёлкин] из [Йошкар]-Олы, [ἀρχή], [한국]에서 [ガス]")


def test_highlight_leaves_out_what_is_excluded():
    assert marked(highlight("wages and the union", parse_query("wage -union"))) == "[wages] and the union"


def test_highlight_snippet_is_a_few_words_around_the_match():
    text = "one two three four five six seven eight nine wages ten eleven twelve thirteen fourteen fifteen sixteen"
    snippet = highlight(text, parse_query("wage"), context_words=3)
    assert marked(snippet) == "…seven eight nine [wages] ten eleven twelve…"
    zh = "我们那个时候在老家种地后来去广东打工老板拖欠工资一拖就是大半年我们也没有办法只好回家"
    snippet = highlight(zh, parse_query("工资"), context_words=3)
    assert marked(snippet) == "…打工老板拖欠[工资]一拖就是大半…"  # a CJK character is half a word


def test_highlight_without_a_match_gives_the_start():
    snippet = highlight("one two three four five six seven eight", parse_query("wage"), context_words=2)
    assert snippet == type(snippet)("one two three four…", [])
