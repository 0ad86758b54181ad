"""Per-user quota overrides on a local stack: ``docpipe quota set USER NAME VALUE``, and benches and tests.

An override is an item in the stack's UsageTable (:class:`docpipe.adapters.usage.UsageRepository`),
read by the API on every upload request: a new value holds from the next request on.
"""

from __future__ import annotations

from typing import Any

from docpipe.adapters.usage import UsageRepository
from docpipe.quotas import LIMIT_NAMES


def usage_repository(table: str, dynamodb: Any) -> UsageRepository:
    return UsageRepository(table, client=dynamodb)


def set_quota(stack: Any, owner: str, name: str, value: int | None) -> dict[str, int]:
    """Set ``owner``'s ``name`` limit on a running :class:`LocalStack` (``None``: back to the default, 0: unlimited)."""
    if name not in LIMIT_NAMES:
        raise ValueError(f"unknown limit {name!r}; one of {', '.join(LIMIT_NAMES)}")
    repo = usage_repository(stack.template.physical_name("UsageTable"), stack.client("dynamodb"))
    return repo.set_override(owner, name, value)
