// The group dialog ("Members" in a group's header), issue #20: the members with presence
// and roles; for admins rename, "Every member can add members", make or unmake admins and
// remove members; adding a member (admins, or everyone when the group allows it); and
// "Leave group" for anyone. It stays current while open (events change the store).

import { h, setText } from "../dom.js";
import { isAdmin } from "../events.js";
import {
  contactButtons,
  errorText,
  openDialog,
  parseUsername,
  submitting,
  usernameField,
  usernameOf,
  whileOpen,
} from "./dialogs.js";
import { presenceText } from "./sidebar.js";

const GROUP_ERRORS = {
  forbidden: "Only an admin of the group can do that.",
  last_admin: "The group needs an admin: make someone else an admin first.",
  not_a_member: "You are not a member of this group any more.",
};

function groupErrorText(failure) {
  return GROUP_ERRORS[failure?.code] ?? errorText(failure);
}

/** Run a management call; its failure is said in `error` (in words for people). */
async function attempt(error, work) {
  setText(error, "");
  try {
    await work();
    return true;
  } catch (failure) {
    setText(error, groupErrorText(failure));
    return false;
  }
}

export function groupDialog(store, actions, channelId) {
  const parts = {};
  const dialog = openDialog(`${store.title(channelId)}: members`, (close) => {
    parts.close = close;
    parts.error = h("p", { class: "form-error", role: "alert" });
    parts.members = h("ul", { class: "member-list", "aria-label": "Members" });
    parts.manage = manageSection(store, actions, channelId, parts);
    parts.add = addSection(store, actions, channelId);
    parts.addClosed = h("p", { class: "hint" }, "Only admins can add members to this group.");
    parts.leave = leaveSection(store, actions, channelId, parts);
    return [parts.members, parts.error, parts.manage, parts.add, parts.addClosed, parts.leave];
  });
  whileOpen(dialog, store, () => renderGroup(store, actions, channelId, parts));
  return dialog;
}

function renderGroup(store, actions, channelId, parts) {
  const channel = store.channels.get(channelId);
  if (!channel || channel.removed) {
    parts.close();
    return;
  }
  const me = store.me.user_id;
  const admin = isAdmin(channel, me);
  parts.manage.hidden = !admin;
  if (admin) {
    const input = parts.manage.querySelector("#group-rename");
    if (document.activeElement !== input && input.dataset.shown !== channel.name) {
      input.value = channel.name ?? "";
      input.dataset.shown = channel.name ?? "";
    }
    // Only when the group's setting changes (not while the person's own change is on its way).
    const toggle = parts.manage.querySelector("#members-can-add");
    const setting = String(channel.members_can_add !== false);
    if (toggle.dataset.shown !== setting) {
      toggle.checked = setting === "true";
      toggle.dataset.shown = setting;
    }
  }
  const canAdd = admin || channel.members_can_add !== false;
  parts.add.hidden = !canAdd;
  parts.addClosed.hidden = canAdd;
  const ids = channel.member_ids ?? [];
  const version = JSON.stringify([
    ids,
    channel.admin_ids,
    admin,
    ids.map((id) => [store.displayName(id), presenceText(store.users.get(id))]),
  ]);
  if (parts.members.dataset.version === version) return;
  parts.members.dataset.version = version;
  const focusedLabel = document.activeElement?.closest?.(".member-list")
    ? document.activeElement.getAttribute("aria-label")
    : null;
  parts.members.replaceChildren(
    ...ids.map((id) => memberRow(store, actions, channel, id, admin, parts.error)),
  );
  if (focusedLabel) {
    // Keep the keyboard where it was when the list changed under it.
    [...parts.members.querySelectorAll("button")]
      .find((b) => b.getAttribute("aria-label") === focusedLabel)
      ?.focus();
  }
}

function memberRow(store, actions, channel, id, iAmAdmin, error) {
  const me = store.me.user_id;
  const channelId = channel.channel_id;
  const name = id === me ? "You" : store.displayName(id);
  const presence = id === me ? "online" : presenceText(store.users.get(id));
  const admin = isAdmin(channel, id);
  const button = (label, aria, work, danger = false) =>
    h(
      "button",
      {
        type: "button",
        class: danger ? "small danger" : "small",
        "aria-label": aria,
        onclick: (event) => {
          const target = event.currentTarget;
          target.disabled = true;
          attempt(error, work).finally(() => (target.disabled = false));
        },
      },
      label,
    );
  const buttons = [];
  if (iAmAdmin && id !== me) {
    buttons.push(
      admin
        ? button("Dismiss as admin", `Dismiss ${name} as admin`, () =>
            actions.setAdmin(channelId, id, false),
          )
        : button("Make admin", `Make ${name} an admin`, () =>
            actions.setAdmin(channelId, id, true),
          ),
      button("Remove", `Remove ${name} from the group`, () => actions.removeMember(channelId, id), true),
    );
  } else if (iAmAdmin && id === me && (channel.admin_ids?.length ?? 0) > 1) {
    buttons.push(
      button("Step down as admin", "Step down as admin", () => actions.setAdmin(channelId, id, false)),
    );
  }
  return h(
    "li",
    { class: "member", dataset: { userId: id } },
    h("span", { class: "dot", dataset: { presence }, "aria-hidden": "true" }),
    h(
      "span",
      { class: "member-name" },
      name,
      h("span", { class: "muted" }, ` @${usernameOf(store, id)}`),
      admin ? h("span", { class: "tag admin-tag" }, "admin") : null,
      h("span", { class: "visually-hidden" }, `, ${presence}`),
    ),
    buttons.length ? h("span", { class: "person-actions" }, buttons) : null,
  );
}

/** Admins: rename the group and who may add members. */
function manageSection(store, actions, channelId, parts) {
  const error = h("p", { class: "form-error", role: "alert" });
  const form = h(
    "form",
    { class: "dialog-form rename-form" },
    h(
      "div",
      { class: "field" },
      h("label", { for: "group-rename" }, "Group name"),
      h("input", { id: "group-rename", required: true, maxlength: 128, autocomplete: "off" }),
    ),
    error,
    h("button", { type: "submit" }, "Rename"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = form.elements["group-rename"].value.trim();
    if (!name) return;
    submitting(form, error, async () => {
      await actions.renameGroup(channelId, name);
      form.elements["group-rename"].blur();
    });
  });
  const toggle = h("input", {
    type: "checkbox",
    id: "members-can-add",
    onchange: () =>
      attempt(parts.error, () => actions.setMembersCanAdd(channelId, toggle.checked)).then(
        (done) => {
          if (!done) toggle.checked = !toggle.checked;
        },
      ),
  });
  return h(
    "section",
    { class: "group-manage", "aria-label": "Group settings" },
    h("h3", {}, "Group settings"),
    form,
    h(
      "p",
      { class: "check-line" },
      toggle,
      h("label", { for: "members-can-add" }, "Every member can add members"),
    ),
  );
}

/** Add a member: a friend at once, anyone else by username (invited). */
function addSection(store, actions, channelId) {
  const error = h("p", { class: "form-error", role: "alert" });
  const result = h("p", { class: "form-result", role: "status" });
  const channel = store.channels.get(channelId);
  const candidates = store.friendIds.filter((id) => !(channel?.member_ids ?? []).includes(id));
  const form = h(
    "form",
    { class: "dialog-form" },
    usernameField(
      "add-member-username",
      "Username",
      "A friend is added at once; anyone else is invited and joins once they accept.",
      true,
    ),
    error,
    result,
    h("button", { type: "submit", class: "primary" }, "Add member"),
  );
  const add = (who) =>
    submitting(form, error, async () => {
      result.textContent = "";
      try {
        result.textContent = await actions.addMember(channelId, who);
      } catch (failure) {
        throw failure.code === "forbidden"
          ? { code: "forbidden", message: GROUP_ERRORS.forbidden }
          : failure;
      }
      form.reset();
    });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const username = parseUsername(form.elements["add-member-username"].value);
    if (!username) error.textContent = "A username is 3-32 characters: a-z, 0-9, _ and .";
    else add({ username });
  });
  return h(
    "section",
    { class: "group-add" },
    h("h3", {}, "Add a member"),
    candidates.length ? contactButtons(store, candidates, (id) => add({ user_id: id })) : null,
    form,
  );
}

/** Leave the group (asks once more first). */
function leaveSection(store, actions, channelId, parts) {
  const error = h("p", { class: "form-error", role: "alert" });
  const confirm = h(
    "div",
    { class: "leave-confirm", hidden: true },
    h("p", {}, "Leave this group? You will not get its messages any more."),
    h(
      "button",
      {
        type: "button",
        class: "danger",
        onclick: async (event) => {
          const target = event.currentTarget;
          target.disabled = true;
          const left = await attempt(error, () =>
            actions.removeMember(channelId, store.me.user_id),
          );
          if (left) parts.close();
          else target.disabled = false;
        },
      },
      "Leave",
    ),
    " ",
    h("button", { type: "button", onclick: () => (confirm.hidden = true) }, "Cancel"),
  );
  return h(
    "section",
    { class: "group-leave" },
    h(
      "button",
      {
        type: "button",
        class: "danger",
        onclick: () => {
          confirm.hidden = false;
          confirm.querySelector("button").focus();
        },
      },
      "Leave group",
    ),
    confirm,
    error,
  );
}
