// A message's text for people: laid out in its own direction (right-to-left scripts too),
// http(s) links clickable and safe, search words marked; and the composer's rules (trimmed,
// at most the contract's 100,000 characters). Text nodes only, never HTML.

import { h } from "./dom.js";

/** The contract's limit of a `send` body, in characters (code points, as the server counts). */
export const MAX_BODY_CHARS = 100_000;

// http:// or https:// up to whitespace or a character that never ends a link in prose.
const LINK = /\bhttps?:\/\/[^\s<>"'`]+/giu;
const TRAILING = /[.,;:!?'"»”’)\]}]+$/u; // punctuation after a link, not part of it

/** Characters as the server counts them (code points, not UTF-16 units). */
export function charCount(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

/** What is sent of what was typed: leading and trailing whitespace go. */
export function cleanBody(text) {
  return String(text ?? "").trim();
}

/** Why a body of `count` characters cannot be sent, or null when it fits. */
export function tooLongText(count, pasted = true) {
  if (count <= MAX_BODY_CHARS) return null;
  const fmt = (n) => n.toLocaleString("en");
  return (
    `That is too long to send: a message can be at most ${fmt(MAX_BODY_CHARS)} characters ` +
    `(this would be ${fmt(count)}). ${pasted ? "Nothing was pasted." : "Nothing was sent."}`
  );
}

/** The URL a link in text stands for, when it is http(s); else null. */
export function safeHref(raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

/** Split text into [{text}, {text, href}] parts; closing punctuation stays outside links. */
export function linkParts(text) {
  const parts = [];
  let at = 0;
  for (const match of text.matchAll(LINK)) {
    let raw = match[0];
    let trail = raw.match(TRAILING)?.[0] ?? "";
    // A ")" that closes a "(" inside the link is part of it (Wikipedia's URLs).
    while (trail.startsWith(")") && count(raw, "(") > count(raw.slice(0, -trail.length), ")")) {
      trail = trail.slice(1);
    }
    raw = raw.slice(0, raw.length - trail.length);
    const href = safeHref(raw);
    if (!href || raw.length <= "https://".length) continue;
    if (match.index > at) parts.push({ text: text.slice(at, match.index) });
    parts.push({ text: raw, href });
    at = match.index + raw.length;
  }
  if (at < text.length) parts.push({ text: text.slice(at) });
  return parts;
}

function count(text, ch) {
  return text.split(ch).length - 1;
}

/** The words of a search (for marking them), longest first so overlaps mark the longer. */
function termsOf(q) {
  const words = String(q ?? "")
    .toLowerCase()
    .split(/\s+/u)
    .filter((w) => w.length > 0);
  return [...new Set(words)].sort((a, b) => b.length - a.length);
}

/** Text with every occurrence of `terms` (lower case) in a <mark>. */
function marked(text, terms) {
  if (!terms.length) return [text];
  const lower = text.toLowerCase();
  const out = [];
  let at = 0;
  while (at < text.length) {
    let best = -1;
    let term = "";
    for (const t of terms) {
      const i = lower.indexOf(t, at);
      if (i !== -1 && (best === -1 || i < best)) [best, term] = [i, t];
    }
    // toLowerCase can change lengths (e.g. "İ"): then the text is left unmarked.
    if (best === -1 || lower.length !== text.length) break;
    if (best > at) out.push(text.slice(at, best));
    out.push(h("mark", { class: "hit-word" }, text.slice(best, best + term.length)));
    at = best + term.length;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

/**
 * Fill `el` with `body`: its direction from its own first strong character (`dir="auto"`:
 * Arabic or Hebrew right to left), http(s) links as links opening in a new tab without
 * access to this page or a Referer, and the words of `highlight` (a search) marked.
 */
export function renderText(el, body, { highlight = null } = {}) {
  const text = String(body ?? "");
  const terms = termsOf(highlight);
  el.dir = "auto";
  el.replaceChildren(
    ...linkParts(text).flatMap((part) =>
      part.href
        ? [
            h(
              "a",
              { href: part.href, target: "_blank", rel: "noopener noreferrer", class: "link-out" },
              ...marked(part.text, terms),
            ),
          ]
        : marked(part.text, terms),
    ),
  );
  return el;
}

/**
 * A paste into `input` that would make it longer than a message may be is refused whole
 * (the browser would cut it silently): `notify` says why. True when refused.
 */
export function refuseLongPaste(event, input, notify) {
  const pasted = event.clipboardData?.getData("text/plain") ?? "";
  if (!pasted) return false;
  const kept =
    input.value.slice(0, input.selectionStart ?? input.value.length) +
    input.value.slice(input.selectionEnd ?? input.value.length);
  const message = tooLongText(charCount(kept) + charCount(pasted));
  if (!message) return false;
  event.preventDefault();
  notify(message);
  return true;
}
