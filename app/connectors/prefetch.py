"""Read a source's pages ahead of the writer, so the network and parsing overlap the writes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from app.connectors.base import Page


class Prefetch:
    """Runs the page producer up to `depth` pages ahead; its errors surface in order."""

    def __init__(self, pages: AsyncIterator[Page], *, depth: int) -> None:
        self._pages = pages
        # None marks the producer's end; an exception is the producer's failure.
        self._queue: asyncio.Queue[Page | BaseException | None] = asyncio.Queue(maxsize=depth)
        self._failed = False
        self._ended = False
        self._producer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Prefetch:
        self._producer = asyncio.create_task(self._produce(), name="page-prefetch")
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
        aclose = getattr(self._pages, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()

    async def _produce(self) -> None:
        try:
            async for page in self._pages:
                await self._queue.put(page)
            await self._queue.put(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, raised there
            self._failed = True
            await self._queue.put(exc)

    def ready(self) -> bool:
        """A page is waiting and the producer has not failed (a failure ends the batch first,
        so the pages before it commit)."""
        return not self._failed and not self._queue.empty()

    async def next(self) -> Page | None:
        """The next page; None when the producer ended; the producer's error, raised."""
        if self._ended:
            return None
        item = await self._queue.get()
        if item is None:
            self._ended = True
            return None
        if isinstance(item, BaseException):
            raise item
        return item
