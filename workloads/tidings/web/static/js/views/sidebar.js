// The left column: who I am, settings and log out, search, new chat / new group /
// friends, friend requests and group invites waiting for an answer, and the channel list
// with unread counts, last message and (for 1:1 chats) a presence dot.

import { h, reconcile, setText } from "../dom.js";
import { shortTime } from "../format.js";
import { systemText } from "../events.js";
import { previewText } from "../store.js";

export function presenceText(user) {
  return user?.presence?.status === "online" ? "online" : "offline";
}

/** "You: hi", "Bob: hi" (groups), "hi" (1:1), or what an empty channel is. */
function previewOf(last, channel, store) {
  const group = channel.kind === "group";
  if (!last) return group ? "Group created" : "No messages yet";
  if (last.event) return systemText(last, store).slice(0, 120); // "Carol added Dave"
  let who = "";
  if (last.sender_id === store.me.user_id) who = "You: ";
  else if (group) who = `${store.displayName(last.sender_id)}: `;
  return (who + last.body).slice(0, 120);
}

export class Sidebar {
  constructor(actions) {
    this.actions = actions;
    this.myName = h("strong", { class: "me-name" });
    this.myUsername = h("span", { class: "me-username", id: "my-username" });
    this.myId = h("code", { class: "me-id", id: "my-user-id" });
    this.friendsBadge = h("span", { class: "badge", hidden: true });
    this.requests = h("section", {
      class: "requests",
      id: "requests",
      "aria-labelledby": "requests-title",
      hidden: true,
    });
    this.list = h("ul", { class: "channel-list", id: "channel-list" });
    this.empty = h("p", { class: "hint" }, "No chats yet. Start one with “New chat”.");
    this.searchInput = h("input", {
      id: "search-input",
      type: "search",
      name: "q",
      placeholder: "Search messages",
      maxlength: 256,
      required: true,
    });
    this.results = h("section", {
      class: "search-results",
      "aria-labelledby": "search-title",
      hidden: true,
    });
    this.el = h(
      "aside",
      { class: "sidebar", "aria-label": "Chats" },
      h(
        "header",
        { class: "me" },
        h(
          "div",
          { class: "me-text" },
          this.myName,
          h(
            "span",
            { class: "me-id-row" },
            this.myUsername,
            " ",
            h(
              "button",
              { type: "button", class: "link small", onclick: () => this.copyUsername() },
              "Copy",
            ),
            h("span", { class: "visually-hidden" }, " Your id: "),
            h("span", { class: "me-id-label", "aria-hidden": "true" }, " · id "),
            this.myId,
          ),
        ),
        h(
          "div",
          { class: "me-buttons" },
          h(
            "button",
            { type: "button", class: "ghost", id: "settings", onclick: () => actions.settings() },
            "Settings",
          ),
          h(
            "button",
            { type: "button", class: "ghost", onclick: () => actions.logout() },
            "Log out",
          ),
        ),
      ),
      h(
        "form",
        { role: "search", class: "search", onsubmit: (e) => this.submitSearch(e) },
        h("label", { for: "search-input", class: "visually-hidden" }, "Search messages"),
        this.searchInput,
        h("button", { type: "submit" }, "Search"),
      ),
      h(
        "div",
        { class: "sidebar-actions" },
        h(
          "button",
          { type: "button", id: "new-chat", onclick: () => actions.newChat() },
          "New chat",
        ),
        h(
          "button",
          { type: "button", id: "new-group", onclick: () => actions.newGroup() },
          "New group",
        ),
        h(
          "button",
          { type: "button", id: "friends", onclick: () => actions.friends() },
          "Friends",
          this.friendsBadge,
        ),
      ),
      this.requests,
      this.results,
      h("nav", { "aria-label": "Conversations", class: "channels" }, this.list, this.empty),
    );
  }

  copyUsername() {
    navigator.clipboard?.writeText(this.myUsername.textContent.replace(/^@/, "")).then(
      () => this.actions.notify("Your username is copied."),
      () => this.actions.notify("Select the username and copy it."),
    );
  }

  submitSearch(event) {
    event.preventDefault();
    const q = this.searchInput.value.trim();
    if (q) this.actions.search(q);
  }

  render(store) {
    setText(this.myName, store.me.display_name || store.me.username);
    setText(this.myUsername, `@${store.me.username}`);
    setText(this.myId, store.me.user_id);
    const incoming = store.requests.incoming.length;
    this.friendsBadge.hidden = incoming === 0;
    setText(this.friendsBadge, String(incoming));
    this.friendsBadge.setAttribute(
      "aria-label",
      `${incoming} friend request${incoming === 1 ? "" : "s"}`,
    );
    this.renderRequests(store);
    this.renderSearch(store);
    const channels = store.sortedChannels();
    this.empty.hidden = channels.length > 0;
    reconcile(
      this.list,
      channels,
      (c) => c.channel_id,
      (c) => this.createItem(c.channel_id),
      (el, c) => this.updateItem(el, c, store),
    );
  }

  createItem(channelId) {
    const button = h(
      "button",
      { type: "button", class: "channel", onclick: () => this.actions.openChannel(channelId) },
      h(
        "span",
        { class: "avatar", "aria-hidden": "true" },
        h("span", { class: "initial" }),
        h("span", { class: "dot" }),
      ),
      h("span", { class: "channel-name" }),
      h("time", { class: "channel-time" }),
      h("span", { class: "channel-preview", dir: "auto" }),
      h("span", { class: "badge" }),
    );
    return h("li", {}, button);
  }

  updateItem(li, channel, store) {
    const id = channel.channel_id;
    const button = li.firstElementChild;
    const meta = store.meta[id] ?? {};
    const title = store.title(id);
    const peer = store.peerOf(id);
    // While the socket is down presence is unknown: no green dot, nothing said.
    const known = store.connection.status === "online";
    const presence = peer && known ? presenceText(store.users.get(peer)) : null;
    setText(button.querySelector(".initial"), (title.trim()[0] ?? "?").toUpperCase());
    const dot = button.querySelector(".dot");
    dot.hidden = !peer;
    dot.dataset.presence = presence ?? "";
    setText(button.querySelector(".channel-name"), title);
    const last = meta.last;
    setText(button.querySelector(".channel-preview"), previewOf(last, channel, store));
    const time = button.querySelector(".channel-time");
    setText(time, last ? shortTime(last.ts) : "");
    if (last) time.dateTime = new Date(last.ts).toISOString();
    const badge = button.querySelector(".badge");
    const unread = meta.unread ?? 0;
    badge.hidden = unread === 0;
    setText(badge, unread > 99 ? "99+" : String(unread));
    button.dataset.unread = String(unread);
    button.dataset.channelId = id;
    if (store.current === id) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
    const parts = [title];
    if (presence) parts.push(presence);
    if (unread) parts.push(`${unread} unread message${unread === 1 ? "" : "s"}`);
    const muted = Boolean(this.actions.isMuted?.(id)); // no desktop notifications (🔕)
    button.dataset.muted = String(muted);
    if (muted) parts.push("muted");
    button.setAttribute("aria-label", parts.join(", "));
  }

  /** Friend requests to us and group invites, each with its two answers. */
  renderRequests(store) {
    const { incoming } = store.requests;
    const invites = store.invites;
    this.requests.hidden = incoming.length + invites.length === 0;
    const version = JSON.stringify([
      incoming.map((id) => [id, store.displayName(id)]),
      invites.map((i) => [i.channel_id, i.name, store.displayName(i.inviter_id)]),
    ]);
    if (this.requests.dataset.for === version) return;
    this.requests.dataset.for = version;
    const button = (label, name, onclick, primary = false) =>
      h(
        "button",
        { type: "button", class: primary ? "primary small" : "small", "aria-label": name, onclick },
        label,
      );
    const rows = [
      ...incoming.map((id) => {
        const who = store.displayName(id);
        return h(
          "li",
          { class: "request", dataset: { userId: id } },
          h("span", { class: "request-text" }, `${who} wants to be friends`),
          h(
            "span",
            { class: "person-actions" },
            button("Accept", `Accept ${who}`, () => this.actions.acceptFriend(id), true),
            button("Decline", `Decline ${who}`, () => this.actions.declineFriend(id)),
          ),
        );
      }),
      ...invites.map((invite) => {
        const who = store.displayName(invite.inviter_id);
        return h(
          "li",
          { class: "request invite", dataset: { channelId: invite.channel_id } },
          h("span", { class: "request-text" }, `${who} invited you to “${invite.name}”`),
          h(
            "span",
            { class: "person-actions" },
            button(
              "Join",
              `Join ${invite.name}`,
              () => this.actions.acceptInvite(invite.channel_id),
              true,
            ),
            button("Decline", `Decline the invite to ${invite.name}`, () =>
              this.actions.declineInvite(invite.channel_id),
            ),
          ),
        );
      }),
    ];
    this.requests.replaceChildren(
      h("h2", { id: "requests-title" }, "Requests"),
      h("ul", { class: "request-list", "aria-labelledby": "requests-title" }, rows),
    );
  }

  renderSearch(store) {
    const search = store.search;
    this.results.hidden = !search;
    if (!search) {
      this.results.replaceChildren();
      return;
    }
    // Rebuilt only when the answer or the names we know change (keeps focus in place).
    const version = `${search.q}|${search.loading}|${search.results?.length}|${store.users.size}`;
    if (this.results.dataset.for === version) return;
    this.results.dataset.for = version;
    const heading = h("h2", { id: "search-title" }, `Results for “${search.q}”`);
    const close = h(
      "button",
      { type: "button", class: "link small", onclick: () => this.actions.clearSearch() },
      "Clear search",
    );
    let body;
    if (search.loading) body = h("p", { class: "hint" }, "Searching…");
    else if (search.error) body = h("p", { class: "form-error" }, search.error);
    else if (!search.results.length) body = h("p", { class: "hint" }, "No messages found.");
    else {
      body = h(
        "ul",
        { class: "result-list" },
        search.results.map((m) =>
          h(
            "li",
            {},
            h(
              "button",
              {
                type: "button",
                class: "result",
                onclick: () => this.actions.openChannel(m.channel_id, m.message_id),
              },
              h(
                "span",
                { class: "result-where" },
                `${store.title(m.channel_id)} · ${store.displayName(m.sender_id)}`,
              ),
              h(
                "time",
                { class: "channel-time", datetime: new Date(m.ts).toISOString() },
                shortTime(m.ts),
              ),
              h("span", { class: "result-body", dir: "auto" }, previewText(m).slice(0, 200)),
            ),
          ),
        ),
      );
    }
    this.results.replaceChildren(h("div", { class: "results-head" }, heading, close), body);
  }
}
