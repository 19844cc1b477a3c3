// The HTTP half of the contract (shared/PROTOCOL.md, "HTTP API (/v1)"): nothing else.

export class ApiError extends Error {
  constructor(status, code, message, afterMs = null) {
    super(message);
    this.status = status; // 0: the server could not be reached
    this.code = code;
    this.afterMs = afterMs; // a 429/503 said when to come back (ms), else null
  }
}

const enc = encodeURIComponent;

export class Api {
  /**
   * @param {() => string|null} getToken the access token, when logged in
   * @param {(e: ApiError, token: string) => void} onUnauthorized a 401 for a call that sent
   *   `token`
   */
  constructor(getToken, onUnauthorized, base = "") {
    this.getToken = getToken;
    this.onUnauthorized = onUnauthorized;
    this.base = base;
  }

  async request(method, path, body) {
    const headers = { Accept: "application/json" };
    const token = this.getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, "network", "The server cannot be reached.");
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const error = data?.error ?? {};
      const retryAfter = Number(response.headers.get("Retry-After"));
      const afterMs = Number.isFinite(data?.after_ms)
        ? data.after_ms
        : retryAfter > 0
          ? retryAfter * 1000
          : null;
      const failure = new ApiError(
        response.status,
        error.code ?? `http_${response.status}`,
        error.message ?? response.statusText,
        afterMs,
      );
      if (response.status === 401 && token) this.onUnauthorized(failure, token);
      throw failure;
    }
    return data;
  }

  signup(username, password, displayName) {
    const body = { username, password };
    if (displayName) body.display_name = displayName;
    return this.request("POST", "/v1/users", body);
  }

  /** A session for this browser: `deviceId` logs the same device in again. */
  login(username, password, deviceId) {
    const body = { username, password, platform: "web", device_name: browserName() };
    if (deviceId) body.device_id = deviceId;
    return this.request("POST", "/v1/sessions", body);
  }

  /** Log this device out: the server unlinks it (its tokens and sockets end). */
  logout() {
    return this.request("DELETE", "/v1/sessions/current");
  }

  /** [{device_id, name, platform, push, created_at, last_seen, current}] */
  async devices() {
    return (await this.request("GET", "/v1/devices")).devices;
  }

  unlinkDevice(deviceId) {
    return this.request("DELETE", `/v1/devices/${enc(deviceId)}`);
  }

  discover() {
    return this.request("GET", "/v1/discover");
  }

  me() {
    return this.request("GET", "/v1/me");
  }

  /** The profile with a new display name (422 invalid_request for a name it refuses). */
  updateMe(displayName) {
    return this.request("PATCH", "/v1/me", { display_name: displayName });
  }

  /** A user the caller is related to (404 unknown_user for anyone else). */
  user(userId) {
    return this.request("GET", `/v1/users/${enc(userId)}`);
  }

  /** {user_id, username, display_name} of exactly this username; 404 unknown_user, 429. */
  findUser(username) {
    return this.request("GET", `/v1/users?${new URLSearchParams({ username })}`);
  }

  /** A friend request, or accepting theirs (idempotent). */
  addFriend(userId) {
    return this.request("PUT", `/v1/friends/${enc(userId)}`);
  }

  /** Ends a friendship, withdraws our request, or declines theirs. */
  removeFriend(userId) {
    return this.request("DELETE", `/v1/friends/${enc(userId)}`);
  }

  async friends() {
    return (await this.request("GET", "/v1/friends")).friends;
  }

  /** {incoming: [profile], outgoing: [profile]} */
  friendRequests() {
    return this.request("GET", "/v1/friends/requests");
  }

  block(userId) {
    return this.request("PUT", `/v1/blocks/${enc(userId)}`);
  }

  unblock(userId) {
    return this.request("DELETE", `/v1/blocks/${enc(userId)}`);
  }

  async blocked() {
    return (await this.request("GET", "/v1/blocks")).blocked;
  }

  /** [{channel_id, name, inviter_id, inviter, created_at}] */
  async invites() {
    return (await this.request("GET", "/v1/invites")).invites;
  }

  /** The group, now with the caller as a member. */
  acceptInvite(channelId) {
    return this.request("POST", `/v1/invites/${enc(channelId)}/accept`);
  }

  declineInvite(channelId) {
    return this.request("DELETE", `/v1/invites/${enc(channelId)}`);
  }

  /** The group, plus `invited`: the members named who were invited instead of added. */
  createGroup(name, memberIds) {
    return this.request("POST", "/v1/groups", { name, member_ids: memberIds });
  }

  group(channelId) {
    return this.request("GET", `/v1/groups/${enc(channelId)}`);
  }

  /** "added" (204: a friend) or "invited" (202: anyone else gets an invite). */
  async addMember(channelId, userId) {
    const answer = await this.request(
      "PUT",
      `/v1/groups/${enc(channelId)}/members/${enc(userId)}`,
    );
    return answer?.invited ? "invited" : "added";
  }

  /** Rename a group or change its settings (`{name?, members_can_add?}`): admins only. */
  updateGroup(channelId, changes) {
    return this.request("PATCH", `/v1/groups/${enc(channelId)}`, changes);
  }

  /** Remove a member (admins), or leave (one's own user id). */
  removeMember(channelId, userId) {
    return this.request("DELETE", `/v1/groups/${enc(channelId)}/members/${enc(userId)}`);
  }

  /** Make (`true`) or unmake an admin; 409 last_admin when none would be left. */
  setAdmin(channelId, userId, admin) {
    return this.request(
      admin ? "PUT" : "DELETE",
      `/v1/groups/${enc(channelId)}/admins/${enc(userId)}`,
    );
  }

  async channels() {
    return (await this.request("GET", "/v1/channels")).channels;
  }

  /** Newest first, up to `limit`, older than `before` (a message id) when given. */
  async history(channelId, before, limit) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before) query.set("before", before);
    const path = `/v1/channels/${enc(channelId)}/messages?${query}`;
    return (await this.request("GET", path)).messages;
  }

  async search(q, channelId) {
    const query = new URLSearchParams({ q });
    if (channelId) query.set("channel_id", channelId);
    return (await this.request("GET", `/v1/search?${query}`)).messages;
  }

  // --- media (docs/protocol.md, "Media: uploads, attachments and downloads") ---------

  /** An upload slot: {media_id, state: "pending", ..., expires_at, upload}. */
  createMedia(contentType, size, sha256) {
    return this.request("POST", "/v1/media", { content_type: contentType, size, sha256 });
  }

  /** The same slot with fresh URLs and `done_parts` (to resume). */
  mediaUpload(mediaId) {
    return this.request("GET", `/v1/media/${enc(mediaId)}/upload`);
  }

  /** The media object, `state: "ready"`; `parts` [{part_number, etag}] for multipart. */
  completeMedia(mediaId, parts) {
    return this.request("POST", `/v1/media/${enc(mediaId)}/complete`, parts ? { parts } : {});
  }

  /** The media object with `url`, `thumbnail_url` and `url_expires_at`. */
  media(mediaId) {
    return this.request("GET", `/v1/media/${enc(mediaId)}`);
  }
}

/** "Chrome on Linux": how this browser names itself in the list of devices. */
export function browserName(ua = navigator.userAgent) {
  const browser = /Edg\//.test(ua)
    ? "Edge"
    : /Firefox\//.test(ua)
      ? "Firefox"
      : /Chrom(e|ium)\//.test(ua)
        ? "Chrome"
        : /Safari\//.test(ua)
          ? "Safari"
          : "Web browser";
  const os = /Android/.test(ua)
    ? "Android"
    : /iPhone|iPad/.test(ua)
      ? "iOS"
      : /Windows/.test(ua)
        ? "Windows"
        : /Mac OS/.test(ua)
          ? "macOS"
          : /Linux|X11/.test(ua)
            ? "Linux"
            : "";
  return os ? `${browser} on ${os}` : browser;
}
