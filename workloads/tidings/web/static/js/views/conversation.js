// The open conversation: header (name, presence or members; in a 1:1 chat the friend
// request and block buttons), history paging, messages with ticks and attachments, the
// typing line and the composer (Enter sends, Shift+Enter is a new line; photos attached
// with the button, dropped on the conversation or pasted, uploaded when sent).

import { h, icon, reconcile, setText } from "../dom.js";
import { clockTime, fullTime, lastSeen } from "../format.js";
import {
  formatBytes,
  IMAGE_MAX_BYTES,
  IMAGE_TYPES,
  MAX_ATTACHMENTS,
  MAX_NAME,
  uploadErrorText,
} from "../media.js";
import { ApiError } from "../api.js";
import { messageKey, shownBody } from "../store.js";
import { attachmentsView } from "./attachments.js";
import { muteButton } from "../notify.js";
import { charCount, cleanBody, refuseLongPaste, renderText, tooLongText } from "../text.js";
import { isSeparator, separatorView, updateSeparator, withSeparators } from "./dates.js";
import { ComposerContext, decorate, messageVersion, systemLine } from "./message_actions.js";

// Why a send was refused for good, for people ("Not sent (code)" for the rest).
const FAILED = {
  blocked: "Not delivered: this person has blocked you.",
  not_a_member: "Not sent: you are not a member of this chat.",
  unknown_channel: "Not sent: this chat does not exist.",
  unknown_user: "Not sent: there is no such user.",
  body_too_long: "Not sent: the message is too long.",
  unknown_media: "Not sent: the attachment is gone (uploads are kept 24 hours).",
  media_not_ready: "Not sent: the attachment's upload is not complete.",
  media_mismatch: "Not sent: the attachment does not match its upload.",
};
const NO_RETRY = new Set(["blocked", "unknown_media", "media_mismatch"]); // cannot work again

// The attach button's paperclip (Material Icons "attach_file", Apache-2.0).
const PAPERCLIP =
  "M16.5 6v11.5c0 2.21-1.79 4-4 4s-4-1.79-4-4V5a2.5 2.5 0 0 1 5 0v10.5c0 .55-.45 1-1 " +
  "1s-1-.45-1-1V6H10v9.5a2.5 2.5 0 0 0 5 0V5c0-2.21-1.79-4-4-4S7 2.79 7 5v12.5c0 3.04 " +
  "2.46 5.5 5.5 5.5s5.5-2.46 5.5-5.5V6h-1.5z";

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
    // Shown once scrolled up from the newest messages (or after a jump to a search hit).
    this.latest = h(
      "button",
      { type: "button", class: "jump-latest", hidden: true, onclick: () => this.jumpToLatest() },
      "↓ Jump to latest",
    );
    this.scroller = h(
      "div",
      { class: "scroller", onscroll: () => this.onScroll() },
      this.older,
      this.start,
      this.list,
      this.latest,
    );
    this.typing = h("p", { class: "typing", "aria-live": "polite" });
    this.input = h("textarea", {
      id: "composer",
      name: "body",
      rows: 1,
      dir: "auto", // typed Arabic or Hebrew runs right to left
      placeholder: "Type a message",
      autocomplete: "off",
      onkeydown: (e) => this.onKey(e),
      oninput: () => this.onInput(),
    });
    this.input.addEventListener("paste", (e) => this.onPaste(e));
    this.context = new ComposerContext(this); // replying to or editing a message
    this.removedNote = h("p", { class: "removed-note", role: "status", hidden: true });
    // Attachments: the button opens the picker; what is picked waits in `this.pending`
    // (per chat, like drafts) until Send uploads it.
    this.pending = new Map(); // channel_id -> {items: [{file, name, preview, ...}], status, ...}
    this.fileInput = h("input", {
      type: "file",
      id: "attach-input",
      accept: IMAGE_TYPES.join(","),
      multiple: true,
      hidden: true,
      "aria-label": "Attach photos",
      onchange: () => {
        this.addFiles([...this.fileInput.files]);
        this.fileInput.value = ""; // the same file again is a change too
      },
    });
    this.attachButton = h(
      "button",
      {
        type: "button",
        class: "ghost attach",
        id: "attach-button",
        "aria-label": "Attach a photo",
        title: "Attach a photo",
        onclick: () => this.fileInput.click(),
      },
      icon(PAPERCLIP),
    );
    this.sendButton = h("button", { type: "submit", class: "primary" }, "Send");
    this.pendingList = h("ul", { class: "pending-list", "aria-label": "Attachments to send" });
    this.progress = h("progress", { max: 1, value: 0 });
    this.uploadStatus = h("span", { class: "upload-text" });
    this.uploadLine = h(
      "p",
      { class: "upload-status", role: "status" },
      this.progress,
      this.uploadStatus,
    );
    this.uploadError = h("p", { class: "form-error upload-error", role: "alert" });
    this.pendingBox = h(
      "div",
      { class: "pending-attachments", hidden: true },
      this.pendingList,
      this.uploadLine,
      this.uploadError,
    );
    this.form = h(
      "form",
      { class: "composer", onsubmit: (e) => this.submit(e) },
      this.attachButton,
      this.fileInput,
      h("label", { for: "composer", class: "visually-hidden" }, "Message"),
      this.input,
      this.sendButton,
    );
    this.dropHint = h(
      "div",
      { class: "drop-hint", "aria-hidden": "true" },
      h("p", {}, "Drop a photo to attach it"),
    );
    this.mute = muteButton(actions, () => this.channelId); // desktop notifications per chat
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
        this.mute.el,
        this.groupButton,
      ),
      this.blockedNote,
      this.removedNote,
      this.scroller,
      this.typing,
      this.pendingBox,
      this.context.el,
      this.form,
      this.dropHint,
    );
    // Drag and drop of images onto the conversation.
    this.pane.addEventListener("dragenter", (e) => this.onDrag(e));
    this.pane.addEventListener("dragover", (e) => this.onDrag(e));
    this.pane.addEventListener("dragleave", (e) => {
      if (!this.pane.contains(e.relatedTarget)) this.pane.classList.remove("dragging");
    });
    this.pane.addEventListener("drop", (e) => this.onDrop(e));
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
      // "N unread messages" above what was new when this chat was opened (see opening()).
      this.unread = this.opened?.channelId === id ? this.opened : null;
      this.latest.hidden = true;
    }
    if (!id) return;
    const channel = store.channels.get(id);
    setText(this.title, store.title(id));
    this.mute.update(id, store.title(id));
    // End-to-end: read-only with a notice (the web client holds no keys).
    const encrypted = Boolean(channel?.e2e);
    this.encrypted = encrypted;
    // Removed from the group, or left it: read-only, with a notice.
    const removed = channel?.removed;
    this.removedNote.hidden = !removed;
    if (removed) setText(this.removedNote, removedText(removed, store));
    this.form.hidden = Boolean(removed);
    this.pane.classList.toggle("removed", Boolean(removed)); // no message actions either
    this.input.disabled = encrypted || Boolean(removed);
    // No attachments in end-to-end chats here (they would have to be encrypted).
    this.attachButton.hidden = encrypted;
    this.fileInput.disabled = encrypted;
    this.renderPending(); // and the placeholder
    const group = channel?.kind === "group";
    this.groupButton.hidden = !group || Boolean(removed);
    if (group && removed) {
      setText(this.status, "You are not a member");
      this.status.dataset.presence = "";
    } else if (group) {
      const n = channel.member_ids?.length ?? 0;
      setText(this.status, `${n} member${n === 1 ? "" : "s"}`);
      this.status.dataset.presence = "";
    } else {
      const user = store.users.get(store.peerOf(id));
      // While the socket is down nobody's presence is known: not "online".
      const connected = store.connection.status === "online";
      const online = connected && user?.presence?.status === "online";
      setText(
        this.status,
        !connected
          ? "connecting…"
          : online
            ? "online"
            : user?.presence
              ? lastSeen(user.presence.last_seen)
              : "",
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
    this.context.render(store);
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
    const firstBefore = this.list.querySelector("li:not(.day-separator, .unread-separator)");
    const firstTop = firstBefore?.offsetTop;
    const messages = store.messagesOf(id);
    const loaded = store.history.get(id)?.loading === false;
    const items = withSeparators(messages, store.me.user_id, this.unread, loaded); // days, unread
    // An edit or delete renders a message anew (a new key).
    reconcile(
      this.list,
      items,
      (m) => (isSeparator(m) ? m.key : messageKey(m) + messageVersion(m)),
      (m) => (isSeparator(m) ? separatorView(m) : this.createMessage(m, store, group)),
      (el, m) => (isSeparator(m) ? updateSeparator(el, m) : this.updateMessage(el, m, store)),
    );
    if (this.stickToBottom || fromBottom < 80) {
      scroller.scrollTop = scroller.scrollHeight;
    } else if (firstBefore && firstBefore.isConnected && firstBefore.offsetTop !== firstTop) {
      scroller.scrollTop += firstBefore.offsetTop - firstTop; // older page prepended: stay put
    }
    this.stickToBottom = false;
    // Opened with unread messages: their line in view (at the top when they are many).
    const marker =
      this.unread?.anchor && !this.unread.shown && this.list.querySelector(".unread-separator");
    if (marker) {
      marker.scrollIntoView({ block: "nearest" });
      this.unread.shown = true;
    }
    this.updateLatest();
  }

  /** A chat is being opened: how many of its messages are unread (`meta.unread`). */
  opening(channelId, meta) {
    this.opened = { channelId, count: meta?.unread ?? 0 };
  }

  updateLatest() {
    const s = this.scroller;
    this.latest.hidden = s.scrollHeight - s.scrollTop - s.clientHeight < 150;
  }

  jumpToLatest() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.latest.hidden = true;
    this.input.focus();
  }

  createMessage(m, store, group) {
    if (m.event) return systemLine(m, store); // "Carol added Dave"
    const mine = m.sender_id === store.me.user_id;
    const time = h(
      "time",
      { datetime: new Date(m.ts).toISOString(), title: fullTime(m.ts) },
      clockTime(m.ts),
    );
    const meta = h("span", { class: "meta" }, time);
    if (mine) meta.append(h("span", { class: "tick", role: "img" }));
    // End-to-end attachments are ciphertext: the encrypted notice stands for them.
    const attachments = m.e2e ? null : attachmentsView(m.attachments, this.actions.media);
    const text = shownBody(m);
    return h(
      "li",
      { class: `${mine ? "msg mine" : "msg theirs"}${attachments ? " with-attachments" : ""}` },
      group && !mine ? h("span", { class: "sender" }, store.displayName(m.sender_id)) : null,
      attachments,
      text || !attachments
        ? renderText(h("p", { class: m.e2e ? "body encrypted" : "body" }), text)
        : null,
      meta,
    );
  }

  updateMessage(el, m, store) {
    if (m.message_id) el.dataset.messageId = m.message_id;
    if (m.event) return; // a system line
    const sender = el.querySelector(".sender");
    if (sender) setText(sender, store.displayName(m.sender_id));
    decorate(el, m, store, this.actions, this.context); // quote, edited, reactions, menu
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

  /** Scroll to a message and flash it, the words of the search `q` marked (a search hit). */
  reveal(messageId, q) {
    const el = this.list.querySelector(`[data-message-id="${CSS.escape(messageId)}"]`);
    if (!el) return false;
    const body = el.querySelector(".body:not(.encrypted)");
    if (body && q) renderText(body, body.textContent, { highlight: q });
    for (const old of this.list.querySelectorAll(".msg.hit")) old.classList.remove("hit");
    el.classList.add("hit");
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
    this.updateLatest();
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
    if (!this.channelId) return;
    const pending = this.pending.get(this.channelId);
    if (pending?.items.length) {
      this.sendWithAttachments(this.channelId, pending);
      return;
    }
    if (pending) {
      this.pending.delete(this.channelId); // only a refusal was shown: it is read
      this.renderPending();
    }
    const body = cleanBody(this.input.value); // no leading or trailing whitespace
    if (!body) return;
    const tooLong = tooLongText(charCount(body), false);
    if (tooLong) {
      this.actions.notify(tooLong);
      return;
    }
    this.input.value = "";
    this.onInput();
    this.stickToBottom = true;
    this.context.send(this.channelId, body); // a reply or an edit, or a plain send
    this.input.focus();
  }

  // --- attachments ------------------------------------------------------------------

  pendingOf(channelId) {
    let pending = this.pending.get(channelId);
    if (!pending) {
      pending = { items: [], status: "idle", progress: 0, error: "" };
      this.pending.set(channelId, pending);
    }
    return pending;
  }

  /** Files picked, dropped or pasted: images wait in the composer, the rest is refused. */
  addFiles(files) {
    const channelId = this.channelId;
    if (!channelId || !files.length) return;
    if (this.encrypted) {
      this.actions.notify("Attachments cannot be sent to end-to-end encrypted chats here.");
      return;
    }
    const pending = this.pendingOf(channelId);
    if (pending.status === "uploading") {
      this.actions.notify("Wait until the upload is done to attach more.");
      return;
    }
    const refused = [];
    for (const file of files) {
      const name = (file.name || "image").slice(0, MAX_NAME);
      if (!IMAGE_TYPES.includes(file.type)) {
        refused.push(`“${name}” is not a JPEG, PNG, GIF or WebP image.`);
      } else if (file.size > IMAGE_MAX_BYTES) {
        refused.push(
          `“${name}” is too large (${formatBytes(file.size)}): images can be at most ` +
            `${formatBytes(IMAGE_MAX_BYTES)}.`,
        );
      } else if (file.size === 0) {
        refused.push(`“${name}” is empty.`);
      } else if (pending.items.length >= MAX_ATTACHMENTS) {
        refused.push(`At most ${MAX_ATTACHMENTS} photos go in one message.`);
        break;
      } else {
        pending.items.push(this.pendingItem(file, name));
      }
    }
    pending.status = "idle";
    pending.error = refused.join(" ");
    if (!pending.items.length && !refused.length) this.pending.delete(channelId);
    this.renderPending();
    this.input.focus();
  }

  /** A pending attachment: its preview (an object URL of the file) and its measured size. */
  pendingItem(file, name) {
    const preview = URL.createObjectURL(file);
    const item = { file, name, preview };
    const img = h("img", { class: "pending-preview", alt: name, src: preview });
    // Width and height from the image element, for the `send` (the thumbnail's shape).
    item.measured = new Promise((resolve, reject) => {
      img.addEventListener("load", () =>
        resolve({ width: img.naturalWidth, height: img.naturalHeight }),
      );
      img.addEventListener("error", () => {
        item.el?.classList.add("broken");
        reject(new ApiError(0, "not_an_image", "not an image this browser can read"));
      });
    });
    item.measured.catch(() => {}); // reported when sending
    item.el = h(
      "li",
      { class: "pending-item" },
      img,
      h(
        "span",
        { class: "pending-text" },
        h("span", { class: "pending-name" }, name),
        h("span", { class: "pending-size" }, formatBytes(file.size)),
      ),
      h(
        "button",
        {
          type: "button",
          class: "ghost pending-remove",
          "aria-label": `Remove ${name}`,
          title: "Remove",
          onclick: () => this.removeItem(item),
        },
        "✕",
      ),
    );
    return item;
  }

  removeItem(item) {
    const channelId = this.channelId;
    const pending = this.pending.get(channelId);
    if (!pending || pending.status === "uploading") return;
    pending.items = pending.items.filter((i) => i !== item);
    URL.revokeObjectURL(item.preview);
    pending.error = "";
    pending.status = "idle";
    if (!pending.items.length) this.pending.delete(channelId);
    this.renderPending();
    this.input.focus();
  }

  /** The composer's pending attachments of the open chat, the progress and any error. */
  renderPending() {
    const pending = this.channelId ? this.pending.get(this.channelId) : null;
    const items = pending?.items ?? [];
    this.pendingBox.hidden = !pending || (!items.length && !pending.error);
    const uploading = pending?.status === "uploading";
    this.pendingBox.dataset.status = pending?.status ?? "idle";
    const shown = items.map((i) => i.el);
    if (
      shown.length !== this.pendingList.children.length ||
      shown.some((el, n) => this.pendingList.children[n] !== el)
    ) {
      this.pendingList.replaceChildren(...shown);
    }
    this.pendingList.hidden = !items.length;
    for (const button of this.pendingList.querySelectorAll(".pending-remove")) {
      button.disabled = uploading;
    }
    this.uploadLine.hidden = !uploading;
    if (uploading) {
      const percent = Math.round((pending.progress ?? 0) * 100);
      this.progress.value = pending.progress ?? 0;
      const n = items.length;
      setText(this.uploadStatus, `Uploading ${n === 1 ? "the photo" : `${n} photos`}… ${percent}%`);
    }
    setText(this.uploadError, pending?.error ?? "");
    // The caption stays as typed while its photos upload; the button says what happens.
    this.input.readOnly = uploading;
    this.sendButton.disabled = uploading || this.encrypted;
    this.attachButton.disabled = uploading;
    this.input.placeholder = this.encrypted
      ? "End-to-end encrypted: send and read in the Tidings app"
      : items.length
        ? "Add a caption"
        : "Type a message";
  }

  /** Upload the pending photos, then send them with the caption as one message. */
  async sendWithAttachments(channelId, pending) {
    if (pending.status === "uploading") return;
    const caption = cleanBody(this.input.value);
    pending.status = "uploading";
    pending.progress = 0;
    pending.error = "";
    this.renderPending();
    let attachments;
    try {
      attachments = await this.actions.upload(pending.items, (fraction) => {
        pending.progress = fraction;
        if (this.channelId === channelId) this.renderPending();
      });
    } catch (failure) {
      const item = pending.items.find((i) => !i.media);
      pending.status = "error";
      pending.error = `${uploadErrorText(failure, item?.name)} Nothing was sent.`;
      if (this.channelId === channelId) this.renderPending();
      return;
    }
    if (this.pending.get(channelId) !== pending) return; // logged out meanwhile
    this.pending.delete(channelId);
    for (const item of pending.items) URL.revokeObjectURL(item.preview);
    if (this.channelId === channelId) {
      this.input.readOnly = false;
      this.input.value = "";
      this.onInput();
      this.renderPending();
      this.stickToBottom = true;
    } else {
      this.drafts.delete(channelId); // the caption went with the photos
    }
    this.actions.send(channelId, caption, attachments);
  }

  onDrag(event) {
    if (!event.dataTransfer?.types?.includes("Files") || this.encrypted) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    this.pane.classList.add("dragging");
  }

  onDrop(event) {
    this.pane.classList.remove("dragging");
    if (!event.dataTransfer?.types?.includes("Files")) return;
    event.preventDefault();
    if (this.encrypted) return;
    this.addFiles([...event.dataTransfer.files]);
  }

  onPaste(event) {
    if (refuseLongPaste(event, this.input, this.actions.notify)) return;
    const files = [...(event.clipboardData?.files ?? [])];
    if (!files.length) return;
    event.preventDefault();
    this.addFiles(files);
  }
}

/** The notice of a group one was removed from, or left. */
function removedText(removed, store) {
  if (removed.how === "member_left") return "You left this group: you can read what was said, no more.";
  const by = removed.by && removed.by !== store.me.user_id ? store.displayName(removed.by) : null;
  return `${by ? `${by} removed you` : "You were removed"} from this group: you can no longer send messages here.`;
}
