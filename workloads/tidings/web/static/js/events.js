// Issue #20 in the state: what the channel list says of read marks, unread counts and
// others' receipts, and how channel events (messages with an `event`: membership changes,
// edits, deletes, reactions) change the store. No I/O here; store.js calls these.
// The contract: docs/protocol.md, "Everyday messaging".

import { cmpId, maxId } from "./ids.js";

const TARGETED = new Set(["edit", "delete", "reaction"]);
const MEMBERSHIP = new Set([
  "group_created",
  "member_added",
  "member_joined",
  "member_removed",
  "member_left",
  "renamed",
  "admin_added",
  "admin_removed",
  "settings_changed",
]);

/** An edit, delete or reaction: it changes another message and is no line of its own. */
export function isHiddenEvent(msg) {
  return TARGETED.has(msg?.event?.type);
}

/** A membership event: a system line ("Carol added Dave"). */
export function isMembershipEvent(msg) {
  return MEMBERSHIP.has(msg?.event?.type);
}

const none = (id) => (!id || id === "0" ? null : id);

/**
 * One entry of `GET /v1/channels`: the server's read mark and unread count replace what
 * this browser counted, and others' receipt watermarks move the ticks. Messages held here
 * that came after the list's `last_message_id` are added to its count (they arrived
 * live while the list was on its way); those at or before it are counted by the server.
 */
export function applyChannelList(store, channel) {
  const id = channel.channel_id;
  const meta = store.metaOf(id);
  if (channel.kind === "group" && channel.name) meta.title = channel.name;
  for (const r of channel.receipts ?? []) {
    if (r.user_id === store.me.user_id) continue;
    const marks = (store.receipts[id] ??= {});
    const mark = (marks[r.user_id] ??= { delivered: null, read: null });
    const read = none(r.read_upto);
    mark.delivered = maxId(maxId(mark.delivered, none(r.delivered_upto)), read);
    mark.read = maxId(mark.read, read);
  }
  if (typeof channel.unread !== "number") return; // a server without read marks
  const serverRead = none(channel.read_upto);
  meta.readUpto = maxId(meta.readUpto, serverRead);
  meta.listUpto = none(channel.last_message_id);
  let base = channel.unread;
  const readHere = meta.readUpto && meta.readUpto !== serverRead; // our receipt is on its way
  if (readHere && (!meta.listUpto || cmpId(meta.readUpto, meta.listUpto) >= 0)) base = 0;
  let since = 0;
  for (const m of store.messages.get(id)?.values() ?? []) {
    if (m.event || m.sender_id === store.me.user_id) continue;
    if (meta.listUpto && cmpId(m.message_id, meta.listUpto) <= 0) continue;
    if (meta.readUpto && cmpId(m.message_id, meta.readUpto) <= 0) continue;
    since += 1;
  }
  meta.unread = store.isReading(id) ? 0 : base + since;
}

/**
 * A live channel event (a `msg` frame with `event`, or the ack of our own): apply it to
 * the message it targets, or to the group it changes. History already gives the current
 * state, so events read from history are never applied.
 */
export function applyEvent(store, msg) {
  const event = msg.event;
  if (TARGETED.has(event.type)) applyToMessage(store, msg);
  else if (MEMBERSHIP.has(event.type)) applyToGroup(store, msg);
}

function applyToMessage(store, msg) {
  const { event } = msg;
  const target = store.messages.get(msg.channel_id)?.get(event.message_id);
  if (!target || target.event) return; // not on screen: history has it right when loaded
  if (event.type === "edit") {
    if (target.deleted) return;
    target.body = msg.body ?? "";
    target.edited_at = msg.ts;
  } else if (event.type === "delete") {
    target.deleted = true;
    target.body = "";
    delete target.attachments;
    delete target.reactions;
    delete target.edited_at;
  } else if (!target.deleted) {
    const reactions = { ...(target.reactions ?? {}) };
    if (event.emoji) reactions[msg.sender_id] = event.emoji;
    else delete reactions[msg.sender_id];
    if (Object.keys(reactions).length) target.reactions = reactions;
    else delete target.reactions;
  }
  const last = store.meta[msg.channel_id]?.last;
  if (last?.message_id === target.message_id && event.type !== "reaction") {
    last.body = target.deleted ? "This message was deleted" : target.body;
  }
}

function applyToGroup(store, msg) {
  const { event } = msg;
  const channelId = msg.channel_id;
  const me = store.me.user_id;
  const channel = store.channels.get(channelId);
  const gone = event.type === "member_removed" || event.type === "member_left";
  if (gone && event.user_id === me) {
    // Removed, or left: nothing of the channel comes any more. The chat stays, read-only.
    const meta = store.metaOf(channelId);
    store.channels.set(channelId, {
      channel_id: channelId,
      kind: "group",
      name: meta.title ?? "Group",
      member_ids: [],
      ...channel,
      removed: { how: event.type, by: msg.sender_id },
    });
    return;
  }
  if (!channel) return; // the channel list (fetched for an unknown channel) has it
  const members = new Set(channel.member_ids ?? []);
  const admins = new Set(channel.admin_ids ?? []);
  const next = { ...channel };
  switch (event.type) {
    case "member_added":
      for (const id of event.user_ids ?? []) members.add(id);
      if ((event.user_ids ?? []).includes(me)) delete next.removed;
      break;
    case "member_joined":
      members.add(event.user_id);
      if (event.user_id === me) delete next.removed;
      break;
    case "member_removed":
    case "member_left":
      members.delete(event.user_id);
      admins.delete(event.user_id);
      break;
    case "renamed":
    case "group_created":
      if (event.name) next.name = event.name;
      break;
    case "admin_added":
      admins.add(event.user_id);
      break;
    case "admin_removed":
      admins.delete(event.user_id);
      break;
    case "settings_changed":
      if (typeof event.members_can_add === "boolean") next.members_can_add = event.members_can_add;
      break;
    default:
      break;
  }
  next.member_ids = [...members];
  next.admin_ids = [...admins];
  store.channels.set(channelId, next);
  if (next.name) store.metaOf(channelId).title = next.name;
}

/**
 * A membership event's `names` ({user_id: display name}, as they were then): kept as the
 * fallback names of people whose profile is out of reach (a member who left). A name
 * already known from a profile is not replaced.
 */
export function rememberNames(store, msg) {
  const names = msg.event?.names;
  if (!names || typeof names !== "object") return;
  for (const [userId, name] of Object.entries(names)) {
    if (typeof name === "string" && name && !store.names[userId]) store.names[userId] = name;
  }
}

/** Whether `userId` is an admin of the group (the owner when a server names no admins). */
export function isAdmin(channel, userId) {
  if (!channel) return false;
  if (Array.isArray(channel.admin_ids)) return channel.admin_ids.includes(userId);
  return channel.owner_id === userId;
}

/** "Carol added Dave": a membership event in words (`store.displayName` says "You"). */
export function systemText(msg, store) {
  const me = store.me.user_id;
  const subject = (id) => store.displayName(id); // "You" for me
  const object = (id) => (id === me ? "you" : store.displayName(id));
  const list = (ids) => {
    const names = ids.map(object);
    return names.length <= 1
      ? (names[0] ?? "nobody")
      : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
  };
  const { event } = msg;
  const who = subject(msg.sender_id);
  switch (event?.type) {
    case "group_created":
      return `${who} created the group “${event.name ?? ""}”`;
    case "member_added":
      return `${who} added ${list(event.user_ids ?? [])}`;
    case "member_joined":
      return `${subject(event.user_id)} joined`;
    case "member_removed":
      return `${who} removed ${object(event.user_id)}`;
    case "member_left":
      return `${subject(event.user_id)} left`;
    case "renamed":
      return `${who} renamed the group to “${event.name ?? ""}”`;
    case "admin_added":
      return msg.sender_id === event.user_id || msg.sender_id === "0"
        ? `${subject(event.user_id)} ${event.user_id === me ? "are" : "is"} now an admin`
        : `${who} made ${object(event.user_id)} an admin`;
    case "admin_removed":
      return msg.sender_id === event.user_id
        ? `${subject(event.user_id)} ${event.user_id === me ? "are" : "is"} no longer an admin`
        : `${who} removed ${object(event.user_id)} as an admin`;
    case "settings_changed":
      return event.members_can_add
        ? `${who} let every member add members`
        : `${who} made adding members admin-only`;
    default:
      return "";
  }
}
