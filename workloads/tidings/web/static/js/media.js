// Attachments (docs/protocol.md, "Media: uploads, attachments and downloads"): the SHA-256
// of a file, its upload (a slot, the PUT of the bytes straight to the blob store — one PUT
// or the multipart parts — then `complete`), and the media objects of downloads, cached
// per media_id until their URLs expire. No DOM here but XMLHttpRequest (upload progress).

import { ApiError } from "./api.js";

/** What the attach button offers (the contract's image types) and their cap. */
export const IMAGE_TYPES = ["image/jpeg", "image/png", "image/gif", "image/webp"];
export const IMAGE_MAX_BYTES = 16 << 20;
export const MAX_ATTACHMENTS = 10; // per message
export const MAX_NAME = 255;

const PUT_ATTEMPTS = 3; // each PUT, again after a network failure or an expired URL
const ROUNDS = 3; // slot → PUTs → complete, again while `complete` says bytes are missing
const EXPIRY_MARGIN_MS = 15_000; // refetch a media object this long before its URLs expire
const DEFAULT_TTL_MS = 300_000; // download_ttl_s, when an answer has no url_expires_at
// Headers a page may not set (the browser does): left out of an upload's `headers`.
const FORBIDDEN = new Set(["content-length", "host", "connection", "expect"]);

// --- SHA-256 ------------------------------------------------------------------------------

/** Lowercase hex SHA-256 of `bytes` (Uint8Array): WebCrypto, or the fallback below on a
 * page that is not a secure context (plain http to a host other than localhost). */
export async function sha256Hex(bytes) {
  if (globalThis.crypto?.subtle) {
    return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
  }
  return sha256Fallback(bytes);
}

function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
  0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
  0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
  0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
  0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
  0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
  0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
  0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

/** SHA-256 in plain JavaScript (FIPS 180-4), for pages without WebCrypto. */
export function sha256Fallback(bytes) {
  const H = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
    0x5be0cd19,
  ]);
  const n = bytes.length;
  const total = Math.ceil((n + 9) / 64) * 64;
  const padded = new Uint8Array(total);
  padded.set(bytes);
  padded[n] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(total - 8, Math.floor(n / 0x20000000)); // the bit length's high word
  view.setUint32(total - 4, (n * 8) >>> 0);
  const W = new Uint32Array(64);
  const rotr = (x, r) => (x >>> r) | (x << (32 - r));
  for (let off = 0; off < total; off += 64) {
    for (let i = 0; i < 16; i++) W[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const a = W[i - 15];
      const b = W[i - 2];
      const s0 = rotr(a, 7) ^ rotr(a, 18) ^ (a >>> 3);
      const s1 = rotr(b, 17) ^ rotr(b, 19) ^ (b >>> 10);
      W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, hh] = H;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    H[0] += a;
    H[1] += b;
    H[2] += c;
    H[3] += d;
    H[4] += e;
    H[5] += f;
    H[6] += g;
    H[7] += hh;
  }
  return Array.from(H, (w) => w.toString(16).padStart(8, "0")).join("");
}

// --- uploads ------------------------------------------------------------------------------

/**
 * PUT `body` to a presigned URL with exactly `headers` (never our bearer token: the URL
 * is the authority). Resolves {etag}; rejects an ApiError (the embedded store answers
 * the contract's error shape; S3 answers XML: `http_<status>`).
 */
function put(url, headers, body, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const [name, value] of Object.entries(headers ?? {})) {
      if (!FORBIDDEN.has(name.toLowerCase())) xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (event) => onProgress?.(event.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve({ etag: xhr.getResponseHeader("ETag") });
        return;
      }
      let error = {};
      try {
        error = JSON.parse(xhr.responseText)?.error ?? {};
      } catch {
        // not JSON (S3's XML)
      }
      reject(
        new ApiError(
          xhr.status,
          error.code ?? `http_${xhr.status}`,
          error.message ?? `The upload was refused (${xhr.status}).`,
        ),
      );
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "The upload could not reach the server."));
    xhr.onabort = xhr.onerror;
    xhr.send(body);
  });
}

/** Try a PUT again after a network failure or an expired URL (`fresh()` gives a new one). */
async function putWithRetries(target, body, onProgress, fresh) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await put(target.url, target.headers, body, onProgress);
    } catch (failure) {
      const again = failure.status === 0 || failure.code === "url_expired";
      if (!again || attempt >= PUT_ATTEMPTS) throw failure;
      onProgress?.(0);
      await new Promise((r) => setTimeout(r, 300 * attempt));
      if (failure.code === "url_expired") Object.assign(target, await fresh());
    }
  }
}

/**
 * Upload one pending attachment `item` ({file}); on success `item.media` is the ready media
 * object. What was done survives a failure on the item (its digest, its slot, the parts'
 * ETags), so calling this again resumes instead of starting over.
 * `onProgress(bytesSent)` while the bytes go out.
 */
export async function uploadFile(api, item, onProgress) {
  if (item.media) return item.media;
  const file = item.file;
  if (!item.sha256) {
    item.bytes = new Uint8Array(await file.arrayBuffer());
    item.sha256 = await sha256Hex(item.bytes);
  }
  const bytes = item.bytes;
  for (let round = 1; ; round++) {
    let slot = null;
    if (item.slot) {
      try {
        slot = await api.mediaUpload(item.slot.media_id); // fresh URLs, done_parts
      } catch (failure) {
        if (failure.code !== "unknown_media") throw failure;
        item.slot = null; // gone (deleted after a failed completion, or swept)
        item.etags = null;
      }
    }
    if (!slot) {
      slot = await api.createMedia(file.type, file.size, item.sha256);
      item.etags = null;
    }
    item.slot = slot;
    const media = await sendBytes(api, item, slot, bytes, onProgress);
    if (media) {
      item.media = media;
      item.bytes = null; // the upload is done: let the copy go
      return media;
    }
    if (round >= ROUNDS) {
      throw new ApiError(409, "upload_incomplete", "The upload did not complete.");
    }
  }
}

/** The PUT(s) and `complete`; null when `complete` says bytes are missing (409). */
async function sendBytes(api, item, slot, bytes, onProgress) {
  const upload = slot.upload;
  const refresh = async () => (await api.mediaUpload(slot.media_id)).upload;
  let parts;
  if (upload.method === "multipart") {
    item.etags ??= {};
    const done = new Set(slot.upload.done_parts ?? slot.done_parts ?? []);
    const sent = {}; // part_number -> bytes of it sent so far (progress)
    const report = () => onProgress?.(Object.values(sent).reduce((a, b) => a + b, 0));
    for (const part of upload.parts) {
      const start = (part.part_number - 1) * upload.part_size;
      if (done.has(part.part_number) && item.etags[part.part_number]) {
        sent[part.part_number] = part.size;
        continue;
      }
      const target = { url: part.url, headers: upload.headers };
      const fresh = async () => {
        const again = await refresh();
        const same = again.parts.find((p) => p.part_number === part.part_number);
        return { url: same.url, headers: again.headers };
      };
      const body = bytes.subarray(start, start + part.size);
      const answer = await putWithRetries(
        target,
        body,
        (loaded) => {
          sent[part.part_number] = loaded;
          report();
        },
        fresh,
      );
      if (!answer.etag) {
        throw new ApiError(0, "no_etag", "The store's answer had no ETag (its CORS settings).");
      }
      item.etags[part.part_number] = answer.etag;
      sent[part.part_number] = part.size;
      report();
    }
    parts = upload.parts.map((p) => ({ part_number: p.part_number, etag: item.etags[p.part_number] }));
  } else {
    const target = { url: upload.url, headers: upload.headers };
    await putWithRetries(target, bytes, onProgress, refresh);
    onProgress?.(bytes.length);
  }
  try {
    return await api.completeMedia(slot.media_id, parts);
  } catch (failure) {
    if (failure.code === "upload_incomplete") return null; // the slot stays: again
    if (["sha256_mismatch", "content_type_mismatch", "payload_too_large"].includes(failure.code)) {
      item.slot = null; // the server deleted the upload
      item.etags = null;
    }
    throw failure;
  }
}

/**
 * Upload every pending item (in order; those already uploaded are skipped) and give the
 * `attachments` of a `send`. `onProgress(fraction)` from 0 to 1 over all their bytes.
 */
export async function uploadAttachments(api, items, onProgress) {
  const total = items.reduce((n, i) => n + i.file.size, 0) || 1;
  let done = 0;
  const attachments = [];
  for (const item of items) {
    const size = await item.measured; // width and height from the image element
    const media = await uploadFile(api, item, (sent) =>
      onProgress?.(Math.min(1, (done + sent) / total)),
    );
    done += item.file.size;
    onProgress?.(Math.min(1, done / total));
    const attachment = {
      media_id: media.media_id,
      content_type: media.content_type,
      size: media.size,
      sha256: media.sha256,
    };
    if (item.name) attachment.name = item.name;
    if (size?.width && size?.height) Object.assign(attachment, size);
    attachments.push(attachment);
  }
  return attachments;
}

/** A byte count the server's error message states ("images may be at most N bytes"). */
function bytesIn(message, pattern) {
  const found = pattern.exec(String(message ?? ""));
  return found ? Number(found[1]) : null;
}

/** Why an upload failed, for people (the caps the server states, else the contract's). */
export function uploadErrorText(failure, name) {
  const what = name ? `“${name}”` : "The file";
  switch (failure?.code) {
    case "payload_too_large": {
      const cap = bytesIn(failure.message, /at most (\d+) bytes/) ?? IMAGE_MAX_BYTES;
      return `${what} is too large: images can be at most ${formatBytes(cap)}.`;
    }
    case "quota_exceeded": {
      const quota = bytesIn(failure.message, /more than (\d+) bytes/);
      const held = quota ? ` (${formatBytes(quota)} of attachments)` : "";
      return `Your storage is full${held}: it cannot take this one.`;
    }
    case "unsupported_media_type":
    case "content_type_mismatch":
      return `${what} is not a JPEG, PNG, GIF or WebP image.`;
    case "sha256_mismatch":
      return `${what} changed while it was uploaded: try again.`;
    case "rate_limited": {
      const minutes = failure.afterMs ? Math.max(1, Math.ceil(failure.afterMs / 60000)) : null;
      return minutes
        ? `Too many uploads: try again in ${minutes} minute${minutes === 1 ? "" : "s"}.`
        : "Too many uploads: try again later.";
    }
    case "unavailable":
      return "This server does not take attachments (no media store is configured).";
    case "network":
      return "The upload could not reach the server: check the connection and try again.";
    case "url_expired":
      return "The upload link expired: try again.";
    case "not_an_image":
      return `${what} is not an image this browser can read.`;
    default:
      return `The upload failed: ${failure?.message ?? "something went wrong"}.`;
  }
}

// --- downloads ------------------------------------------------------------------------------

/** When a media object's URLs expire (ms since the epoch). */
export function expiresAt(media) {
  const at = media?.url_expires_at;
  if (typeof at === "number") return at < 1e12 ? at * 1000 : at; // seconds or ms
  if (typeof at === "string") {
    const parsed = /^\d+$/.test(at) ? Number(at) : Date.parse(at);
    if (Number.isFinite(parsed)) return parsed < 1e12 ? parsed * 1000 : parsed;
  }
  return (media?.fetchedAt ?? 0) + DEFAULT_TTL_MS;
}

/**
 * Media objects (`GET /v1/media/{id}`: url, thumbnail_url, url_expires_at) per media_id;
 * one request at a time per id, fetched again once the URLs are about to expire.
 */
export class MediaCache {
  constructor(api, now = () => Date.now()) {
    this.api = api;
    this.now = now;
    this.entries = new Map(); // media_id -> {value?, pending?}
  }

  /** The media object; `fresh` asks the server even when the held one looks valid. */
  get(mediaId, fresh = false) {
    const entry = this.entries.get(mediaId);
    if (entry?.pending) return entry.pending;
    if (!fresh && entry?.value && expiresAt(entry.value) - this.now() > EXPIRY_MARGIN_MS) {
      return Promise.resolve(entry.value);
    }
    const pending = this.api.media(mediaId).then(
      (value) => {
        const held = { ...value, fetchedAt: this.now() };
        this.entries.set(mediaId, { value: held });
        return held;
      },
      (failure) => {
        if (entry?.value) this.entries.set(mediaId, { value: entry.value });
        else this.entries.delete(mediaId);
        throw failure;
      },
    );
    this.entries.set(mediaId, { value: entry?.value, pending });
    return pending;
  }
}

/** "340 KB", "2.4 MB" (1024-based, as the contract's MiB caps). */
export function formatBytes(n) {
  if (!Number.isFinite(n) || n < 0) return "";
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const shown = value >= 10 || Number.isInteger(value) ? Math.round(value) : value.toFixed(1);
  return `${shown} ${units[unit]}`;
}

export function isImage(attachment) {
  return IMAGE_TYPES.includes(attachment?.content_type);
}
