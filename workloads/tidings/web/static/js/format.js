// Times (ms since the epoch) for people.

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function sameDay(a, b) {
  return (
    a.getFullYear() === b.getFullYear() &&
    a.getMonth() === b.getMonth() &&
    a.getDate() === b.getDate()
  );
}

/** "14:03" today, "3 Dec" before. */
export function shortTime(ms, now = Date.now()) {
  const d = new Date(ms);
  return sameDay(d, new Date(now)) ? timeFmt.format(d) : dayFmt.format(d);
}

export function clockTime(ms) {
  return timeFmt.format(new Date(ms));
}

export function fullTime(ms) {
  return fullFmt.format(new Date(ms));
}

/** "last seen today at 14:03", "last seen 3 Dec at 14:03", or "offline" when unknown. */
export function lastSeen(ms, now = Date.now()) {
  if (!ms) return "offline";
  const d = new Date(ms);
  const day = sameDay(d, new Date(now)) ? "today" : dayFmt.format(d);
  return `last seen ${day} at ${timeFmt.format(d)}`;
}
