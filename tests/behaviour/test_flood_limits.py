"""One sender's group flood does not take the message path from everyone else (issue #15,
item 8): a group message costs its fan-out from the sender's send bucket
(``send_cost_per_recipient``), so pipelining messages into a big group is cut off after
the bucket's worth, while other users' 1:1 messages go through as usual. Run on a
`tidings up` with the default send limits (20 a second, bursts of 40)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ._harness import Clients, http_client, make_group, new_account, owned_server

DEFAULT_LIMITS = {"TIDINGS_RATE_LIMIT_PER_S": "20", "TIDINGS_RATE_LIMIT_BURST": "40"}


async def test_a_group_flood_is_cut_off_by_its_fan_out_and_bystanders_go_on(
    tmp_path: Path, clients: Clients
) -> None:
    with owned_server(tmp_path, **DEFAULT_LIMITS) as server:
        async with http_client(server) as http:
            flooder = await new_account(http, "flood")
            members = list(await asyncio.gather(*(new_account(http, "m") for _ in range(40))))
            group = (await make_group(http, flooder, members, name="big"))["channel_id"]
            ann, bob = await new_account(http, "ann"), await new_account(http, "bob")
        f = await clients.connect(flooder)
        a, b = await clients.connect(ann), await clients.connect(bob)

        # 41 members: each message costs 1 + 39 * 0.1 = 4.9 tokens of a 40-token bucket
        # (the 1 as the frame arrives, the rest when it is checked, so a pipelined burst
        # gets a few fewer than 40 / 4.9).
        sent = [await f.send_msg(f"flood {i}", channel_id=group) for i in range(30)]
        answers = [await f.recv_send_answer(cid) for cid in sent]
        acked = [x for x in answers if x["type"] == "ack"]
        limited = [x for x in answers if x.get("code") == "rate_limited"]
        assert 5 <= len(acked) <= 12, [x.get("code", x["type"]) for x in answers]
        assert len(acked) + len(limited) == 30
        assert "large groups" in limited[0]["message"]

        # Everyone else is untouched: a 1:1 burst of 30 goes through whole.
        burst = [await a.send_msg(f"hi {i}", to=bob) for i in range(30)]
        assert all([(await a.recv_send_answer(cid))["type"] == "ack" for cid in burst])
        got = await b.take_msgs(30)
        assert [m["body"] for m in got] == [f"hi {i}" for i in range(30)]
