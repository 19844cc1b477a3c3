"""Push requests for devices that are not connected."""

from tidings.push.sink import RecordingPushSink

__all__ = ["RecordingPushSink"]
