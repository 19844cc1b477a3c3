// Modal dialogs (<dialog>: focus is trapped inside and returns to the opener on close):
// a new 1:1 chat, a new group, and a group's members with "add member".

import { h } from "../dom.js";
import { parseUserId } from "../ids.js";
import { presenceText } from "./sidebar.js";

const ERRORS = {
  unknown_user: "There is no user with that id.",
  group_full: "The group is full (100 members).",
  group_too_large: "A group has at most 100 members.",
  not_a_member: "You are not a member of this group.",
  network: "The server cannot be reached.",
};

function errorText(failure) {
  return ERRORS[failure.code] ?? failure.message ?? "Something went wrong.";
}

/** Open a modal built by `build(close)`; it is removed from the page when it closes. */
function openDialog(titleText, build) {
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
  return dialog;
}

function idField(id, label, help, autofocus = false) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    h("input", {
      id,
      name: id,
      inputmode: "numeric",
      autocomplete: "off",
      autofocus,
      "aria-describedby": `${id}-help`,
    }),
    h("small", { id: `${id}-help` }, help),
  );
}

async function submitting(form, error, work) {
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

function usernameOf(store, id) {
  return id === store.me.user_id ? store.me.username : (store.users.get(id)?.username ?? id);
}

/** Contacts (friends) as a list of buttons, or a line saying there are none. */
function contactButtons(store, ids, onPick) {
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
      idField(
        "new-chat-user-id",
        "User id",
        "Ask them for the id shown under their name in Tidings.",
        true,
      ),
      error,
      h("button", { type: "submit", class: "primary" }, "Start chat"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const userId = parseUserId(form.elements["new-chat-user-id"].value);
      if (!userId) {
        error.textContent = "A user id is a number.";
        return;
      }
      if (userId === store.me.user_id) {
        error.textContent = "That is your own id.";
        return;
      }
      submitting(form, error, async () => {
        await actions.startChat(userId);
        close();
      });
    });
    const pick = (id) =>
      actions.startChat(id).then(close, (f) => (error.textContent = errorText(f)));
    return [
      h("h3", {}, "Contacts"),
      contactButtons(store, store.friendIds, pick),
      h("h3", {}, "Someone new"),
      form,
    ];
  });
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
        h("legend", {}, "Members from your contacts"),
        contacts.length
          ? h("ul", { class: "check-list" }, contacts)
          : h("p", { class: "hint" }, "No contacts yet."),
      ),
      idField("group-member-ids", "Other members' user ids", "Separate ids with commas or spaces."),
      error,
      h("button", { type: "submit", class: "primary" }, "Create group"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      const picked = [...form.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value);
      const typed = form.elements["group-member-ids"].value.split(/[\s,]+/).filter(Boolean);
      const ids = typed.map(parseUserId);
      if (ids.includes(null)) {
        error.textContent = "User ids are numbers.";
        return;
      }
      submitting(form, error, async () => {
        await actions.createGroup(form.elements["group-name"].value.trim(), [
          ...new Set([...picked, ...ids]),
        ]);
        close();
      });
    });
    return [form];
  });
}

export function groupInfoDialog(store, actions, channelId) {
  openDialog(`${store.title(channelId)}: members`, () => {
    const channel = store.channels.get(channelId);
    const members = h("ul", { class: "member-list", "aria-label": "Members" });
    const renderMembers = () => {
      const ids = store.channels.get(channelId)?.member_ids ?? [];
      members.replaceChildren(
        ...ids.map((id) => {
          const user = store.users.get(id);
          const presence = id === store.me.user_id ? "online" : presenceText(user);
          return h(
            "li",
            {},
            h("span", { class: "dot", dataset: { presence }, "aria-hidden": "true" }),
            h("span", {}, store.displayName(id)),
            h(
              "span",
              { class: "muted" },
              ` @${usernameOf(store, id)}${channel?.owner_id === id ? " · owner" : ""}`,
            ),
            h("span", { class: "visually-hidden" }, `, ${presence}`),
          );
        }),
      );
    };
    renderMembers();
    const error = h("p", { class: "form-error", role: "alert" });
    const candidates = store.friendIds.filter((id) => !(channel?.member_ids ?? []).includes(id));
    const form = h(
      "form",
      { class: "dialog-form" },
      idField("add-member-user-id", "User id", "The id shown under their name in Tidings.", true),
      error,
      h("button", { type: "submit", class: "primary" }, "Add member"),
    );
    const add = (userId) =>
      submitting(form, error, async () => {
        await actions.addMember(channelId, userId);
        form.reset();
        renderMembers();
      });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const userId = parseUserId(form.elements["add-member-user-id"].value);
      if (!userId) error.textContent = "A user id is a number.";
      else add(userId);
    });
    return [
      members,
      h("h3", {}, "Add a member"),
      candidates.length ? contactButtons(store, candidates, add) : null,
      form,
    ].filter(Boolean);
  });
}
