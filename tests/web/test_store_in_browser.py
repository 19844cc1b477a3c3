"""The client's state rules (store.js, ids.js, socket.js backoff), run in the browser itself:
inbox order and repeats, unread counts, ticks in a group, the outbox, 64-bit ids, friend
requests and blocks, a draft chat's peer kept across a reload."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Browser

from ._server import WebServer

SCRIPT = """
async () => {
  const { Store } = await import("/web/js/store.js");
  const ids = await import("/web/js/ids.js");
  const { backoffMs } = await import("/web/js/socket.js");
  const empty = () => ({ cursor: "5", channels: {}, receipts: {}, outbox: [], drafts: [] });
  const me = { user_id: "10", device_id: "11", username: "me" };
  const msg = (seq, id, sender, channel = "dm:10:20") => ({
    type: "msg", seq: String(seq), message_id: String(id), channel_id: channel,
    sender_id: String(sender), sender_device_id: "1", client_msg_id: `c${id}`,
    body: `b${id}`, ts: 1,
  });
  const out = {};
  out.dm = ids.dmChannelId("18446744073709551615", "9007199254740993");
  out.cmp = ids.cmpId("9007199254740993", "9007199254740992");

  const s = new Store(me, empty());
  out.repeat = s.onInbox(msg(5, 100, 20)).status;
  out.gap = s.onInbox(msg(7, 101, 20)).status;
  out.next = s.onInbox(msg(6, 102, 20)).status;
  out.cursor = s.cursor;
  out.unread = s.meta["dm:10:20"].unread;
  out.readUpto = s.markRead("dm:10:20");
  out.unreadAfterRead = s.meta["dm:10:20"].unread;
  out.readAgain = s.markRead("dm:10:20");

  s.setChannels([{ channel_id: "g:1", kind: "group", name: "G", member_ids: ["10", "20", "30"] }]);
  s.onInbox(msg(7, 200, 10, "g:1"));
  const mine = () => s.messagesOf("g:1")[0];
  out.ticks = [s.tickOf(mine())];
  s.onReceipt({ channel_id: "g:1", user_id: "20", message_id: "200", status: "read" });
  out.ticks.push(s.tickOf(mine()));
  s.onReceipt({ channel_id: "g:1", user_id: "30", message_id: "250", status: "delivered" });
  out.ticks.push(s.tickOf(mine()));
  s.onReceipt({ channel_id: "g:1", user_id: "30", message_id: "200", status: "read" });
  out.ticks.push(s.tickOf(mine()));
  s.onReceipt({ channel_id: "g:1", user_id: "30", message_id: "150", status: "read" });
  out.ticks.push(s.tickOf(mine()));

  const item = s.queueSend("g:1", "hello");
  out.pending = s.tickOf(s.messagesOf("g:1").at(-1));
  s.onAck({ client_msg_id: item.client_msg_id, message_id: "300", channel_id: "g:1", ts: 2 });
  out.afterAck = s.messagesOf("g:1").map((m) => m.message_id);
  out.outbox = s.outbox.length;
  s.onInbox({ ...msg(8, 300, 10, "g:1"), client_msg_id: item.client_msg_id });
  out.afterEcho = s.messagesOf("g:1").length;
  out.persistedCursor = s.persisted().cursor;

  s.onInbox(msg(9, 400, 20));
  out.unreadNew = s.meta["dm:10:20"].unread;
  s.onReceipt({ channel_id: "dm:10:20", user_id: "10", message_id: "400", status: "read" });
  out.unreadReadElsewhere = s.meta["dm:10:20"].unread;

  const fresh = new Store(me, { ...empty(), cursor: "0" });
  fresh.onWelcome();
  fresh.onInbox(msg(1, 500, 20));
  fresh.onSynced();
  fresh.onInbox(msg(2, 501, 20));
  out.freshUnread = fresh.meta["dm:10:20"].unread;

  const reset = new Store(me, { ...empty(), cursor: "50" });
  reset.onWelcome({ cursor: "3" });
  out.resetCursor = reset.cursor;

  // Friends, requests both ways and blocks, with 62-bit random user ids.
  const big = { user_id: "4611686018427387904", username: "big", display_name: "Big" };
  const social = new Store(me, empty());
  social.setFriends([{ user_id: "20", username: "bo", display_name: "Bo" }]);
  social.setFriendRequests({
    incoming: [{ user_id: "30", username: "cy", display_name: null }],
    outgoing: [big],
  });
  social.setBlocked([{ user_id: "40", username: "di", display_name: null }]);
  out.relations = ["20", "30", "4611686018427387904", "40", "50"].map((id) =>
    social.relationOf(id),
  );
  social.onPresence({ user_id: "20", status: "online", last_seen: 5 });
  social.setFriends([{ user_id: "20", username: "bo", display_name: "Bo", presence: null }]);
  out.presenceKept = social.users.get("20").presence?.status ?? null;
  // A draft chat with someone found by username keeps their name across a reload.
  social.setUser(big);
  const draft = social.openDraft(big.user_id);
  const saved = social.persisted();
  const reloaded = new Store(me, saved);
  out.draft = draft;
  out.draftTitle = reloaded.title(draft);

  out.backoff = [0, 1, 2, 3, 4, 10, 30].map(backoffMs);
  return out;
}
"""


def test_store_rules(browser: Browser, server: WebServer) -> None:
    page = browser.new_page()
    try:
        page.goto(server.url + "/")
        out: dict[str, Any] = page.evaluate(SCRIPT)
    finally:
        page.close()
    # 64-bit ids stay exact (past 2^53) and 1:1 ids are in numeric order.
    assert out["dm"] == "dm:9007199254740993:18446744073709551615"
    assert out["cmp"] == 1
    # Inbox: a seq already held is a repeat, one past a gap waits for a sync.
    assert (out["repeat"], out["gap"], out["next"], out["cursor"]) == ("old", "gap", "new", "6")
    assert out["unread"] == 1
    assert (out["readUpto"], out["unreadAfterRead"], out["readAgain"]) == ("102", 0, None)
    # Group ticks need every other member; receipts only move forward.
    assert out["ticks"] == ["sent", "sent", "delivered", "read", "read"]
    # The outbox: pending until acked, then one message (the echo adds nothing).
    assert out["pending"] == "pending"
    assert (out["afterAck"], out["outbox"], out["afterEcho"]) == (["200", "300"], 0, 2)
    assert out["persistedCursor"] == "8"
    # Unread: a new message counts, our read on another device clears it.
    assert (out["unreadNew"], out["unreadReadElsewhere"]) == (1, 0)
    # A new device's first backlog is old news; what comes after counts.
    assert out["freshUnread"] == 1
    # A stored cursor past the server's head (its data was reset) follows the server.
    assert out["resetCursor"] == "3"
    # Friends, requests both ways, blocks; a list without presence keeps what we know.
    assert out["relations"] == ["friend", "incoming", "outgoing", "blocked", None]
    assert out["presenceKept"] == "online"
    # A draft 1:1 chat with a 62-bit id, and its peer's name after a reload.
    assert out["draft"] == "dm:10:4611686018427387904"
    assert out["draftTitle"] == "Big"
    # Backoff: jittered, doubling from 0.5 s, capped at 8 s.
    low_high = [(250, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, 8000)]
    for value, (low, high) in zip(
        out["backoff"], [*low_high, (4000, 8000), (4000, 8000)], strict=True
    ):
        assert low <= value <= high
