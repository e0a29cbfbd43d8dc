"""Amazon Personalize's filter expression language, for item recommendations (torch-free).

The grammar, as Personalize documents it (keywords and dataset names in any case; field names
match the model's ``item_attribute.<name>`` arrays exactly, else ignoring case)::

    filter      := expression ( "|" expression )*
    expression  := ( "INCLUDE" | "EXCLUDE" ) "ItemID" "WHERE" conditions [ "IF" conditions ]
    conditions  := condition ( ( "AND" | "OR" ) condition )*        AND binds tighter than OR
    condition   := field [ "NOT" ] "IN" values  |  field op scalar
    op          := "=" | "!=" | "<" | "<=" | ">" | ">="               numbers only
    values      := "(" value ( "," value )* ")"  |  $PARAM  |  CurrentItem.<field>
    value       := "quoted string" | number | $PARAM | CurrentItem.<field> | *
    scalar      := number | $PARAM | CurrentItem.<field>
    field       := Items.<field> | Interactions.EVENT_TYPE | CurrentUser.<field>

Meaning, on one model:

- ``Items.<field> IN (...)``: the item has one of the values; a multi-valued field holds several
  values separated by ``|`` (``Comedy|Drama``), as in Personalize's Items dataset, and matches
  when any of them is listed. ``NOT IN`` is its complement (items without a value included).
  ``Items.ITEM_ID`` matches the item ids.
- Comparisons read the field as a number; an item whose value is not one never matches.
- ``Interactions.EVENT_TYPE IN ("*")``: the items the user interacted with in training (the
  model keeps which items, not their event types, so any other event type is a clear
  "not supported by this model" error).
- ``CurrentItem.<field>``: the value of the request's item (related-items requests only).
- ``IF CurrentUser.<field> ...``: parsed, then refused: mfrec models keep no user metadata.
- ``A | B``: INCLUDE results are united, EXCLUDE results are united, and the items returned are
  ``(union of includes) - (union of excludes)`` (every item when there is no INCLUDE).
- ``$PARAM`` takes its value from the request's ``filterValues`` (key ``PARAM``), quoted as
  Personalize quotes it: ``{"GENRE": "\\"Comedy\\",\\"Drama\\""}``. A part of an EXCLUDE
  expression whose value is missing is dropped; a missing value in an INCLUDE is an error.

:func:`request_filter` turns a request's ``filterExpression`` or ``filterArn`` (from
``MFREC_FILTERS``, :mod:`mfrec.serve.filters.named`) and ``filterValues`` into a
:class:`BoundFilter`; :func:`item_masks` applies it to a catalogue. Expressions are parsed and
checked once per distinct text (cached).
"""

from __future__ import annotations

from collections.abc import Mapping

from mfrec.serve.filters.binding import (
    BoundFilter,
    FilterNotSupported,
    FilterValueError,
    bind,
    compile_filter,
    split_values,
)
from mfrec.serve.filters.masks import FilterEvaluationError, ItemTable, item_masks
from mfrec.serve.filters.named import NamedFilterError, NamedFilters, deployment_filters
from mfrec.serve.filters.syntax import FilterSyntaxError, parse

__all__ = [
    "BoundFilter",
    "FilterEvaluationError",
    "FilterNotSupported",
    "FilterSyntaxError",
    "FilterValueError",
    "ItemTable",
    "NamedFilterError",
    "NamedFilters",
    "REQUEST_ERRORS",
    "bind",
    "compile_filter",
    "deployment_filters",
    "item_masks",
    "parse",
    "request_filter",
    "split_values",
]

#: What :func:`request_filter` raises: a record's error, never a server error.
REQUEST_ERRORS = (FilterSyntaxError, FilterNotSupported, FilterValueError, NamedFilterError)
#: Personalize's own limits: an expression's length (CreateFilter), and filterValues' entries and
#: the length of each value (GetRecommendations); they also bound the work of one record.
MAX_EXPRESSION_LENGTH = 2500
MAX_FILTER_VALUES = 25
MAX_VALUE_LENGTH = 1000


def request_filter(
    expression=None,
    arn=None,
    values=None,
    user_id: str | None = None,
    item_id: str | None = None,
    named: NamedFilters | None = None,
) -> BoundFilter | None:
    """The bound filter of a request's ``filterExpression`` or ``filterArn`` and
    ``filterValues`` (None when it has neither).

    Parameters
    ----------
    expression : str or None, an inline expression (mfrec's extension)
    arn : str or None, a filter name or ARN from the deployment's named filters
    values : mapping of parameter name -> Personalize-quoted values, or None
    user_id, item_id : the request's user (for Interactions) and item (for CurrentItem)
    named : the named filters; default :func:`deployment_filters` (``MFREC_FILTERS``)

    Raises
    ------
    One of :data:`REQUEST_ERRORS`, with a one-line message.
    """
    if expression is not None and arn is not None:
        raise FilterValueError("give filterArn or filterExpression, not both")
    if expression is None and arn is None:
        if values is not None:
            raise FilterValueError("filterValues needs a filterArn or a filterExpression")
        return None
    if values is not None and not isinstance(values, Mapping):
        raise FilterValueError('filterValues must be an object like {"GENRE": "\\"Comedy\\""}')
    if values is not None and len(values) > MAX_FILTER_VALUES:
        raise FilterValueError(
            f"filterValues has {len(values)} entries; at most {MAX_FILTER_VALUES}"
        )
    for name, value in (values or {}).items():
        if len(str(name)) > 50 or (isinstance(value, str) and len(value) > MAX_VALUE_LENGTH):
            raise FilterValueError(
                f"filterValues {str(name)[:50]!r}: keys have at most 50 characters and values at "
                f"most {MAX_VALUE_LENGTH}"
            )
    if expression is not None:
        if not isinstance(expression, str):
            raise FilterSyntaxError("filterExpression must be a string")
        if len(expression) > MAX_EXPRESSION_LENGTH:
            raise FilterSyntaxError(
                f"filterExpression has {len(expression)} characters; at most "
                f"{MAX_EXPRESSION_LENGTH} (Personalize's limit)"
            )
        compiled = compile_filter(expression)
    else:
        if not isinstance(arn, str) or not arn:
            raise NamedFilterError("filterArn must be a non-empty string")
        compiled = (named or deployment_filters()).get(arn)
    return bind(compiled, values, user_id, item_id)
