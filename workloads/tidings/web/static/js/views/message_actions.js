// Issue #20 around a message bubble: system lines for membership events, the quote of a
// reply, "edited", the tombstone of a deleted message, reactions under the bubble, the
// "⋯" menu (react, reply, edit, delete for everyone) and the composer's reply/edit bar.
// The body text itself is rendered by conversation.js.

import { h, setText } from "../dom.js";
import { systemText } from "../events.js";
import { shownBody } from "../store.js";

export const REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];
export const EDIT_WINDOW_MS = 15 * 60 * 1000; // the contract's edit_window_s (900)
export const DELETE_WINDOW_MS = 48 * 3600 * 1000; // delete_window_s (172800)

// Why an edit, delete or reaction was refused (the `error` answering its `send`).
const EVENT_ERRORS = {
  too_late: {
    edit: "Too late to edit: a message can be edited for 15 minutes after it was sent.",
    delete: "Too late to delete: a message can be deleted for everyone for 48 hours.",
  },
  forbidden: "Only the sender can change that message.",
  unknown_message: "That message is not there any more.",
  not_supported: "Messages in end-to-end encrypted chats cannot be edited here.",
  not_a_member: "You are not a member of this chat any more.",
};

export function eventErrorText(code, type) {
  const text = EVENT_ERRORS[code];
  if (typeof text === "object") return text[type] ?? text.edit;
  return text ?? `That did not work (${code}).`;
}

/** Part of a message's key: an edit or a delete renders the bubble anew. */
export function messageVersion(m) {
  return `${m.edited_at ?? ""}${m.deleted ? ":deleted" : ""}`;
}

/** A membership event as a line in the conversation ("Carol added Dave"). */
export function systemLine(m, store) {
  return h(
    "li",
    { class: "system-line", dataset: { event: m.event.type } },
    h("span", {}, systemText(m, store)),
  );
}

function canEdit(m, mine, now = Date.now()) {
  return mine && !m.deleted && !m.e2e && !m.pending && now - m.ts < EDIT_WINDOW_MS;
}

function canDelete(m, mine, now = Date.now()) {
  return mine && !m.deleted && !m.pending && now - m.ts < DELETE_WINDOW_MS;
}

/**
 * Bring a bubble up to date with its message: the reply's quote, "edited", the tombstone,
 * reactions and the "⋯" menu button. Called on every render (cheap when nothing changed).
 */
export function decorate(el, m, store, actions, composer) {
  const mine = m.sender_id === store.me.user_id;
  el.classList.toggle("deleted", Boolean(m.deleted));
  if (m.deleted) {
    const body = el.querySelector(".body");
    if (body && mine) setText(body, "You deleted this message");
  }
  decorateQuote(el, m, store, actions);
  const meta = el.querySelector(".meta");
  if (meta && m.edited_at && !m.deleted && !meta.querySelector(".edited")) {
    meta.prepend(h("span", { class: "edited" }, "edited"));
  }
  decorateReactions(el, m, store, actions);
  if (!m.pending && !m.deleted && !el.querySelector(".msg-more")) {
    el.append(...menuButton(el, store, actions, composer));
  }
}

function decorateQuote(el, m, store, actions) {
  if (!m.reply_to || m.deleted) {
    el.querySelector(".quote")?.remove();
    return;
  }
  const target = store.messages.get(m.channel_id)?.get(m.reply_to);
  const who = target ? store.displayName(target.sender_id) : "";
  const text = target ? shownBody(target) || "📷 Photo" : "Original message";
  let quote = el.querySelector(".quote");
  if (!quote) {
    quote = h(
      "button",
      {
        type: "button",
        class: "quote",
        onclick: () => actions.revealMessage(m.channel_id, m.reply_to),
      },
      h("span", { class: "quote-sender" }),
      h("span", { class: "quote-text" }),
    );
    const after = el.querySelector(".sender");
    if (after) after.after(quote);
    else el.prepend(quote);
  }
  setText(quote.querySelector(".quote-sender"), who);
  setText(quote.querySelector(".quote-text"), text.slice(0, 200));
  quote.classList.toggle("quote-deleted", Boolean(target?.deleted));
  quote.setAttribute("aria-label", `Reply to ${who || "a message"}: ${text.slice(0, 80)}`);
}

function decorateReactions(el, m, store, actions) {
  const reactions = m.deleted ? {} : (m.reactions ?? {});
  const me = store.me.user_id;
  const counts = new Map(); // emoji -> [user ids]
  for (const [userId, emoji] of Object.entries(reactions)) {
    if (!counts.has(emoji)) counts.set(emoji, []);
    counts.get(emoji).push(userId);
  }
  const version = JSON.stringify([...counts].sort());
  let row = el.querySelector(".reactions");
  if (!counts.size) {
    row?.remove();
    return;
  }
  if (row?.dataset.version === version) return;
  // In the menu's order, then the rest (other clients' emoji) as they come.
  const rank = (emoji) => (REACTIONS.includes(emoji) ? REACTIONS.indexOf(emoji) : REACTIONS.length);
  const sorted = [...counts].sort(([a], [b]) => rank(a) - rank(b));
  const chips = sorted.map(([emoji, who]) => {
    const mineToo = who.includes(me);
    const names = who.map((id) => store.displayName(id)).join(", ");
    return h(
      "li",
      {},
      h(
        "button",
        {
          type: "button",
          class: `reaction${mineToo ? " mine" : ""}`,
          "aria-pressed": mineToo ? "true" : "false",
          "aria-label": `${emoji} ${who.length}: ${names}${mineToo ? " (click to take yours back)" : ""}`,
          title: names,
          onclick: () => actions.react(m.channel_id, m.message_id, mineToo ? "" : emoji),
        },
        h("span", { class: "reaction-emoji" }, emoji),
        h("span", { class: "reaction-count" }, String(who.length)),
      ),
    );
  });
  const fresh = h("ul", { class: "reactions", "aria-label": "Reactions" }, chips);
  fresh.dataset.version = version;
  if (row) row.replaceWith(fresh);
  else el.append(fresh);
}

/** The "⋯" button of a bubble and the menu it opens (built when opened). */
function menuButton(el, store, actions, composer) {
  const menu = h("div", { class: "msg-menu", role: "menu", hidden: true });
  const button = h(
    "button",
    {
      type: "button",
      class: "ghost msg-more",
      "aria-label": "Message actions",
      "aria-haspopup": "menu",
      "aria-expanded": "false",
      onclick: (event) => {
        event.stopPropagation();
        if (menu.hidden) openMenu(menu, button, el, store, actions, composer);
        else closeMenu();
      },
    },
    "⋯",
  );
  return [h("span", { class: "msg-actions" }, button), menu];
}

let openOne = null; // {menu, button} of the menu shown now

function closeMenu() {
  if (!openOne) return;
  openOne.menu.hidden = true;
  openOne.button.setAttribute("aria-expanded", "false");
  openOne = null;
}

document.addEventListener("click", (event) => {
  if (openOne && !openOne.menu.contains(event.target)) closeMenu();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && openOne) {
    const { button } = openOne;
    closeMenu();
    button.focus();
    // Only the menu closes, not the conversation (app.js listens on the document too;
    // this module's listener comes first: it is imported before app.js runs).
    event.stopImmediatePropagation();
  }
});

function openMenu(menu, button, el, store, actions, composer) {
  closeMenu();
  // The message as it is now (the element may outlive an edit of its object).
  const id = el.dataset.messageId;
  const m = store.messages.get(store.current)?.get(id);
  if (!m) return;
  const mine = m.sender_id === store.me.user_id;
  const item = (label, onclick, extra = {}) =>
    h(
      "button",
      {
        type: "button",
        role: "menuitem",
        class: "menu-item",
        ...extra,
        onclick: () => {
          closeMenu();
          onclick();
        },
      },
      label,
    );
  const mineNow = m.reactions?.[store.me.user_id];
  const emojis = h(
    "div",
    { class: "menu-reactions", role: "group", "aria-label": "React" },
    REACTIONS.map((emoji) =>
      item(emoji, () => actions.react(m.channel_id, m.message_id, mineNow === emoji ? "" : emoji), {
        class: `menu-item emoji${mineNow === emoji ? " chosen" : ""}`,
        "aria-label": `React with ${emoji}`,
      }),
    ),
  );
  const confirm = h(
    "div",
    { class: "menu-confirm", hidden: true },
    h("p", {}, "Delete this message for everyone?"),
    item("Delete", () => actions.deleteMessage(m.channel_id, m.message_id), {
      class: "menu-item danger",
      "aria-label": "Delete for everyone now",
    }),
    item("Cancel", () => {}),
  );
  const entries = [
    emojis,
    item("Reply", () => composer.reply(m)),
    canEdit(m, mine) ? item("Edit", () => composer.edit(m)) : null,
    canDelete(m, mine)
      ? h(
          "button",
          {
            type: "button",
            role: "menuitem",
            class: "menu-item danger",
            onclick: (event) => {
              event.stopPropagation();
              confirm.hidden = false;
              confirm.querySelector(".danger").focus();
            },
          },
          "Delete for everyone",
        )
      : null,
    confirm,
  ];
  menu.replaceChildren(...entries.filter(Boolean));
  menu.hidden = false;
  // Near the bottom of the conversation the menu opens upwards, inside the view.
  menu.classList.remove("up");
  const view = el.closest(".scroller")?.getBoundingClientRect();
  const box = menu.getBoundingClientRect();
  if (view && box.bottom > view.bottom && box.height < el.getBoundingClientRect().top - view.top) {
    menu.classList.add("up");
  }
  button.setAttribute("aria-expanded", "true");
  openOne = { menu, button };
  menu.querySelector("button")?.focus();
}

/**
 * The bar above the composer while replying to or editing a message (per chat, like
 * drafts); Escape or ✕ cancels. `send` routes the composer's text accordingly.
 */
export class ComposerContext {
  constructor(conversation) {
    this.conversation = conversation;
    this.states = new Map(); // channel_id -> {mode: "reply"|"edit", message, draft?}
    this.label = h("span", { class: "context-label", id: "composer-context-label" });
    this.snippet = h("span", { class: "context-snippet" });
    this.el = h(
      "div",
      { class: "composer-context", id: "composer-context", hidden: true },
      h("div", { class: "context-text" }, this.label, this.snippet),
      h(
        "button",
        {
          type: "button",
          class: "ghost",
          "aria-label": "Cancel",
          onclick: () => this.cancel(),
        },
        "✕",
      ),
    );
    conversation.input.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.current()) {
        event.preventDefault();
        event.stopPropagation(); // not "close the conversation"
        this.cancel();
      }
    });
  }

  current() {
    return this.states.get(this.conversation.channelId) ?? null;
  }

  reply(message) {
    const was = this.current();
    if (was?.mode === "edit") this.conversation.input.value = was.draft ?? "";
    this.states.set(message.channel_id, { mode: "reply", message });
    this.changed();
  }

  edit(message) {
    const was = this.current();
    const draft = was?.mode === "edit" ? was.draft : this.conversation.input.value;
    this.states.set(message.channel_id, { mode: "edit", message, draft });
    this.conversation.input.value = message.body;
    this.changed();
  }

  cancel() {
    const state = this.current();
    if (!state) return;
    this.states.delete(this.conversation.channelId);
    if (state.mode === "edit") this.conversation.input.value = state.draft ?? "";
    this.changed();
  }

  changed() {
    this.render(this.store);
    this.conversation.onInput(); // the composer's height
    this.conversation.focusComposer();
  }

  render(store) {
    this.store = store;
    const state = this.current();
    this.el.hidden = !state;
    this.el.dataset.mode = state?.mode ?? "";
    if (!state || !store) return;
    const { message } = state;
    setText(
      this.label,
      state.mode === "edit" ? "Edit message" : `Reply to ${store.displayName(message.sender_id)}`,
    );
    setText(this.snippet, (shownBody(message) || "📷 Photo").slice(0, 120));
  }

  /** The composer's text goes out: a plain send, a reply, or an edit. */
  send(channelId, body) {
    const state = this.states.get(channelId);
    this.states.delete(channelId);
    this.render(this.store);
    const { actions } = this.conversation;
    if (state?.mode === "edit") {
      if (body !== state.message.body) actions.editMessage(channelId, state.message.message_id, body);
      return;
    }
    const extra = state?.mode === "reply" ? { reply_to: state.message.message_id } : undefined;
    actions.send(channelId, body, undefined, extra);
  }
}
