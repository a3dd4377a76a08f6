"""`together`: a page's independent API reads at once, failing as the first failed read."""

from __future__ import annotations

import asyncio

import pytest

from armillary.console.errors import NotFoundPage
from armillary.console.routes import together


async def test_results_come_back_in_the_order_asked() -> None:
    async def read(value: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return value

    assert await together(read(1, 0.02), read(2, 0), read(3, 0.01)) == [1, 2, 3]


async def test_the_first_failure_is_raised_as_itself_and_the_other_reads_stop() -> None:
    stopped = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()

    async def missing() -> None:
        raise NotFoundPage

    # Not an ExceptionGroup: the console's handler for NotFoundPage must see it.
    with pytest.raises(NotFoundPage):
        await together(slow(), missing())
    assert stopped.is_set()
