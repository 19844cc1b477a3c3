// A message's attachments: images as thumbnails (sized from width/height before they load,
// so nothing jumps) that open the full image in a lightbox, anything else as a file chip
// with its name, size and a download link. Names are text, never HTML.

import { h } from "../dom.js";
import { expiresAt, formatBytes, isImage } from "../media.js";
import { dialogOpened } from "../nav.js";

const THUMB_MAX_W = 280;
const THUMB_MAX_H = 280;

/** Width and height that fit in the box, keeping the aspect ratio (null when unknown). */
export function fitBox(width, height, maxW = THUMB_MAX_W, maxH = THUMB_MAX_H) {
  if (!(width > 0 && height > 0)) return null;
  const scale = Math.min(1, maxW / width, maxH / height);
  return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
}

/**
 * The attachments of a message, or null. `media` is the MediaCache (`get(id, fresh)`).
 */
export function attachmentsView(attachments, media) {
  if (!Array.isArray(attachments) || attachments.length === 0) return null;
  return h(
    "div",
    { class: "attachments" },
    attachments.map((a) => (isImage(a) ? thumbnail(a, media) : fileChip(a, media))),
  );
}

function label(attachment) {
  return attachment.name || (isImage(attachment) ? "Photo" : "File");
}

/**
 * Point `img` at the media's thumbnail (or full) URL: from the cache, and once more with a
 * fresh media object when it fails to load (its URL expired meanwhile).
 */
function loadImage(img, attachment, media, which, onFailed) {
  let refetched = false;
  const show = (fresh) =>
    media.get(attachment.media_id, fresh).then((object) => {
      const url =
        which === "thumbnail" && object.thumbnail && object.thumbnail_url
          ? object.thumbnail_url
          : object.url;
      if (!url) throw new Error("no url");
      img.src = url;
    });
  img.addEventListener("error", () => {
    if (refetched) {
      onFailed();
      return;
    }
    refetched = true;
    show(true).catch(onFailed);
  });
  show(false).catch(onFailed);
}

function thumbnail(attachment, media) {
  const name = label(attachment);
  const size = fitBox(attachment.width, attachment.height);
  const img = h("img", {
    class: "thumb",
    alt: name,
    decoding: "async",
    width: size?.[0],
    height: size?.[1],
  });
  const button = h(
    "button",
    {
      type: "button",
      class: "attachment-image",
      title: `Open ${name}`,
      dataset: { state: "loading", mediaId: attachment.media_id },
      onclick: () => openLightbox(attachment, media, button),
    },
    img,
  );
  if (!size) button.classList.add("unsized");
  img.addEventListener("load", () => (button.dataset.state = "loaded"));
  loadImage(img, attachment, media, "thumbnail", () => {
    button.dataset.state = "failed";
    button.disabled = true;
    button.append(h("span", { class: "attachment-failed" }, `${name}: image unavailable`));
  });
  return button;
}

function fileChip(attachment, media) {
  const name = label(attachment);
  const link = h(
    "a",
    { class: "file-download", download: name, rel: "noopener", "aria-label": `Download ${name}` },
    "Download",
  );
  let object = null;
  const refresh = (fresh) =>
    media.get(attachment.media_id, fresh).then((o) => {
      object = o;
      link.href = o.url;
      return o;
    });
  refresh(false).catch(() => link.replaceWith(h("span", { class: "muted" }, "unavailable")));
  link.addEventListener("click", (event) => {
    // The URL is valid for minutes: an old one is fetched again before following it.
    if (object && expiresAt(object) > Date.now() + 5000) return;
    event.preventDefault();
    refresh(true).then(() => link.click(), () => {});
  });
  return h(
    "div",
    { class: "file-chip", dataset: { mediaId: attachment.media_id } },
    h("span", { class: "file-icon", "aria-hidden": "true" }, "📄"),
    h(
      "span",
      { class: "file-text" },
      h("span", { class: "file-name" }, name),
      h("span", { class: "file-size" }, formatBytes(attachment.size)),
    ),
    link,
  );
}

/** The full image in a modal dialog: Escape, the close button or a click beside it close. */
export function openLightbox(attachment, media, opener) {
  const name = label(attachment);
  const titleId = `lightbox-title-${Math.random().toString(36).slice(2)}`;
  const size = fitBox(attachment.width, attachment.height, 4096, 4096);
  const img = h("img", {
    class: "lightbox-image",
    alt: name,
    width: size?.[0],
    height: size?.[1],
  });
  const status = h("p", { class: "lightbox-status", role: "status" }, "Loading…");
  const close = h(
    "button",
    { type: "button", class: "ghost lightbox-close", "aria-label": "Close" },
    "✕",
  );
  const dialog = h(
    "dialog",
    { class: "lightbox", "aria-labelledby": titleId, dataset: { state: "loading" } },
    h(
      "div",
      { class: "lightbox-head" },
      h("h2", { id: titleId, class: "lightbox-title" }, name),
      h("span", { class: "lightbox-size" }, formatBytes(attachment.size)),
      close,
    ),
    h("div", { class: "lightbox-body" }, img, status),
  );
  close.addEventListener("click", () => dialog.close());
  // A click on the backdrop (the dialog itself, outside its content) closes it too.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (opener?.isConnected) opener.focus();
  });
  img.addEventListener("load", () => {
    dialog.dataset.state = "loaded";
    status.textContent = "";
  });
  loadImage(img, attachment, media, "full", () => {
    dialog.dataset.state = "failed";
    status.textContent = "The image could not be loaded.";
  });
  document.body.append(dialog);
  dialog.showModal();
  dialogOpened(dialog); // the browser's Back closes it
  close.focus();
  return dialog;
}
