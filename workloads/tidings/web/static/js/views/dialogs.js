// Modal dialogs (<dialog>: focus is trapped inside and returns to the opener on close):
// a new 1:1 chat, a new group, a group's members with "add member", friends (requests
// both ways) and settings (this user's devices, log out).

import { h } from "../dom.js";
import { lastSeen } from "../format.js";
import { dialogOpened } from "../nav.js";
import { notificationSettings } from "../notify.js";
import { profileSettings } from "./profile.js";
import { presenceText } from "./sidebar.js";

const ERRORS = {
  unknown_user: "There is no user with that username.",
  group_full: "The group is full (100 members).",
  group_too_large: "A group has at most 100 members.",
  not_a_member: "You are not a member of this group.",
  not_found: "That is gone already.",
  network: "The server cannot be reached.",
};

export function errorText(failure) {
  if (failure?.code === "rate_limited") {
    const minutes = failure.afterMs ? Math.max(1, Math.ceil(failure.afterMs / 60000)) : null;
    return minutes
      ? `Too many attempts. Try again in ${minutes} minute${minutes === 1 ? "" : "s"}.`
      : "Too many attempts. Try again later.";
  }
  return ERRORS[failure?.code] ?? failure?.message ?? "Something went wrong.";
}

/** A username as typed by a person: trimmed, without a leading @, lower case. */
export function parseUsername(text) {
  const name = String(text).trim().replace(/^@/, "").toLowerCase();
  return /^[a-z0-9_.]{3,32}$/.test(name) ? name : null;
}

/**
 * Open a modal built by `build(close)`; it is removed from the page when it closes.
 */
export function openDialog(titleText, build) {
  const titleId = `dialog-title-${Math.random().toString(36).slice(2)}`;
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": titleId });
  const close = () => dialog.close();
  dialog.addEventListener("close", () => dialog.remove());
  dialog.append(
    h(
      "div",
      { class: "dialog-head" },
      h("h2", { id: titleId }, titleText),
      h("button", { type: "button", class: "ghost", "aria-label": "Close", onclick: close }, "✕"),
    ),
    ...build(close),
  );
  document.body.append(dialog);
  dialog.showModal();
  dialogOpened(dialog); // the browser's Back closes it
  return dialog;
}

/** Keep a dialog's lists current while it is open: `render()` after each store change. */
export function whileOpen(dialog, store, render) {
  let queued = false;
  const unsubscribe = store.subscribe(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      if (dialog.open) render();
    });
  });
  dialog.addEventListener("close", unsubscribe);
  render();
}

export function usernameField(id, label, help, autofocus = false) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    h("input", {
      id,
      name: id,
      autocomplete: "off",
      autocapitalize: "none",
      spellcheck: "false",
      autofocus,
      "aria-describedby": `${id}-help`,
    }),
    h("small", { id: `${id}-help` }, help),
  );
}

export async function submitting(form, error, work) {
  const button = form.querySelector("button[type=submit]");
  error.textContent = "";
  button.disabled = true;
  try {
    await work();
  } catch (failure) {
    error.textContent = errorText(failure);
  } finally {
    button.disabled = false;
  }
}

export function usernameOf(store, id) {
  return id === store.me.user_id ? store.me.username : (store.users.get(id)?.username ?? id);
}

/** Contacts (friends) as a list of buttons, or a line saying there are none. */
export function contactButtons(store, ids, onPick) {
  if (!ids.length) return h("p", { class: "hint" }, "No contacts yet.");
  return h(
    "ul",
    { class: "contact-list", "aria-label": "Contacts" },
    ids.map((id) =>
      h(
        "li",
        {},
        h(
          "button",
          { type: "button", class: "contact", onclick: () => onPick(id) },
          store.displayName(id),
          h("span", { class: "muted" }, ` @${usernameOf(store, id)}`),
        ),
      ),
    ),
  );
}

export function newChatDialog(store, actions) {
  openDialog("New chat", (close) => {
    const error = h("p", { class: "form-error", role: "alert" });
    const form = h(
      "form",
      { class: "dialog-form" },
      usernameField(
        "new-chat-username",
        "Username",
        "Their exact username, as they signed up with it.",
        true,
      ),
      error,
      h("button", { type: "submit", class: "primary" }, "Start chat"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const username = parseUsername(form.elements["new-chat-username"].value);
      if (!username) {
        error.textContent = "A username is 3-32 characters: a-z, 0-9, _ and .";
        return;
      }
      if (username === store.me.username) {
        error.textContent = "That is your own username.";
        return;
      }
      submitting(form, error, async () => {
        await actions.startChatWith(username);
        close();
      });
    });
    const pick = (id) =>
      actions.startChat(id).then(close, (f) => (error.textContent = errorText(f)));
    return [
      h("h3", {}, "Friends"),
      contactButtons(store, store.friendIds, pick),
      h("h3", {}, "Someone else"),
      form,
    ];
  });
}

/** "bob" or "bob and carol" or "bob, carol and dan". */
export function namesList(names) {
  if (names.length <= 1) return names.join("");
  return `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}

export function newGroupDialog(store, actions) {
  openDialog("New group", (close) => {
    const error = h("p", { class: "form-error", role: "alert" });
    const contacts = store.friendIds.map((id, i) =>
      h(
        "li",
        {},
        h("input", { type: "checkbox", id: `group-contact-${i}`, value: id }),
        h("label", { for: `group-contact-${i}` }, store.displayName(id)),
      ),
    );
    const form = h(
      "form",
      { class: "dialog-form" },
      h(
        "div",
        { class: "field" },
        h("label", { for: "group-name" }, "Group name"),
        h("input", {
          id: "group-name",
          required: true,
          maxlength: 128,
          autocomplete: "off",
          autofocus: true,
        }),
      ),
      h(
        "fieldset",
        {},
        h("legend", {}, "Friends (added at once)"),
        contacts.length
          ? h("ul", { class: "check-list" }, contacts)
          : h("p", { class: "hint" }, "No friends yet."),
      ),
      usernameField(
        "group-member-usernames",
        "Invite others by username",
        "Separate usernames with commas or spaces. They join once they accept.",
      ),
      error,
      h("button", { type: "submit", class: "primary" }, "Create group"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      const picked = [...form.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value);
      const typed = form.elements["group-member-usernames"].value.split(/[\s,]+/).filter(Boolean);
      const names = typed.map(parseUsername);
      if (names.includes(null)) {
        error.textContent = "Usernames are 3-32 characters: a-z, 0-9, _ and .";
        return;
      }
      submitting(form, error, async () => {
        await actions.createGroup(form.elements["group-name"].value.trim(), picked, [
          ...new Set(names),
        ]);
        close();
      });
    });
    return [form];
  });
}

/** One person in a list, with buttons: [{label, name (accessible), onclick, primary?}]. */
function personRow(store, id, buttons, extra = null) {
  return h(
    "li",
    { class: "person", dataset: { userId: id } },
    h(
      "span",
      { class: "person-name" },
      store.displayName(id),
      h("span", { class: "muted" }, ` @${usernameOf(store, id)}`),
      extra ? h("span", { class: "muted" }, ` · ${extra}`) : null,
    ),
    h(
      "span",
      { class: "person-actions" },
      buttons.map((b) =>
        h(
          "button",
          {
            type: "button",
            class: b.primary ? "primary small" : "small",
            "aria-label": b.name,
            onclick: b.onclick,
          },
          b.label,
        ),
      ),
    ),
  );
}

function peopleList(label, rows, empty) {
  return rows.length
    ? h("ul", { class: "people-list", "aria-label": label }, rows)
    : h("p", { class: "hint" }, empty);
}

export function friendsDialog(store, actions) {
  const lists = h("div", { class: "friend-lists" });
  const dialog = openDialog("Friends", () => {
    const error = h("p", { class: "form-error", role: "alert" });
    const result = h("p", { class: "form-result", role: "status" });
    const form = h(
      "form",
      { class: "dialog-form" },
      usernameField(
        "friend-username",
        "Username",
        "Their exact username. You are friends once they accept.",
        true,
      ),
      error,
      result,
      h("button", { type: "submit", class: "primary" }, "Send friend request"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const username = parseUsername(form.elements["friend-username"].value);
      if (!username) {
        error.textContent = "A username is 3-32 characters: a-z, 0-9, _ and .";
        return;
      }
      if (username === store.me.username) {
        error.textContent = "That is your own username.";
        return;
      }
      result.textContent = "";
      submitting(form, error, async () => {
        result.textContent = await actions.requestFriend(username);
        form.reset();
      });
    });
    return [h("h3", {}, "Add a friend"), form, lists];
  });
  const act = (work) => () =>
    work().catch((failure) => actions.notify(errorText(failure)));
  whileOpen(dialog, store, () => {
    const { incoming, outgoing } = store.requests;
    lists.replaceChildren(
      h("h3", {}, "Requests for you"),
      peopleList(
        "Friend requests for you",
        incoming.map((id) =>
          personRow(store, id, [
            {
              label: "Accept",
              name: `Accept ${store.displayName(id)}`,
              primary: true,
              onclick: act(() => actions.acceptFriend(id)),
            },
            {
              label: "Decline",
              name: `Decline ${store.displayName(id)}`,
              onclick: act(() => actions.declineFriend(id)),
            },
          ]),
        ),
        "No requests.",
      ),
      h("h3", {}, "Your requests"),
      peopleList(
        "Your friend requests",
        outgoing.map((id) =>
          personRow(
            store,
            id,
            [
              {
                label: "Withdraw",
                name: `Withdraw the request to ${store.displayName(id)}`,
                onclick: act(() => actions.declineFriend(id)),
              },
            ],
            "waiting",
          ),
        ),
        "None waiting.",
      ),
      h("h3", {}, "Friends"),
      peopleList(
        "Friends",
        store.friendIds.map((id) =>
          personRow(
            store,
            id,
            [
              {
                label: "Chat",
                name: `Chat with ${store.displayName(id)}`,
                onclick: act(async () => {
                  await actions.startChat(id);
                  dialog.close();
                }),
              },
              {
                label: "Remove",
                name: `Remove ${store.displayName(id)} from friends`,
                onclick: act(() => actions.declineFriend(id)),
              },
            ],
            presenceText(store.users.get(id)),
          ),
        ),
        "No friends yet.",
      ),
    );
  });
}

function platformText(platform) {
  return (
    { web: "web", ios: "iOS", android: "Android", desktop: "desktop" }[platform] ??
    platform ??
    "unknown platform"
  );
}

export function settingsDialog(store, actions) {
  const dialog = openDialog("Settings", () => [
    h(
      "p",
      { class: "hint" },
      "Logged in as ",
      h("strong", { class: "settings-name" }, store.me.display_name || store.me.username),
      ` @${store.me.username}`,
    ),
    ...profileSettings(store, actions),
    ...notificationSettings(actions),
  ]);
  const list = h("div", { class: "device-lists" });
  const logoutButton = h(
    "button",
    { type: "button", class: "danger", onclick: () => actions.logout() },
    "Log out",
  );
  dialog.append(
    h("h3", {}, "Devices"),
    list,
    h("h3", {}, "This device"),
    h(
      "p",
      { class: "hint" },
      "Logging out unlinks this browser from your account; your other devices stay logged in.",
    ),
    logoutButton,
  );
  actions.loadDevices();
  whileOpen(dialog, store, () => {
    const devices = store.devices;
    if (!devices) {
      list.replaceChildren(h("p", { class: "hint" }, "Loading…"));
      return;
    }
    const sorted = [...devices].sort((a, b) => Number(b.current) - Number(a.current));
    list.replaceChildren(
      h(
        "ul",
        { class: "people-list", "aria-label": "Devices" },
        sorted.map((d) =>
          h(
            "li",
            { class: "device", dataset: { deviceId: d.device_id } },
            h(
              "span",
              { class: "person-name" },
              d.name || "Unnamed device",
              h(
                "span",
                { class: "muted" },
                ` · ${platformText(d.platform)}${
                  d.current ? "" : ` · ${d.last_seen ? lastSeen(d.last_seen) : "not seen yet"}`
                }`,
              ),
            ),
            d.current
              ? h("span", { class: "tag" }, "This device")
              : h(
                  "button",
                  {
                    type: "button",
                    class: "small",
                    "aria-label": `Unlink ${d.name || "device"} (${d.device_id})`,
                    onclick: () =>
                      actions
                        .unlinkDevice(d.device_id)
                        .catch((failure) => actions.notify(errorText(failure))),
                  },
                  "Unlink",
                ),
          ),
        ),
      ),
    );
  });
}
