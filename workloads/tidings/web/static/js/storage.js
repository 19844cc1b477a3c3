// What survives a reload, in localStorage: the session, the device id per username (so a
// new login on this browser is the same device again), and per device the inbox cursor,
// read marks, unread counts, receipt watermarks and unacknowledged sends. A device that
// logged out is gone on the server; what it kept is carried over to the next device of
// the same user on this browser (the inbox cursor is per user, so it stays meaningful).

const SESSION_KEY = "tidings.session";
const DEVICES_KEY = "tidings.devices";
const deviceKey = (deviceId) => `tidings.device.${deviceId}`;
const carryKey = (username) => `tidings.carry.${username}`;

function read(key) {
  try {
    const raw = localStorage.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function write(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage full or disabled: the app still works, it only forgets more on reload.
  }
}

export function loadSession() {
  const session = read(SESSION_KEY);
  if (!session?.access_token || !(session.expires_at > Date.now())) return null;
  return session;
}

export function saveSession(session) {
  write(SESSION_KEY, session);
  const devices = read(DEVICES_KEY) ?? {};
  devices[session.username] = session.device_id;
  write(DEVICES_KEY, devices);
}

export function clearSession() {
  write(SESSION_KEY, null);
}

/** The device this browser used for `username` before, if any. */
export function deviceFor(username) {
  return (read(DEVICES_KEY) ?? {})[username] ?? null;
}

export function forgetDevice(username) {
  const devices = read(DEVICES_KEY) ?? {};
  delete devices[username];
  write(DEVICES_KEY, devices);
}

export function emptyDeviceState() {
  return { cursor: "0", channels: {}, receipts: {}, outbox: [], drafts: [], people: {} };
}

export function loadDeviceState(deviceId) {
  return { ...emptyDeviceState(), ...(read(deviceKey(deviceId)) ?? {}) };
}

export function saveDeviceState(deviceId, state) {
  write(deviceKey(deviceId), state);
}

/**
 * A device that is gone (logged out, unlinked): keep what it held for the next device of
 * `username` on this browser, under the user rather than the device.
 */
export function retireDevice(deviceId, username) {
  const state = read(deviceKey(deviceId));
  if (state) write(carryKey(username), state);
  write(deviceKey(deviceId), null);
}

/** A new device of `username`: start from what its predecessor here held, if any. */
export function adoptRetired(username, deviceId) {
  const state = read(carryKey(username));
  write(carryKey(username), null);
  if (state && !read(deviceKey(deviceId))) write(deviceKey(deviceId), state);
}
