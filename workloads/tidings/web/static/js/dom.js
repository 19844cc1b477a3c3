// Tiny DOM helpers: elements are built with textContent only, never parsed from strings of HTML.

/**
 * h("button", { class: "x", onclick: fn, "aria-label": "..." }, "text", child)
 * Attributes: `class`, `dataset` (object), `on<event>` handlers, booleans (true sets "",
 * false/null/undefined leaves out), everything else via setAttribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === false || value == null) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "value") el.value = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Set text only when it changed (keeps screen readers and selections calm). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/**
 * Make `parent`'s children match `items`, reusing the element of each key: `create(item)`
 * builds a new one, `update(el, item)` refreshes it. Elements keep their place when they
 * can, so focus and scroll survive re-renders.
 */
export function reconcile(parent, items, keyOf, create, update) {
  const existing = new Map();
  for (const el of parent.children) existing.set(el.dataset.key, el);
  const kept = new Set();
  let cursor = parent.firstElementChild;
  for (const item of items) {
    const key = keyOf(item);
    let el = existing.get(key);
    if (!el) {
      el = create(item);
      el.dataset.key = key;
    }
    update(el, item);
    kept.add(el);
    if (el === cursor) cursor = cursor.nextElementSibling;
    else parent.insertBefore(el, cursor);
  }
  for (const el of existing.values()) if (!kept.has(el)) el.remove();
}

/** A one-path SVG icon (24×24 view box), drawn in the current text colour. */
export function icon(pathData, size = 22) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  for (const [name, value] of Object.entries({
    viewBox: "0 0 24 24",
    width: size,
    height: size,
    "aria-hidden": "true",
    focusable: "false",
  })) {
    svg.setAttribute(name, String(value));
  }
  const path = document.createElementNS(NS, "path");
  path.setAttribute("d", pathData);
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}
