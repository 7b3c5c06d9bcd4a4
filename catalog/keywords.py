"""The infotext keyword expression of `/browse`: words, "phrases", and/or/not, (groups) and field queries.

    red circle            both words (and is implied)
    cat or dog, not blurry, (cat or dog) and not "low quality"
    model:v1-5  lora:add_detail  sampler:"DPM++ 2M"  seed:42  neg:blurry

`parse_keywords` gives a small tree. Two ways of matching it exist, chosen by the query's toggles:
- word search (the default): the text index matches whole words, any case (`catalog/text_index.py`);
- exact search (case sensitive or regex): each term is a substring (or a regular expression in RE2 syntax,
  `catalog/patterns.py`) of the searched text, evaluated row by row by `matches`, the same function SQLite
  calls. This is what "exactly, not approximately" means in SPEC §4: the result equals a brute-force scan by
  construction.

An expression is at most `MAX_KEYWORD_CHARS` long, with at most `MAX_TERMS` terms nested at most `MAX_DEPTH`
deep (brackets and `not`s): anything else is an InvalidRequest("keyword", …), as is every other parse error.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from catalog.patterns import compiled, shown
from core.errors import InvalidRequest

FIELDS = ("model", "lora", "sampler", "seed", "neg")
MAX_KEYWORD_CHARS = 1000
MAX_TERMS = 64
MAX_DEPTH = 32  # brackets and `not`s inside each other
_TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([^\s()"]+))')


@dataclass(frozen=True)
class Term:
    text: str
    field: str | None = None  # one of FIELDS, or None for the searched text
    quoted: bool = False


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Term | And | Or | Not


def parse_keywords(text: str) -> Node | None:
    """The expression's tree, None for an empty one, or InvalidRequest("keyword", …) saying what is wrong."""
    if len(text) > MAX_KEYWORD_CHARS:
        raise InvalidRequest(
            "keyword", f"the expression is {len(text)} characters long; at most {MAX_KEYWORD_CHARS}"
        )
    tokens = _tokens(text)
    if not tokens:
        return None
    terms = sum(1 for kind, _ in tokens if kind in ("word", "quoted"))
    if terms > MAX_TERMS:
        raise InvalidRequest("keyword", f"the expression has {terms} terms; at most {MAX_TERMS}")
    parser = _Parser(tokens)
    node = parser.expression()
    if parser.position < len(tokens):
        raise InvalidRequest("keyword", f"unexpected {shown(tokens[parser.position][1])} in {shown(text)}")
    return node


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise InvalidRequest("keyword", f"unbalanced quote in {shown(text)}")
        position = match.end()
        opening, closing, quoted, word = match.groups()
        if opening:
            found.append(("(", "("))
        elif closing:
            found.append((")", ")"))
        elif quoted is not None:
            found.append(("quoted", re.sub(r"\\(.)", r"\1", quoted)))
        else:
            lower = word.lower()
            found.append((lower, word) if lower in ("and", "or", "not") else ("word", word))
    return found


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.position = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.position][0] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def expression(self) -> Node:
        items = [self.conjunction()]
        while self.peek() == "or":
            self.take()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self) -> Node:
        items = [self.negation()]
        while self.peek() not in (None, "or", ")"):
            if self.peek() == "and":
                self.take()
            items.append(self.negation())
        return items[0] if len(items) == 1 else And(tuple(items))

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise InvalidRequest("keyword", f"brackets and 'not' nest more than {MAX_DEPTH} deep")

    def negation(self) -> Node:
        if self.peek() == "not":
            self.take()
            self.deeper()
            node = Not(self.negation())
            self.depth -= 1
            return node
        return self.atom()

    def atom(self) -> Node:
        if self.peek() is None:
            raise InvalidRequest("keyword", "the expression ends where a word was expected")
        kind, value = self.take()
        if kind == "(":
            self.deeper()
            node = self.expression()
            if self.peek() != ")":
                raise InvalidRequest("keyword", "a '(' is not closed")
            self.take()
            self.depth -= 1
            return node
        if kind in (")", "and", "or", "not"):
            raise InvalidRequest("keyword", f"unexpected {shown(value)}")
        if kind == "word" and ":" in value:
            name, _, rest = value.partition(":")
            if name.lower() in FIELDS:
                if rest == "" and self.peek() == "quoted":
                    return Term(self.take()[1], name.lower(), quoted=True)
                if rest == "":
                    raise InvalidRequest("keyword", f"{name}: needs a value, e.g. {name}:something")
                return Term(rest, name.lower())
        return Term(value, None, quoted=kind == "quoted")


# ----- exact matching (case sensitive or regex), row by row --------------------------------------------------
@dataclass(frozen=True)
class SearchedTexts:
    """The texts of one image that an exact keyword search looks at."""

    text: str  # the searched text for terms without a field (depends on the negative-prompt mode)
    negative: str
    model: str
    sampler: str
    networks: str  # "lora:a\nembedding:b"
    seed: str


def matches(node: Node, texts: SearchedTexts, case_sensitive: bool, regex: bool) -> bool:
    """Whether the image's texts satisfy the expression, each term a substring (or regex) of its text."""
    if isinstance(node, And):
        return all(matches(item, texts, case_sensitive, regex) for item in node.items)
    if isinstance(node, Or):
        return any(matches(item, texts, case_sensitive, regex) for item in node.items)
    if isinstance(node, Not):
        return not matches(node.item, texts, case_sensitive, regex)
    return term_matches(node, _field_text(node, texts), case_sensitive, regex)


def _field_text(term: Term, texts: SearchedTexts) -> str:
    if term.field is None:
        return texts.text
    if term.field == "lora":
        return texts.networks
    return {"neg": texts.negative, "model": texts.model, "sampler": texts.sampler, "seed": texts.seed}[
        term.field
    ]


def term_matches(term: Term, text: str, case_sensitive: bool, regex: bool) -> bool:
    if term.field == "seed" and not regex:
        return text == term.text.strip()
    if term.field == "lora" and not regex:
        names = [line.partition(":")[2] for line in text.splitlines() if line.startswith("lora:")]
        return any(_contains(name, term.text, case_sensitive) for name in names)
    if regex:
        return compiled(term.text, case_sensitive).search(text) is not None
    return _contains(text, term.text, case_sensitive)


def _contains(text: str, needle: str, case_sensitive: bool) -> bool:
    return needle in text if case_sensitive else needle.casefold() in text.casefold()


def check_patterns(node: Node | None, case_sensitive: bool) -> None:
    """Compile every term as a regex (RE2, `catalog/patterns.py`) now, so a bad one is a clear error before any
    search."""
    if isinstance(node, And | Or):
        for item in node.items:
            check_patterns(item, case_sensitive)
    elif isinstance(node, Not):
        check_patterns(node.item, case_sensitive)
    elif isinstance(node, Term):
        compiled(node.text, case_sensitive)


# ----- the tree as text, for the SQLite function that evaluates it row by row --------------------------------
def encode(node: Node) -> str:
    def walk(n: Node):
        if isinstance(n, Term):
            return ["t", n.text, n.field, n.quoted]
        if isinstance(n, Not):
            return ["not", walk(n.item)]
        return ["and" if isinstance(n, And) else "or", [walk(i) for i in n.items]]

    return json.dumps(walk(node))


@functools.lru_cache(maxsize=64)
def decode(text: str) -> Node:
    def build(item) -> Node:
        if item[0] == "t":
            return Term(item[1], item[2], item[3])
        if item[0] == "not":
            return Not(build(item[1]))
        parts = tuple(build(i) for i in item[1])
        return And(parts) if item[0] == "and" else Or(parts)

    return build(json.loads(text))


def sql_keyword(
    tree: str,
    text: str,
    negative: str,
    model: str,
    sampler: str,
    networks: str,
    seed: str,
    cs: int,
    regex: int,
) -> int:
    """The SQLite function `salon_keyword`: `matches` on one row (networks arrive as the JSON column)."""
    names = "\n".join(json.loads(networks)) if '"lora"' in tree else ""  # only lora: looks at them
    texts = SearchedTexts(text or "", negative or "", model, sampler, names, seed)
    return int(matches(decode(tree), texts, bool(cs), bool(regex)))
