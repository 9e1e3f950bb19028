"""The library's one retry policy, from tenacity: a bounded number of attempts with
exponential backoff, retrying only what the caller names as transient.

Callers say what is worth another try (a key service that did not answer, a lost race
to create a row); everything else is raised at once. The last failure is re-raised as
it was, so the caller decides what it means (``KeyUnavailable``, say): a retry never
falls back to another key or to plaintext.

    for attempt in retrying(on=ProviderUnavailable, attempts=4, backoff=0.05):
        with attempt:
            return provider.unwrap(...)
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tenacity import (
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

Transient = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


def retrying(
    *,
    on: Transient,
    attempts: int,
    backoff: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Retrying:
    """At most ``attempts`` tries; before try ``n`` (from 2) wait ``backoff * 2**(n-2)``
    seconds; retry only exceptions matching ``on`` (classes, or a predicate)."""
    condition = (
        retry_if_exception(on)
        if callable(on) and not isinstance(on, type)
        else retry_if_exception_type(on)
    )
    return Retrying(
        retry=condition,
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=backoff, min=0, max=60),
        sleep=sleep,
        reraise=True,
    )
