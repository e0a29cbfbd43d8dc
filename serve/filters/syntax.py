"""Amazon Personalize's filter expressions as text to a syntax tree: a lexer and a recursive
descent parser of the grammar in :mod:`mfrec.serve.filters` (see its docstring).

Every error is a :class:`FilterSyntaxError` whose message is one line naming the column and the
text found there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


class FilterSyntaxError(ValueError):
    """A filter expression that does not follow the grammar (one-line message)."""


# --- tokens ----------------------------------------------------------------------------------

KEYWORDS = ("INCLUDE", "EXCLUDE", "WHERE", "AND", "OR", "NOT", "IN", "IF")
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
_TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<param>\$[A-Za-z0-9_]+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
  | (?P<op>!=|<=|>=|=|<|>)
  | (?P<punct>[(),|*])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # string, number, param, name, keyword, op, punct, end
    text: str  # the value: a string without its quotes, a keyword in capitals
    column: int  # 1-based


def tokens(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``end`` token."""
    found, position = [], 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            column = position + len(stripped[position:]) - len(stripped[position:].lstrip()) + 1
            near = stripped[column - 1 : column + 9]
            hint = " (strings take double quotes)" if near.startswith("'") else ""
            raise FilterSyntaxError(f"unexpected character at column {column}: {near!r}{hint}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        column = match.start(kind) + 1
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif kind == "name" and value.upper() in KEYWORDS:
            kind, value = "keyword", value.upper()
        found.append(Token(kind, value, column))
        position = match.end()
    found.append(Token("end", "", len(stripped) + 1))
    return found


# --- syntax tree -----------------------------------------------------------------------------

DATASETS = ("Items", "Interactions", "CurrentUser", "CurrentItem")


@dataclass(frozen=True)
class Field:
    """``Items.GENRE``: a dataset of :data:`DATASETS` and a field name as written."""

    dataset: str
    name: str

    def __str__(self) -> str:
        return f"{self.dataset}.{self.name}"


@dataclass(frozen=True)
class Param:
    """``$GENRE``: a placeholder filled from the request's ``filterValues`` (key ``GENRE``)."""

    name: str


@dataclass(frozen=True)
class Literal:
    """A quoted string, a number (``text`` as written, ``number`` its value) or ``*``."""

    text: str
    number: float | None = None


Value = Literal | Param | Field  # Field: a CurrentItem field


@dataclass(frozen=True)
class Membership:
    """``field IN (values)`` or ``field NOT IN (values)``."""

    field: Field
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class Comparison:
    """``field op value`` with ``op`` one of :data:`COMPARISONS` (numbers only)."""

    field: Field
    op: str
    value: Value


@dataclass(frozen=True)
class Junction:
    """``terms`` joined by ``AND`` (``op == "AND"``) or ``OR``."""

    op: str
    terms: tuple[Condition, ...]


Condition = Membership | Comparison | Junction


@dataclass(frozen=True)
class Expression:
    """``INCLUDE|EXCLUDE ItemID WHERE <where> [IF <condition>]``."""

    action: str
    where: Condition
    condition: Condition | None = None


@dataclass(frozen=True)
class Filter:
    """Expressions chained with ``|``, and the text they came from."""

    expressions: tuple[Expression, ...]
    text: str


# --- parser ----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokens(text)
        self.at = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.at]

    def error(self, wanted: str) -> FilterSyntaxError:
        token = self.token
        found = "the end of the expression" if token.kind == "end" else repr(token.text)
        return FilterSyntaxError(f"expected {wanted} at column {token.column}, found {found}")

    def take(self, kind: str, text: str | None = None) -> Token | None:
        token = self.token
        if token.kind == kind and (text is None or token.text == text):
            self.at += 1
            return token
        return None

    def expect(self, kind: str, text: str | None, wanted: str) -> Token:
        token = self.take(kind, text)
        if token is None:
            raise self.error(wanted)
        return token

    def filter(self, text: str) -> Filter:
        expressions = [self.expression()]
        while self.take("punct", "|"):
            expressions.append(self.expression())
        if self.token.kind != "end":
            raise self.error("AND, OR, IF, '|' or the end of the expression")
        return Filter(tuple(expressions), text)

    def expression(self) -> Expression:
        action = self.take("keyword", "INCLUDE") or self.take("keyword", "EXCLUDE")
        if action is None:
            raise self.error("INCLUDE or EXCLUDE")
        target = self.token
        if target.kind != "name" or target.text.lower() != "itemid":
            if target.kind == "name" and target.text.lower() in ("actionid", "userid"):
                raise FilterSyntaxError(
                    f"{target.text} filters (actions, user segments) are not supported; "
                    "filter items with ItemID"
                )
            raise self.error("ItemID")
        self.at += 1
        self.expect("keyword", "WHERE", "WHERE")
        where = self.junction()
        condition = self.junction() if self.take("keyword", "IF") else None
        return Expression(action.text, where, condition)

    def junction(self) -> Condition:
        """Conditions joined by AND and OR; AND binds tighter."""
        alternatives = [self.conjunction()]
        while self.take("keyword", "OR"):
            alternatives.append(self.conjunction())
        return alternatives[0] if len(alternatives) == 1 else Junction("OR", tuple(alternatives))

    def conjunction(self) -> Condition:
        terms = [self.condition()]
        while self.take("keyword", "AND"):
            terms.append(self.condition())
        return terms[0] if len(terms) == 1 else Junction("AND", tuple(terms))

    def field(self) -> Field:
        token = self.token
        if token.kind != "name" or "." not in token.text:
            raise self.error("a field like Items.GENRE")
        dataset, name = token.text.split(".")
        canonical = next((d for d in DATASETS if d.lower() == dataset.lower()), None)
        if canonical is None:
            raise FilterSyntaxError(
                f"unknown dataset {dataset!r} at column {token.column}; "
                f"use one of {', '.join(DATASETS)}"
            )
        self.at += 1
        return Field(canonical, name)

    def condition(self) -> Condition:
        field = self.field()
        if self.take("keyword", "NOT"):
            self.expect("keyword", "IN", "IN after NOT")
            return Membership(field, self.values(), negated=True)
        if self.take("keyword", "IN"):
            return Membership(field, self.values())
        op = self.take("op")
        if op is None:
            raise self.error(f"IN, NOT IN or a comparison ({' '.join(COMPARISONS)}) after {field}")
        return Comparison(field, op.text, self.value(in_list=False))

    def values(self) -> tuple[Value, ...]:
        """``("a", "b")``, ``($PARAM)``, or a bare ``$PARAM`` / ``CurrentItem.FIELD``."""
        if not self.take("punct", "("):
            if self.token.kind in ("param", "name"):
                return (self.value(in_list=False),)
            raise self.error("'(' and a list of values")
        values = [self.value(in_list=True)]
        while self.take("punct", ","):
            values.append(self.value(in_list=True))
        self.expect("punct", ")", "',' or ')'")
        return tuple(values)

    def value(self, in_list: bool) -> Value:
        token = self.token
        if token.kind == "string" or (token.kind == "punct" and token.text == "*" and in_list):
            self.at += 1
            return Literal(token.text)
        if token.kind == "number":
            self.at += 1
            return Literal(token.text, float(token.text))
        if token.kind == "param":
            self.at += 1
            return Param(token.text[1:])
        if token.kind == "name" and "." in token.text:
            return self.field()
        wanted = "a quoted string, a number, a $PARAMETER or CurrentItem.FIELD"
        if token.kind == "name":
            raise FilterSyntaxError(
                f"expected {wanted} at column {token.column}, found {token.text!r}"
                f' (quote strings: "{token.text}")'
            )
        raise self.error(wanted)


@lru_cache(maxsize=1024)
def parse(text: str) -> Filter:
    """The syntax tree of a filter expression; parsed once per distinct text (cached).

    Raises
    ------
    FilterSyntaxError
        With a one-line message naming the column.
    """
    if not isinstance(text, str) or not text.strip():
        raise FilterSyntaxError("the filter expression is empty")
    return _Parser(text).filter(text)
