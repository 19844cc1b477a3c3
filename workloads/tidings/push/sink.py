"""Where push requests go.

The provider clients (APNs, FCM, webhook) are the push issue's work; until then the
embedded default records each request (metric and log line) so the decision of *who*
gets a push is made and observable in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tidings import metrics
from tidings.core.model import Message

log = logging.getLogger(__name__)


class RecordingPushSink:
    def __init__(self) -> None:
        self.requests: list[tuple[int, tuple[int, ...], int]] = []

    async def request(self, user_id: int, device_ids: Sequence[int], message: Message) -> None:
        metrics.PUSH_REQUESTS.inc(len(device_ids))
        self.requests.append((user_id, tuple(device_ids), message.message_id))
        del self.requests[:-1000]
        log.info(
            "push requested",
            extra={
                "user_id": user_id,
                "devices": list(device_ids),
                "message_id": message.message_id,
            },
        )
