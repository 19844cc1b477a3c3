"""Whether a signed token's session is still on: its device exists, is the user's, and
has not been logged in again (or out) since the token was issued.

The signature says a token is ours; this says it is still good. Both the HTTP API (every
call) and the chat gateway (every ``hello``, and when a device changes) ask it. The
device comes from the directory cache, which every process keeps current by following
the directory's change log, so an ended session ends everywhere within a refresh — and
at once for writes confirmed before they return (``directory_write_confirm_s``).
"""

from __future__ import annotations

from typing import Protocol

from tidings.auth import Identity
from tidings.core import errors
from tidings.core.errors import ProtocolError
from tidings.storage.base import Device


class Devices(Protocol):
    async def get_device(self, device_id: int) -> Device | None:
        """The device, or None when there is none (logged out or unlinked)."""
        ...


def session_live(device: Device | None, identity: Identity) -> bool:
    """Whether the token's session is still on: ``device`` exists, is the user's, and has the
    token's version."""
    return (
        device is not None
        and device.user_id == identity.user_id
        and device.token_version == identity.token_version
    )


async def check_session(devices: Devices, identity: Identity) -> Device:
    """The identity's device; :class:`ProtocolError` (unauthorized, close 4001) when the
    session has ended."""
    device = await devices.get_device(identity.device_id)
    if device is None or not session_live(device, identity):
        raise ProtocolError(
            errors.UNAUTHORIZED,
            "this session has ended (logged out, device unlinked or logged in again)",
            close_code=errors.CLOSE_UNAUTHORIZED,
        )
    return device
