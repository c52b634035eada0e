// The public /v1 API, as the page uses it: requests with the person's API key, errors in words,
// jobs followed to their end, pictures fetched as blob: URLs (an <img src> cannot send a key).

const KEY_STORAGE = "aex-api-key";
export const TERMINAL = ["finished", "failed", "canceled"];

export function getKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setKey(value) {
  try {
    if (value) sessionStorage.setItem(KEY_STORAGE, value);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled: requests go without a key
  }
}

/** An API answer that is not 2xx, with a sentence for people in `message`. */
export class ApiError extends Error {
  constructor(status, message, detail = "", retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }

  get needsKey() {
    return this.status === 401 || this.status === 403;
  }
}

function sentence(text) {
  const t = String(text || "").trim();
  if (!t) return "";
  const s = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(s) ? s : `${s}.`;
}

function bytesInWords(text) {
  // "the upload is larger than the limit of 10485760 bytes" -> "... of 10 MB"
  return text.replace(/(\d{6,}) bytes/g, (_, n) => `${(Number(n) / 1048576).toFixed(1).replace(/\.0$/, "")} MB`);
}

/** The sentence a person reads for an HTTP status and the API's `detail`. */
export function describe(status, detail = "", retryAfter = null) {
  const said = sentence(bytesInWords(detail));
  const wait = retryAfter ? `${retryAfter} seconds` : "a little while";
  switch (status) {
    case 0:
      return "The service could not be reached. Check the connection and try again.";
    case 401:
      return "This service needs an API key. Enter it in the “API key” box at the top of the page, then try again.";
    case 403:
      return "The API key was not accepted. Check it in the “API key” box at the top of the page, then try again.";
    case 404:
      return said || "Not found.";
    case 413:
      return `This image is too large for the service. ${said}`.trim();
    case 415:
      return "This file is not an image the service can read. Use a PNG, JPEG or WebP picture.";
    case 422:
      if (/image|upload|decod|pixels/i.test(detail)) {
        return `This file could not be read as an image. ${said}`.trim();
      }
      return `The service cannot use these settings. ${said}`.trim();
    case 429:
      return `The queue is full right now. Try again in ${wait}.`;
    case 503:
      return `The service is unavailable for the moment. Try again in ${wait}. ${said}`.trim();
    default:
      if (status >= 500) return `The service failed (HTTP ${status}). Try again later.`;
      return `The request was refused (HTTP ${status}). ${said}`.trim();
  }
}

async function toError(response) {
  let detail = "";
  try {
    const body = await response.json();
    if (typeof body.detail === "string") detail = body.detail;
  } catch {
    // not JSON: the status says enough
  }
  const retryAfter = response.headers.get("Retry-After");
  const error = new ApiError(response.status, describe(response.status, detail, retryAfter),
                             detail, retryAfter);
  if (error.needsKey) window.dispatchEvent(new CustomEvent("aex:key-needed", { detail: error }));
  return error;
}

/** fetch() with the API key; throws ApiError (with words) for anything but 2xx. */
export async function request(path, { method = "GET", body, signal, accept = "application/json" } = {}) {
  const headers = { Accept: accept };
  const key = getKey();
  if (key) headers["X-API-Key"] = key;
  let response;
  try {
    response = await fetch(path, { method, body, headers, signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, describe(0));
  }
  if (!response.ok) throw await toError(response);
  return response;
}

export async function getJson(path, options) {
  return (await request(path, options)).json();
}

export const listModels = () => getJson("/v1/models");
export const getModel = (name) => getJson(`/v1/models/${encodeURIComponent(name)}`);

/** POST a multipart form to /v1/explanations, /v1/attacks or /v1/comparisons; the 202 body.
 *  A field whose value is an array is sent once per item. */
export async function submit(path, fields, file) {
  const form = new FormData();
  for (const one of [file].flat()) form.append("image", one, one.name || "image");
  for (const [name, value] of Object.entries(fields)) {
    for (const item of [value].flat()) {
      if (item !== undefined && item !== null && item !== "") form.append(name, String(item));
    }
  }
  try {
    return await getJson(path, { method: "POST", body: form });
  } catch (error) {
    if (error instanceof ApiError && error.status === 0) {
      // A very large upload is refused by closing the connection before it is all sent.
      throw new ApiError(0, "The image did not get through: the service could not be reached, "
        + "or it refused the file while it was being sent (files over its size limit are refused this way).");
    }
    throw error;
  }
}

export async function cancelJob(id) {
  try {
    await request(`/v1/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409)) throw error; // 409: already over
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Follow a job's server-sent events (GET /v1/jobs/ID/events, read with fetch so that the
 *  API key goes with it): onEvent(name, data) for each; resolves with the last (`end`) data.
 *  Falls back to polling (followJob) when the stream breaks. */
export async function followEvents(id, onEvent, signal) {
  try {
    const response = await request(`/v1/jobs/${encodeURIComponent(id)}/events`,
                                   { signal, accept: "text/event-stream" });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trim());
        }
        if (!name) continue;
        const parsed = JSON.parse(data.join("\n"));
        onEvent(name, parsed);
        if (name === "end") return parsed;
      }
    }
  } catch (error) {
    if (error.name === "AbortError" || (error instanceof ApiError && error.status === 404)) throw error;
  }
  const view = await followJob(id, (v) => onEvent("progress", v), signal);
  onEvent("end", view);
  return view;
}

/** Poll a job (long poll, one second at a time) until it ends; onUpdate(view) on every answer. */
export async function followJob(id, onUpdate, signal) {
  let unavailable = 0;
  for (;;) {
    let view;
    try {
      view = await getJson(`/v1/jobs/${encodeURIComponent(id)}?wait=1`, { signal });
      unavailable = 0;
    } catch (error) {
      // Redis away for a moment: wait as told and keep following, a few times.
      if (error instanceof ApiError && error.status === 503 && unavailable < 5) {
        unavailable += 1;
        await sleep(1000 * Math.min(Number(error.retryAfter) || 2, 10));
        continue;
      }
      throw error;
    }
    onUpdate(view);
    if (TERMINAL.includes(view.status)) return view;
  }
}

// Pictures: fetched once with the key, shown and downloaded through blob: URLs.
const blobs = new Map();

export function pictureUrl(path) {
  if (!blobs.has(path)) {
    const promise = request(path, { accept: "image/png,*/*" })
      .then((response) => response.blob())
      .then((blob) => URL.createObjectURL(blob));
    promise.catch(() => blobs.delete(path));
    blobs.set(path, promise);
  }
  return blobs.get(path);
}
