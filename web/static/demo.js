/**
 * The demo page (GET /): one card per model from GET /v1/models, each with its widget
 * and the snippet that embeds the same widget on another website.
 */

import { mount } from "./widget.js";

const WIDGET_URL = new URL("./widget.js", import.meta.url).href;
// The API lives where this page does (the page may sit under a path prefix).
const ENDPOINT = new URL("./", document.baseURI).href.replace(/\/$/, "");

function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function escapeAttribute(text) {
  return String(text).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** The HTML a website pastes to show `model`'s widget. */
export function embedSnippet(model) {
  return [
    `<script type="module" src="${escapeAttribute(WIDGET_URL)}"></script>`,
    `<div data-model-widget`,
    `     data-endpoint="${escapeAttribute(ENDPOINT)}"`,
    `     data-model="${escapeAttribute(model)}"></div>`,
  ].join("\n");
}

async function copyText(text, code, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = "Copied to the clipboard.";
  } catch {
    // No clipboard access (an insecure origin, or permission refused): select the
    // snippet so that Ctrl+C copies it.
    const range = document.createRange();
    range.selectNodeContents(code);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    status.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
  setTimeout(() => (status.textContent = ""), 4000);
}

function modelCard(entry) {
  const snippet = embedSnippet(entry.name);
  const widget = h("div", { "data-model-widget": true, "data-endpoint": ENDPOINT, "data-model": entry.name });
  const code = h("code", {}, snippet);
  const status = h("span", { class: "copy-status", role: "status" });
  const copy = h("button", { type: "button", class: "copy-button" }, "Copy snippet");
  copy.addEventListener("click", () => copyText(snippet, code, status));
  const card = h(
    "article",
    { class: "model-card", id: `model-${entry.name}`, "aria-label": entry.name },
    widget,
    h(
      "details",
      { class: "embed" },
      h("summary", {}, "Embed on your website"),
      // Focusable, so that keyboard users can scroll a long line into view.
      h("pre", { class: "snippet", tabindex: "0", "aria-label": `Embed code for ${entry.name}` }, code),
      h("div", { class: "embed-actions" }, copy, status),
    ),
  );
  return { card, widget };
}

async function main() {
  const list = document.getElementById("models");
  const status = document.getElementById("models-status");
  let models;
  try {
    const response = await fetch(`${ENDPOINT}/v1/models`, { headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => null);
    if (!response.ok || !body || !Array.isArray(body.models)) {
      throw new Error((body && body.message) || `the server answered HTTP ${response.status}`);
    }
    models = body.models;
  } catch (error) {
    status.textContent = `Could not load the list of models: ${error.message}`;
    status.classList.add("error");
    return;
  }
  if (!models.length) {
    status.textContent = "This server serves no models yet: add a handler module to handlers/.";
    return;
  }
  const ready = models.filter((m) => m.status === "ready").length;
  status.textContent = `${models.length} model${models.length === 1 ? "" : "s"}, ${ready} ready.`;
  for (const entry of models) {
    const { card, widget } = modelCard(entry);
    list.append(card);
    // The list already holds each model's schema: no need for the widget to fetch it.
    mount(widget, { entry });
  }
}

main();
