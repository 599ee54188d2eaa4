"""The bound on rows one query reply may hold (``max_query_rows``, issue 8: bounded query sizes).

0.6.8 answers a query without ``limit`` with every match. We keep that up to the bound; past it the
reply is a 400 that says how many rows matched and how to get them (pages, a narrower filter, or
only the count), rather than a silently cut list: a 0.6.8 client reading a truncated reply would
take it for the whole answer.
"""

from __future__ import annotations

from mitosis.coordinator import errors

PAGING_HINT = (
    "page with limit and offset (limit at most {bound}), narrow the filter, or ask only for the count"
)


def check_limit(limit: int | None, bound: int | None) -> None:
    """An explicit ``limit`` above the bound is refused (400) before any query runs."""
    if bound is not None and limit is not None and limit > bound:
        raise errors.invalid(
            f"limit {limit} is above the {bound} rows one query reply may hold (max_query_rows); "
            f"page with limit at most {bound} and offset"
        )


def fetch_limit(limit: int | None, bound: int | None) -> int | None:
    """The row limit to ask the database for: one past the bound when the caller gave none."""
    if limit is not None or bound is None:
        return limit
    return bound + 1


def too_many(kind: str, matched: int, bound: int, hint: str = PAGING_HINT) -> errors.ApiError:
    return errors.invalid(
        f"{matched} {kind} match this query, more than the {bound} one reply may hold "
        f"(max_query_rows): {hint.format(bound=bound)} (count=true)"
    )
