// Ids are decimal strings on the wire (64-bit Snowflakes, random 62-bit user ids, and
// sequences): never Numbers (they lose digits past 2^53); compare as BigInt.

export function cmpId(a, b) {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The larger of two ids; null/undefined counts as "none". */
export function maxId(a, b) {
  if (a == null) return b ?? null;
  if (b == null) return a;
  return cmpId(a, b) >= 0 ? a : b;
}

/** `dm:<lower user_id>:<higher user_id>` in numeric order (the contract's 1:1 channel id). */
export function dmChannelId(a, b) {
  return cmpId(a, b) <= 0 ? `dm:${BigInt(a)}:${BigInt(b)}` : `dm:${BigInt(b)}:${BigInt(a)}`;
}

export function isDm(channelId) {
  return channelId.startsWith("dm:");
}

/** The other member of a 1:1 channel. */
export function dmPeer(channelId, me) {
  const [, a, b] = channelId.split(":");
  return a === me ? b : a;
}

/** A fresh client_msg_id: 128 random bits (works outside secure contexts too). */
export function newClientMsgId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
