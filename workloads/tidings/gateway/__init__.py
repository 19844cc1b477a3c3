"""The WebSocket gateway: websockets' Sans-I/O protocol driven from asyncio.Protocol.

No task per connection: a connection is one small object; timers are shared sweeps.
"""

from tidings.gateway.gateway import Gateway
from tidings.gateway.connection import Connection

__all__ = ["Connection", "Gateway"]
