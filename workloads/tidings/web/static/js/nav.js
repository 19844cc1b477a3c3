// The browser's Back and Forward: one history entry per step, list → conversation → dialog.
//
// Entries carry `{tidings: "list" | "conversation", dialog?}`. Opening a conversation from
// the list pushes an entry (`#/c/<channel_id>`); opening another from a conversation
// replaces it (Back goes to the list, not through every chat seen). A dialog pushes an
// entry of its own: Back closes it, and closing it otherwise takes its entry off again.
// The app changes its state first and tells this module; a Back or Forward of the person's
// comes to the app as a route (`onRoute(channelId | null)`).

let onRoute = () => {};
let nextDialog = 1;
const dialogs = new Map(); // dialog id -> <dialog> element, while it is open
let ownPops = 0; // history.back() calls of our own whose popstate is not a person's
const waiting = []; // changes made while one of those is under way: done once it lands
let backs = 0; // how many of our own Backs were started
const BACK_LANDS_MS = 1000; // a Back with nothing behind it never lands: stop waiting then

/** Run `change` now, or once our own Back has landed (it would undo a change made now). */
function settled(change) {
  if (ownPops > 0) waiting.push(change);
  else change();
}

function flush() {
  while (ownPops === 0 && waiting.length) waiting.shift()();
}

function goBack(steps = 1) {
  ownPops += 1;
  const mine = ++backs;
  history.go(-steps);
  setTimeout(() => {
    if (ownPops > 0 && backs === mine) {
      ownPops = 0;
      flush();
    }
  }, BACK_LANDS_MS);
}

/** The channel a URL names (`#/c/<channel_id>`), or null. */
export function channelOfUrl(hash = location.hash) {
  if (!hash.startsWith("#/c/")) return null;
  try {
    return decodeURIComponent(hash.slice(4)) || null;
  } catch {
    return null;
  }
}

function listUrl() {
  return location.pathname + location.search;
}

function chatUrl(channelId) {
  return `${listUrl()}#/c/${encodeURIComponent(channelId)}`;
}

/**
 * Start following Back and Forward. A page opened (or reloaded) at a conversation's URL
 * gets the list under it, so Back shows the list instead of leaving.
 */
export function start(route) {
  onRoute = route;
  const channelId = channelOfUrl();
  if (channelId && !history.state?.tidings) {
    history.replaceState({ tidings: "list" }, "", listUrl());
    history.pushState({ tidings: "conversation" }, "", chatUrl(channelId));
  } else if (!history.state?.tidings) {
    history.replaceState({ tidings: channelId ? "conversation" : "list" }, "", location.href);
  }
}

/** A conversation is open now: push its entry over the list, or replace the one shown. */
export function showChannel(channelId) {
  settled(() => changeToChannel(channelId));
}

function changeToChannel(channelId) {
  const url = chatUrl(channelId);
  const state = history.state;
  if (state?.dialog) {
    // Opened from a dialog ("New chat", a friend's "Chat"), which closes now: the chat
    // takes the dialog's entry, so Back goes to what was under the dialog.
    dialogs.delete(state.dialog);
    history.replaceState({ tidings: "conversation" }, "", url);
  } else if (state?.tidings === "conversation") {
    if (location.href !== new URL(url, location.href).href) {
      history.replaceState({ tidings: "conversation" }, "", url);
    }
  } else {
    history.pushState({ tidings: "conversation" }, "", url);
  }
}

/** The list is shown now: back over the conversation's entry (and a dialog's over it). */
export function showList() {
  settled(changeToList);
}

function changeToList() {
  const state = history.state;
  if (state?.dialog) dialogs.delete(state.dialog); // it closes with the conversation
  if (state?.tidings === "conversation") {
    goBack(state.dialog ? 2 : 1);
  } else {
    history.replaceState({ tidings: "list" }, "", listUrl());
  }
}

/**
 * A modal <dialog> was opened: Back closes it; its close (✕, Escape, done) takes its
 * entry off the history again.
 */
export function dialogOpened(dialog) {
  const id = nextDialog++;
  dialogs.set(id, dialog);
  settled(() => {
    if (!dialog.open) return; // closed already
    const under = history.state?.tidings ?? (channelOfUrl() ? "conversation" : "list");
    history.pushState({ tidings: under, dialog: id }, "", location.href);
  });
  dialog.addEventListener("close", () => {
    dialogs.delete(id);
    settled(() => {
      if (history.state?.dialog === id) goBack();
    });
  });
}

window.addEventListener("popstate", (event) => {
  if (ownPops > 0) {
    ownPops -= 1; // the entry we took off ourselves: the page shows it already
    flush();
    return;
  }
  const state = event.state;
  // Back from a dialog (or past it): it closes without going back again.
  for (const [id, dialog] of dialogs) {
    if (state?.dialog !== id) {
      dialogs.delete(id);
      dialog.close();
    }
  }
  if (state?.dialog && dialogs.has(state.dialog)) return; // Forward to nothing new
  onRoute(channelOfUrl());
});
