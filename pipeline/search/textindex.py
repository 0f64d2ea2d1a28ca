"""Full-text terms and queries, the same for SQLite FTS5 and PostgreSQL.

A segment's text becomes a string of space-separated terms (`index_terms`) that the database indexes
with its plainest tokenizer (FTS5 `unicode61`, PostgreSQL `to_tsvector('simple', ...)`); a user's query
becomes an AST (`parse_query`) that renders as an FTS5 MATCH expression or a tsquery. Both sides go
through one normalisation, so they cannot disagree:

- NFKC (full-width letters and digits become ASCII), lower case, and marks folded a character at a time, so
  a word's terms never depend on the words beside it: Latin diacritics dropped (café cafe, Łódź łodz); Greek
  accents and breathings dropped and final ς as σ (Αθήνα αθηνα, ΟΔΥΣΣΕΑΣ and Οδυσσέας οδυσσεασ), as Greek
  search does; Cyrillic letters with a mark of their own kept (й is not и, nor ї і, ў у: the languages
  treat them as other letters), but ё as е (Russian mostly writes ё as е: Жёлкин Желкин); marks that stand
  apart from any letter Unicode encodes (a stress mark, моло́ко) dropped. Kana and Hangul keep their marks
  (ガ is not カ), however the text is composed (NFKC joins a decomposed ガ or 한 first);
- Chinese in simplified script (OpenCC t2s), so 戶口 and 户口 are one term;
- CJK text (Han, kana, Hangul) as overlapping character bigrams: 拿工资条 -> 拿工 工资 资条 条. Every
  two characters of the text are a term, so any query of two or more characters is found wherever the
  text contains it, which a word segmenter cannot promise: jieba keeps 那时候 whole (no 那时) and cuts
  我们那时候 as 我们/那/时候. A run's last character is also a term on its own, so a one-character
  query is a prefix search ("钱"* matches 钱 and every bigram starting with it);
- other words stemmed with the English Snowball stemmer (wage, wages, waged -> wage), whatever the
  segment's language: a query has no language, and terms that depended on one would miss.

The terms hold only letters and digits, and every query term is quoted on the way out, so nothing a
user types can reach either database's query syntax.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

from pipeline.errors import InvalidInputError
from pipeline.script import Script, convert_pieces, to_simplified
from pipeline.utils import CJK_LETTERS, SURROGATES, merge_spans

MAX_TERM = 64  # characters: longer words are cut (PostgreSQL drops lexemes over 2 kB, FTS5 does not)
MIN_PREFIX = 2  # characters before a * (a one-letter prefix would match half the index)
MAX_QUERY_CHARS = 1_000  # a query longer than this is no search a person typed
MAX_NESTING = 16  # parentheses inside parentheses: the parser recurses once per level
# Prefix searches in one query: each scans the index's terms. 250 (of one term, repeated: now once) took 14 s on
# 20,000 segments; a query of 1,000 characters could hold 250 different ones.
MAX_PREFIXES = 100
_SURROGATE = re.compile(f"[{SURROGATES}]")  # a NUL in a query is no character of a word: it is passed over
CJK_CONTEXT_CHARS = 2  # characters of CJK text that count as one word of snippet context
MAX_CLUSTER_WORDS = 24  # words of a snippet's matches and what is between them, context aside

# A CJK run (runs split only by spaces are one: Chinese has no spaces, and transcripts sprinkle them),
# or a word of letters and digits with inner apostrophes (don't, children's).
_TOKEN = re.compile(
    rf"(?P<cjk>[{CJK_LETTERS}]+(?:\s+[{CJK_LETTERS}]+)*)|(?P<word>[^\W_{CJK_LETTERS}]+(?:['’][^\W_{CJK_LETTERS}]+)*)"
)
_SPACE = re.compile(r"\s+")
_ASCII_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")  # _TOKEN's words in folded (lower-case) ASCII text
_APOSTROPHE = re.compile("['’]")
# CJK and full-width punctuation, quotes and dashes: token separators however they are written
# (not ‘’: ’ is an apostrophe too).
_PUNCTUATION = re.compile(
    "[\u2010-\u2017\u201a-\u2027\u3001-\u3003\u3008-\u3011\u3014-\u301f"
    "\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]"
)
_MARKS = re.compile("[\u0300-\u036f]")  # the marks Latin, Greek and Cyrillic letters carry
# Where the letters that carry them are: Latin-1 to Cyrillic (combining marks and Greek between), and Latin and
# Greek Extended (Vietnamese, polytonic Greek). NFKC has made every other such letter one of these.
_MARKED_BLOCKS = ("\u00c0", "\u04ff"), ("\u1e00", "\u1fff")


class QuerySyntaxError(InvalidInputError):
    """A query that cannot be searched for; `position` is the offending character's index in it."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at character {position + 1})")
        self.message = message
        self.position = position


# ---------------------------------------------------------------------------------- normalisation


def _same(text: str) -> str:
    # OpenCC's t2s leaves 著, a simplified character too (著名), but mostly it is 着 (看著).
    return text.replace("著", "着") if "著" in text else text


def _marks_folded(char: str) -> str:
    """A lower-case NFKC character as search has it (see the module's docstring)."""
    if char == "ς":
        return "σ"
    if char != "ё" and unicodedata.name(char, "").startswith("CYRILLIC"):
        return char
    return unicodedata.normalize("NFC", _MARKS.sub("", unicodedata.normalize("NFD", char)))


# Every character _marks_folded changes, and its folded form: one look-up per marked character of a text.
_FOLDED = {
    char: folded
    for low, high in _MARKED_BLOCKS
    for char in map(chr, range(ord(low), ord(high) + 1))
    if (folded := _marks_folded(char)) != char
}
_FOLDS = re.compile("[" + "".join(map(re.escape, _FOLDED)) + "]")


def _fold_marked(match: re.Match[str]) -> str:
    return _FOLDED[match.group()]


def _plain(text: str) -> str:
    """NFKC, lower case, marks folded: a character at a time (with the marks NFKC joins to it), so that a
    word's terms do not depend on what is around it."""
    if text.isascii():
        return text.lower()
    text = _PUNCTUATION.sub(",", text)  # what else makes CJK text not NFKC, and NFKC is slow
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    # Lower case first: it makes İ i and a dot above, and a final Σ ς, which the folding then takes in.
    return _FOLDS.sub(_fold_marked, text.lower())


def _fold(text: str) -> str:
    """Text with every difference search ignores taken out (script too)."""
    text = _plain(text)
    return text if text.isascii() else _same(to_simplified(text))


_stemmer = snowballstemmer.stemmer("english")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    # Interviews reuse a small vocabulary: almost every word is stemmed once per process.
    return _APOSTROPHE.sub("", _stemmer.stemWord(word.replace("’", "'")))[:MAX_TERM]


def _is_cjk(term: str) -> bool:
    token = _TOKEN.match(term)
    return token is not None and token.lastgroup == "cjk"


def _bigrams(run: str) -> list[str]:
    return [run[i : i + 2] for i in range(len(run) - 1)]


def index_terms(text: str) -> str:
    """The text as the space-separated terms a full-text index holds (see the module's docstring)."""
    folded = _fold(text)
    if folded.isascii():  # English: _TOKEN's words, by a simpler pattern (twice as fast)
        return " ".join(map(_stem, _ASCII_WORD.findall(folded)))
    terms: list[str] = []
    for cjk, word in _TOKEN.findall(folded):  # findall and map: this runs for every segment stored
        if word:
            terms.append(_stem(word))
            continue
        if not cjk.isalpha():  # spaces inside (rare: skip the regex otherwise)
            cjk = _SPACE.sub("", cjk)
        terms += map(operator.add, cjk, cjk[1:])  # the bigrams
        terms.append(cjk[-1])
    return " ".join(terms)


def _joins_before(char: str) -> bool:
    """Whether NFKC may join the character to the one before it: a mark (a decomposed й or ガ), or Hangul's vowel
    and final jamo (a decomposed 한; their combining class is 0)."""
    return bool(unicodedata.combining(char)) or "\u1160" <= char <= "\u11ff"


def _characters(text: str) -> list[tuple[int, int]]:
    """The [start, end) offsets of each character of `text` with what after it NFKC may join to it."""
    starts = [i for i, c in enumerate(text) if i == 0 or not _joins_before(c)]
    return list(itertools.pairwise([*starts, len(text)]))


def _tokens(text: str) -> list[tuple[str, int, int]]:
    """index_terms' terms with the [start, end) offsets in `text` each was made from."""
    # Folded a character at a time, to know where each folded char came from; converted as a whole, like _fold.
    characters = _characters(text)
    folded_characters = convert_pieces([_plain(text[a:b]) for a, b in characters], Script.SIMPLIFIED)
    pieces = [_same(p) for p in folded_characters]
    origin = [span for span, piece in zip(characters, pieces, strict=True) for _ in piece]
    folded = "".join(pieces)
    out: list[tuple[str, int, int]] = []
    for m in _TOKEN.finditer(folded):
        if m.lastgroup == "word":
            out.append((_stem(m.group()), origin[m.start()][0], origin[m.end() - 1][1]))
            continue
        chars = [(c, origin[m.start() + k]) for k, c in enumerate(m.group()) if not c.isspace()]
        for (a, (start, _)), (b, (_, end)) in itertools.pairwise(chars):
            out.append((a + b, start, end))
        last, (start, end) = chars[-1]
        out.append((last, start, end))
    return out


# ----------------------------------------------------------------------------------------- query


@dataclass(frozen=True)
class Term:
    text: str  # a normalised index term
    prefix: bool = False


@dataclass(frozen=True)
class Phrase:
    terms: tuple[Term, ...]  # adjacent in this order


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node  # only ever inside an And that has something positive to exclude it from


Node = Term | Phrase | And | Or | Not


@dataclass(frozen=True)
class Query:
    text: str  # as the user wrote it
    root: Node


# The English inflections a prefix may stop inside, or before: "worki*" means working, whose stem (the index's) is
# work. Not the derivations (-ness, -ation): wagn* would look for wag*, as Snowball reads "wagness".
_ENDINGS = "s es ed ing er ers est ly ies ied".split()


def _prefix_stem(word: str) -> str:
    """What a prefix search for `word` looks for among the index's stems: the shortest part of the word that the
    stems of words beginning with it begin with (happy* -> happ*, as happi is happy's stem; worki* -> work*; runn*
    -> run*), at least MIN_PREFIX characters. A stem shorter than the prefix missed every word ending so."""
    word = _APOSTROPHE.sub("", word)
    completions = [word] + [word + ending[k:] for ending in _ENDINGS for k in range(len(ending))]
    shortest = min((os.path.commonprefix([word, _stem(w)]) for w in completions), key=len)  # noqa: RUF071 (of words)
    return shortest if len(shortest) >= MIN_PREFIX else word[:MIN_PREFIX]


def _query_terms(text: str, prefix: bool) -> list[Term]:
    """Terms that must appear in this order for the text to be there (its index terms, except that a
    CJK run at the end may go on in the segment: no last-character term, or a prefix if it is one)."""
    matches = list(_TOKEN.finditer(_fold(text)))
    terms: list[Term] = []
    for k, m in enumerate(matches):
        last = k == len(matches) - 1
        if m.lastgroup == "word":
            word = m.group()
            stem = _stem(word)
            if last and prefix:
                stem = _prefix_stem(word)
            terms.append(Term(stem, prefix=last and prefix))
            continue
        run = _SPACE.sub("", m.group())
        if len(run) == 1:
            terms.append(Term(run, prefix=last))
        else:
            terms += [Term(b) for b in _bigrams(run)]
            if not last:
                terms.append(Term(run[-1]))
    return terms


def _unit(terms: list[Term]) -> Term | Phrase:
    return terms[0] if len(terms) == 1 else Phrase(tuple(terms))


def _flat(items: list[Node], kind: type[And] | type[Or]) -> tuple[Node, ...]:
    """(a AND (b AND c)) as (a AND b AND c), each item once: a term repeated 250 times within the query's
    characters made a search 900 times slower, for the same answer."""
    return tuple(dict.fromkeys(x for n in items for x in (n.items if isinstance(n, kind) else (n,))))


def _joined(items: list[Node], kind: type[And] | type[Or]) -> Node:
    """The items as one node of this kind (`_flat`), or the one item they come to."""
    flat = _flat(items, kind)
    return flat[0] if len(flat) == 1 else kind(flat)


_QUOTES = {'"': '"', "“": "”", "「": "」", "『": "』"}
_OPERATORS = ("AND", "OR", "NOT")


@dataclass(frozen=True)
class _Lexeme:
    kind: str  # "word", "phrase", "(", ")", "AND", "OR", "NOT", "-"
    text: str
    position: int


def _lex(q: str) -> list[_Lexeme]:
    # Full-width ASCII (what a Chinese input method types) as ASCII; one char for one, so positions hold.
    q = "".join(chr(ord(c) - 0xFEE0) if "\uff01" <= c <= "\uff5e" else c for c in q)
    out: list[_Lexeme] = []
    i = 0
    while i < len(q):
        c = q[i]
        if c.isspace():
            i += 1
        elif c in "()":
            out.append(_Lexeme(c, c, i))
            i += 1
        elif c in _QUOTES:
            end = q.find(_QUOTES[c], i + 1)
            if end < 0:
                raise QuerySyntaxError(f"the quote {c} is never closed", i)
            star = q.startswith("*", end + 1)
            out.append(_Lexeme("phrase", q[i + 1 : end] + ("*" if star else ""), i))
            i = end + 1 + star
        elif c == "-" and (i + 1 == len(q) or q[i + 1].isspace() or q[i + 1] == ")"):
            raise QuerySyntaxError("- must be followed, without a space, by what to leave out", i)
        elif c == "-":
            out.append(_Lexeme("-", c, i))
            i += 1
        else:
            end = i
            while end < len(q) and not q[end].isspace() and q[end] not in "()" and q[end] not in _QUOTES:
                end += 1
            word = q[i:end]
            out.append(_Lexeme(word if word in _OPERATORS else "word", word, i))
            i = end
    return out


class _Parser:
    """query := or; or := and (OR and)*; and := unary ([AND] unary)*; unary := (NOT | -) primary | primary;
    primary := word | "phrase" | ( or ). NOT binds tightest, then AND (written or implied), then OR.

    A word of symbols only (e.g. & between words) is skipped; a NOT must leave something out of
    something positive beside it in an AND: neither database searches for "everything except"."""

    def __init__(self, q: str) -> None:
        self.lexemes = _lex(q)
        self.i = 0
        self.depth = 0  # parentheses open
        self.nots: dict[int, int] = {}  # id of each Not -> where its NOT or - was, for messages

    def peek(self) -> _Lexeme | None:
        return self.lexemes[self.i] if self.i < len(self.lexemes) else None

    def take(self) -> _Lexeme:
        self.i += 1
        return self.lexemes[self.i - 1]

    def lone_not(self, node: Node) -> QuerySyntaxError:
        return QuerySyntaxError(
            "NOT and - only leave words out of a search for something else: write e.g. wages NOT boss",
            self.nots[id(node)],
        )

    def parse(self) -> Node:
        if not self.lexemes:
            raise QuerySyntaxError("the query is empty", 0)
        node = self.parse_or()
        extra = self.peek()
        if extra is not None:  # only a ")" can stop parse_or early
            raise QuerySyntaxError("this ) has no ( before it", extra.position)
        if node is None:
            raise QuerySyntaxError("nothing to search for: the query has no letters, digits or Chinese characters", 0)
        if isinstance(node, Not):
            raise self.lone_not(node)
        return node

    def parse_or(self) -> Node | None:
        first = self.parse_and()
        if (op := self.peek()) is None or op.kind != "OR":
            return first
        if first is None:
            raise QuerySyntaxError("OR needs something to search for before it", op.position)
        items = [first]
        while (op := self.peek()) is not None and op.kind == "OR":
            self.take()
            item = self.parse_and()
            if item is None:
                raise QuerySyntaxError("OR needs something to search for after it", op.position)
            items.append(item)
        for item in items:
            if isinstance(item, Not):
                raise self.lone_not(item)
        return _joined(items, Or)

    def parse_and(self) -> Node | None:
        items: list[Node] = []
        while (lexeme := self.peek()) is not None and lexeme.kind not in ("OR", ")"):
            if lexeme.kind == "AND":
                self.take()
                if not items:
                    raise QuerySyntaxError("AND needs something to search for before it", lexeme.position)
                nxt = self.peek()
                node = None if nxt is None or nxt.kind in ("AND", "OR", ")") else self.parse_unary(nxt)
                if node is None:
                    raise QuerySyntaxError("AND needs something to search for after it", lexeme.position)
            else:
                node = self.parse_unary(lexeme)
            if node is not None:
                items.append(node)
        if len(items) > 1 and all(isinstance(n, Not) for n in items):
            raise self.lone_not(items[0])
        if not items:
            return None
        return _joined(items, And)

    def parse_unary(self, lexeme: _Lexeme) -> Node | None:
        """A NOT, a - or neither, then a primary, from `lexeme`: the next one, peeked and not yet taken."""
        if lexeme.kind not in ("NOT", "-"):
            return self.parse_primary()
        self.take()
        operand = self.peek()
        if operand is None or operand.kind not in ("word", "phrase", "("):
            raise QuerySyntaxError(f"{lexeme.text} must be followed by what to leave out", lexeme.position)
        node = self.parse_primary()
        if node is None:
            raise QuerySyntaxError(f"{lexeme.text} is followed by nothing searchable", operand.position)
        if isinstance(node, Not):
            raise QuerySyntaxError(f"{lexeme.text} cannot leave out a NOT", lexeme.position)
        result = Not(node)
        self.nots[id(result)] = lexeme.position
        return result

    def parse_primary(self) -> Node | None:
        lexeme = self.take()
        if lexeme.kind == "(":
            if self.depth == MAX_NESTING:
                raise QuerySyntaxError(f"parentheses nest more than {MAX_NESTING} deep here", lexeme.position)
            self.depth += 1
            node = self.parse_or()
            self.depth -= 1
            close = self.peek()
            if close is None or close.kind != ")":
                raise QuerySyntaxError("this ( is never closed", lexeme.position)
            self.take()
            if node is None:
                raise QuerySyntaxError("nothing to search for inside these parentheses", lexeme.position)
            return node
        if lexeme.kind in ("word", "phrase"):
            prefix = lexeme.text.endswith("*")
            terms = _query_terms(lexeme.text.rstrip("*"), prefix)
            if lexeme.kind == "phrase" and not terms:
                raise QuerySyntaxError("the quoted phrase has nothing to search for", lexeme.position)
            last = terms[-1] if terms else None
            if prefix and last and last.prefix and len(last.text) < MIN_PREFIX and not _is_cjk(last.text):
                message = f"a prefix search needs at least {MIN_PREFIX} letters before the *"
                raise QuerySyntaxError(message, lexeme.position)
            return _unit(terms) if terms else None
        raise QuerySyntaxError(f"{lexeme.text} needs something to search for before it", lexeme.position)


def parse_query(q: str) -> Query:
    """A user's query: words (all must appear), "quoted phrases", AND, OR, NOT or -word, parentheses,
    and prefix* searches. A word of several terms (工资条, well-known) must appear as a phrase.
    Raises QuerySyntaxError with a message for people."""
    if len(q) > MAX_QUERY_CHARS:
        raise QuerySyntaxError(f"the query has {len(q)} characters: at most {MAX_QUERY_CHARS}", MAX_QUERY_CHARS)
    if found := _SURROGATE.search(q):  # an undecodable byte on the command line, as Python reads its arguments
        raise QuerySyntaxError(f"the query holds \\u{ord(found.group()):04x}, which is no character", found.start())
    query = Query(q, _Parser(q).parse())
    prefixes = sum(t.prefix for t in _terms(query.root))
    if prefixes > MAX_PREFIXES:
        raise QuerySyntaxError(f"the query has {prefixes} prefix searches (word*): at most {MAX_PREFIXES}", len(q))
    return query


def _terms(node: Node) -> Iterator[Term]:
    if isinstance(node, Term):
        yield node
    elif isinstance(node, Phrase):
        yield from node.terms
    elif isinstance(node, Not):
        yield from _terms(node.item)
    else:
        for item in node.items:
            yield from _terms(item)


# -------------------------------------------------------------------------------------- rendering


def _fts5_term(term: Term) -> str:
    return '"' + term.text.replace('"', '""') + '"' + ("*" if term.prefix else "")


def _fts5(node: Node) -> str:
    if isinstance(node, Term):
        return _fts5_term(node)
    if isinstance(node, Phrase):
        return " + ".join(_fts5_term(t) for t in node.terms)
    if isinstance(node, Or):
        return "(" + " OR ".join(_fts5(n) for n in node.items) + ")"
    if isinstance(node, And):
        positive = [_fts5(n) for n in node.items if not isinstance(n, Not)]
        negative = [_fts5(n.item) for n in node.items if isinstance(n, Not)]
        out = "(" + " AND ".join(positive) + ")"
        return out + (" NOT (" + " OR ".join(negative) + ")" if negative else "")
    raise TypeError(f"not a query node: {node!r}")


def to_fts5(query: Query) -> str:
    """An FTS5 MATCH expression over a column of index_terms."""
    return _fts5(query.root)


def _ts_term(term: Term) -> str:
    quoted = "'" + term.text.replace("\\", "\\\\").replace("'", "''") + "'"
    return quoted + (":*" if term.prefix else "")


def _ts(node: Node) -> str:
    if isinstance(node, Term):
        return _ts_term(node)
    if isinstance(node, Phrase):
        return "(" + " <-> ".join(_ts_term(t) for t in node.terms) + ")"
    if isinstance(node, Or):
        return "(" + " | ".join(_ts(n) for n in node.items) + ")"
    if isinstance(node, And):
        return "(" + " & ".join("!" + _ts(n.item) if isinstance(n, Not) else _ts(n) for n in node.items) + ")"
    raise TypeError(f"not a query node: {node!r}")


def to_tsquery(query: Query) -> str:
    """A to_tsquery('simple', ...) expression over to_tsvector('simple', index_terms)."""
    return _ts(query.root)


# -------------------------------------------------------------------------------------- highlight


@dataclass(frozen=True)
class Snippet:
    text: str
    spans: list[tuple[int, int]]  # [start, end) offsets of the matched words in `text`


def _positive(node: Node) -> list[Term | Phrase]:
    if isinstance(node, (Term, Phrase)):
        return [node]
    if isinstance(node, Not):
        return []
    return [x for n in node.items for x in _positive(n)]


def _matches(term: Term, token: str) -> bool:
    return token.startswith(term.text) if term.prefix else token == term.text


def _found(tokens: list[tuple[str, int, int]], wanted: list[Term | Phrase]) -> list[tuple[int, int]]:
    # Where each token is, by its text in sorted order: a term's places are a look-up, a prefix's a range of
    # the order. Trying every term at every token was the text's length times the query's (a query of 100
    # words on a segment of 100,000 characters: seconds for one snippet).
    at: dict[str, list[int]] = {}
    for i, (token, _, _) in enumerate(tokens):
        at.setdefault(token, []).append(i)
    order = sorted(at)
    spans = []
    for item in wanted:
        terms = item.terms if isinstance(item, Phrase) else (item,)
        first = terms[0]
        if first.prefix:
            low = high = bisect.bisect_left(order, first.text)
            while high < len(order) and order[high].startswith(first.text):
                high += 1
            places = sorted(i for key in order[low:high] for i in at[key])
        else:
            places = at.get(first.text, [])
        for i in places:
            if i + len(terms) <= len(tokens) and all(_matches(t, tokens[i + k][0]) for k, t in enumerate(terms)):
                _, last_start, end = tokens[i + len(terms) - 1]
                if terms[-1].prefix and _is_cjk(terms[-1].text):  # 钱* in 钱包: only 钱
                    end = last_start + 1
                spans.append((tokens[i][1], end))
    return merge_spans(spans)


def _units(text: str) -> list[tuple[int, int, float]]:
    """The text's words and CJK characters with their weight in words of context."""
    return [
        (m.start(), m.end(), 1 / CJK_CONTEXT_CHARS if m.group("cjk") else 1.0)
        for m in re.finditer(rf"(?P<cjk>[{CJK_LETTERS}])|[^\s{CJK_LETTERS}]+", text)
    ]


def _reach(units: list[tuple[int, int, float]], budget: float) -> int:
    """How many of `units` fit in `budget` words of context."""
    n = 0
    for _, _, weight in units:
        budget -= weight
        if budget < 0:
            break
        n += 1
    return n


def highlight(text: str, query: Query, context_words: int = 6) -> Snippet:
    """The matched words of `text` (traditional or simplified, any inflection) and a few words either side
    of them (CJK characters count half a word); the first cluster of matches if they are far apart."""
    spans = _found(_tokens(text), _positive(query.root))
    units = _units(text)
    if not units:
        return Snippet(text.strip(), [])
    if not spans:
        end = units[max(_reach(units, 2 * context_words), 1) - 1][1]
        return Snippet(text[units[0][0] : end] + ("…" if end < units[-1][1] else ""), [])
    # The words of context from a character on: weights summed once, so that the words between two offsets
    # are a subtraction (summing them again for every match was the text times its matches: 24 s for a
    # segment of 100,000 characters full of matches).
    starts, ends = [a for a, _, _ in units], [b for _, b, _ in units]
    summed = list(itertools.accumulate((w for _, _, w in units), initial=0.0))

    def words(start: int, end: int) -> float:
        """The weight of the units wholly in [start, end)."""
        return max(summed[bisect.bisect_right(ends, end)] - summed[bisect.bisect_left(starts, start)], 0.0)

    cluster = [spans[0]]
    for span in spans[1:]:
        # Matches close together are shown together, but a snippet of matches all through a long text is
        # still a snippet: at most MAX_CLUSTER_WORDS words from the first match.
        if words(cluster[-1][1], span[0]) > 2 * context_words or words(cluster[0][0], span[1]) > MAX_CLUSTER_WORDS:
            break
        cluster.append(span)
    # Whole words: the units the cluster begins and ends in (wages in "wages." is shown with its stop).
    start = next((a for a, b, _ in units if a <= cluster[0][0] < b), cluster[0][0])
    end = next((b for a, b, _ in units if a < cluster[-1][1] <= b), cluster[-1][1])
    before = [u for u in units if u[1] <= start]
    after = [u for u in units if u[0] >= end]
    take_before, take_after = _reach(before[::-1], context_words), _reach(after, context_words)
    start = before[-take_before][0] if take_before else start
    end = after[take_after - 1][1] if take_after else end
    lead = "…" if take_before < len(before) else ""
    tail = "…" if take_after < len(after) else ""
    shift = len(lead) - start
    return Snippet(lead + text[start:end] + tail, [(a + shift, b + shift) for a, b in cluster])
