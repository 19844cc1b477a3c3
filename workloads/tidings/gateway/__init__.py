"""The WebSocket gateway: websockets' Sans-I/O protocol driven from asyncio.Protocol.

No task per connection: a connection is one small object; timers are shared sweeps.
"""

from tidings.gateway.connection import Connection
from tidings.gateway.gateway import Gateway

__all__ = ["Connection", "Gateway"]
