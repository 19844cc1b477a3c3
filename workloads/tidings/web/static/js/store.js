// The client's state and how each frame or answer changes it. No I/O here: the app feeds
// it and renders it; `persisted()` is what storage.js keeps per device.

import { applyChannelList, applyEvent, isHiddenEvent, rememberNames } from "./events.js";
import { cmpId, dmPeer, isDm, maxId, newClientMsgId } from "./ids.js";

const TYPING_SHOWN_MS = 6000;
const MESSAGE_FIELDS = [
  "message_id",
  "channel_id",
  "sender_id",
  "sender_device_id",
  "client_msg_id",
  "body",
  "ts",
  "e2e",
  "attachments",
  // Issue #20: replies, channel events, edits, deletes and reactions (events.js).
  "reply_to",
  "event",
  "edited_at",
  "deleted",
  "reactions",
];

// End-to-end channels are read-only here: this client has no keys (docs/e2ee.md).
export const ENCRYPTED_TEXT = "🔒 Encrypted message: read it in the Tidings app";
export const DELETED_TEXT = "This message was deleted";

export function shownBody(msg) {
  if (msg.deleted) return DELETED_TEXT;
  return msg.e2e ? ENCRYPTED_TEXT : msg.body;
}

/** A message in one line (the channel list): its body, or what it carries. */
export function previewText(msg) {
  if (msg.deleted) return DELETED_TEXT;
  if (msg.e2e) return ENCRYPTED_TEXT;
  if (msg.body) return msg.body;
  const attachments = Array.isArray(msg.attachments) ? msg.attachments : [];
  if (!attachments.length) return msg.body ?? "";
  const images = attachments.filter((a) => String(a.content_type).startsWith("image/")).length;
  if (images === attachments.length) return images === 1 ? "📷 Photo" : `📷 ${images} photos`;
  return attachments.length === 1
    ? `📎 ${attachments[0].name || "File"}`
    : `📎 ${attachments.length} attachments`;
}

export function messageKey(msg) {
  return `${msg.sender_id}:${msg.client_msg_id}`;
}

export class Store {
  /**
   * @param {object} me {user_id, device_id, username, display_name}
   * @param {object} saved what storage.js kept for this device
   */
  constructor(me, saved) {
    this.me = me;
    this.cursor = saved.cursor;
    this.fresh = saved.cursor === "0"; // a new device: its first backlog is old news
    this.meta = saved.channels; // channel_id -> {unread, readUpto, lastId, last}
    this.receipts = saved.receipts; // channel_id -> user_id -> {delivered, read}
    this.outbox = saved.outbox; // unacked sends: [{client_msg_id, channel_id, body, ts, attachments?}]
    this.channels = new Map(); // channel_id -> {channel_id, kind, name?, member_ids, owner_id?}
    for (const id of saved.drafts) this.openDraft(dmPeer(id, me.user_id));
    this.messages = new Map(); // channel_id -> Map(message_id -> message)
    this.history = new Map(); // channel_id -> {loading, done}
    this.users = new Map(); // user_id -> {user_id, username, display_name, presence?}
    // Draft 1:1 peers found by username: we may not look them up by id before a message.
    for (const p of Object.values(saved.people ?? {})) this.users.set(p.user_id, { ...p });
    // Names of people met in chats, for when their profile is out of reach (removed
    // from the only group we shared): user_id -> name.
    this.names = { ...(saved.names ?? {}) };
    this.friendIds = [];
    this.requests = { incoming: [], outgoing: [] }; // user ids of pending friend requests
    this.invites = []; // [{channel_id, name, inviter_id, inviter, created_at}]
    this.blockedIds = [];
    this.devices = null; // [{device_id, name, platform, last_seen, current}] once loaded
    this.typing = new Map(); // channel_id -> Map(user_id -> shown until, ms)
    this.current = null;
    this.visible = true;
    this.catchingUp = false; // between welcome and synced
    this.connection = { status: "connecting" };
    this.everOnline = false;
    this.search = null; // {q, loading, results, error}
    this.notice = null;
    this.deliveredDue = new Map(); // channel_id -> message_id to acknowledge as delivered
    this.listeners = new Set();
  }

  // --- change notification and persistence ------------------------------------------

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  changed() {
    for (const listener of this.listeners) listener();
  }

  persisted() {
    const drafts = [...this.channels.values()].filter((c) => c.draft).map((c) => c.channel_id);
    const people = {};
    for (const id of drafts) {
      const user = this.users.get(dmPeer(id, this.me.user_id));
      if (user?.username) {
        const { user_id, username, display_name } = user;
        people[user_id] = { user_id, username, display_name };
      }
    }
    return {
      cursor: this.cursor,
      channels: this.meta,
      receipts: this.receipts,
      outbox: this.outbox,
      drafts,
      people,
      names: this.names,
    };
  }

  metaOf(channelId) {
    this.meta[channelId] ??= { unread: 0, readUpto: null, lastId: null, last: null };
    return this.meta[channelId];
  }

  // --- channels and people ----------------------------------------------------------

  setChannels(list) {
    const seen = new Set();
    for (const channel of list) {
      seen.add(channel.channel_id);
      this.channels.set(channel.channel_id, { ...channel });
      if (channel.last_message_id) {
        const meta = this.metaOf(channel.channel_id);
        meta.lastId = maxId(meta.lastId, channel.last_message_id);
      }
      applyChannelList(this, channel); // read marks, unread, receipts (events.js)
    }
    for (const [id, channel] of this.channels) {
      if (!seen.has(id) && !channel.draft && !channel.removed) this.channels.delete(id);
    }
    this.changed();
  }

  upsertGroup(group) {
    const old = this.channels.get(group.channel_id) ?? {};
    this.channels.set(group.channel_id, { ...old, ...group, kind: "group" });
    this.changed();
  }

  /** A 1:1 channel shown before its first message exists on the server. */
  openDraft(peerId) {
    const me = this.me.user_id;
    const [a, b] = cmpId(me, peerId) <= 0 ? [me, peerId] : [peerId, me];
    const id = `dm:${a}:${b}`;
    if (!this.channels.has(id)) {
      this.channels.set(id, { channel_id: id, kind: "dm", member_ids: [a, b], draft: true });
    }
    return id;
  }

  memberIds(channelId) {
    const channel = this.channels.get(channelId);
    if (channel?.member_ids) return channel.member_ids;
    if (isDm(channelId)) return channelId.split(":").slice(1);
    return [];
  }

  setUser(profile) {
    const old = this.users.get(profile.user_id) ?? {};
    this.users.set(profile.user_id, { ...old, ...profile });
    const name = profile.display_name || profile.username;
    if (name && this.names[profile.user_id] !== name) this.names[profile.user_id] = name;
    this.changed();
  }

  #remember(profiles) {
    for (const p of profiles) {
      const old = this.users.get(p.user_id);
      // A list without presence (null) keeps the presence we already know.
      const presence = p.presence ?? old?.presence;
      this.users.set(p.user_id, { ...old, ...p, ...(presence ? { presence } : {}) });
    }
  }

  setFriends(profiles) {
    this.#remember(profiles);
    this.friendIds = profiles.map((p) => p.user_id);
    this.changed();
  }

  /** GET /v1/friends/requests: {incoming: [profile], outgoing: [profile]}. */
  setFriendRequests({ incoming, outgoing }) {
    this.#remember([...incoming, ...outgoing]);
    this.requests = {
      incoming: incoming.map((p) => p.user_id),
      outgoing: outgoing.map((p) => p.user_id),
    };
    this.changed();
  }

  setBlocked(profiles) {
    this.#remember(profiles);
    this.blockedIds = profiles.map((p) => p.user_id);
    this.changed();
  }

  setInvites(invites) {
    this.#remember(invites.map((i) => i.inviter).filter(Boolean));
    this.invites = invites;
    this.changed();
  }

  setDevices(devices) {
    this.devices = devices;
    this.changed();
  }

  /** "blocked", "friend", "incoming" (they asked us), "outgoing" (we asked them) or null. */
  relationOf(userId) {
    if (this.blockedIds.includes(userId)) return "blocked";
    if (this.friendIds.includes(userId)) return "friend";
    if (this.requests.incoming.includes(userId)) return "incoming";
    if (this.requests.outgoing.includes(userId)) return "outgoing";
    return null;
  }

  displayName(userId) {
    if (userId === this.me.user_id) return "You";
    const user = this.users.get(userId);
    return user?.display_name || user?.username || this.names[userId] || `User ${userId}`;
  }

  title(channelId) {
    const channel = this.channels.get(channelId);
    if (channel?.kind === "group") return channel.name ?? "Group";
    if (isDm(channelId)) return this.displayName(dmPeer(channelId, this.me.user_id));
    return channelId;
  }

  peerOf(channelId) {
    return isDm(channelId) ? dmPeer(channelId, this.me.user_id) : null;
  }

  /** Channels for the list: most recent message first, then by title. */
  sortedChannels() {
    const lastOf = (c) => this.meta[c.channel_id]?.lastId ?? c.last_message_id ?? "0";
    return [...this.channels.values()].sort((a, b) => {
      const byTime = cmpId(lastOf(b), lastOf(a));
      return byTime || this.title(a.channel_id).localeCompare(this.title(b.channel_id));
    });
  }

  // --- messages -----------------------------------------------------------------------

  #addMessage(msg) {
    let messages = this.messages.get(msg.channel_id);
    if (!messages) this.messages.set(msg.channel_id, (messages = new Map()));
    if (messages.has(msg.message_id)) return false;
    messages.set(msg.message_id, msg);
    if (isHiddenEvent(msg)) return true; // an edit, delete or reaction: not a line of its own
    rememberNames(this, msg); // a membership event names people as they were then
    const meta = this.metaOf(msg.channel_id);
    if (!meta.last || cmpId(msg.message_id, meta.last.message_id) > 0) {
      meta.last = {
        message_id: msg.message_id,
        sender_id: msg.sender_id,
        body: previewText(msg),
        ts: msg.ts,
        ...(msg.event ? { event: msg.event } : {}),
      };
    }
    meta.lastId = maxId(meta.lastId, msg.message_id);
    return true;
  }

  isReading(channelId) {
    return this.visible && this.current === channelId;
  }

  /**
   * A `msg` frame. Returns "old" (seq already held: dropped), "gap" (a seq is missing:
   * dropped, the caller syncs) or "new"; `unknownChannel` when the list needs a refresh.
   */
  onInbox(frame) {
    const seq = BigInt(frame.seq);
    const held = BigInt(this.cursor);
    if (seq <= held) return { status: "old" };
    if (seq !== held + 1n) return { status: "gap" };
    this.cursor = frame.seq;
    const msg = Object.fromEntries(
      MESSAGE_FIELDS.filter((k) => frame[k] !== undefined).map((k) => [k, frame[k]]),
    );
    const unknownChannel = !this.channels.has(msg.channel_id);
    const added = this.#addMessage(msg);
    if (added && msg.event) applyEvent(this, msg); // live: edits, reactions, membership
    const meta = this.metaOf(msg.channel_id);
    if (msg.sender_id === this.me.user_id) {
      this.outbox = this.outbox.filter((m) => m.client_msg_id !== msg.client_msg_id);
      meta.readUpto = maxId(meta.readUpto, msg.message_id); // we wrote it: we have read it
    } else if (added) {
      this.typing.get(msg.channel_id)?.delete(msg.sender_id);
      // A new device's first backlog is not counted here: the channel list's `unread`
      // (events.js) says how much of it is unread; so does anything the list counted.
      const oldNews = (this.fresh && this.catchingUp) || Boolean(msg.event);
      const counted = meta.listUpto && cmpId(msg.message_id, meta.listUpto) <= 0;
      const alreadyRead = meta.readUpto && cmpId(msg.message_id, meta.readUpto) <= 0;
      if (!oldNews && !counted && !alreadyRead && !this.isReading(msg.channel_id)) {
        meta.unread += 1;
      }
      this.deliveredDue.set(
        msg.channel_id,
        maxId(this.deliveredDue.get(msg.channel_id), msg.message_id),
      );
    }
    this.changed();
    return { status: "new", unknownChannel, message: msg };
  }

  onWelcome(welcome) {
    this.catchingUp = true;
    this.everOnline = true;
    // The server's head is the truth: a cursor past it (the server's data was reset)
    // would make us drop every new message as a repeat.
    if (welcome?.cursor && BigInt(welcome.cursor) < BigInt(this.cursor)) {
      this.cursor = welcome.cursor;
    }
  }

  onSynced() {
    this.catchingUp = false;
    this.fresh = false;
  }

  /** A page of history (newest first, as the API answers). */
  addHistory(channelId, messages, limit) {
    for (const msg of messages) this.#addMessage(msg); // history holds the current state
    this.history.set(channelId, { loading: false, done: messages.length < limit });
    this.changed();
  }

  oldestId(channelId) {
    let oldest = null;
    for (const id of this.messages.get(channelId)?.keys() ?? []) {
      if (oldest === null || cmpId(id, oldest) < 0) oldest = id;
    }
    return oldest;
  }

  /** Messages of a channel in order, then our own sends that are not acked yet. */
  messagesOf(channelId) {
    const stored = [...(this.messages.get(channelId)?.values() ?? [])]
      .filter((m) => !isHiddenEvent(m))
      .sort((a, b) => cmpId(a.message_id, b.message_id));
    const pending = this.outbox
      .filter((m) => m.channel_id === channelId && !m.event)
      .map((m) => ({ ...m, sender_id: this.me.user_id, pending: true }));
    return [...stored, ...pending];
  }

  // --- sending ------------------------------------------------------------------------

  /** A send waiting for its ack; `attachments` as the `send` frame carries them. */
  queueSend(channelId, body, attachments, extra) {
    const item = { client_msg_id: newClientMsgId(), channel_id: channelId, body, ts: Date.now() };
    if (attachments?.length) item.attachments = attachments;
    if (extra?.reply_to) item.reply_to = extra.reply_to; // a reply (events.js)
    if (extra?.event) item.event = extra.event; // an edit, delete or reaction
    this.outbox.push(item);
    this.changed();
    return item;
  }

  /** Unacked sends to (re)send now: everything not failed, oldest first. */
  sendable() {
    return this.outbox.filter((m) => !m.failed);
  }

  onAck(ack) {
    const item = this.outbox.find((m) => m.client_msg_id === ack.client_msg_id);
    if (!item) return;
    this.outbox = this.outbox.filter((m) => m !== item);
    const msg = {
      message_id: ack.message_id,
      channel_id: ack.channel_id,
      sender_id: this.me.user_id,
      sender_device_id: this.me.device_id,
      client_msg_id: item.client_msg_id,
      body: item.body,
      ts: ack.ts,
      ...(item.attachments ? { attachments: item.attachments } : {}),
      ...(item.reply_to ? { reply_to: item.reply_to } : {}),
      ...(item.event ? { event: item.event } : {}),
    };
    if (this.#addMessage(msg) && msg.event) applyEvent(this, msg);
    const meta = this.metaOf(ack.channel_id);
    meta.readUpto = maxId(meta.readUpto, ack.message_id);
    this.changed();
  }

  /** A send the server refused for good (not_a_member, body_too_long, ...). */
  onSendFailed(clientMsgId, code) {
    const item = this.outbox.find((m) => m.client_msg_id === clientMsgId);
    if (item) {
      item.failed = code;
      this.changed();
    }
    return Boolean(item);
  }

  retryFailed(clientMsgId) {
    const item = this.outbox.find((m) => m.client_msg_id === clientMsgId);
    if (item) delete item.failed;
    this.changed();
    return item;
  }

  discardFailed(clientMsgId) {
    this.outbox = this.outbox.filter((m) => m.client_msg_id !== clientMsgId);
    this.changed();
  }

  // --- receipts -----------------------------------------------------------------------

  onReceipt(r) {
    if (r.user_id === this.me.user_id) {
      if (r.status === "read") this.#readUpTo(r.channel_id, r.message_id); // another device
      this.changed();
      return;
    }
    const marks = (this.receipts[r.channel_id] ??= {});
    const mark = (marks[r.user_id] ??= { delivered: null, read: null });
    mark.delivered = maxId(mark.delivered, r.message_id); // read implies delivered
    if (r.status === "read") mark.read = maxId(mark.read, r.message_id);
    this.changed();
  }

  #readUpTo(channelId, messageId) {
    const meta = this.metaOf(channelId);
    meta.readUpto = maxId(meta.readUpto, messageId);
    if (meta.lastId && cmpId(meta.readUpto, meta.lastId) >= 0) {
      meta.unread = 0;
      return;
    }
    const unreadHere = this.messagesOf(channelId).filter(
      (m) =>
        !m.pending &&
        !m.event &&
        m.sender_id !== this.me.user_id &&
        cmpId(m.message_id, meta.readUpto) > 0,
    ).length;
    meta.unread = Math.min(meta.unread, unreadHere);
  }

  /** Mark what we hold of a channel read; the message id to send a `read` receipt for. */
  markRead(channelId) {
    const meta = this.metaOf(channelId);
    if (this.channels.get(channelId)?.removed) {
      meta.unread = 0; // not a member any more: the server takes no receipt
      return null;
    }
    let newest = null;
    for (const m of this.messages.get(channelId)?.values() ?? []) {
      if (m.sender_id !== this.me.user_id) newest = maxId(newest, m.message_id);
    }
    this.deliveredDue.delete(channelId); // a read receipt says delivered too
    const wasUnread = meta.unread;
    meta.unread = 0;
    if (!newest || (meta.readUpto && cmpId(newest, meta.readUpto) <= 0)) {
      if (wasUnread) this.changed();
      return null;
    }
    meta.readUpto = newest;
    this.changed();
    return newest;
  }

  /** The `delivered` receipts owed, one per channel; cleared. */
  takeDelivered() {
    const due = [...this.deliveredDue].filter(([id]) => !this.channels.get(id)?.removed);
    this.deliveredDue.clear();
    return due;
  }

  /** pending, failed, sent, delivered (every other member) or read (every other member). */
  tickOf(msg) {
    if (msg.pending) return msg.failed ? "failed" : "pending";
    const others = this.memberIds(msg.channel_id).filter((id) => id !== this.me.user_id);
    if (others.length === 0) return "sent";
    const marks = this.receipts[msg.channel_id] ?? {};
    const every = (kind) =>
      others.every((id) => marks[id]?.[kind] && cmpId(marks[id][kind], msg.message_id) >= 0);
    if (every("read")) return "read";
    return every("delivered") ? "delivered" : "sent";
  }

  // --- presence and typing ------------------------------------------------------------

  onPresence(p) {
    const user = this.users.get(p.user_id) ?? { user_id: p.user_id };
    this.users.set(p.user_id, { ...user, presence: { status: p.status, last_seen: p.last_seen } });
    this.changed();
  }

  onTyping(t, now = Date.now()) {
    if (t.user_id === this.me.user_id) return;
    let who = this.typing.get(t.channel_id);
    if (!who) this.typing.set(t.channel_id, (who = new Map()));
    who.set(t.user_id, now + TYPING_SHOWN_MS);
    this.changed();
  }

  typingIn(channelId, now = Date.now()) {
    const who = this.typing.get(channelId);
    if (!who) return [];
    for (const [id, until] of who) if (until <= now) who.delete(id);
    return [...who.keys()];
  }

  // --- connection, search, notices ----------------------------------------------------

  setConnection(state) {
    this.connection = state;
    this.changed();
  }

  setSearch(search) {
    this.search = search;
    this.changed();
  }

  setNotice(text) {
    this.notice = text ? { text, at: Date.now() } : null;
    this.changed();
  }

  setCurrent(channelId) {
    this.current = channelId;
    this.changed();
  }
}
