// Day separators ("Today", "Yesterday", "Monday, 1 December") between a conversation's
// messages, and the "N unread messages" line above what was new when the chat was opened.
// Both are items of the message list with keys of their own (`day:…`, `unread`).

import { h, setText } from "../dom.js";

const weekdayFmt = new Intl.DateTimeFormat(undefined, {
  weekday: "long",
  day: "numeric",
  month: "long",
});
const yearFmt = new Intl.DateTimeFormat(undefined, {
  weekday: "long",
  day: "numeric",
  month: "long",
  year: "numeric",
});

/** The local calendar day of a time, "2026-12-08". */
export function dayKey(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** "Today", "Yesterday", "Monday, 1 December", or with the year when it is not this one. */
export function dayLabel(ms, now = Date.now()) {
  const day = dayKey(ms);
  if (day === dayKey(now)) return "Today";
  const yesterday = new Date(now);
  yesterday.setDate(yesterday.getDate() - 1);
  if (day === dayKey(yesterday.getTime())) return "Yesterday";
  const d = new Date(ms);
  return d.getFullYear() === new Date(now).getFullYear() ? weekdayFmt.format(d) : yearFmt.format(d);
}

/**
 * Messages (in order) with a day separator before the first of each day and, when
 * `unread` ({count}) is given, the unread line before the first of the newest `count`
 * messages from others (channel events are never unread). Once the history is `loaded`
 * the line stays before that message (`unread.anchor`), however many come after it.
 */
export function withSeparators(messages, myId, unread, loaded) {
  let anchor = unread?.anchor ?? null;
  if (!anchor && unread?.count > 0) {
    let left = unread.count;
    for (let i = messages.length - 1; i >= 0 && left > 0; i--) {
      const m = messages[i];
      if (m.pending || m.event || m.sender_id === myId) continue;
      anchor = m.message_id;
      left -= 1;
    }
    if (loaded) unread.anchor = anchor;
  }
  const items = [];
  let lastDay = null;
  for (const m of messages) {
    const day = dayKey(m.ts);
    if (day !== lastDay) {
      items.push({ separator: "day", key: `day:${day}`, ts: m.ts });
      lastDay = day;
    }
    if (anchor && m.message_id === anchor) {
      items.push({ separator: "unread", key: "unread", count: unread.count });
    }
    items.push(m);
  }
  return items;
}

export function isSeparator(item) {
  return Boolean(item.separator);
}

export function separatorView(item) {
  const label = h("span", { class: "separator-text" });
  return h(
    "li",
    { class: item.separator === "day" ? "day-separator" : "unread-separator" },
    label,
  );
}

export function updateSeparator(el, item) {
  const text =
    item.separator === "day"
      ? dayLabel(item.ts)
      : item.count >= 1000 // the server counts up to 1,000
        ? "1,000 or more unread messages"
        : `${item.count} unread message${item.count === 1 ? "" : "s"}`;
  setText(el.firstElementChild, text);
}
