// Desktop notifications (the Notification API, once the person turns them on in Settings
// and the browser allows them) for new messages in chats that are not in view, and a
// per-chat mute. The choice and the muted chats are kept per user in localStorage.

import { h, setText } from "./dom.js";
import { cmpId } from "./ids.js";
import { previewText } from "./store.js";

const KEY = "tidings.notify.";
const BODY_MAX = 200;
const NAME_WAIT_MS = 3000;

function load(userId) {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY + userId) ?? "null");
    return {
      enabled: Boolean(saved?.enabled),
      muted: Array.isArray(saved?.muted) ? saved.muted.map(String) : [],
    };
  } catch {
    return { enabled: false, muted: [] };
  }
}

export function notificationsSupported() {
  return typeof window.Notification === "function";
}

export class Notifier {
  /**
   * @param {string} userId whose choices these are
   * @param {(channelId: string) => void} open what a click on a notification opens
   */
  constructor(userId, open) {
    this.userId = userId;
    this.open = open;
    this.prefs = load(userId);
  }

  save() {
    try {
      localStorage.setItem(KEY + this.userId, JSON.stringify(this.prefs));
    } catch {
      // storage full or off: the choice lasts until the page is closed
    }
  }

  /** "on", "off" (not chosen, or turned off), "blocked" (the browser says no), "unsupported". */
  get state() {
    if (!notificationsSupported()) return "unsupported";
    if (Notification.permission === "denied") return "blocked";
    return this.prefs.enabled && Notification.permission === "granted" ? "on" : "off";
  }

  /** Turn them on: asks the browser (a click's doing, as browsers require). */
  async enable() {
    if (!notificationsSupported()) return this.state;
    let permission = Notification.permission;
    if (permission === "default") permission = await Notification.requestPermission();
    this.prefs.enabled = permission === "granted";
    this.save();
    return this.state;
  }

  disable() {
    this.prefs.enabled = false;
    this.save();
  }

  isMuted(channelId) {
    return this.prefs.muted.includes(channelId);
  }

  setMuted(channelId, muted) {
    this.prefs.muted = this.prefs.muted.filter((id) => id !== channelId);
    if (muted) this.prefs.muted.push(channelId);
    this.save();
  }

  /**
   * A new message from the inbox: a notification when it is news and not in view. A
   * stranger's name may still be on its way (their profile is being looked up): then it
   * waits for it, 3 s at most, and names them by id after that.
   */
  onMessage(msg, store) {
    const named = () => {
      const user = store.users.get(msg.sender_id);
      return Boolean(user?.display_name || user?.username);
    };
    if (named()) {
      this.#show(msg, store);
      return;
    }
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      unsubscribe();
      clearTimeout(timer);
      this.#show(msg, store);
    };
    const unsubscribe = store.subscribe(() => named() && finish());
    const timer = setTimeout(finish, NAME_WAIT_MS);
  }

  #show(msg, store) {
    if (this.state !== "on" || msg.sender_id === store.me.user_id || msg.event) return;
    if (this.isMuted(msg.channel_id)) return;
    if (store.fresh && store.catchingUp) return; // a new device's backlog is old news
    const inView = document.visibilityState === "visible" && store.current === msg.channel_id;
    if (inView) return;
    const readUpto = store.meta[msg.channel_id]?.readUpto;
    if (readUpto && cmpId(msg.message_id, readUpto) <= 0) return; // read on another device
    const group = store.channels.get(msg.channel_id)?.kind === "group";
    const text = previewText(msg);
    const body = group ? `${store.displayName(msg.sender_id)}: ${text}` : text;
    let note;
    try {
      note = new Notification(store.title(msg.channel_id), {
        body: body.length > BODY_MAX ? `${body.slice(0, BODY_MAX - 1)}…` : body,
        tag: msg.channel_id, // one per chat: a newer message replaces the older one
        icon: "/web/icon.svg",
        dir: "auto",
      });
    } catch {
      return; // some browsers only allow them from a service worker
    }
    note.onclick = () => {
      window.focus();
      this.open(msg.channel_id);
      note.close();
    };
  }
}

/** The conversation header's Mute / Unmute button: `update(channelId, title)` each render. */
export function muteButton(actions, channelIdOf) {
  const el = h("button", {
    type: "button",
    class: "ghost",
    id: "mute-button",
    onclick: () => {
      const id = channelIdOf();
      if (id) actions.setMuted(id, !actions.isMuted(id));
    },
  });
  return {
    el,
    update(channelId, title) {
      const muted = actions.isMuted(channelId);
      setText(el, muted ? "Unmute" : "Mute");
      el.setAttribute("aria-pressed", String(muted));
      el.setAttribute(
        "aria-label",
        muted ? `Unmute notifications from ${title}` : `Mute notifications from ${title}`,
      );
    },
  };
}

/** Settings' section: turn desktop notifications on or off. */
export function notificationSettings(actions) {
  const status = h("p", { class: "hint", id: "notify-status", role: "status" });
  const button = h("button", { type: "button", id: "notify-toggle" });
  const render = () => {
    const state = actions.notificationState();
    setText(
      status,
      {
        on: "Desktop notifications are on for new messages in chats you are not looking at.",
        off: "Desktop notifications are off.",
        blocked:
          "This browser blocks notifications from Tidings: allow them in its site settings.",
        unsupported: "This browser cannot show desktop notifications.",
      }[state],
    );
    setText(button, state === "on" ? "Turn off notifications" : "Turn on notifications");
    button.hidden = state === "blocked" || state === "unsupported";
  };
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (actions.notificationState() === "on") actions.disableNotifications();
      else await actions.enableNotifications();
    } finally {
      button.disabled = false;
      render();
    }
  });
  render();
  return [h("h3", {}, "Notifications"), status, button];
}
