// Tidings web client: wires the HTTP API, the WebSocket, the store and the views.
// Speaks only the public contract (shared/PROTOCOL.md); see docs/web.md.

import { Api } from "./api.js";
import { h } from "./dom.js";
import { isDm } from "./ids.js";
import { ChatSocket } from "./socket.js";
import * as storage from "./storage.js";
import { Store } from "./store.js";
import { renderAuth } from "./views/auth.js";
import { Conversation } from "./views/conversation.js";
import { groupInfoDialog, newChatDialog, newGroupDialog } from "./views/dialogs.js";
import { Sidebar } from "./views/sidebar.js";

const PAGE = 30; // history page size
const TYPING_EVERY_MS = 3000;
const RECEIPT_DELAY_MS = 150;

const root = document.getElementById("root");
const banner = document.getElementById("banner");
const notice = document.getElementById("notice");

let session = storage.loadSession();
const api = new Api(
  () => session?.access_token ?? null,
  () => logout("Your session has ended. Please log in again."),
);
let chat = null; // the running chat: {store, socket, views, timers}

function start() {
  if (session) startChat();
  else showAuth();
}

// --- auth ------------------------------------------------------------------------------

function showAuth(message) {
  document.title = "Tidings";
  root.className = "auth-root";
  renderAuth(root, {
    async login(username, password) {
      await logIn(username, password);
    },
    async signup(username, password, displayName) {
      await api.signup(username, password, displayName);
      await logIn(username, password);
    },
  });
  if (message) showNotice(message);
}

async function logIn(username, password) {
  let answer;
  const known = storage.deviceFor(username);
  try {
    answer = await api.login(username, password, known);
  } catch (failure) {
    if (!known || failure.code !== "forbidden") throw failure;
    storage.forgetDevice(username); // that device is gone: log in as a new one
    answer = await api.login(username, password, null);
  }
  session = { ...answer, username };
  storage.saveSession(session);
  startChat();
}

function logout(message) {
  if (chat) {
    chat.socket.stop();
    persistNow();
    for (const timer of Object.values(chat.timers)) clearTimeout(timer);
    chat = null;
  }
  session = null;
  storage.clearSession();
  banner.hidden = true;
  history.replaceState(null, "", location.pathname);
  showAuth(message);
}

// --- the chat ------------------------------------------------------------------------

function startChat() {
  const me = {
    user_id: session.user_id,
    device_id: session.device_id,
    username: session.username,
    display_name: session.display_name ?? session.username,
  };
  const store = new Store(me, storage.loadDeviceState(session.device_id));
  const actions = chatActions();
  const sidebar = new Sidebar(actions);
  const conversation = new Conversation(actions);
  const socket = new ChatSocket({
    url: session.chat_url,
    discover: () => api.discover(),
    token: () => session.access_token,
    cursor: () => store.cursor,
    onFrame,
    onState: (state) => store.setConnection(state),
    onUnauthorized: () => logout("Your session has ended. Please log in again."),
  });
  chat = {
    store,
    socket,
    sidebar,
    conversation,
    timers: {},
    lastTyping: new Map(),
    fetching: new Set(),
  };
  root.className = "chat-root";
  root.replaceChildren(h("div", { class: "app" }, sidebar.el, conversation.el));
  store.subscribe(scheduleRender);
  store.subscribe(schedulePersist);
  store.visible = document.visibilityState === "visible";
  render();

  api.me().then(
    (profile) => {
      Object.assign(store.me, { display_name: profile.display_name, username: profile.username });
      session.display_name = profile.display_name;
      storage.saveSession(session);
      store.changed();
    },
    () => {}, // offline right now: the socket retries; a 401 logs out
  );
  refreshChannels();
  refreshFriends();
  socket.start();
  const wanted = decodeURIComponent(location.hash.replace(/^#\/c\//, ""));
  if (location.hash.startsWith("#/c/") && wanted) openChannel(wanted);
}

function chatActions() {
  return {
    openChannel,
    closeChannel,
    loadOlder,
    send,
    typing,
    retry(clientMsgId) {
      const item = chat.store.retryFailed(clientMsgId);
      if (item) chat.socket.send(sendFrame(item));
    },
    discard: (clientMsgId) => chat.store.discardFailed(clientMsgId),
    search,
    clearSearch: () => chat.store.setSearch(null),
    logout: () => logout(),
    newChat: () => newChatDialog(chat.store, chatActions()),
    newGroup: () => newGroupDialog(chat.store, chatActions()),
    groupInfo: (channelId) => {
      refreshGroup(channelId);
      groupInfoDialog(chat.store, chatActions(), channelId);
    },
    startChat: startDm,
    createGroup,
    addMember,
    notify: showNotice,
  };
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function render() {
  if (!chat) return;
  const { store, sidebar, conversation } = chat;
  sidebar.render(store);
  conversation.render(store);
  root.firstElementChild.dataset.view = store.current ? "conversation" : "list";
  renderBanner(store);
  const unread = Object.values(store.meta).reduce((n, m) => n + (m.unread ?? 0), 0);
  document.title = unread ? `(${unread}) Tidings` : "Tidings";
  const typingLeft = [...store.typing.keys()].some((id) => store.typingIn(id).length);
  if (typingLeft) {
    clearTimeout(chat.timers.typing);
    chat.timers.typing = setTimeout(scheduleRender, 1000); // let typing lines expire
  }
}

function renderBanner(store) {
  const { status, retryAt } = store.connection;
  // Shown once a connection was lost, or when the first one could not be made.
  const down = status !== "online" && (store.everOnline || status === "waiting");
  banner.hidden = !down;
  if (!down) return;
  const seconds = retryAt ? Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) : 0;
  const what = store.everOnline ? "Connection lost." : "Cannot reach the server.";
  const text =
    status === "waiting" && seconds > 0
      ? `${what} Reconnecting in ${seconds} s…`
      : `${what} Reconnecting…`;
  const label = banner.querySelector(".banner-text");
  if (label.textContent !== text) label.textContent = text;
  clearTimeout(chat.timers.banner);
  if (status === "waiting") chat.timers.banner = setTimeout(scheduleRender, 500);
}

let persistQueued = false;
function schedulePersist() {
  if (persistQueued) return;
  persistQueued = true;
  queueMicrotask(() => {
    persistQueued = false;
    persistNow();
  });
}

function persistNow() {
  if (chat) storage.saveDeviceState(chat.store.me.device_id, chat.store.persisted());
}

function showNotice(text) {
  notice.textContent = text;
  clearTimeout(showNotice.timer);
  showNotice.timer = setTimeout(() => (notice.textContent = ""), 6000);
}

// --- frames from the server -----------------------------------------------------------

function onFrame(frame) {
  const { store, socket } = chat;
  switch (frame.type) {
    case "welcome":
      store.onWelcome(frame);
      refreshChannels();
      refreshPresence();
      if (store.current && !store.history.has(store.current)) loadOlder(store.current);
      break;
    case "msg": {
      const result = store.onInbox(frame);
      if (result.status === "gap" && !chat.syncing) {
        chat.syncing = true; // a seq is missing: ask again from what we hold
        socket.send({ type: "sync", cursor: store.cursor });
      }
      if (result.status !== "new") break;
      if (result.unknownChannel) refreshChannels();
      ensureUser(result.message.sender_id);
      scheduleReceipts();
      break;
    }
    case "synced":
      chat.syncing = false;
      if (frame.more) {
        chat.syncing = true;
        socket.send({ type: "sync", cursor: store.cursor });
        break;
      }
      store.onSynced();
      flushOutbox();
      scheduleReceipts();
      break;
    case "ack":
      store.onAck(frame);
      break;
    case "receipt":
      store.onReceipt(frame);
      break;
    case "presence":
      store.onPresence(frame);
      break;
    case "typing":
      store.onTyping(frame);
      ensureUser(frame.user_id);
      break;
    case "error":
      onError(frame);
      break;
    default:
      break; // redirect and reconnect are the socket's; unknown frames are additions
  }
}

function onError(frame) {
  const { store } = chat;
  const item = frame.ref && store.outbox.find((m) => m.client_msg_id === frame.ref);
  if (item) {
    if (frame.code === "unavailable" || frame.code === "rate_limited") {
      clearTimeout(chat.timers.resend); // not stored: send again with the same client_msg_id
      chat.timers.resend = setTimeout(flushOutbox, 1000);
    } else {
      store.onSendFailed(frame.ref, frame.code);
    }
    return;
  }
  if (frame.code === "not_a_member" || frame.code === "unknown_channel") {
    showNotice("You are not a member of that chat any more.");
    refreshChannels();
  }
}

function sendFrame(item) {
  return {
    type: "send",
    client_msg_id: item.client_msg_id,
    channel_id: item.channel_id,
    body: item.body,
  };
}

/** (Re)send every unacked message; the server answers a repeat with the same ack. */
function flushOutbox() {
  if (!chat) return;
  for (const item of chat.store.sendable()) if (!chat.socket.send(sendFrame(item))) return;
}

function scheduleReceipts() {
  clearTimeout(chat.timers.receipts);
  chat.timers.receipts = setTimeout(sendReceipts, RECEIPT_DELAY_MS);
}

/** `read` for the open channel when the page is visible, `delivered` for the rest. */
function sendReceipts() {
  if (!chat || !chat.socket.online) return;
  const { store, socket } = chat;
  if (store.current && store.visible) {
    const upto = store.markRead(store.current);
    if (upto)
      socket.send({ type: "receipt", channel_id: store.current, message_id: upto, status: "read" });
  }
  for (const [channelId, messageId] of store.takeDelivered()) {
    socket.send({
      type: "receipt",
      channel_id: channelId,
      message_id: messageId,
      status: "delivered",
    });
  }
}

// --- actions ----------------------------------------------------------------------------

function openChannel(channelId, revealMessageId) {
  const { store } = chat;
  if (!store.channels.has(channelId) && isDm(channelId)) store.openDraft(store.peerOf(channelId));
  store.setCurrent(channelId);
  history.replaceState(null, "", `#/c/${encodeURIComponent(channelId)}`);
  const peer = store.peerOf(channelId);
  if (peer) {
    ensureUser(peer, true);
    befriend(peer);
  } else {
    refreshGroup(channelId);
  }
  const loaded = store.history.get(channelId);
  const ready = loaded ? Promise.resolve() : loadOlder(channelId);
  ready.then(() => revealMessageId && reveal(channelId, revealMessageId));
  scheduleReceipts();
  requestAnimationFrame(() => chat?.conversation.focusComposer());
}

async function reveal(channelId, messageId, pages = 10) {
  render();
  for (let i = 0; i < pages && chat?.store.current === channelId; i++) {
    if (chat.conversation.reveal(messageId)) return;
    if (chat.store.history.get(channelId)?.done) return;
    await loadOlder(channelId);
    render();
  }
}

function closeChannel() {
  chat.store.setCurrent(null);
  history.replaceState(null, "", location.pathname);
  requestAnimationFrame(
    () =>
      document.querySelector(".channel[aria-current]")?.focus() ??
      document.getElementById("new-chat")?.focus(),
  );
}

async function loadOlder(channelId) {
  const c = chat;
  const { store } = c;
  const state = store.history.get(channelId);
  if (state?.loading || state?.done) return;
  store.history.set(channelId, { loading: true, done: false });
  store.changed();
  try {
    const messages = await api.history(channelId, store.oldestId(channelId), PAGE);
    if (chat !== c) return;
    store.addHistory(channelId, messages, PAGE);
    for (const id of new Set(messages.map((m) => m.sender_id))) ensureUser(id);
    scheduleReceipts();
  } catch (failure) {
    store.history.delete(channelId);
    store.changed();
    if (failure.code !== "network") showNotice(`Could not load messages: ${failure.message}`);
  }
}

function send(channelId, body) {
  const item = chat.store.queueSend(channelId, body);
  chat.socket.send(sendFrame(item)); // when offline it waits in the outbox for the next hello
  chat.lastTyping.delete(channelId);
}

function typing(channelId) {
  const last = chat.lastTyping.get(channelId) ?? 0;
  if (Date.now() - last < TYPING_EVERY_MS) return;
  if (chat.socket.send({ type: "typing", channel_id: channelId }))
    chat.lastTyping.set(channelId, Date.now());
}

async function search(q) {
  const c = chat;
  const { store } = c;
  store.setSearch({ q, loading: true, results: [] });
  try {
    const results = await api.search(q);
    if (chat !== c) return;
    for (const id of new Set(results.map((m) => m.sender_id))) ensureUser(id);
    if (store.search?.q === q) store.setSearch({ q, loading: false, results });
  } catch (failure) {
    if (store.search?.q === q)
      store.setSearch({ q, loading: false, results: [], error: failure.message });
  }
}

async function startDm(userId) {
  const profile = await api.user(userId); // 404 unknown_user: the dialog says so
  chat.store.setUser(profile);
  await befriend(userId);
  openChannel(chat.store.openDraft(userId));
}

async function createGroup(name, memberIds) {
  const group = await api.createGroup(name, memberIds);
  chat.store.upsertGroup(group);
  for (const id of group.member_ids) ensureUser(id);
  openChannel(group.channel_id);
}

async function addMember(channelId, userId) {
  await api.addMember(channelId, userId);
  await ensureUser(userId, true);
  await refreshGroup(channelId);
  showNotice(`${chat.store.displayName(userId)} was added.`);
}

// --- data from the HTTP API ------------------------------------------------------------

// Answers that arrive after a logout (or a login as someone else) are dropped: each
// async step checks that `chat` is still the one it started with.

async function refreshChannels() {
  const c = chat;
  if (!c) return;
  if (c.refreshing) {
    c.refreshAgain = true;
    return;
  }
  c.refreshing = true;
  try {
    const channels = await api.channels();
    if (chat !== c) return;
    c.store.setChannels(channels);
    for (const channel of channels) {
      if (channel.kind === "dm") ensureUser(c.store.peerOf(channel.channel_id));
    }
  } catch {
    // offline: the next welcome refreshes
  } finally {
    c.refreshing = false;
    if (c.refreshAgain && chat === c) {
      c.refreshAgain = false;
      refreshChannels();
    }
  }
}

async function refreshGroup(channelId) {
  const c = chat;
  try {
    const group = await api.group(channelId);
    if (chat !== c) return;
    c.store.upsertGroup(group);
    for (const id of group.member_ids) ensureUser(id);
  } catch {
    // not a member any more, or offline: the channel list refresh sorts it out
  }
}

async function refreshFriends() {
  const c = chat;
  try {
    const friends = await api.friends();
    if (chat === c) c?.store.setFriends(friends);
  } catch {
    // offline
  }
}

/** Presence we may have missed while disconnected: 1:1 peers and the open group. */
function refreshPresence() {
  const { store } = chat;
  const ids = new Set();
  for (const c of store.channels.values()) if (c.kind === "dm") ids.add(store.peerOf(c.channel_id));
  if (store.current && !isDm(store.current))
    for (const id of store.memberIds(store.current)) ids.add(id);
  ids.delete(store.me.user_id);
  for (const id of [...ids].slice(0, 100)) ensureUser(id, true);
}

/** A profile (with presence) we do not have yet, or again when `fresh`. */
async function ensureUser(userId, fresh = false) {
  const c = chat;
  if (!c || !userId || userId === c.store.me.user_id) return;
  if (c.fetching.has(userId) || (!fresh && c.store.users.get(userId)?.username)) return;
  c.fetching.add(userId);
  try {
    const profile = await api.user(userId);
    if (chat === c) c.store.setUser(profile);
  } catch {
    // unknown or offline: shown by id
  } finally {
    c.fetching.delete(userId);
  }
}

/** Befriend a 1:1 peer, so presence flows between us (PUT is idempotent). */
async function befriend(userId) {
  if (chat.store.friendIds.includes(userId)) return;
  try {
    await api.addFriend(userId);
    await refreshFriends();
  } catch {
    // offline: try next time the chat is opened
  }
}

// --- the page ---------------------------------------------------------------------------

document.addEventListener("visibilitychange", () => {
  if (!chat) return;
  chat.store.visible = document.visibilityState === "visible";
  if (chat.store.visible) {
    chat.socket.retryNow(); // timers of hidden tabs are throttled: do not wait for them
    scheduleReceipts();
    refreshChannels(); // groups we were added to meanwhile (there is no membership frame)
  } else {
    persistNow();
  }
});
window.addEventListener("pagehide", persistNow);
window.addEventListener("online", () => chat?.socket.retryNow());
banner.querySelector("button").addEventListener("click", () => chat?.socket.retryNow());
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && chat?.store.current && !document.querySelector("dialog[open]")) {
    closeChannel();
  }
});

start();
