// Sign up and log in: one form that switches between the two.

import { h } from "../dom.js";

const MESSAGES = {
  bad_credentials: "Wrong username or password.",
  username_taken: "That username is taken.",
  too_many_devices:
    "This account has too many devices. Unlink one in Settings on another device first.",
  rate_limited: "Too many attempts. Wait a minute and try again.",
  network: "The server cannot be reached. Try again in a moment.",
};

/**
 * @param {HTMLElement} root
 * @param {{login: Function, signup: Function}} actions async; they throw ApiError
 * @param {string} [message] why the login screen is shown (e.g. the session ended)
 */
export function renderAuth(root, actions, message) {
  let mode = "login";
  const error = h("p", { class: "form-error", id: "auth-error", role: "alert" });
  const reason = h(
    "p",
    { class: "auth-message", id: "auth-message", role: "status", hidden: !message },
    message ?? "",
  );
  const title = h("h2", { id: "auth-title" });
  const username = h("input", {
    id: "auth-username",
    name: "username",
    autocomplete: "username",
    required: true,
    pattern: "[a-z0-9_.]{3,32}",
    "aria-describedby": "auth-username-help",
    autocapitalize: "none",
    spellcheck: "false",
  });
  const displayName = h("input", {
    id: "auth-display-name",
    name: "display_name",
    autocomplete: "name",
    maxlength: 128,
  });
  const password = h("input", {
    id: "auth-password",
    name: "password",
    type: "password",
    required: true,
    minlength: 8,
    maxlength: 256,
  });
  const displayRow = h(
    "div",
    { class: "field" },
    h("label", { for: "auth-display-name" }, "Display name (optional)"),
    displayName,
  );
  const submit = h("button", { type: "submit", class: "primary" });
  const switchText = h("span");
  const switchButton = h("button", {
    type: "button",
    class: "link",
    onclick: () => setMode(mode === "login" ? "signup" : "login"),
  });

  const form = h(
    "form",
    { class: "auth-form", "aria-labelledby": "auth-title", novalidate: false },
    title,
    h(
      "div",
      { class: "field" },
      h("label", { for: "auth-username" }, "Username"),
      username,
      h("small", { id: "auth-username-help" }, "3-32 characters: a-z, 0-9, _ and ."),
    ),
    displayRow,
    h("div", { class: "field" }, h("label", { for: "auth-password" }, "Password"), password),
    error,
    submit,
  );

  function setMode(next) {
    mode = next;
    const signup = mode === "signup";
    title.textContent = signup ? "Create an account" : "Log in";
    submit.textContent = signup ? "Sign up" : "Log in";
    switchText.textContent = signup ? "Have an account? " : "New here? ";
    switchButton.textContent = signup ? "Log in" : "Create an account";
    displayRow.hidden = !signup;
    password.autocomplete = signup ? "new-password" : "current-password";
    error.textContent = "";
    username.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    error.textContent = "";
    submit.disabled = true;
    try {
      if (mode === "signup") {
        await actions.signup(username.value.trim(), password.value, displayName.value.trim());
      } else {
        await actions.login(username.value.trim(), password.value);
      }
    } catch (failure) {
      error.textContent = MESSAGES[failure.code] ?? failure.message ?? "Something went wrong.";
      submit.disabled = false;
    }
  });

  root.replaceChildren(
    h(
      "section",
      { class: "auth" },
      h("h1", { class: "brand" }, "Tidings"),
      reason,
      form,
      h("p", { class: "auth-switch" }, switchText, switchButton),
    ),
  );
  setMode("login");
}
