"""Push notifications to devices that are not connected (APNs, FCM, a signed webhook).

- :class:`GracefulPushSink` (chat server side) holds requests for ``push_grace_s``,
  drops devices that reconnected and collapses bursts per channel;
- :class:`PushDispatcher` (``tidings up``, ``tidings push``) sends them through each
  device's provider with retries, limits, pruning of dead tokens and metrics;
- :mod:`tidings.push.kafka` carries requests from chat servers to push workers.

See docs/push.md.
"""

from tidings.push.backoff import Backoff
from tidings.push.base import Outcome, Provider, Verdict
from tidings.push.dispatcher import PushDispatcher, Result
from tidings.push.grace import GracefulPushSink
from tidings.push.payload import Notification

__all__ = [
    "Backoff",
    "GracefulPushSink",
    "Notification",
    "Outcome",
    "Provider",
    "PushDispatcher",
    "Result",
    "Verdict",
]
