/**
 * model-serving widget: a form for one model, built from its input schema, on any website.
 *
 * Embed it with one element and the script (an ES module, no dependencies, no build step):
 *
 *   <script type="module" src="https://api.example.com/static/widget.js"></script>
 *   <div data-model-widget data-endpoint="https://api.example.com" data-model="Iris"></div>
 *
 * Attributes of the element:
 *   data-model     the model's name (required), as in POST /v1/<name>
 *   data-endpoint  the server's base URL; default: the server this script came from
 *   data-timeout   seconds to wait for each request (default 30)
 *   data-theme     light (default), dark, or auto (follows the visitor's system setting)
 *
 * The widget reads GET /v1/models/<name>, renders a form from `input_schema`, POSTs the
 * form as JSON to /v1/<name> and shows the result. A 202 answer is a job: it polls the
 * job's URL (the Location header) until the job succeeded, failed or was canceled.
 * Elements added to the page later are mounted too; `mount(element)` does it by hand.
 *
 * Schema keywords the form understands (a handler declares them in INPUT_SCHEMA):
 *   type (string, number, integer, boolean, object, array), enum, const, default,
 *   title, description, examples (the root's fill the form; a property's are
 *   placeholders), required;
 *   numbers: minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf;
 *   strings: minLength, maxLength (over 120 gives a multi-line box), format (email, uri,
 *   date, time); an image upload for a string with contentMediaType image/... (with
 *   contentEncoding base64), or named "image": a chosen file is uploaded as a file in a
 *   multipart/form-data body when the property is binary (contentEncoding base64), else
 *   sent in the JSON body as plain base64, or as a data: URL when the field's pattern
 *   starts with ^data:;
 *   arrays: prefixItems, items, minItems, maxItems. Anything else gets a JSON text box.
 *
 * Everything is built with DOM methods and textContent (no innerHTML, no eval, no inline
 * style), so pages with a strict Content-Security-Policy can use it.
 */

const STYLESHEET_URL = new URL("./widget.css", import.meta.url).href;
const SCRIPT_ORIGIN = new URL(import.meta.url).origin;
const DEFAULT_TIMEOUT_S = 30;
const JOB_WAIT_LIMIT_S = 600;
const TEXTAREA_ABOVE_LENGTH = 120;
const MAX_FIXED_ITEMS = 12;
const MAX_BARS = 10;
const VECTOR_PREVIEW = 8;
const LABEL_KEYS = ["label", "class", "class_name", "prediction", "predicted_class", "category", "digit", "species"];
const PROBABILITY_KEYS = ["probabilities", "probability", "probas", "scores", "confidences"];
const LABEL_LIST_KEYS = ["labels", "classes", "class_names"];
const TERMINAL_JOB_STATES = new Set(["succeeded", "failed", "canceled", "cancelled"]);

const mounted = new WeakMap();
let nextId = 0;

// ---------------------------------------------------------------------------------------
// DOM helpers

/** An element with attributes (false/null/undefined skip one) and children (text or nodes). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function uid(prefix) {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** "sepal_length" -> "Sepal length", "petalWidth" -> "Petal width". */
export function humanize(name) {
  const words = String(name)
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/[_\-.]+/g, " ")
    .trim()
    .toLowerCase();
  return words ? words[0].toUpperCase() + words.slice(1) : String(name);
}

function primaryType(schema) {
  const type = schema && schema.type;
  if (Array.isArray(type)) return type.find((t) => t !== "null") || "null";
  if (type) return type;
  if (schema && schema.properties) return "object";
  if (schema && (schema.items || schema.prefixItems)) return "array";
  return undefined;
}

function formatNumber(value, digits = 4) {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(2);
  return String(Number(value.toFixed(digits)));
}

// ---------------------------------------------------------------------------------------
// Talking to the server

/** An error the widget shows as it is: its message is written for the visitor. */
export class WidgetError extends Error {
  constructor(message, { status = null, requestId = null, path = null } = {}) {
    super(message);
    this.name = "WidgetError";
    this.status = status;
    this.requestId = requestId;
    this.path = path;
  }
}

class Cancelled extends Error {}

function joinUrl(base, path) {
  return new URL(path.replace(/^\//, ""), base).href;
}

function seconds(ms) {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} second${s === 1 ? "" : "s"}`;
}

/**
 * Says why a fetch to `url` failed: the page's origin refused by CORS, mixed content, or
 * a server that cannot be reached. The browser hides the reason from scripts; a CORS-open
 * file on the same server (the widget's own script) tells a refusal from an outage.
 */
async function explainFetchFailure(endpoint, url) {
  const target = new URL(url);
  if (globalThis.location && location.protocol === "https:" && target.protocol === "http:") {
    return new WidgetError(
      `This page is served over HTTPS, so the browser blocks the model server's plain HTTP address ${target.origin}. Use its https:// address.`,
    );
  }
  let reachable = false;
  try {
    const probe = await fetch(joinUrl(endpoint, "static/widget.js"), {
      method: "HEAD",
      mode: "cors",
      credentials: "omit",
      cache: "no-store",
      signal: AbortSignal.timeout(5000),
    });
    reachable = probe.ok;
  } catch {
    reachable = false;
  }
  if (reachable) {
    const origin = globalThis.location ? location.origin : "this page";
    return new WidgetError(
      `The model server at ${target.origin} does not allow this website (${origin}) to use it. ` +
        "Its operator can allow the origin by adding it to CORS_ORIGINS.",
    );
  }
  return new WidgetError(
    `Could not reach the model server at ${target.origin}. Check your connection; the server may be down.`,
  );
}

/**
 * fetch() as JSON with a timeout: {status, ok, body, headers, requestId, url}.
 * Throws WidgetError (with a message for people) on a network failure or timeout, and
 * Cancelled when `signal` aborts.
 */
async function fetchJson(endpoint, url, { method = "GET", body, timeoutMs, signal, cache = "default" } = {}) {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  const onAbort = () => controller.abort();
  if (signal) {
    if (signal.aborted) controller.abort();
    signal.addEventListener("abort", onAbort, { once: true });
  }
  const headers = { Accept: "application/json" };
  // A FormData body is multipart/form-data; fetch() writes its Content-Type and boundary.
  const isForm = typeof FormData !== "undefined" && body instanceof FormData;
  if (body !== undefined && !isForm) headers["Content-Type"] = "application/json";
  let response;
  let text;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined || isForm ? body : JSON.stringify(body),
      mode: "cors",
      credentials: "omit",
      cache,
      signal: controller.signal,
    });
    text = await response.text();
  } catch (error) {
    if (timedOut) {
      throw new WidgetError(
        `The model server did not answer within ${seconds(timeoutMs)}. It may be busy; try again in a moment.`,
      );
    }
    if (signal && signal.aborted) throw new Cancelled();
    if (error instanceof TypeError) throw await explainFetchFailure(endpoint, url);
    throw new WidgetError(`The request failed: ${error.message}`);
  } finally {
    clearTimeout(timer);
    if (signal) signal.removeEventListener("abort", onAbort);
  }
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  return {
    status: response.status,
    ok: response.ok,
    body: parsed,
    headers: response.headers,
    requestId: response.headers.get("X-Request-Id") || (parsed && parsed.request_id) || null,
    url: response.url || url,
  };
}

/** The WidgetError for a non-2xx answer: the server's `message`, else a plain description. */
function errorFromResponse(response) {
  const body = response.body;
  let message;
  if (body && typeof body === "object" && typeof body.message === "string" && body.message) {
    message = body.message;
  } else if (response.status === 0) {
    message = "The model server gave no answer.";
  } else {
    message = `The model server answered with HTTP status ${response.status} and no explanation.`;
  }
  const retryAfter = response.headers && response.headers.get("Retry-After");
  if (retryAfter && /^\d+$/.test(retryAfter) && (response.status === 429 || response.status === 503)) {
    message += ` Try again in ${retryAfter} s.`;
  }
  return new WidgetError(message, {
    status: response.status,
    requestId: (body && body.request_id) || response.requestId,
    path: body && typeof body.path === "string" ? body.path : null,
  });
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(new Cancelled());
      },
      { once: true },
    );
  });
}

// ---------------------------------------------------------------------------------------
// Reading files

function readFileAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener("load", () => resolve(String(reader.result)));
    reader.addEventListener("error", () => reject(reader.error || new Error("could not read the file")));
    reader.readAsDataURL(file);
  });
}

function base64ToBlob(base64, type) {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return new Blob([bytes], { type });
}

function formatBytes(count) {
  if (count < 1024) return `${count} bytes`;
  if (count < 1024 * 1024) return `${(count / 1024).toFixed(1)} KB`;
  return `${(count / 1024 / 1024).toFixed(1)} MB`;
}

// ---------------------------------------------------------------------------------------
// The form: one field per property of the input schema

/** Whether a string property holds an image as base64 (see the keywords above). */
export function isImageField(name, schema) {
  if (!schema || primaryType(schema) !== "string" || schema.enum) return false;
  const media = typeof schema.contentMediaType === "string" ? schema.contentMediaType.toLowerCase() : "";
  if (media.startsWith("image/")) return true;
  return String(name).toLowerCase() === "image";
}

function constraintHint(schema, type) {
  const parts = [];
  if (type === "number" || type === "integer") {
    const low = schema.minimum ?? schema.exclusiveMinimum;
    const high = schema.maximum ?? schema.exclusiveMaximum;
    const lowWord = schema.exclusiveMinimum !== undefined && schema.minimum === undefined ? "over" : "at least";
    const highWord = schema.exclusiveMaximum !== undefined && schema.maximum === undefined ? "under" : "at most";
    if (low !== undefined && high !== undefined) parts.push(`${lowWord} ${low}, ${highWord} ${high}`);
    else if (low !== undefined) parts.push(`${lowWord} ${low}`);
    else if (high !== undefined) parts.push(`${highWord} ${high}`);
    if (type === "integer") parts.push("a whole number");
    if (schema.multipleOf !== undefined) parts.push(`in steps of ${schema.multipleOf}`);
  } else if (type === "string") {
    if (schema.maxLength !== undefined) parts.push(`up to ${schema.maxLength} characters`);
    if (schema.minLength !== undefined && schema.minLength > 1) parts.push(`at least ${schema.minLength} characters`);
  } else if (type === "array") {
    if (schema.minItems !== undefined && schema.minItems === schema.maxItems) parts.push(`${schema.minItems} items`);
    else {
      if (schema.minItems !== undefined) parts.push(`at least ${schema.minItems} items`);
      if (schema.maxItems !== undefined) parts.push(`at most ${schema.maxItems} items`);
    }
  }
  if (!parts.length) return "";
  const text = parts.join(", ");
  return text[0].toUpperCase() + text.slice(1) + ".";
}

/** The label, hint and wrapper shared by every field; `control` is what the label names. */
function fieldShell(ctx, { name, schema, required, control, type, extra = [] }) {
  const id = control.id || uid("f");
  control.id = id;
  const hintParts = [schema.description, constraintHint(schema, type)].filter(Boolean);
  const hintId = hintParts.length ? uid("h") : null;
  const errorId = uid("e");
  const describedBy = [hintId, errorId].filter(Boolean).join(" ");
  control.setAttribute("aria-describedby", describedBy);
  if (required) control.required = true;
  // The asterisk stays outside the label: the accessible name is the plain title, and
  // `required` is what assistive technology announces.
  const label = h(
    "div",
    { class: "msw-label-row" },
    h("label", { for: id, class: "msw-label" }, schema.title || humanize(name)),
    required ? requiredMark() : null,
  );
  const errorLine = h("p", { id: errorId, class: "msw-field-error", hidden: true });
  const wrapper = h(
    "div",
    { class: "msw-field", "data-field": name },
    label,
    control,
    ...extra,
    hintId ? h("p", { id: hintId, class: "msw-hint" }, hintParts.join(" ")) : null,
    errorLine,
  );
  ctx.errorSlots.set(name, { control, errorLine });
  return wrapper;
}

function requiredMark() {
  return h("span", { class: "msw-required", "aria-hidden": "true" }, "*");
}

function scalarControlValue(control, type) {
  if (control.value === "") return undefined;
  if (type === "number" || type === "integer") return Number(control.value);
  return control.value;
}

function enumField(ctx, name, schema, required) {
  const options = schema.enum;
  const select = h("select", { class: "msw-input", name });
  const hasDefault = schema.default !== undefined && options.some((v) => JSON.stringify(v) === JSON.stringify(schema.default));
  if (!hasDefault) select.append(h("option", { value: "" }, required ? "Choose…" : "(none)"));
  options.forEach((value, index) => {
    select.append(h("option", { value: String(index) }, value === null ? "null" : String(value)));
  });
  const write = (value) => {
    const index = options.findIndex((v) => JSON.stringify(v) === JSON.stringify(value));
    select.value = index >= 0 ? String(index) : "";
  };
  if (hasDefault) write(schema.default);
  return {
    element: fieldShell(ctx, { name, schema, required, control: select, type: "enum" }),
    read: () => (select.value === "" ? undefined : options[Number(select.value)]),
    write,
  };
}

function booleanField(ctx, name, schema) {
  const box = h("input", { type: "checkbox", class: "msw-check", name });
  box.checked = schema.default === true;
  const id = uid("f");
  box.id = id;
  const hintId = schema.description ? uid("h") : null;
  if (hintId) box.setAttribute("aria-describedby", hintId);
  const element = h(
    "div",
    { class: "msw-field msw-field-check", "data-field": name },
    h("div", { class: "msw-check-row" }, box, h("label", { for: id, class: "msw-label" }, schema.title || humanize(name))),
    hintId ? h("p", { id: hintId, class: "msw-hint" }, schema.description) : null,
  );
  ctx.errorSlots.set(name, { control: box, errorLine: null });
  return { element, read: () => box.checked, write: (value) => (box.checked = value === true) };
}

function numberField(ctx, name, schema, required, type) {
  const input = h("input", {
    type: "number",
    class: "msw-input",
    name,
    inputmode: type === "integer" ? "numeric" : "decimal",
    min: schema.minimum ?? schema.exclusiveMinimum,
    max: schema.maximum ?? schema.exclusiveMaximum,
    step: schema.multipleOf ?? (type === "integer" ? 1 : "any"),
    placeholder: schema.examples && schema.examples.length ? String(schema.examples[0]) : null,
  });
  if (typeof schema.default === "number") input.value = String(schema.default);
  return {
    element: fieldShell(ctx, { name, schema, required, control: input, type }),
    read: () => scalarControlValue(input, type),
    write: (value) => (input.value = typeof value === "number" ? String(value) : ""),
  };
}

const INPUT_TYPE_FOR_FORMAT = { email: "email", uri: "url", url: "url", date: "date", time: "time" };

function stringField(ctx, name, schema, required) {
  const long = typeof schema.maxLength === "number" && schema.maxLength > TEXTAREA_ABOVE_LENGTH;
  const attributes = {
    class: "msw-input",
    name,
    minlength: schema.minLength,
    maxlength: schema.maxLength,
    placeholder: schema.examples && schema.examples.length ? String(schema.examples[0]) : null,
    autocomplete: "off",
  };
  const control = long
    ? h("textarea", { ...attributes, rows: 4 })
    : h("input", { ...attributes, type: INPUT_TYPE_FOR_FORMAT[schema.format] || "text" });
  if (typeof schema.default === "string") control.value = schema.default;
  if (long) {
    // Enter writes a new line in a text box; Ctrl+Enter (Cmd+Enter) sends the form.
    control.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        control.form.requestSubmit();
      }
    });
  }
  return {
    element: fieldShell(ctx, { name, schema, required, control, type: "string" }),
    read: () => (control.value === "" && !required ? undefined : control.value),
    write: (value) => (control.value = typeof value === "string" ? value : ""),
  };
}

function imageField(ctx, name, schema, required) {
  const media = typeof schema.contentMediaType === "string" ? schema.contentMediaType.toLowerCase() : "image/*";
  const asDataUrl = typeof schema.pattern === "string" && schema.pattern.startsWith("^data:");
  const input = h("input", { type: "file", class: "msw-file", name, accept: media.startsWith("image/") ? media : "image/*" });
  const preview = h("img", { class: "msw-preview", alt: "", hidden: true });
  const emptyCaption = "…or drop an image here";
  const caption = h("p", { class: "msw-file-name" }, emptyCaption);
  const drop = h("div", { class: "msw-drop" }, preview, caption);
  let value;
  let chosen = null; // the File behind `value`, uploaded as a file when the property is binary
  const binary = typeof schema.contentEncoding === "string" && schema.contentEncoding.toLowerCase() === "base64";
  let objectUrl = null;

  const show = (blob, text) => {
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = blob ? URL.createObjectURL(blob) : null;
    preview.hidden = !blob;
    if (objectUrl) {
      preview.src = objectUrl;
      preview.alt = `Preview of ${text}`;
    } else {
      preview.removeAttribute("src");
    }
    caption.textContent = text;
  };

  const validate = () => {
    let problem = "";
    if (required && value === undefined) problem = "Choose an image file.";
    input.setCustomValidity(problem);
  };

  const useFile = async (file) => {
    if (!file) return;
    chosen = null;
    if (!file.type.startsWith("image/")) {
      value = undefined;
      show(null, `${file.name} is not an image`);
      input.setCustomValidity(`${file.name} is not an image: choose a PNG or JPEG file.`);
      input.reportValidity();
      return;
    }
    const dataUrl = await readFileAsDataUrl(file);
    const encoded = asDataUrl ? dataUrl : dataUrl.slice(dataUrl.indexOf(",") + 1);
    if (typeof schema.maxLength === "number" && encoded.length > schema.maxLength) {
      value = undefined;
      show(null, `${file.name} is too large (${formatBytes(file.size)})`);
      const limit = formatBytes(Math.floor((schema.maxLength * 3) / 4));
      input.setCustomValidity(`${file.name} is too large: this model takes images up to about ${limit}.`);
      input.reportValidity();
      return;
    }
    value = encoded;
    chosen = binary && !asDataUrl ? file : null;
    input.setCustomValidity("");
    show(file, `${file.name} (${formatBytes(file.size)})`);
  };

  input.addEventListener("change", () => useFile(input.files && input.files[0]));
  // Dropping a file on the preview area works like choosing it.
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("msw-drop-over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("msw-drop-over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("msw-drop-over");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) useFile(file);
  });

  const element = fieldShell(ctx, { name, schema, required: false, control: input, type: "image", extra: [drop] });
  if (required) {
    // Not `required` on the file input: an example image counts as chosen.
    element.querySelector(".msw-label-row").append(requiredMark());
    input.setAttribute("aria-required", "true");
  }
  return {
    element,
    validate,
    read: () => value,
    file: () => (value === undefined ? undefined : chosen || undefined),
    write: (example) => {
      chosen = null;
      if (typeof example !== "string" || !example) return;
      const match = /^data:([^;,]+)?(;base64)?,/.exec(example);
      const base64 = match ? example.slice(match[0].length) : example;
      value = asDataUrl || !match ? example : base64;
      input.value = "";
      input.setCustomValidity("");
      try {
        show(base64ToBlob(base64, (match && match[1]) || "image/png"), "Example image");
      } catch {
        show(null, "Example image");
      }
    },
  };
}

function parseJsonInput(control, required) {
  const text = control.value.trim();
  if (!text) {
    control.setCustomValidity(required ? "Enter a JSON value." : "");
    return undefined;
  }
  try {
    const value = JSON.parse(text);
    control.setCustomValidity("");
    return value;
  } catch (error) {
    control.setCustomValidity(`Not valid JSON: ${error.message}`);
    return undefined;
  }
}

function jsonField(ctx, name, schema, required, label) {
  const control = h("textarea", { class: "msw-input msw-code", name, rows: 4, spellcheck: "false", autocomplete: "off" });
  const sample = schema.default !== undefined ? schema.default : schema.examples && schema.examples[0];
  if (sample !== undefined) control.placeholder = JSON.stringify(sample);
  const shownSchema = { ...schema, title: label || schema.title, description: [schema.description, "Written as JSON."].filter(Boolean).join(" ") };
  control.addEventListener("input", () => parseJsonInput(control, required));
  return {
    element: fieldShell(ctx, { name, schema: shownSchema, required, control, type: "json" }),
    validate: () => parseJsonInput(control, required),
    read: () => parseJsonInput(control, required),
    write: (value) => (control.value = value === undefined ? "" : JSON.stringify(value, null, 2)),
  };
}

function listField(ctx, name, schema, required, itemType) {
  // Numbers (an embedding, a feature vector) are pasted separated by commas or spaces;
  // strings go one per line so that they may contain commas.
  const numeric = itemType === "number" || itemType === "integer";
  const control = numeric
    ? h("input", { type: "text", class: "msw-input msw-code", name, inputmode: "decimal", autocomplete: "off" })
    : h("textarea", { class: "msw-input", name, rows: 3, autocomplete: "off" });
  const parse = () => {
    const text = control.value.trim();
    control.setCustomValidity("");
    if (!text) return undefined;
    const parts = numeric ? text.replace(/^\[|\]$/g, "").split(/[\s,;]+/).filter(Boolean) : text.split("\n");
    if (!numeric) return parts;
    const values = parts.map(Number);
    const bad = parts.find((part, i) => !Number.isFinite(values[i]) || (itemType === "integer" && !Number.isInteger(values[i])));
    if (bad !== undefined) {
      control.setCustomValidity(`${bad} is not ${itemType === "integer" ? "a whole number" : "a number"}.`);
      return undefined;
    }
    return values;
  };
  const hint = numeric ? "Numbers separated by commas or spaces." : "One value per line.";
  const shownSchema = { ...schema, description: [schema.description, hint].filter(Boolean).join(" ") };
  control.addEventListener("input", parse);
  return {
    element: fieldShell(ctx, { name, schema: shownSchema, required, control, type: "array" }),
    validate: parse,
    read: parse,
    write: (value) => {
      control.value = Array.isArray(value) ? value.join(numeric ? ", " : "\n") : "";
    },
  };
}

function groupField(ctx, name, schema, required, children, combine) {
  const legend = h("legend", { class: "msw-label" }, schema.title || humanize(name));
  const hintText = [schema.description, constraintHint(schema, primaryType(schema))].filter(Boolean).join(" ");
  const fieldset = h(
    "fieldset",
    { class: "msw-group", "data-field": name },
    legend,
    hintText ? h("p", { class: "msw-hint" }, hintText) : null,
    children.map((child) => child.field.element),
  );
  ctx.errorSlots.set(name, { control: children[0] ? firstControl(children[0].field.element) : null, errorLine: null });
  return {
    element: fieldset,
    validate: () => children.forEach((child) => child.field.validate && child.field.validate()),
    read: () => combine(children.map((child) => [child.key, child.field.read()]), required),
    write: (value) => children.forEach((child) => child.field.write(value == null ? undefined : value[child.key])),
  };
}

function firstControl(element) {
  return element.querySelector("input, select, textarea");
}

function objectField(ctx, name, schema, required, path) {
  const requiredKeys = new Set(schema.required || []);
  // An optional object's required properties are required only once any of its
  // properties is filled in, which the browser's `required` cannot say: checked below.
  const children = Object.entries(schema.properties || {}).map(([key, sub]) => ({
    key,
    field: buildField(ctx, key, sub, required && requiredKeys.has(key), `${path}.${key}`),
  }));
  const group = groupField(ctx, name, schema, required, children, (entries, isRequired) => {
    const value = {};
    for (const [key, item] of entries) if (item !== undefined) value[key] = item;
    return Object.keys(value).length || isRequired ? value : undefined;
  });
  if (required) return group;
  const validateChildren = group.validate;
  group.validate = () => {
    validateChildren();
    const values = children.map((child) => [child, child.field.read()]);
    const anyFilled = values.some(([child, value]) => value !== undefined && value !== false && child.field.element.hidden !== true);
    for (const [child, value] of values) {
      const control = firstControl(child.field.element);
      if (!control || !requiredKeys.has(child.key)) continue;
      if (anyFilled && value === undefined) {
        control.setCustomValidity(`Fill this in too, or leave all of ${schema.title || humanize(name)} empty.`);
        control.dataset.mswGroupMissing = "1";
      } else if (control.dataset.mswGroupMissing) {
        control.setCustomValidity("");
        delete control.dataset.mswGroupMissing;
      }
    }
  };
  return group;
}

function tupleField(ctx, name, schema, required, itemSchemas, path) {
  const children = itemSchemas.map((sub, index) => ({
    key: index,
    field: buildField(ctx, `${name}[${index}]`, { title: `${humanize(name)} ${index + 1}`, ...sub }, required, `${path}[${index}]`),
  }));
  return groupField(ctx, name, schema, required, children, (entries) => {
    const values = entries.map(([, item]) => item);
    return values.every((item) => item === undefined) && !required ? undefined : values;
  });
}

/** One field for property `name` of type `schema`: {element, read(), write(v), validate?()}. */
function buildField(ctx, name, schema, required, path) {
  schema = schema && typeof schema === "object" ? schema : {};
  const type = primaryType(schema);
  if (schema.const !== undefined) {
    return { element: h("div", { hidden: true }), read: () => schema.const, write: () => {} };
  }
  if (Array.isArray(schema.enum) && schema.enum.length) return enumField(ctx, name, schema, required);
  if (isImageField(name, schema)) return imageField(ctx, name, schema, required);
  if (type === "boolean") return booleanField(ctx, name, schema);
  if (type === "number" || type === "integer") return numberField(ctx, name, schema, required, type);
  if (type === "string") return stringField(ctx, name, schema, required);
  if (type === "object" && schema.properties && Object.keys(schema.properties).length) {
    return objectField(ctx, name, schema, required, path);
  }
  if (type === "array") {
    if (Array.isArray(schema.prefixItems) && schema.prefixItems.length <= MAX_FIXED_ITEMS && !schema.items) {
      return tupleField(ctx, name, schema, required, schema.prefixItems, path);
    }
    const items = schema.items && typeof schema.items === "object" ? schema.items : {};
    const itemType = primaryType(items);
    const simple = ["number", "integer", "string"].includes(itemType) && !items.enum && !isImageField("", items);
    const fixed = schema.minItems !== undefined && schema.minItems === schema.maxItems && schema.minItems <= MAX_FIXED_ITEMS;
    if (simple && fixed && schema.minItems > 0 && itemType !== "string") {
      return tupleField(ctx, name, schema, required, Array.from({ length: schema.minItems }, () => items), path);
    }
    if (simple) return listField(ctx, name, schema, required, itemType);
  }
  return jsonField(ctx, name, schema, required);
}

/** The JSON types a schema allows by its `type` keyword (empty: it does not say). */
function schemaTypes(schema) {
  if (!schema || typeof schema !== "object") return [];
  if (typeof schema.type === "string") return [schema.type];
  return Array.isArray(schema.type) ? schema.type : [];
}

/**
 * A multipart/form-data body for `payload` with its chosen `files` uploaded as files
 * (a third smaller than base64 in JSON), or null to send JSON: with no file chosen, or
 * when a value would not read back the same from a text part. The server reads a text
 * part by its property's type: a number, boolean or null from its JSON spelling unless
 * the type allows strings too, an object or array from JSON text.
 */
function formBody(payload, files, properties) {
  if (!Object.keys(files).length || typeof FormData === "undefined") return null;
  const form = new FormData();
  for (const [key, value] of Object.entries(payload)) {
    if (files[key] !== undefined) {
      form.append(key, files[key], files[key].name || key);
      continue;
    }
    const types = schemaTypes(properties[key]);
    const textual = !types.length || types.includes("string");
    if (typeof value === "string") {
      if (!textual) return null;
      form.append(key, value);
    } else {
      if (textual) return null;
      form.append(key, JSON.stringify(value));
    }
  }
  return form;
}

/**
 * The form's fields for an input schema: {fields, read(), write(example), validate()}.
 * An object schema with properties gets one field per property; any other schema gets
 * one JSON box for the whole request body.
 */
export function buildFields(schema) {
  const ctx = { errorSlots: new Map() };
  const root = schema && typeof schema === "object" ? schema : {};
  if (primaryType(root) === "object" && root.properties && Object.keys(root.properties).length) {
    const requiredKeys = new Set(root.required || []);
    const fields = Object.entries(root.properties).map(([key, sub]) => ({
      key,
      field: buildField(ctx, key, sub, requiredKeys.has(key), `$.${key}`),
    }));
    return {
      elements: fields.map((f) => f.field.element),
      errorSlots: ctx.errorSlots,
      validate: () => fields.forEach((f) => f.field.validate && f.field.validate()),
      read: () => {
        const payload = {};
        for (const { key, field } of fields) {
          const value = field.read();
          if (value !== undefined) payload[key] = value;
        }
        return payload;
      },
      write: (example) => fields.forEach(({ key, field }) => field.write(example ? example[key] : undefined)),
      body: () => {
        const payload = {};
        const files = {};
        for (const { key, field } of fields) {
          const value = field.read();
          if (value !== undefined) payload[key] = value;
          const file = field.file ? field.file() : undefined;
          if (file !== undefined) files[key] = file;
        }
        return formBody(payload, files, root.properties) || payload;
      },
    };
  }
  const whole = jsonField(ctx, "body", root, true, "Request body");
  return {
    elements: [whole.element],
    errorSlots: ctx.errorSlots,
    validate: whole.validate,
    read: whole.read,
    write: whole.write,
  };
}

// ---------------------------------------------------------------------------------------
// Results

function isNumberArray(value) {
  return Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === "number");
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** [{label, value}] from the usual shapes of class scores, or null. */
function scoreList(scores, labels) {
  if (isPlainObject(scores)) {
    const entries = Object.entries(scores);
    if (entries.length && entries.every(([, v]) => typeof v === "number")) {
      return entries.map(([label, value]) => ({ label, value }));
    }
    return null;
  }
  if (isNumberArray(scores)) {
    const names = Array.isArray(labels) && labels.length === scores.length ? labels : null;
    return scores.map((value, i) => ({ label: names ? String(names[i]) : String(i), value }));
  }
  if (Array.isArray(scores) && scores.length && scores.every(isPlainObject)) {
    const items = scores.map((item) => ({
      label: item.label ?? item.class ?? item.name ?? item.category,
      value: item.probability ?? item.score ?? item.confidence ?? item.p,
    }));
    if (items.every((item) => item.label !== undefined && typeof item.value === "number")) {
      return items.map((item) => ({ label: String(item.label), value: item.value }));
    }
  }
  return null;
}

/** The parts of a result the widget shows specially; null when it is plain JSON to it. */
export function describeResult(value) {
  if (typeof value === "string") return { kind: "text", text: value };
  if (typeof value === "number" || typeof value === "boolean" || value === null) {
    return { kind: "scalar", text: typeof value === "number" ? formatNumber(value, 6) : String(value) };
  }
  if (isNumberArray(value)) return { kind: "vector", vector: value };
  if (isVectorList(value)) return { kind: "vectors", vectors: value };
  const asList = Array.isArray(value) ? scoreList(value) : null;
  if (asList) return { kind: "classes", label: null, scores: asList, rest: [] };
  if (isPlainObject(value)) {
    const scoreKey = PROBABILITY_KEYS.find((key) => key in value && scoreList(value[key]));
    const labelsKey = LABEL_LIST_KEYS.find((key) => Array.isArray(value[key]));
    const labelKey = LABEL_KEYS.find((key) => key in value && ["string", "number", "boolean"].includes(typeof value[key]));
    if (scoreKey || labelKey) {
      const scores = scoreKey ? scoreList(value[scoreKey], labelsKey ? value[labelsKey] : null) : null;
      const used = new Set([scoreKey, labelKey, scoreKey && labelsKey].filter(Boolean));
      const rest = Object.entries(value).filter(([key]) => !used.has(key));
      return { kind: "classes", labelKey, label: labelKey ? value[labelKey] : null, scores, rest };
    }
    const entries = Object.entries(value);
    const sum = entries.reduce((total, [, v]) => total + (typeof v === "number" ? v : NaN), 0);
    if (entries.length >= 2 && entries.every(([, v]) => typeof v === "number" && v >= 0 && v <= 1) && Math.abs(sum - 1) < 0.02) {
      return { kind: "classes", label: null, scores: scoreList(value), rest: [] };
    }
    if (entries.some(([, v]) => (isNumberArray(v) && v.length > VECTOR_PREVIEW) || isVectorList(v))) {
      return { kind: "fields", entries };
    }
  }
  return null;
}

function vectorSummary(vector) {
  const norm = Math.sqrt(vector.reduce((total, v) => total + v * v, 0));
  const shown = vector.slice(0, VECTOR_PREVIEW).map((v) => formatNumber(v));
  const more = vector.length > VECTOR_PREVIEW ? ", …" : "";
  return h(
    "div",
    { class: "msw-vector" },
    h(
      "dl",
      { class: "msw-facts" },
      h("div", {}, h("dt", {}, "Dimensions"), h("dd", {}, String(vector.length))),
      h("div", {}, h("dt", {}, "Norm"), h("dd", {}, formatNumber(norm))),
      h("div", {}, h("dt", {}, "Range"), h("dd", {}, `${formatNumber(Math.min(...vector))} to ${formatNumber(Math.max(...vector))}`)),
    ),
    h("p", { class: "msw-code msw-first-values" }, `[${shown.join(", ")}${more}]`),
  );
}

function barsFor(scores) {
  const probabilities = scores.every((s) => s.value >= 0 && s.value <= 1);
  const largest = Math.max(...scores.map((s) => Math.abs(s.value))) || 1;
  const sorted = [...scores].sort((a, b) => b.value - a.value);
  const shown = sorted.slice(0, MAX_BARS);
  const list = h("ol", { class: "msw-bars", "aria-label": probabilities ? "Probabilities" : "Scores" });
  shown.forEach((score, index) => {
    const share = probabilities ? score.value : Math.abs(score.value) / largest;
    let text;
    if (!probabilities) text = formatNumber(score.value);
    else if (score.value > 0 && score.value < 0.001) text = "<0.1%";
    else text = `${(score.value * 100).toFixed(1)}%`;
    const fill = h("span", { class: "msw-bar-fill" });
    // A custom property set through the CSSOM: allowed under a strict style-src.
    fill.style.setProperty("--msw-share", String(Math.max(0, Math.min(1, share))));
    list.append(
      h(
        "li",
        { class: index === 0 ? "msw-bar msw-bar-top" : "msw-bar" },
        h("span", { class: "msw-bar-label" }, score.label),
        // Read aloud (and copied) as "setosa: 97.9%"; the layout is the grid's.
        h("span", { class: "msw-visually-hidden" }, ": "),
        h("span", { class: "msw-bar-track", "aria-hidden": "true" }, fill),
        h("span", { class: "msw-bar-value" }, text),
      ),
    );
  });
  const nodes = [list];
  if (sorted.length > shown.length) nodes.push(h("p", { class: "msw-hint" }, `and ${sorted.length - shown.length} more`));
  return nodes;
}

function isVectorList(value) {
  return Array.isArray(value) && value.length > 0 && value.every(isNumberArray);
}

function compactValue(value) {
  if (typeof value === "string") return h("span", {}, value);
  if (typeof value === "number") return h("span", {}, formatNumber(value, 6));
  if (isNumberArray(value) && value.length > VECTOR_PREVIEW) return vectorSummary(value);
  if (isVectorList(value)) {
    return h("div", {}, h("p", { class: "msw-caption" }, `${value.length} vectors of ${value[0].length} numbers`), vectorSummary(value[0]));
  }
  return h("code", { class: "msw-code" }, JSON.stringify(value));
}

function factList(entries) {
  if (!entries.length) return null;
  return h(
    "dl",
    { class: "msw-facts msw-facts-rows" },
    entries.map(([key, value]) => h("div", {}, h("dt", {}, humanize(key)), h("dd", {}, compactValue(value)))),
  );
}

/** The DOM that shows a model's result: text, class bars, a vector summary, or JSON. */
export function renderResult(value) {
  const described = describeResult(value);
  const box = h("div", { class: "msw-result" });
  if (!described) {
    box.append(h("pre", { class: "msw-json" }, JSON.stringify(value, null, 2)));
    return box;
  }
  switch (described.kind) {
    case "text":
      box.append(h("p", { class: "msw-text" }, described.text));
      return box;
    case "scalar":
      box.append(h("p", { class: "msw-headline" }, described.text));
      break;
    case "vector":
      box.append(h("p", { class: "msw-caption" }, `A vector of ${value.length} numbers`), vectorSummary(value));
      break;
    case "vectors":
      box.append(
        h("p", { class: "msw-caption" }, `${value.length} vectors of ${value[0].length} numbers`),
        value.slice(0, 3).map(vectorSummary),
      );
      break;
    case "classes": {
      const top = described.label ?? (described.scores ? [...described.scores].sort((a, b) => b.value - a.value)[0].label : null);
      if (top !== null && top !== undefined) {
        box.append(
          h(
            "p",
            { class: "msw-headline" },
            h("span", { class: "msw-headline-key" }, humanize(described.labelKey || "label")),
            " ",
            h("strong", { class: "msw-headline-value" }, String(top)),
          ),
        );
      }
      if (described.scores) box.append(...barsFor(described.scores));
      const facts = factList(described.rest);
      if (facts) box.append(facts);
      break;
    }
    case "fields":
      box.append(factList(described.entries));
      break;
    default:
      break;
  }
  box.append(
    h("details", { class: "msw-raw" }, h("summary", {}, "JSON"), h("pre", { class: "msw-json" }, JSON.stringify(value, null, 2))),
  );
  return box;
}

// ---------------------------------------------------------------------------------------
// The widget

function attributeSeconds(element, name, fallback) {
  const raw = element.getAttribute(name);
  const value = raw === null ? NaN : Number(raw);
  return Number.isFinite(value) && value > 0 ? value : fallback;
}

class ModelWidget {
  constructor(host, options) {
    this.host = host;
    this.model = options.model ?? host.getAttribute("data-model") ?? "";
    const endpoint = options.endpoint ?? host.getAttribute("data-endpoint") ?? SCRIPT_ORIGIN;
    this.timeoutMs = 1000 * (options.timeout ?? attributeSeconds(host, "data-timeout", DEFAULT_TIMEOUT_S));
    this.run = null;
    this.exampleIndex = 0;
    try {
      const base = new URL(endpoint, document.baseURI);
      if (!base.pathname.endsWith("/")) base.pathname += "/";
      this.endpoint = base.href;
    } catch {
      this.endpoint = null;
    }
    this.root = host.shadowRoot || host.attachShadow({ mode: "open" });
    this.root.replaceChildren(
      h("link", { rel: "stylesheet", href: STYLESHEET_URL }),
      (this.frame = h("section", { class: "msw", part: "widget", "aria-label": this.model ? `Model ${this.model}` : "Model" })),
    );
    this.frame.append(h("p", { class: "msw-loading" }, `Loading ${this.model || "model"}…`));
  }

  async start(entry) {
    if (!this.model) return this.fail(new WidgetError("This widget has no data-model attribute naming the model to use."));
    if (!this.endpoint) return this.fail(new WidgetError("This widget's data-endpoint attribute is not a valid URL."));
    if (entry) return this.render(entry);
    try {
      const response = await fetchJson(this.endpoint, this.url(`v1/models/${encodeURIComponent(this.model)}`), {
        timeoutMs: this.timeoutMs,
      });
      if (!response.ok || !response.body || typeof response.body !== "object") throw errorFromResponse(response);
      this.render(response.body);
    } catch (error) {
      this.fail(error, true);
    }
  }

  url(path) {
    return joinUrl(this.endpoint, path);
  }

  /** Shows an error in place of the form, with a button to try loading again. */
  fail(error, retry = false) {
    const message = error instanceof WidgetError ? error.message : `The widget failed: ${error.message}`;
    const retryButton = retry ? h("button", { type: "button", class: "msw-button msw-secondary" }, "Try again") : null;
    if (retryButton) {
      retryButton.addEventListener("click", () => {
        this.frame.replaceChildren(h("p", { class: "msw-loading" }, `Loading ${this.model}…`));
        this.start();
      });
    }
    this.frame.replaceChildren(
      h("h3", { class: "msw-title" }, this.model || "Model"),
      h("div", { class: "msw-output", role: "alert" }, h("p", { class: "msw-error" }, message), retryButton),
    );
  }

  render(entry) {
    this.entry = entry;
    const schema = entry.input_schema || {};
    this.fields = buildFields(schema);
    const examples = Array.isArray(schema.examples) ? schema.examples : [];
    const status = entry.status || (entry.ready === false ? "pending" : "ready");
    const usable = !["failed", "unavailable"].includes(status);
    const titleId = uid("t");

    const header = h(
      "header",
      { class: "msw-header" },
      h(
        "div",
        { class: "msw-title-row" },
        h("h3", { class: "msw-title", id: titleId }, entry.name || this.model),
        entry.version && entry.version !== "0" ? h("span", { class: "msw-badge" }, `v${entry.version}`) : null,
        entry.async === "always" ? h("span", { class: "msw-badge msw-badge-job" }, "runs as a job") : null,
      ),
      entry.description ? h("p", { class: "msw-description" }, entry.description) : null,
      usable
        ? null
        : h(
            "p",
            { class: "msw-notice", role: "note" },
            `This model is ${status} on the server${entry.reason ? `: ${entry.reason}` : ""}.`,
          ),
    );

    this.submitButton = h("button", { type: "submit", class: "msw-button" }, "Predict");
    if (!usable) this.submitButton.disabled = true;
    const actions = h("div", { class: "msw-actions" }, this.submitButton);
    if (examples.length) {
      const exampleButton = h("button", { type: "button", class: "msw-button msw-secondary" }, "Fill example");
      exampleButton.addEventListener("click", () => {
        this.fields.write(examples[this.exampleIndex % examples.length]);
        this.exampleIndex += 1;
        this.clearFieldErrors();
      });
      actions.append(exampleButton);
    }

    this.form = h("form", { class: "msw-form", "aria-labelledby": titleId, novalidate: true }, this.fields.elements, actions);
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.form.addEventListener("input", (event) => this.clearFieldError(event.target));

    this.output = h("div", { class: "msw-output", "aria-live": "polite", "aria-atomic": "true" });
    this.frame.replaceChildren(header, this.form, this.output);
  }

  clearFieldError(control) {
    for (const { control: c, errorLine } of this.fields.errorSlots.values()) {
      if (c === control && errorLine) {
        errorLine.hidden = true;
        errorLine.textContent = "";
        c.removeAttribute("aria-invalid");
      }
    }
  }

  clearFieldErrors() {
    for (const { control } of this.fields.errorSlots.values()) this.clearFieldError(control);
  }

  /** Marks the field a server error's JSON path ($.name) points at, and focuses it. */
  markField(path, message) {
    const match = /^\$\.([A-Za-z_][\w-]*)|^\$\['([^']+)'\]/.exec(path || "");
    const slot = match && this.fields.errorSlots.get(match[1] || match[2]);
    if (!slot || !slot.control) return;
    slot.control.setAttribute("aria-invalid", "true");
    if (slot.errorLine) {
      slot.errorLine.textContent = message;
      slot.errorLine.hidden = false;
    }
  }

  showStatus(text, { busy = true, detail = null } = {}) {
    this.output.replaceChildren(
      h("div", { class: busy ? "msw-status msw-busy" : "msw-status" }, h("p", {}, text), detail ? h("p", { class: "msw-hint" }, detail) : null),
    );
  }

  showError(error) {
    const message = error instanceof WidgetError ? error.message : `Something went wrong in the widget: ${error.message}`;
    const meta = [];
    if (error.status) meta.push(`HTTP ${error.status}`);
    if (error.requestId) meta.push(`request id ${error.requestId}`);
    this.output.replaceChildren(
      h(
        "div",
        { class: "msw-error-box", role: "alert" },
        h("p", { class: "msw-error" }, message),
        meta.length ? h("p", { class: "msw-meta" }, meta.join(" · ")) : null,
      ),
    );
  }

  showResult(result, meta) {
    this.output.replaceChildren(h("h4", { class: "msw-output-title" }, "Result"), renderResult(result), meta ? h("p", { class: "msw-meta" }, meta) : null);
  }

  setBusy(busy) {
    this.form.setAttribute("aria-busy", busy ? "true" : "false");
    this.submitButton.classList.toggle("msw-working", busy);
    this.submitButton.textContent = busy ? "Predicting…" : "Predict";
  }

  async submit() {
    this.clearFieldErrors();
    this.fields.validate();
    if (!this.form.reportValidity()) return;
    const payload = this.fields.body ? this.fields.body() : this.fields.read();
    if (this.run) this.run.abort();
    const run = new AbortController();
    this.run = run;
    const started = performance.now();
    this.setBusy(true);
    this.showStatus("Predicting…");
    try {
      const response = await fetchJson(this.endpoint, this.url(`v1/${encodeURIComponent(this.model)}`), {
        method: "POST",
        body: payload,
        timeoutMs: this.timeoutMs,
        signal: run.signal,
      });
      if (response.status === 202) {
        await this.followJob(response, run.signal, started);
      } else if (response.ok && response.body && typeof response.body === "object" && "result" in response.body) {
        this.showResult(response.body.result, this.timing(started));
      } else if (response.ok) {
        throw new WidgetError("The model server's answer had no result in it.", { requestId: response.requestId });
      } else {
        const error = errorFromResponse(response);
        this.markField(error.path, error.message);
        throw error;
      }
    } catch (error) {
      if (error instanceof Cancelled) return;
      this.showError(error);
    } finally {
      if (this.run === run) {
        this.run = null;
        this.setBusy(false);
      }
    }
  }

  timing(started) {
    const ms = Math.round(performance.now() - started);
    return `Answered in ${ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`}`;
  }

  /** Polls a job (202 answer) until it reaches a final state, and shows the outcome. */
  async followJob(accepted, signal, started) {
    const body = accepted.body || {};
    const jobId = body.job_id;
    const location = accepted.headers.get("Location");
    if (!location && !jobId) throw new WidgetError("The model server scheduled a job but did not say where to find it.");
    const jobUrl = location ? new URL(location, accepted.url).href : this.url(`v1/jobs/${encodeURIComponent(jobId)}`);
    const scheduled = body.message || "Task Scheduled";
    const describe = (state) => `Job ${jobId || ""} is ${state}.`.replace("  ", " ");
    this.showStatus(scheduled, { detail: describe(body.status || "queued") });
    let delay = 500;
    let failures = 0;
    let lastState = body.status || "queued";
    while (!signal.aborted) {
      if (!this.host.isConnected) return;
      if (performance.now() - started > JOB_WAIT_LIMIT_S * 1000) {
        throw new WidgetError(
          `The job is still ${lastState} after ${JOB_WAIT_LIMIT_S / 60} minutes; the widget stopped waiting. Its result will be at ${jobUrl}.`,
        );
      }
      await sleep(delay, signal);
      let response;
      try {
        response = await fetchJson(this.endpoint, jobUrl, { timeoutMs: this.timeoutMs, signal, cache: "no-store" });
      } catch (error) {
        if (error instanceof Cancelled) throw error;
        failures += 1;
        if (failures >= 3) {
          throw new WidgetError(`${error.message} The job may still finish; its result will be at ${jobUrl}.`);
        }
        continue;
      }
      failures = 0;
      if (!response.ok || !response.body) throw errorFromResponse(response);
      const job = response.body;
      const state = String(job.status || "unknown");
      if (state === "succeeded") {
        this.showResult(job.result, this.timing(started));
        return;
      }
      if (state === "failed") {
        const error = job.error;
        const text = (error && typeof error === "object" ? error.message : error) || "The job failed without a reason.";
        throw new WidgetError(String(text), { requestId: response.requestId });
      }
      if (TERMINAL_JOB_STATES.has(state)) {
        const reason = job.error && typeof job.error === "object" ? job.error.message : job.error;
        throw new WidgetError(reason ? `The job was canceled before it finished: ${reason}` : "The job was canceled before it finished.");
      }
      if (state !== lastState) {
        this.showStatus(scheduled, { detail: describe(state) });
        lastState = state;
      }
      const retryAfter = Number(response.headers.get("Retry-After"));
      delay = Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter * 1000, 10000) : Math.min(delay * 1.5, 4000);
    }
  }
}

/**
 * Turns `element` into a widget (once; later calls return the same promise).
 * `options` may give model, endpoint, timeout (seconds) and entry (the model's
 * /v1/models entry, to skip fetching it); otherwise the data- attributes are read.
 */
export function mount(element, options = {}) {
  if (mounted.has(element)) return mounted.get(element);
  const widget = new ModelWidget(element, options);
  const ready = widget.start(options.entry).then(() => widget);
  mounted.set(element, ready);
  return ready;
}

/** Mounts every [data-model-widget] element under `root`. */
export function mountAll(root = document) {
  const found = root.querySelectorAll ? [...root.querySelectorAll("[data-model-widget]")] : [];
  if (root instanceof Element && root.matches("[data-model-widget]")) found.unshift(root);
  return Promise.all(found.map((element) => mount(element)));
}

function watch() {
  mountAll(document);
  // Pages that add widgets later (single-page apps) get them mounted as they appear.
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) if (node instanceof Element) mountAll(node);
    }
  }).observe(document.documentElement, { childList: true, subtree: true });
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", watch, { once: true });
  else watch();
}
