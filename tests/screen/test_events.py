"""The screen's live-update stream: a page that opens it late still learns the state of now."""

from __future__ import annotations

import asyncio
from typing import Any

from device.screen.events import Events


def test_a_change_made_before_the_stream_starts_is_in_its_first_events() -> None:
    # The response is made (and its generator created) before the server starts reading it; a change in
    # that gap must show in the snapshot, or it is lost: the queue did not exist yet when it was published.
    async def scenario() -> list[str]:
        events = Events()
        consult: dict[str, Any] = {"phase": "waiting", "position": None}
        stream = events.stream(initial=lambda: [("consult", dict(consult))])
        consult["position"] = 1
        events.publish("consult", dict(consult))
        return [await anext(stream), await anext(stream)]

    _retry, first = asyncio.run(scenario())
    assert first == 'event: consult\ndata: {"phase": "waiting", "position": 1}\n\n'


def test_changes_after_the_stream_started_follow_the_snapshot_in_order() -> None:
    async def scenario() -> list[str]:
        events = Events()
        stream = events.stream(initial=lambda: [("consult", {"position": 2})])
        got = [await anext(stream), await anext(stream)]
        events.publish("consult", {"position": 1})
        events.publish("reading", {"code": "8867-4"})
        got += [await anext(stream), await anext(stream)]
        await stream.aclose()
        assert not events._queues  # a closed page leaves no subscription behind
        return got

    assert asyncio.run(scenario())[1:] == [
        'event: consult\ndata: {"position": 2}\n\n',
        'event: consult\ndata: {"position": 1}\n\n',
        'event: reading\ndata: {"code": "8867-4"}\n\n',
    ]
