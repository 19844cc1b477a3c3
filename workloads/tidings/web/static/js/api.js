// The HTTP half of the contract (shared/PROTOCOL.md, "HTTP API (/v1)"): nothing else.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status; // 0: the server could not be reached
    this.code = code;
  }
}

const enc = encodeURIComponent;

export class Api {
  /**
   * @param {() => string|null} getToken the access token, when logged in
   * @param {(e: ApiError) => void} onUnauthorized called on a 401 for a call that sent a token
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
      const failure = new ApiError(
        response.status,
        error.code ?? `http_${response.status}`,
        error.message ?? response.statusText,
      );
      if (response.status === 401 && token) this.onUnauthorized(failure);
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
    const body = { username, password, platform: "web", device_name: "Web browser" };
    if (deviceId) body.device_id = deviceId;
    return this.request("POST", "/v1/sessions", body);
  }

  discover() {
    return this.request("GET", "/v1/discover");
  }

  me() {
    return this.request("GET", "/v1/me");
  }

  user(userId) {
    return this.request("GET", `/v1/users/${enc(userId)}`);
  }

  addFriend(userId) {
    return this.request("PUT", `/v1/friends/${enc(userId)}`);
  }

  async friends() {
    return (await this.request("GET", "/v1/friends")).friends;
  }

  createGroup(name, memberIds) {
    return this.request("POST", "/v1/groups", { name, member_ids: memberIds });
  }

  group(channelId) {
    return this.request("GET", `/v1/groups/${enc(channelId)}`);
  }

  addMember(channelId, userId) {
    return this.request("PUT", `/v1/groups/${enc(channelId)}/members/${enc(userId)}`);
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
}
