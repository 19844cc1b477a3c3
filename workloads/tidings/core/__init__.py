"""The protocol and routing core: plain functions and classes, no I/O.

Everything here is driven by tests without a socket, a database or a broker; the adapters
(`tidings.gateway`, `tidings.api`, `tidings.storage`, `tidings.bus`) sit on top.
"""
