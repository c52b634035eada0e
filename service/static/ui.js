// Small DOM helpers shared by the views: elements, numbers, pictures, the drop zone,
// model pickers, error boxes and progress bars.

import { ApiError, listModels, pictureUrl } from "./api.js";

/** node.replaceChildren(...children) without the null/false/undefined ones. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** el("p", {class: "x", text: "hi"}, child, ...) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "style") Object.assign(node.style, value); // CSSOM: allowed by the CSP
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const prob = (p) => (p === null || p === undefined ? "—" : Number(p).toFixed(3));
export const percent = (p) => (p === null || p === undefined ? "—" : `${(100 * p).toFixed(1)} %`);
export const num = (x, digits = 4) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits));

export const METHOD_NAMES = {
  adversarial: "Adversarial explanation",
  saliency: "Saliency",
  integrated_gradients: "Integrated Gradients",
  smoothgrad: "SmoothGrad",
  gradcam: "Grad-CAM",
};

// Pictures ---------------------------------------------------------------------------------

/** A picture from the API: a button that opens it full size, and a download link.
 *  `caption` is the visible label (default: the title, which names it for screen readers). */
export function picture(path, title, filename, { alt = title, small = false, caption = title } = {}) {
  const img = el("img", { alt, class: "pic-img" });
  const open = el("button", { type: "button", class: "pic-open", "aria-label": `Open “${title}” full size`,
                              disabled: true }, img);
  const download = el("a", { class: "pic-download", download: filename, "aria-label": `Download “${title}”`,
                             "aria-disabled": "true" }, "Download");
  const figure = el("figure", { class: small ? "pic small" : "pic", dataset: { artifact: filename } },
                    open, el("figcaption", {}, el("span", { class: "pic-title", text: caption }), download));
  pictureUrl(path).then((url) => {
    img.src = url;
    download.href = url;
    download.removeAttribute("aria-disabled");
    open.disabled = false;
    open.addEventListener("click", () => openViewer(url, title, filename));
  }).catch((error) => {
    figure.classList.add("broken");
    open.replaceChildren(el("span", { class: "pic-missing", text: error instanceof ApiError ? error.message : "The picture could not be loaded." }));
  });
  return figure;
}

/** A placeholder in a picture's place: waiting for its job, or why it is missing. */
export function placeholder(title, text, state = "waiting") {
  return el("figure", { class: `pic placeholder ${state}` },
            el("div", { class: "pic-missing", text }),
            el("figcaption", {}, el("span", { class: "pic-title", text: title })));
}

function openViewer(url, title, filename) {
  const dialog = document.getElementById("viewer");
  document.getElementById("viewer-title").textContent = title;
  const img = document.getElementById("viewer-img");
  img.src = url;
  img.alt = title;
  const link = document.getElementById("viewer-download");
  link.href = url;
  link.download = filename;
  dialog.showModal();
}

// Errors and progress ----------------------------------------------------------------------

export function showError(box, error) {
  if (!error) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const text = error instanceof ApiError || error instanceof Error ? error.message : String(error);
  box.replaceChildren(el("p", { text }));
  if (error instanceof ApiError && error.needsKey) {
    box.append(el("p", {}, el("button", { type: "button", class: "secondary", text: "Enter an API key",
                                          onclick: () => window.dispatchEvent(new CustomEvent("aex:key-needed", { detail: error })) })));
  }
  box.hidden = false;
}

const STATE_WORDS = { queued: "waiting in the queue", started: "running", finished: "done",
                      failed: "failed", canceled: "canceled", submitting: "sending the image" };

/** One labelled progress bar per job; update(key, view) moves it. */
export function progressList(container, items) {
  const bars = new Map();
  const list = el("ul", { class: "progress-list" });
  for (const { key, label } of items) {
    const id = `progress-${container.id}-${key}`;
    const state = el("span", { class: "state", text: STATE_WORDS.submitting });
    const bar = el("progress", { id, max: 1, value: 0 });
    list.append(el("li", { dataset: { job: key } }, el("label", { for: id }, `${label}: `, state), bar));
    bars.set(key, { bar, state });
  }
  container.replaceChildren(list);
  container.hidden = false;
  return {
    update(key, view) {
      const item = bars.get(key);
      if (!item) return;
      item.bar.value = view.status === "finished" ? 1 : Number(view.progress || 0);
      let words = STATE_WORDS[view.status] || view.status;
      if (view.status === "queued" && view.position !== null && view.position !== undefined) {
        words += view.position === 0 ? " (next)" : ` (${view.position} ahead)`;
      }
      if (view.status === "started") words += ` ${Math.round(100 * item.bar.value)} %`;
      item.state.textContent = words;
      item.bar.closest("li").dataset.status = view.status;
    },
    fail(key, message) {
      const item = bars.get(key);
      if (!item) return;
      item.state.textContent = message;
      item.bar.closest("li").dataset.status = "failed";
    },
  };
}

// Drop zones -------------------------------------------------------------------------------

/** Make a [data-drop] block accept dropped files and preview the chosen image. */
export function setupDrop(block) {
  const input = block.querySelector("input[type=file]");
  const zone = block.querySelector(".drop-zone");
  const preview = block.querySelector(".drop-preview");
  const text = block.querySelector(".drop-text");
  const original = text.innerHTML;
  let previewUrl = null;

  function show() {
    const file = input.files && input.files[0];
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    if (!file) {
      preview.hidden = true;
      text.innerHTML = original;
      return;
    }
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    preview.alt = `The chosen image, ${file.name}`;
    preview.hidden = false;
    text.replaceChildren(el("strong", { text: file.name }), ` (${Math.max(1, Math.round(file.size / 1024))} kB). `,
                         el("span", { class: "linkish", text: "Choose another" }));
  }

  preview.addEventListener("error", () => { preview.hidden = true; }); // not a picture the browser reads
  input.addEventListener("change", show);
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      show();
    }
  });
  return { file: () => (input.files && input.files[0]) || null, input };
}

// Model pickers ----------------------------------------------------------------------------

let modelsPromise = null;

/** The model list, fetched once (again after a failure, or when `fresh`). */
export function models(fresh = false) {
  if (fresh || !modelsPromise) {
    modelsPromise = listModels();
    modelsPromise.catch(() => { modelsPromise = null; });
  }
  return modelsPromise;
}

export function modelFacts(model) {
  const m = model.metrics || {};
  const known = (value, format) => (value === null || value === undefined ? "not measured" : format(value));
  const facts = [
    `${model.classes.length} classes`,
    `accuracy ${known(m.accuracy, percent)}`,
    `ARA (attack) ${known(m.ara_attack, num)}`,
    `ARA (BTR) ${known(m.ara_btr, num)}`,
  ];
  return facts.join(" · ");
}

/** Fill a model <select> and its info box; onChange(model) whenever the choice changes.
 *  The choice made before stays; else the model called `alias` is chosen, else the first. */
export async function fillModelSelect(select, info, onChange, { alias = "default" } = {}) {
  const list = await models();
  const previous = select.value;
  select.replaceChildren(...list.map((model) => el("option", { value: model.name },
    model.aliases.length ? `${model.name} (${model.aliases.join(", ")})` : model.name)));
  const preferred = list.find((m) => m.name === previous)
    || list.find((m) => m.aliases.includes(alias)) || list[0];
  if (preferred) select.value = preferred.name;
  const changed = () => {
    const model = list.find((m) => m.name === select.value);
    if (!model) {
      info.replaceChildren(el("p", { text: "No model is registered on this service." }));
      return;
    }
    info.replaceChildren(
      el("p", { class: "facts", text: modelFacts(model) }),
      el("p", { class: "classes" }, "Classes: ", model.classes.join(", ")),
      el("p", {}, el("a", { href: `#/models/${encodeURIComponent(model.name)}`, text: `About ${model.name}` })),
    );
    onChange(model);
  };
  if (!select.dataset.bound) {
    select.addEventListener("change", () => select.aexChanged && select.aexChanged());
    select.dataset.bound = "1";
  }
  select.aexChanged = changed;
  changed();
  return list;
}
