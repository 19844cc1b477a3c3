// The WebSocket half of the contract: hello with the stored cursor, heartbeats, and
// reconnecting with backoff (through /v1/discover) after any drop, a `redirect` or a
// `reconnect`. Frames other than heartbeat_ack go to `onFrame`. Two closes end it for
// good: 4001 (the session ended: logged out, device unlinked, token superseded) and 4011
// (a newer socket of this device took over, e.g. another tab): no reconnect after either.

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 8000;
const HELLO_TIMEOUT_MS = 10000;
const CLOSE_UNAUTHORIZED = 4001;
const CLOSE_SUPERSEDED = 4011;
// After a restart in place (`reconnect{same_url}`) the server is back on the same URL in
// a second or two: attempts that find it not yet listening try that URL again, this many
// times, before asking /v1/discover.
const SAME_URL_ATTEMPTS = 5;

/** Full jitter over an exponential backoff: 0.5 s, 1 s, 2 s, ... up to 8 s. */
export function backoffMs(attempt) {
  const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.round(cap / 2 + (Math.random() * cap) / 2);
}

export class ChatSocket {
  /**
   * @param {object} o
   * @param {string} o.url the chat_url from login, for the first attempt
   * @param {() => Promise<string>} o.discover a fresh chat_url (GET /v1/discover)
   * @param {() => string} o.token the access token
   * @param {() => string} o.cursor the last inbox seq this device holds
   * @param {(frame: object) => void} o.onFrame
   * @param {(state: object) => void} o.onState {status: connecting|online|waiting, retryAt}
   * @param {() => void} o.onUnauthorized the session ended or the token was refused (4001)
   * @param {() => void} o.onSuperseded a newer socket of this device took over (4011)
   */
  constructor(o) {
    Object.assign(this, o);
    this.ws = null;
    this.attempt = 0;
    this.stopped = true;
    this.timers = {};
    this.next = null; // {url, delay} from a redirect or reconnect frame
    this.sameUrl = null; // the URL a restart in place asked to come back to, until welcome
  }

  start() {
    this.stopped = false;
    this.#connect(this.url);
  }

  stop() {
    this.stopped = true;
    this.#clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.close(1000);
    }
  }

  get online() {
    return this.ws !== null && this.welcomed;
  }

  /** Send a frame on a welcomed socket; false when there is none right now. */
  send(frame) {
    if (!this.online || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Connect again after a 4011: the person wants this tab to be the live one. */
  resume() {
    if (this.status !== "superseded") return;
    this.stopped = false;
    this.attempt = 0;
    this.#connect(null);
  }

  /** Skip the rest of a backoff wait (the "Retry now" button, the browser going online). */
  retryNow() {
    if (this.stopped || this.status !== "waiting") return;
    this.#clearTimers();
    this.#connect(null);
  }

  #setState(status, extra = {}) {
    this.status = status;
    this.onState({ status, attempt: this.attempt, ...extra });
  }

  #clearTimers() {
    for (const timer of Object.values(this.timers)) {
      clearTimeout(timer);
      clearInterval(timer);
    }
    this.timers = {};
  }

  async #connect(url) {
    this.#clearTimers();
    this.#setState("connecting");
    if (!url) {
      try {
        url = (await this.discover()).chat_url;
      } catch (error) {
        if (error.status === 401) return; // the app logs out
        this.#retry(backoffMs(this.attempt++));
        return;
      }
    }
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.#retry(backoffMs(this.attempt++));
      return;
    }
    this.ws = ws;
    this.welcomed = false;
    this.timers.hello = setTimeout(() => this.#drop(ws), HELLO_TIMEOUT_MS);
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "hello", token: this.token(), cursor: this.cursor() }));
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      this.lastHeard = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.#handle(ws, frame);
    };
    ws.onclose = (event) => {
      if (this.ws === ws) this.#closed(event.code);
    };
  }

  #handle(ws, frame) {
    switch (frame.type) {
      case "welcome": {
        this.welcomed = true;
        this.attempt = 0;
        this.sameUrl = null;
        clearTimeout(this.timers.hello);
        const period = Math.max(1, Number(frame.heartbeat_s) || 5) * 1000;
        this.timers.heartbeat = setInterval(() => this.#heartbeat(ws, period), period);
        this.#setState("online");
        break;
      }
      case "heartbeat_ack":
        return;
      case "redirect": // close 4003 follows
        this.next = { url: frame.chat_url, delay: 0 };
        break;
      case "reconnect": {
        // The server drains (close 1012 follows): come back after `after_ms`, to the same
        // URL when it says so (a restart in place), else wherever discover says.
        const url = frame.same_url === true && this.ws ? this.ws.url : null;
        this.sameUrl = url;
        this.next = { url, delay: Math.max(0, Number(frame.after_ms) || 0) };
        break;
      }
    }
    this.onFrame(frame);
  }

  #heartbeat(ws, period) {
    // Nothing heard for three periods: the connection is dead even if TCP has not noticed.
    if (Date.now() - this.lastHeard > 3 * period + 2000) {
      this.#drop(ws);
      return;
    }
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "heartbeat" }));
  }

  /** Give up on a socket without waiting for its closing handshake. */
  #drop(ws) {
    if (this.ws !== ws) return;
    ws.onclose = null;
    try {
      ws.close();
    } catch {
      // already closing
    }
    this.#closed(1006);
  }

  #closed(code) {
    this.ws = null;
    this.welcomed = false;
    this.#clearTimers();
    if (this.stopped) return;
    if (code === CLOSE_UNAUTHORIZED) {
      this.stopped = true;
      this.onUnauthorized();
      return;
    }
    if (code === CLOSE_SUPERSEDED) {
      // The device is connected on its newer socket: this one stays closed until asked.
      this.stopped = true;
      this.#setState("superseded");
      this.onSuperseded?.();
      return;
    }
    if (this.next) {
      const { url, delay } = this.next;
      this.next = null;
      this.#retry(delay, url);
    } else if (this.sameUrl && this.attempt < SAME_URL_ATTEMPTS) {
      this.#retry(backoffMs(this.attempt++), this.sameUrl); // the restart is not done yet
    } else {
      this.sameUrl = null;
      this.#retry(backoffMs(this.attempt++));
    }
  }

  #retry(delay, url = null) {
    this.#setState("waiting", { retryAt: Date.now() + delay });
    this.timers.retry = setTimeout(() => this.#connect(url), delay);
  }
}
