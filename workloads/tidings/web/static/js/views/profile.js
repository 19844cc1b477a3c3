// Settings' profile section: the display name others see (PATCH /v1/me), with the
// username it belongs to.

import { h } from "../dom.js";

const MAX_NAME = 128;

function failureText(failure) {
  if (failure?.code === "invalid_request") {
    return "A display name is 1-128 characters, without control characters.";
  }
  if (failure?.code === "network") return "The server cannot be reached.";
  return failure?.message || "Something went wrong.";
}

/** [heading, form]: change the display name; `actions.rename(name)` → the name stored. */
export function profileSettings(store, actions) {
  const error = h("p", { class: "form-error", role: "alert" });
  const result = h("p", { class: "form-result", role: "status" });
  const input = h("input", {
    id: "display-name",
    name: "display_name",
    maxlength: MAX_NAME,
    autocomplete: "nickname",
    dir: "auto",
    value: store.me.display_name || "",
    "aria-describedby": "display-name-help",
  });
  const button = h("button", { type: "submit", class: "primary" }, "Save name");
  const form = h(
    "form",
    { class: "dialog-form profile-form" },
    h(
      "div",
      { class: "field" },
      h("label", { for: "display-name" }, "Display name"),
      input,
      h(
        "small",
        { id: "display-name-help" },
        `What others see. Your username stays @${store.me.username}.`,
      ),
    ),
    error,
    result,
    button,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = input.value.trim();
    error.textContent = "";
    result.textContent = "";
    if (!name) {
      error.textContent = "A display name cannot be empty.";
      return;
    }
    button.disabled = true;
    try {
      const saved = await actions.rename(name);
      input.value = saved;
      const shown = form.closest("dialog")?.querySelector(".settings-name"); // "Logged in as"
      if (shown) shown.textContent = saved;
      result.textContent = `Your display name is now “${saved}”.`;
    } catch (failure) {
      error.textContent = failureText(failure);
    } finally {
      button.disabled = false;
    }
  });
  return [h("h3", {}, "Profile"), form];
}
