"""A socket's loop ends when it is cancelled, even as news arrives: on Python 3.11 `asyncio.wait_for`
swallows a cancellation that comes while the awaited event is set, and a job list's poller (cancelled
when its socket closes) would then poll forever, holding up the server's shutdown."""

import asyncio

import pytest

from jobs.logs.consumers import JobStatesConsumer


def test_waiting_for_news_ends_when_cancelled_as_the_news_arrives():
    async def scenario():
        consumer = JobStatesConsumer()
        consumer.wakeup = asyncio.Event()
        waiting = asyncio.create_task(consumer.wait_for_news(60))
        await asyncio.sleep(0)  # it waits now
        consumer.wakeup.set()  # news...
        waiting.cancel()  # ...and the socket closes, in the same turn of the loop
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())


def test_waiting_for_news_returns_on_news_or_after_its_timeout():
    async def scenario():
        consumer = JobStatesConsumer()
        consumer.wakeup = asyncio.Event()
        await consumer.wait_for_news(0.01)  # nothing came: back after the timeout
        waiting = asyncio.create_task(consumer.wait_for_news(60))
        await asyncio.sleep(0)
        consumer.wakeup.set()
        await asyncio.wait_for(waiting, 10)

    asyncio.run(scenario())
