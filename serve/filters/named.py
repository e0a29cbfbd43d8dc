"""Named filters of a deployment: ``MFREC_FILTERS`` is the path of a JSON object mapping a
filter's name or full ARN to its expression, looked up by a request's ``filterArn``.

A ``filterArn`` matches a key equal to it, or, when it is an ARN
(``arn:aws:personalize:<region>:<account>:filter/<name>``), a key equal to its last segment
after ``filter/``; a key that is an ARN also answers to that segment. Every expression is
compiled when the file is read, so a bad one is reported with its name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache

from mfrec.serve.filters.binding import FilterNotSupported, compile_filter
from mfrec.serve.filters.syntax import Filter, FilterSyntaxError

ENV = "MFREC_FILTERS"
_ARN_SEPARATOR = "filter/"


class NamedFilterError(ValueError):
    """A ``filterArn`` that is not in the deployment file, or a file that cannot be used."""


def short_name(arn: str) -> str:
    """The filter's name in an ARN (the text after the last ``filter/``), else ``arn``."""
    head, separator, tail = arn.rpartition(_ARN_SEPARATOR)
    return tail if separator and tail else arn


class NamedFilters:
    """Expressions by name (and by ARN), compiled once.

    Parameters
    ----------
    expressions : mapping of name or ARN -> expression text
    source : where they came from, for error messages
    """

    def __init__(self, expressions: Mapping[str, str], source: str = ENV) -> None:
        self.source = source
        self.by_key: dict[str, Filter] = {}
        for key, text in expressions.items():
            if not isinstance(text, str):
                raise NamedFilterError(f"{source}: filter {key!r} must be an expression string")
            try:
                compiled = compile_filter(text)
            except (FilterSyntaxError, FilterNotSupported) as exc:
                raise NamedFilterError(f"{source}: filter {key!r}: {exc}") from None
            self.by_key[key] = compiled
            self.by_key.setdefault(short_name(key), compiled)

    @classmethod
    def from_file(cls, path: str) -> NamedFilters:
        try:
            with open(path, encoding="utf-8") as file:
                expressions = json.load(file)
        except (OSError, ValueError) as exc:
            raise NamedFilterError(f"{ENV}={path!r} cannot be read: {exc}") from None
        if not isinstance(expressions, dict):
            raise NamedFilterError(
                f'{ENV}={path!r} must hold a JSON object like {{"comedies": "INCLUDE ItemID '
                'WHERE Items.GENRE IN (\\"Comedy\\")"}'
            )
        return cls(expressions, f"{ENV}={path!r}")

    def get(self, arn: str) -> Filter:
        """The filter a ``filterArn`` names.

        Raises
        ------
        NamedFilterError
            No key matches.
        """
        found = self.by_key.get(arn) or self.by_key.get(short_name(arn))
        if found is None:
            known = ", ".join(sorted(k for k in self.by_key if _ARN_SEPARATOR not in k)) or "none"
            raise NamedFilterError(
                f"filterArn {arn!r} is not a filter of this deployment ({self.source}; "
                f"names: {known:.200}); add it there or send filterExpression"
            )
        return found


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> NamedFilters:
    return NamedFilters.from_file(path)


def deployment_filters(environ: Mapping[str, str] | None = None) -> NamedFilters:
    """The named filters of ``$MFREC_FILTERS`` (read again only when the file changes).

    Raises
    ------
    NamedFilterError
        The variable is not set, or the file cannot be read or holds a bad expression.
    """
    path = (os.environ if environ is None else environ).get(ENV, "").strip()
    if not path:
        raise NamedFilterError(
            f"filterArn needs the deployment's named filters: set {ENV} to a JSON file mapping "
            "filter names to expressions, or send filterExpression"
        )
    try:
        mtime = os.path.getmtime(path)
    except OSError as exc:
        raise NamedFilterError(f"{ENV}={path!r} cannot be read: {exc.strerror}") from None
    return _load(path, mtime)
