"""Health check for the test Cassandra node: a real CQL query over the native protocol.

Stdlib only (it runs before any virtualenv exists): STARTUP, then
`SELECT release_version FROM system.local`; prints the version, exits 0 on success.

    python3 cql_ping.py HOST PORT
"""

from __future__ import annotations

import socket
import struct
import sys

VERSION = 0x04  # native protocol v4, which every Cassandra 4.x/5.x speaks
OP_ERROR, OP_STARTUP, OP_READY, OP_QUERY, OP_RESULT = 0x00, 0x01, 0x02, 0x07, 0x08


def _frame(stream: int, opcode: int, body: bytes) -> bytes:
    return struct.pack(">BBhBi", VERSION, 0, stream, opcode, len(body)) + body


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">H", len(data)) + data


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def _request(sock: socket.socket, stream: int, opcode: int, body: bytes) -> tuple[int, bytes]:
    sock.sendall(_frame(stream, opcode, body))
    _, _, _, op, length = struct.unpack(">BBhBi", _recv_exact(sock, 9))
    payload = _recv_exact(sock, length)
    if op == OP_ERROR:
        code = struct.unpack(">i", payload[:4])[0]
        (msg_len,) = struct.unpack(">H", payload[4:6])
        raise RuntimeError(f"CQL error {code:#x}: {payload[6 : 6 + msg_len].decode()}")
    return op, payload


def ping(host: str, port: int, timeout: float = 5.0) -> str:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        startup = struct.pack(">H", 1) + _string("CQL_VERSION") + _string("3.0.0")
        op, _ = _request(sock, 1, OP_STARTUP, startup)
        if op != OP_READY:
            raise RuntimeError(f"unexpected reply to STARTUP: opcode {op:#x}")
        query = "SELECT release_version FROM system.local"
        data = query.encode()
        body = struct.pack(">i", len(data)) + data + struct.pack(">HB", 0x0001, 0)
        op, payload = _request(sock, 2, OP_QUERY, body)
        if op != OP_RESULT or struct.unpack(">i", payload[:4])[0] != 2:
            raise RuntimeError("unexpected reply to QUERY")
        # Rows: metadata flags, column count, [global table spec], column specs, rows.
        pos = 4
        flags, columns = struct.unpack(">ii", payload[pos : pos + 8])
        pos += 8
        if flags & 0x0002:  # has_more_pages: skip the paging state
            (n,) = struct.unpack(">i", payload[pos : pos + 4])
            pos += 4 + max(n, 0)
        if flags & 0x0004:  # no_metadata
            raise RuntimeError("result without metadata")

        def skip_string() -> None:
            nonlocal pos
            (n,) = struct.unpack(">H", payload[pos : pos + 2])
            pos += 2 + n

        if flags & 0x0001:
            skip_string()
            skip_string()
        for _ in range(columns):
            if not flags & 0x0001:
                skip_string()
                skip_string()
            skip_string()  # column name
            pos += 2  # type id (varchar, no parameters)
        (rows,) = struct.unpack(">i", payload[pos : pos + 4])
        pos += 4
        if rows < 1:
            raise RuntimeError("system.local returned no row")
        (n,) = struct.unpack(">i", payload[pos : pos + 4])
        return payload[pos + 4 : pos + 4 + n].decode()


if __name__ == "__main__":
    try:
        print(ping(sys.argv[1], int(sys.argv[2])))
    except Exception as exc:  # any failure means "not healthy yet"
        print(f"cql_ping: {exc}", file=sys.stderr)
        sys.exit(1)
