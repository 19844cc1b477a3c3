"""End-to-end channels' messages: envelopes per device, stored as one body (pure).

A ``send`` in an end-to-end channel carries ``envelopes`` — one ciphertext per recipient
device, the sender's other devices included — and, for groups, a shared ``body`` (a
sender-key ciphertext). The server cannot read any of it; it checks that the envelopes
address exactly the devices that should get one, stores the message **once** (the
envelopes in its body, behind :data:`MARK`) and gives every device only its own
envelope (:func:`view_for`). docs/e2ee.md has the design.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from tidings.core import errors
from tidings.core.errors import ProtocolError
from tidings.core.ids import parse_decimal_id

__all__ = [
    "MARK",
    "MAX_ENVELOPES",
    "Envelope",
    "check_devices",
    "encode_body",
    "is_envelopes",
    "parse_envelopes",
    "view_for",
]

# The stored body of an end-to-end message starts with this (a plaintext body may not:
# the send parser refuses it), then compact JSON {"b": shared body, "s": the sending
# device's identity key, "e": {device: [key, type, ciphertext]}}.
MARK = "\x00e2e1:"
# 100 members with 10 devices each.
MAX_ENVELOPES = 1000
MAX_ENVELOPE_CHARS = 64 * 1024


@dataclass(frozen=True, slots=True)
class Envelope:
    device_id: int
    key: str  # the recipient device's identity key the sender encrypted to
    type: int  # the ratchet's message type (Olm: 0 pre-key, 1 normal)
    body: str  # the ciphertext, base64


def _invalid(message: str, ref: str | None) -> ProtocolError:
    return ProtocolError(errors.INVALID_FRAME, message, ref=ref)


def parse_envelopes(raw: Any, ref: str | None) -> tuple[Envelope, ...]:
    """A send frame's ``envelopes`` (a list of objects), checked for shape and size."""
    if not isinstance(raw, list) or not raw:
        raise _invalid("envelopes must be a non-empty list", ref)
    if len(raw) > MAX_ENVELOPES:
        raise _invalid(f"at most {MAX_ENVELOPES} envelopes", ref)
    out: list[Envelope] = []
    seen: set[int] = set()
    for item in raw:
        if not isinstance(item, dict):
            raise _invalid("each envelope must be an object", ref)
        device = item.get("device_id")
        device_id = parse_decimal_id(device) if isinstance(device, str) else None
        key, kind, body = item.get("key"), item.get("type"), item.get("body")
        if device_id is None:
            raise _invalid("envelope device_id must be a decimal string", ref)
        if not isinstance(key, str) or not 1 <= len(key) <= 64:
            raise _invalid("envelope key must be the device's identity key", ref)
        if isinstance(kind, bool) or not isinstance(kind, int) or not 0 <= kind <= 9:
            raise _invalid("envelope type must be a small integer", ref)
        if not isinstance(body, str) or not 1 <= len(body) <= MAX_ENVELOPE_CHARS:
            raise _invalid(f"envelope body must be 1-{MAX_ENVELOPE_CHARS} characters", ref)
        if device_id in seen:
            raise _invalid(f"two envelopes for device {device_id}", ref)
        seen.add(device_id)
        out.append(Envelope(device_id, key, kind, body))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Mismatch:
    missing: list[tuple[int, int]]  # (user, device) that should have had an envelope
    extra: list[int]  # devices that should not (not a recipient's, or no keys)
    stale: list[tuple[int, int]]  # (user, device) whose identity key is not the one used

    def error(self, ref: str | None) -> ProtocolError:
        """The ``devices_mismatch`` error for the sender, listing the missing, extra and stale
        devices."""

        def pairs(items: list[tuple[int, int]]) -> list[dict[str, str]]:
            return [{"user_id": str(u), "device_id": str(d)} for u, d in items]

        return ProtocolError(
            errors.DEVICES_MISMATCH,
            "the envelopes do not match the recipients' devices: fetch keys for the missing "
            "and stale ones, drop the extra, and send again with the same client_msg_id",
            ref=ref,
            details={
                "missing": pairs(self.missing),
                "extra": [{"device_id": str(d)} for d in self.extra],
                "stale": pairs(self.stale),
            },
        )


def check_devices(
    envelopes: Sequence[Envelope],
    devices: Mapping[int, tuple[int, str]],
) -> Mismatch | None:
    """``devices``: every device that must get an envelope, as device -> (user, identity
    key). None when the envelopes address exactly those, each with its current key."""
    given = {e.device_id: e for e in envelopes}
    missing = sorted((u, d) for d, (u, _) in devices.items() if d not in given)
    extra = sorted(d for d in given if d not in devices)
    stale = sorted(
        (devices[d][0], d) for d, e in given.items() if d in devices and devices[d][1] != e.key
    )
    if missing or extra or stale:
        return Mismatch(missing, extra, stale)
    return None


def encode_body(body: str, envelopes: Sequence[Envelope], sender_key: str = "") -> str:
    """The one stored body of an end-to-end message. ``sender_key``: the sending device's
    identity key, which a recipient needs to open a first (pre-key) envelope."""
    packed = {
        "b": body,
        "s": sender_key,
        "e": {str(e.device_id): [e.key, e.type, e.body] for e in envelopes},
    }
    return MARK + orjson.dumps(packed).decode()


def is_envelopes(body: str) -> bool:
    """Whether a stored body holds end-to-end envelopes (see :func:`view_for`)."""
    return body.startswith(MARK)


def view_for(body: str, device_id: int) -> dict[str, Any]:
    """What one device is shown of a stored end-to-end body: the shared ``body`` and its
    own ``envelope`` (or null: none was made for it — a device linked later)."""
    packed = orjson.loads(body[len(MARK) :])
    mine = packed["e"].get(str(device_id))
    envelope = {"type": mine[1], "body": mine[2]} if mine is not None else None
    return {
        "body": packed["b"],
        "e2e": True,
        "sender_key": packed.get("s", ""),
        "envelope": envelope,
    }
