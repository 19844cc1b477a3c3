// The open conversation: header (name, presence or members; in a 1:1 chat the friend
// request and block buttons), history paging, messages with ticks, the typing line and
// the composer (Enter sends, Shift+Enter is a new line).

import { h, reconcile, setText } from "../dom.js";
import { clockTime, fullTime, lastSeen } from "../format.js";
import { messageKey, shownBody } from "../store.js";

// Why a send was refused for good, for people ("Not sent (code)" for the rest).
const FAILED = {
  blocked: "Not delivered: this person has blocked you.",
  not_a_member: "Not sent: you are not a member of this chat.",
  unknown_channel: "Not sent: this chat does not exist.",
  unknown_user: "Not sent: there is no such user.",
  body_too_long: "Not sent: the message is too long.",
};
const NO_RETRY = new Set(["blocked"]); // sending it again cannot work

const TICKS = {
  pending: ["◷", "Sending"],
  failed: ["!", "Not delivered"],
  sent: ["✓", "Sent"],
  delivered: ["✓✓", "Delivered"],
  read: ["✓✓", "Read"],
};

export class Conversation {
  constructor(actions) {
    this.actions = actions;
    this.channelId = null;
    this.drafts = new Map(); // channel_id -> unsent text
    this.title = h("h2", { id: "conversation-title", class: "conversation-title" });
    this.status = h("p", { class: "conversation-status", id: "conversation-status" });
    this.groupButton = h(
      "button",
      { type: "button", class: "ghost", onclick: () => actions.groupInfo(this.channelId) },
      "Members",
    );
    // 1:1 chats: ask to be friends (or accept), and block / unblock.
    this.friendButton = h("button", {
      type: "button",
      class: "ghost",
      id: "friend-button",
      onclick: () => this.friendAction(),
    });
    this.blockButton = h("button", {
      type: "button",
      class: "ghost",
      id: "block-button",
      onclick: () => this.blockAction(),
    });
    this.blockedNote = h("p", { class: "blocked-note", role: "status" });
    this.older = h(
      "button",
      { type: "button", class: "link older", onclick: () => this.loadOlder() },
      "Load older messages",
    );
    this.start = h("p", { class: "hint start" }, "This is the start of the conversation.");
    this.list = h("ol", {
      class: "messages",
      role: "log",
      "aria-live": "polite",
      "aria-relevant": "additions",
      "aria-labelledby": "conversation-title",
    });
    this.scroller = h(
      "div",
      { class: "scroller", onscroll: () => this.onScroll() },
      this.older,
      this.start,
      this.list,
    );
    this.typing = h("p", { class: "typing", "aria-live": "polite" });
    this.input = h("textarea", {
      id: "composer",
      name: "body",
      rows: 1,
      maxlength: 100000,
      placeholder: "Type a message",
      autocomplete: "off",
      onkeydown: (e) => this.onKey(e),
      oninput: () => this.onInput(),
    });
    this.form = h(
      "form",
      { class: "composer", onsubmit: (e) => this.submit(e) },
      h("label", { for: "composer", class: "visually-hidden" }, "Message"),
      this.input,
      h("button", { type: "submit", class: "primary" }, "Send"),
    );
    this.pane = h(
      "div",
      { class: "conversation-pane" },
      h(
        "header",
        { class: "conversation-head" },
        h(
          "button",
          {
            type: "button",
            class: "ghost back",
            "aria-label": "Back to chats",
            onclick: () => actions.closeChannel(),
          },
          "←",
        ),
        h("div", { class: "conversation-heading" }, this.title, this.status),
        this.friendButton,
        this.blockButton,
        this.groupButton,
      ),
      this.blockedNote,
      this.scroller,
      this.typing,
      this.form,
    );
    this.placeholder = h(
      "div",
      { class: "placeholder" },
      h("p", {}, "Choose a chat, or start a new one."),
    );
    this.el = h(
      "section",
      { class: "conversation", "aria-labelledby": "conversation-title" },
      this.placeholder,
    );
  }

  render(store) {
    const id = store.current;
    if (id !== this.channelId) {
      // What was typed stays with its chat (until the page is closed).
      if (this.channelId) this.drafts.set(this.channelId, this.input.value);
      this.input.value = (id && this.drafts.get(id)) || "";
      this.channelId = id;
      this.el.replaceChildren(id ? this.pane : this.placeholder);
      this.list.replaceChildren();
      this.stickToBottom = true;
    }
    if (!id) return;
    const channel = store.channels.get(id);
    setText(this.title, store.title(id));
    // End-to-end: read-only with a notice (the web client holds no keys).
    const encrypted = Boolean(channel?.e2e);
    this.input.disabled = encrypted;
    this.input.placeholder = encrypted
      ? "End-to-end encrypted: send and read in the Tidings app"
      : "Type a message";
    const group = channel?.kind === "group";
    this.groupButton.hidden = !group;
    if (group) {
      const n = channel.member_ids?.length ?? 0;
      setText(this.status, `${n} member${n === 1 ? "" : "s"}`);
      this.status.dataset.presence = "";
    } else {
      const user = store.users.get(store.peerOf(id));
      const online = user?.presence?.status === "online";
      setText(
        this.status,
        online ? "online" : user?.presence ? lastSeen(user.presence.last_seen) : "",
      );
      this.status.dataset.presence = online ? "online" : "offline";
    }
    this.renderRelation(store, group ? null : store.peerOf(id));
    const history = store.history.get(id);
    this.older.hidden = !history || history.done;
    this.older.disabled = Boolean(history?.loading);
    this.start.hidden = !history?.done;
    // A page of history is not news: screen readers wait until it is in.
    this.list.setAttribute("aria-busy", history?.loading ? "true" : "false");
    this.renderMessages(store, id, group);
    const typing = store.typingIn(id).map((u) => store.displayName(u));
    setText(
      this.typing,
      typing.length === 0
        ? ""
        : typing.length === 1
          ? `${typing[0]} is typing…`
          : `${typing.join(", ")} are typing…`,
    );
  }

  /** The friend and block buttons of a 1:1 chat (hidden in groups). */
  renderRelation(store, peer) {
    this.peer = peer;
    this.relation = peer ? store.relationOf(peer) : null;
    this.friendButton.hidden = !peer || this.relation === "blocked";
    this.blockButton.hidden = !peer;
    this.blockedNote.hidden = this.relation !== "blocked";
    if (!peer) return;
    const name = store.displayName(peer);
    const [label, enabled] = {
      friend: ["Friends ✓", false],
      outgoing: ["Friend request sent", false],
      incoming: ["Accept friend request", true],
    }[this.relation] ?? ["Add friend", true];
    setText(this.friendButton, label);
    this.friendButton.disabled = !enabled;
    setText(this.blockButton, this.relation === "blocked" ? "Unblock" : "Block");
    this.blockButton.setAttribute(
      "aria-label",
      `${this.relation === "blocked" ? "Unblock" : "Block"} ${name}`,
    );
    setText(
      this.blockedNote,
      `You blocked ${name}: they cannot message you, and you do not see each other's presence.`,
    );
  }

  friendAction() {
    if (this.peer && this.relation !== "friend") this.actions.befriend(this.peer);
  }

  blockAction() {
    if (!this.peer) return;
    if (this.relation === "blocked") this.actions.unblock(this.peer);
    else this.actions.block(this.peer);
  }

  renderMessages(store, id, group) {
    const scroller = this.scroller;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
    const firstBefore = this.list.firstElementChild;
    const firstTop = firstBefore?.offsetTop;
    const messages = store.messagesOf(id);
    reconcile(
      this.list,
      messages,
      messageKey,
      (m) => this.createMessage(m, store, group),
      (el, m) => this.updateMessage(el, m, store),
    );
    if (this.stickToBottom || fromBottom < 80) {
      scroller.scrollTop = scroller.scrollHeight;
    } else if (firstBefore && firstBefore.isConnected && firstBefore.offsetTop !== firstTop) {
      scroller.scrollTop += firstBefore.offsetTop - firstTop; // older page prepended: stay put
    }
    this.stickToBottom = false;
  }

  createMessage(m, store, group) {
    const mine = m.sender_id === store.me.user_id;
    const time = h(
      "time",
      { datetime: new Date(m.ts).toISOString(), title: fullTime(m.ts) },
      clockTime(m.ts),
    );
    const meta = h("span", { class: "meta" }, time);
    if (mine) meta.append(h("span", { class: "tick", role: "img" }));
    return h(
      "li",
      { class: mine ? "msg mine" : "msg theirs" },
      group && !mine ? h("span", { class: "sender" }, store.displayName(m.sender_id)) : null,
      h("p", { class: m.e2e ? "body encrypted" : "body" }, shownBody(m)),
      meta,
    );
  }

  updateMessage(el, m, store) {
    if (m.message_id) el.dataset.messageId = m.message_id;
    const sender = el.querySelector(".sender");
    if (sender) setText(sender, store.displayName(m.sender_id));
    const tick = el.querySelector(".tick");
    if (!tick) return;
    const state = store.tickOf(m);
    if (tick.dataset.state === state) return;
    const [symbol, label] = TICKS[state];
    tick.dataset.state = state;
    tick.textContent = symbol;
    tick.setAttribute("aria-label", label);
    tick.title = label;
    el.classList.toggle("failed", state === "failed");
    const retry = el.querySelector(".retry");
    if (state === "failed" && !retry) {
      el.append(
        h(
          "span",
          { class: "retry" },
          `${FAILED[m.failed] ?? `Not sent (${m.failed}).`} `,
          NO_RETRY.has(m.failed)
            ? null
            : h(
                "button",
                {
                  type: "button",
                  class: "link small",
                  onclick: () => this.actions.retry(m.client_msg_id),
                },
                "Retry",
              ),
          " ",
          h(
            "button",
            {
              type: "button",
              class: "link small",
              onclick: () => this.actions.discard(m.client_msg_id),
            },
            "Discard",
          ),
        ),
      );
    } else if (state !== "failed" && retry) retry.remove();
  }

  /** Scroll to a message and flash it (a search result). */
  reveal(messageId) {
    const el = this.list.querySelector(`[data-message-id="${CSS.escape(messageId)}"]`);
    if (!el) return false;
    el.scrollIntoView({ block: "center" });
    el.classList.add("flash");
    setTimeout(() => el.classList.remove("flash"), 2000);
    return true;
  }

  focusComposer() {
    this.input.focus();
  }

  loadOlder() {
    if (this.channelId) this.actions.loadOlder(this.channelId);
  }

  onScroll() {
    if (this.scroller.scrollTop < 40 && !this.older.hidden && !this.older.disabled)
      this.loadOlder();
  }

  onKey(event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      this.form.requestSubmit();
    }
  }

  onInput() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 160)}px`;
    if (this.input.value.trim()) this.actions.typing(this.channelId);
  }

  submit(event) {
    event.preventDefault();
    const body = this.input.value;
    if (!body.trim() || !this.channelId) return;
    this.input.value = "";
    this.onInput();
    this.stickToBottom = true;
    this.actions.send(this.channelId, body);
    this.input.focus();
  }
}
