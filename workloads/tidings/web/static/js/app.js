// Tidings web client: wires the HTTP API, the WebSocket, the store and the views.
// Speaks only the public contract (shared/PROTOCOL.md); see docs/web.md.

import { Api, ApiError } from "./api.js";
import { h } from "./dom.js";
import { isDm } from "./ids.js";
import { MediaCache, uploadAttachments } from "./media.js";
import * as nav from "./nav.js";
import { Notifier } from "./notify.js";
import { ChatSocket } from "./socket.js";
import * as storage from "./storage.js";
import { Store } from "./store.js";
import { renderAuth } from "./views/auth.js";
import { Conversation } from "./views/conversation.js";
import {
  errorText,
  friendsDialog,
  namesList,
  newChatDialog,
  newGroupDialog,
  settingsDialog,
} from "./views/dialogs.js";
import { groupDialog } from "./views/group.js";
import { eventErrorText } from "./views/message_actions.js";
import { Sidebar } from "./views/sidebar.js";

const PAGE = 30; // history page size
const TYPING_EVERY_MS = 3000;
const RECEIPT_DELAY_MS = 150;
const SOCIAL_EVERY_MS = 30_000; // friend requests, invites, blocks: no frames tell us
const LOGOUT_WAIT_MS = 5000;
const SESSION_ENDED =
  "Your session has ended: this browser was logged out (perhaps in another tab) or " +
  "unlinked from another of your devices. Please log in again.";

const root = document.getElementById("root");
const banner = document.getElementById("banner");
const notice = document.getElementById("notice");

let session = storage.loadSession();
const api = new Api(
  () => session?.access_token ?? null,
  (failure, token) => {
    // Only for the session we hold now (not an answer to one that ended already, nor
    // to a call that crossed our own "Log out").
    if (session && token === session.access_token && session !== loggingOut) {
      logout(SESSION_ENDED);
    }
  },
);
let chat = null; // the running chat: {store, socket, views, timers}
let loggingOut = null; // the session "Log out" is ending right now

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
  }, message);
}

async function logIn(username, password) {
  let answer;
  const known = storage.deviceFor(username);
  try {
    answer = await api.login(username, password, known);
  } catch (failure) {
    if (!known || failure.code !== "forbidden") throw failure;
    // That device is gone (unlinked from another device): log in as a new one.
    storage.forgetDevice(username);
    storage.retireDevice(known, username);
    answer = await api.login(username, password, null);
  }
  if (answer.device_id !== known) storage.adoptRetired(username, answer.device_id);
  session = { ...answer, username };
  storage.saveSession(session);
  startChat();
}

function endChat() {
  if (!chat) return;
  chat.socket.stop();
  persistNow();
  for (const timer of Object.values(chat.timers)) clearTimeout(timer);
  clearInterval(chat.socialTimer);
  document.querySelectorAll("dialog[open]").forEach((d) => d.close());
  chat = null;
}

/** Back to the login screen: the session ended (4001, a 401) or was logged out. */
function logout(message) {
  endChat();
  session = null;
  storage.clearSession();
  banner.hidden = true;
  history.replaceState(null, "", location.pathname);
  showAuth(message);
}

/** "Log out": the server unlinks this device (DELETE /v1/sessions/current), and this
 * browser forgets its token, its device and what it kept for that device. */
async function logOutHere() {
  const ending = session;
  if (!ending || loggingOut === ending) return;
  loggingOut = ending;
  chat?.socket.stop(); // its 4001 is expected now: not "your session has ended"
  let message = "You are logged out.";
  try {
    // A server that does not answer must not keep the person here: 5 s at most.
    await Promise.race([
      api.logout(),
      new Promise((_, reject) =>
        setTimeout(() => reject(new ApiError(0, "network", "no answer")), LOGOUT_WAIT_MS),
      ),
    ]);
  } catch (failure) {
    if (failure.status !== 401) {
      message =
        "You are logged out on this browser, but the server could not be told: unlink " +
        "this device in Settings on another device.";
    }
  } finally {
    loggingOut = null;
  }
  if (session !== ending) return; // already logged out meanwhile
  endChat();
  storage.retireDevice(ending.device_id, ending.username);
  storage.forgetDevice(ending.username);
  logout(message);
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
    onUnauthorized: () => logout(SESSION_ENDED),
    onSuperseded: () => {}, // the banner says so, with "Use here"
  });
  chat = {
    store,
    socket,
    sidebar,
    conversation,
    timers: {},
    lastTyping: new Map(),
    fetching: new Set(),
    media: new MediaCache(api), // media objects per media_id (download URLs)
    notifier: new Notifier(session.user_id, (channelId) => chat && openChannel(channelId)),
  };
  chat.socialTimer = setInterval(refreshSocial, SOCIAL_EVERY_MS);
  root.className = "chat-root";
  root.replaceChildren(h("div", { class: "app" }, sidebar.el, conversation.el));
  store.subscribe(scheduleRender);
  store.subscribe(schedulePersist);
  store.visible = document.visibilityState === "visible";
  render();

  api.me().then(
    (profile) => {
      if (chat?.store !== store) return; // logged out meanwhile
      Object.assign(store.me, { display_name: profile.display_name, username: profile.username });
      session.display_name = profile.display_name;
      storage.saveSession(session);
      store.changed();
    },
    () => {}, // offline right now: the socket retries; a 401 logs out
  );
  refreshChannels();
  refreshSocial();
  socket.start();
  nav.start(route); // Back and Forward; a reload at #/c/<channel_id> opens that chat
  const wanted = nav.channelOfUrl();
  if (wanted) openChannel(wanted);
}

function chatActions() {
  return {
    openChannel,
    closeChannel,
    loadOlder,
    send,
    typing,
    // Attachments: upload the composer's pending items, and the media objects to show.
    upload: (items, onProgress) => uploadAttachments(api, items, onProgress),
    media: {
      get: (mediaId, fresh) =>
        chat ? chat.media.get(mediaId, fresh) : Promise.reject(new Error("logged out")),
    },
    retry(clientMsgId) {
      const item = chat.store.retryFailed(clientMsgId);
      if (item) chat.socket.send(sendFrame(item));
    },
    discard: (clientMsgId) => chat.store.discardFailed(clientMsgId),
    search,
    clearSearch: () => chat.store.setSearch(null),
    logout: logOutHere,
    newChat: () => newChatDialog(chat.store, chatActions()),
    newGroup: () => newGroupDialog(chat.store, chatActions()),
    friends: () => {
      refreshSocial();
      friendsDialog(chat.store, chatActions());
    },
    settings: () => settingsDialog(chat.store, chatActions()),
    groupInfo: (channelId) => {
      refreshGroup(channelId);
      groupDialog(chat.store, chatActions(), channelId); // members, roles, rename, leave
    },
    // Issue #20: replies go with `send`; edits, deletes and reactions are events.
    editMessage: (channelId, messageId, body) =>
      sendEvent(channelId, { type: "edit", message_id: messageId }, body),
    deleteMessage: (channelId, messageId) =>
      sendEvent(channelId, { type: "delete", message_id: messageId }),
    react: (channelId, messageId, emoji) =>
      sendEvent(channelId, { type: "reaction", message_id: messageId, emoji }),
    revealMessage: (channelId, messageId) => reveal(channelId, messageId),
    renameGroup: (channelId, name) => manageGroup(channelId, api.updateGroup(channelId, { name })),
    setMembersCanAdd: (channelId, on) =>
      manageGroup(channelId, api.updateGroup(channelId, { members_can_add: on })),
    removeMember: (channelId, userId) =>
      manageGroup(channelId, api.removeMember(channelId, userId)),
    setAdmin: (channelId, userId, admin) =>
      manageGroup(channelId, api.setAdmin(channelId, userId, admin)),
    refreshGroup,
    startChat: startDm,
    startChatWith,
    createGroup,
    addMember,
    requestFriend,
    befriend: (userId) => answer(befriend(userId)),
    acceptFriend: (userId) => answer(acceptFriend(userId)),
    declineFriend: (userId) => answer(declineFriend(userId)),
    block: (userId) => answer(block(userId)),
    unblock: (userId) => answer(unblock(userId)),
    acceptInvite: (channelId) => answer(acceptInvite(channelId)),
    declineInvite: (channelId) => answer(declineInvite(channelId)),
    loadDevices,
    unlinkDevice,
    notify: showNotice,
    rename,
    // Desktop notifications and per-chat mute (notify.js).
    notificationState: () => chat.notifier.state,
    enableNotifications: () => chat.notifier.enable(),
    disableNotifications: () => chat.notifier.disable(),
    isMuted: (channelId) => Boolean(chat?.notifier.isMuted(channelId)),
    setMuted(channelId, muted) {
      chat.notifier.setMuted(channelId, muted);
      chat.store.changed();
    },
  };
}

/** Run an action from a button: its failure becomes a notice. */
function answer(work) {
  return work.catch((failure) => showNotice(errorText(failure)));
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
  const button = banner.querySelector("button");
  if (status === "superseded") {
    // Close 4011: this device's newer socket (another tab or window) took over.
    banner.hidden = false;
    const text = "Tidings is open in another tab or window.";
    const label = banner.querySelector(".banner-text");
    if (label.textContent !== text) label.textContent = text;
    if (button.textContent !== "Use here") button.textContent = "Use here";
    return;
  }
  if (button.textContent !== "Retry now") button.textContent = "Retry now";
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
      chat.notifier.onMessage(result.message, store);
      onChannelEvent(result.message);
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
  if (item?.event && frame.code !== "unavailable" && frame.code !== "rate_limited") {
    store.discardFailed(item.client_msg_id); // an edit, delete or reaction refused: say why
    showNotice(eventErrorText(frame.code, item.event.type));
    return;
  }
  if (item) {
    if (frame.code === "unavailable" || frame.code === "rate_limited") {
      clearTimeout(chat.timers.resend); // not stored: send again with the same client_msg_id
      chat.timers.resend = setTimeout(flushOutbox, 1000);
    } else {
      // Refused for good (`blocked`: the peer blocked us): shown as not delivered, and
      // never sent again by itself.
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
  const frame = {
    type: "send",
    client_msg_id: item.client_msg_id,
    channel_id: item.channel_id,
    body: item.body,
  };
  if (item.attachments?.length) frame.attachments = item.attachments;
  if (item.reply_to) frame.reply_to = item.reply_to;
  if (item.event) frame.event = item.event;
  return frame;
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

/** Before the open conversation changes: what it showed is read now, not after the
 *  delay (a chat opened and left at once would otherwise stay unread on the server). */
function flushReceipts() {
  clearTimeout(chat.timers.receipts);
  sendReceipts();
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
  if (store.current !== channelId) {
    if (store.current) flushReceipts();
    chat.conversation.opening(channelId, store.meta[channelId]);
  }
  store.setCurrent(channelId);
  nav.showChannel(channelId);
  const peer = store.peerOf(channelId);
  if (peer) {
    // A profile look-up of someone we share nothing with yet (a draft found by
    // username) answers 404 and counts against our look-ups: only once there is a chat.
    if (!store.channels.get(channelId)?.draft) ensureUser(peer, true);
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
    if (chat.conversation.reveal(messageId, chat.store.search?.q)) return;
    if (chat.store.history.get(channelId)?.done) return;
    await loadOlder(channelId);
    render();
  }
}

/** Back to the list; `fromHistory`: the browser's Back did it (the entry is gone already). */
function closeChannel(fromHistory = false) {
  flushReceipts();
  chat.store.setCurrent(null);
  if (!fromHistory) nav.showList();
  requestAnimationFrame(
    () =>
      document.querySelector(".channel[aria-current]")?.focus() ??
      document.getElementById("new-chat")?.focus(),
  );
}

/** The browser's Back or Forward reached the list (null) or a conversation. */
function route(channelId) {
  if (!chat) return;
  if (!channelId) {
    if (chat.store.current) closeChannel(true);
  } else if (chat.store.current !== channelId) {
    openChannel(channelId);
  }
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
    if (failure.code === "not_a_member" && store.channels.get(channelId)?.removed) {
      store.history.set(channelId, { loading: false, done: true }); // removed: no history
      store.changed();
      return;
    }
    store.history.delete(channelId);
    store.changed();
    if (failure.code !== "network") showNotice(`Could not load messages: ${failure.message}`);
  }
}

function send(channelId, body, attachments, extra) {
  if (!chat) return;
  const item = chat.store.queueSend(channelId, body, attachments, extra);
  chat.socket.send(sendFrame(item)); // when offline it waits in the outbox for the next hello
  chat.lastTyping.delete(channelId);
}

/** An edit, delete or reaction: a `send` with `event`, through the outbox like any send. */
function sendEvent(channelId, event, body = "") {
  if (!chat) return;
  const item = chat.store.queueSend(channelId, body, null, { event });
  chat.socket.send(sendFrame(item));
}

/** A membership event came: the group as the server has it now, and who is in it. */
function onChannelEvent(msg) {
  const event = msg.event;
  if (!event || ["edit", "delete", "reaction"].includes(event.type)) return;
  for (const id of [event.user_id, ...(event.user_ids ?? [])]) if (id) ensureUser(id);
  if (chat.store.channels.get(msg.channel_id)?.removed) return;
  refreshGroup(msg.channel_id);
  if (event.type === "member_added" || event.type === "member_joined") refreshChannels();
}

/** A group management call from the group dialog (which shows a failure), then the group
 * as the server has it (its event follows, for every member). */
async function manageGroup(channelId, call) {
  await call;
  await refreshGroup(channelId);
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

/** A 1:1 chat with someone we know (a friend, a peer). */
async function startDm(userId) {
  openChannel(chat.store.openDraft(userId));
}

/** A 1:1 chat with the user of exactly this username (404 unknown_user, 429). */
async function startChatWith(username) {
  const c = chat;
  const user = await api.findUser(username); // the dialog shows a failure
  if (chat !== c) return;
  c.store.setUser(user);
  openChannel(c.store.openDraft(user.user_id));
}

/** Usernames to user ids, remembering who they are; throws the first failure. */
async function resolveUsernames(usernames) {
  const ids = [];
  for (const username of usernames) {
    const user = await api.findUser(username);
    chat?.store.setUser(user);
    ids.push(user.user_id);
  }
  return ids;
}

async function createGroup(name, friendIds, usernames) {
  const c = chat;
  const ids = [...new Set([...friendIds, ...(await resolveUsernames(usernames))])];
  const group = await api.createGroup(name, ids);
  if (chat !== c) return;
  const invited = group.invited ?? [];
  c.store.upsertGroup(group);
  for (const id of group.member_ids) ensureUser(id);
  openChannel(group.channel_id);
  if (invited.length) {
    const names = namesList(invited.map((id) => c.store.displayName(id)));
    showNotice(`Invited ${names}: they join once they accept.`);
  }
}

/** Add `who` ({user_id} or {username}) to a group; says whether added or invited. */
async function addMember(channelId, who) {
  const [userId] = who.user_id ? [who.user_id] : await resolveUsernames([who.username]);
  const outcome = await api.addMember(channelId, userId);
  await refreshGroup(channelId);
  const name = chat?.store.displayName(userId) ?? "They";
  const text =
    outcome === "invited"
      ? `${name} was invited: they join once they accept.`
      : `${name} was added.`;
  showNotice(text);
  return text;
}

// --- friends, blocks, invites, devices ---------------------------------------------------

/** Ask the user of this username to be friends (or accept their request). */
async function requestFriend(username) {
  const [userId] = await resolveUsernames([username]);
  const accepting = chat?.store.requests.incoming.includes(userId);
  await api.addFriend(userId);
  await refreshSocial();
  const name = chat?.store.displayName(userId) ?? username;
  return accepting ? `You and ${name} are friends now.` : `Friend request sent to ${name}.`;
}

/** The friend button of a 1:1 chat: ask, or accept their request. */
async function befriend(userId) {
  const accepting = chat.store.requests.incoming.includes(userId);
  await api.addFriend(userId);
  await refreshSocial();
  const name = chat?.store.displayName(userId);
  showNotice(accepting ? `You and ${name} are friends now.` : `Friend request sent to ${name}.`);
}

async function acceptFriend(userId) {
  await api.addFriend(userId);
  await refreshSocial();
  showNotice(`You and ${chat?.store.displayName(userId)} are friends now.`);
}

/** Decline their request, withdraw ours, or end the friendship: one call. */
async function declineFriend(userId) {
  await api.removeFriend(userId);
  await refreshSocial();
}

async function block(userId) {
  await api.block(userId);
  await refreshSocial();
  showNotice(`You blocked ${chat?.store.displayName(userId)}.`);
}

async function unblock(userId) {
  await api.unblock(userId);
  await refreshSocial();
  showNotice(`You unblocked ${chat?.store.displayName(userId)}.`);
}

async function acceptInvite(channelId) {
  const c = chat;
  const group = await api.acceptInvite(channelId);
  if (chat !== c) return;
  c.store.upsertGroup(group);
  for (const id of group.member_ids) ensureUser(id);
  await Promise.all([refreshSocial(), refreshChannels()]);
  showNotice(`You joined ${group.name}.`);
}

async function declineInvite(channelId) {
  await api.declineInvite(channelId);
  await refreshSocial();
}

async function loadDevices() {
  const c = chat;
  try {
    const devices = await api.devices();
    if (chat === c) c.store.setDevices(devices);
  } catch (failure) {
    if (failure.status !== 401) showNotice(`Could not load devices: ${errorText(failure)}`);
  }
}

/** A new display name (PATCH /v1/me): the name as the server stored it. */
async function rename(displayName) {
  const c = chat;
  const profile = await api.updateMe(displayName);
  if (chat !== c) return profile.display_name;
  c.store.me.display_name = profile.display_name;
  session.display_name = profile.display_name;
  storage.saveSession(session);
  c.store.changed();
  return profile.display_name;
}

async function unlinkDevice(deviceId) {
  await api.unlinkDevice(deviceId);
  await loadDevices();
  showNotice("The device is unlinked: it is logged out now.");
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

/**
 * Friends, friend requests both ways, group invites and blocks: no frame announces them,
 * so they are fetched at login, when the window gets focus, and every 30 s.
 */
async function refreshSocial() {
  const c = chat;
  if (!c) return;
  if (c.socialRefreshing) {
    // One is under way, but it may have read before the change the caller just made
    // (accept one request, then decline another at once): one more after it, shared.
    c.socialAgain ??= c.socialRefreshing.then(() => {
      c.socialAgain = null;
      return refreshSocial();
    });
    return c.socialAgain;
  }
  c.socialRefreshing = (async () => {
    try {
      const [friends, requests, invites, blocked] = await Promise.all([
        api.friends(),
        api.friendRequests(),
        api.invites(),
        api.blocked(),
      ]);
      if (chat !== c) return;
      const before = new Set(c.store.friendIds);
      c.store.setFriends(friends);
      c.store.setFriendRequests(requests);
      c.store.setInvites(invites);
      c.store.setBlocked(blocked);
      // A new friend: their presence is ours to see now.
      for (const f of friends) if (!before.has(f.user_id)) ensureUser(f.user_id, true);
    } catch {
      // offline, or logged out meanwhile (a 401 logs out): the next refresh catches up
    } finally {
      c.socialRefreshing = null;
    }
  })();
  return c.socialRefreshing;
}

/** Presence we may have missed while disconnected: 1:1 peers and the open group. */
function refreshPresence() {
  const { store } = chat;
  const ids = new Set();
  for (const c of store.channels.values()) {
    if (c.kind === "dm" && !c.draft) ids.add(store.peerOf(c.channel_id));
  }
  if (store.current && !isDm(store.current))
    for (const id of store.memberIds(store.current)) ids.add(id);
  ids.delete(store.me.user_id);
  for (const id of [...ids].slice(0, 100)) ensureUser(id, true);
}

/** A profile (with presence) we do not have yet, or again when `fresh`. */
async function ensureUser(userId, fresh = false, tries = 3) {
  const c = chat;
  if (!c || !userId || userId === c.store.me.user_id) return;
  if (c.fetching.has(userId) || (!fresh && c.store.users.get(userId)?.username)) return;
  c.fetching.add(userId);
  try {
    const profile = await api.user(userId);
    if (chat === c) c.store.setUser(profile);
  } catch {
    // Unknown, not related yet, or offline: shown by id meanwhile; a couple more tries.
    if (tries > 1) setTimeout(() => ensureUser(userId, fresh, tries - 1), 1000);
  } finally {
    c.fetching.delete(userId);
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
    refreshSocial();
  } else {
    persistNow();
  }
});
window.addEventListener("focus", () => {
  if (!chat) return;
  refreshChannels();
  refreshSocial();
});
window.addEventListener("pagehide", persistNow);
window.addEventListener("online", () => chat?.socket.retryNow());
// A file dropped anywhere but on a conversation (which takes images) must not make the
// browser leave the page to show it.
window.addEventListener("dragover", (event) => {
  if (!event.dataTransfer?.types?.includes("Files") || event.defaultPrevented) return;
  event.preventDefault(); // not taken here: "none", and the browser keeps the page
  event.dataTransfer.dropEffect = "none";
});
window.addEventListener("drop", (event) => {
  if (event.dataTransfer?.types?.includes("Files")) event.preventDefault();
});
banner.querySelector("button").addEventListener("click", () => {
  if (chat?.store.connection.status === "superseded") chat.socket.resume();
  else chat?.socket.retryNow();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && chat?.store.current && !document.querySelector("dialog[open]")) {
    closeChannel();
  }
});

start();
