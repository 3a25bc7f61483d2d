"""LlamaIndex ``MetadataFilters`` as a Chroma ``where`` dict; a filter Chroma cannot express raises naming it."""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from matryoshka_rag.errors import InputError

__all__ = ["to_chroma_where"]

_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}
_CONDITIONS = {FilterCondition.AND: "$and", FilterCondition.OR: "$or"}
_SCALARS = (str, int, float, bool)


def _describe(item: MetadataFilter) -> str:
    return f"{item.key!r} {item.operator.value} {item.value!r}"


def _clause(item: MetadataFilter) -> dict[str, Any]:
    operator = _OPERATORS.get(item.operator)
    if operator is None:
        supported = ", ".join(op.value for op in _OPERATORS)
        raise InputError(
            f"filter {_describe(item)}: Chroma has no {item.operator.value!r} operator (supported: {supported})"
        )
    value = item.value
    if operator in ("$in", "$nin"):
        if not isinstance(value, list) or not value or not all(isinstance(v, _SCALARS) for v in value):
            raise InputError(
                f"filter {_describe(item)}: {item.operator.value} needs a non-empty list of values"
            )
    elif not isinstance(value, _SCALARS):
        raise InputError(f"filter {_describe(item)}: Chroma compares with a str, int, float or bool only")
    return {item.key: {operator: value}}


def to_chroma_where(filters: MetadataFilters) -> dict[str, Any] | None:
    """``filters`` (nested, and/or) as a Chroma ``where``; None when it holds no filter.

    Raises ``InputError`` naming the filter for an operator Chroma lacks (``text_match``, ``contains``,
    ``any``, ``all``, ``is_empty``), a value it cannot compare (None, a dict) or the ``not`` condition.
    """
    clauses = []
    for item in filters.filters:
        clause = to_chroma_where(item) if isinstance(item, MetadataFilters) else _clause(item)
        if clause is not None:
            clauses.append(clause)
    condition = filters.condition or FilterCondition.AND
    if condition not in _CONDITIONS:
        raise InputError(f"filter condition {condition.value!r} of {filters!r}: Chroma has only and/or")
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {_CONDITIONS[condition]: clauses}
