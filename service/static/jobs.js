// The batch view (#/batch: several images, from files or the bundled examples, explained by
// one or more methods in one job) and the job view (#/jobs/ID: any explanation or batch job,
// followed through its server-sent events; each image appears, with its pictures on one shared
// colour scale, as soon as it is done; the link shows the job again after a reload while it lives).

import { followEvents, submit } from "./api.js";
import { el, fill, fillModelSelect, METHOD_NAMES, percent, picture, showError } from "./ui.js";

const METHOD_ORDER = ["adversarial", "saliency", "integrated_gradients", "smoothgrad", "gradcam"];
export const EXAMPLES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                         "ship", "truck"].map((name) => ({ name, file: `${name}.jpg` }));

const artifactPath = (id, name) => `/v1/jobs/${encodeURIComponent(id)}/artifacts/${encodeURIComponent(name)}`;

/** One image of a job as the batch result's entry (a single explanation is made one). */
function entries(view) {
  const result = view.result;
  if (!result) return [];
  if (result.images) return result.images;
  return [{ index: 0, name: "the image", status: "finished", input: "input.png",
            predictions: result.predictions, explanations: [{ method: result.method, targets: result.targets }] }];
}

function imageCard(id, entry) {
  const card = el("article", { class: "batch-image", dataset: { index: entry.index, status: entry.status } },
                  el("h3", { text: `${entry.index + 1}. ${entry.name}` }));
  if (entry.status === "failed") {
    card.append(el("p", { class: "error-text", text: `This image failed: ${entry.error}` }));
    return card;
  }
  const prefix = entry.input.slice(0, -"input.png".length);
  const file = (name) => `${id.slice(0, 8)}-${name}`;
  const pic = (name, title, options) => picture(artifactPath(id, name), title, file(name), options);
  const top = entry.predictions[0];
  card.append(el("p", { class: "help", text: `Predicted ${top.class} (${percent(top.probability)}).` }));
  const grid = el("div", { class: "image-grid" }, pic(entry.input, "Input as the model saw it", { caption: "input" }));
  for (const method of entry.explanations) {
    for (const t of method.targets) {
      const label = `${METHOD_NAMES[method.method]} toward ${t.class}`;
      const after = t.probability_after === null ? "" : ` → ${percent(t.probability_after)}`;
      grid.append(pic(t.artifact, label, { caption: `${METHOD_NAMES[method.method]}: ${t.class} ${percent(t.probability_before)}${after}` }));
      if (t.difference) grid.append(pic(t.difference, `Difference toward ${t.class}`, { caption: `difference: ${t.class}` }));
    }
  }
  card.append(grid,
    el("div", { class: "scale-row" },
       pic(`${prefix}colorbar.png`, "Colour scale shared by this image's maps", { small: true, caption: "colour scale (shared by every map of this image)" })),
    el("details", {}, el("summary", { text: "Every method and target in one picture" }),
       pic(`${prefix}grid.png`, `${entry.name}: every method and target`, { small: true })));
  return card;
}

export function setupJobs() {
  const form = document.getElementById("batch-form");
  const select = document.getElementById("batch-model");
  const info = document.getElementById("batch-model-info");
  const filesInput = document.getElementById("batch-files");
  const chosenBox = document.getElementById("batch-chosen");
  const gallery = document.getElementById("batch-gallery");
  const errorBox = document.getElementById("batch-error");
  const view = document.getElementById("job-view");
  const title = document.getElementById("job-title");
  const link = document.getElementById("job-link");
  const statusText = document.getElementById("job-status");
  const bar = document.getElementById("job-bar");
  const imagesBox = document.getElementById("job-images");
  const jobError = document.getElementById("job-error");
  let model = null;
  let chosen = [];
  let following = null;

  function showChosen() {
    fill(chosenBox, chosen.length
      ? el("ul", {}, chosen.map((f) => el("li", { text: f.name })))
      : el("p", { class: "help", text: "No image chosen yet." }));
    chosenBox.dataset.count = chosen.length;
  }

  filesInput.addEventListener("change", () => {
    chosen = chosen.concat([...filesInput.files]);
    filesInput.value = "";
    showChosen();
  });
  document.getElementById("batch-clear").addEventListener("click", () => { chosen = []; showChosen(); });

  fill(gallery, EXAMPLES.map((example) => el("button", {
    type: "button", class: "example", dataset: { example: example.name },
    "aria-label": `Add the example ${example.name}`,
    onclick: async () => {
      const response = await fetch(`/static/examples/${example.file}`);
      chosen.push(new File([await response.blob()], example.file, { type: "image/jpeg" }));
      showChosen();
    },
  }, el("img", { src: `/static/examples/${example.file}`, alt: "" }), el("span", { text: example.name }))));
  document.getElementById("batch-all-examples").addEventListener("click", () => {
    for (const button of gallery.querySelectorAll("button.example")) button.click();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(errorBox, null);
    const methods = METHOD_ORDER.filter((m) => form.querySelector(`input[name=method][value=${m}]`).checked);
    if (!model) return showError(errorBox, new Error("No model is available yet."));
    if (!chosen.length) return showError(errorBox, new Error("Choose images first, or add examples from the gallery."));
    if (!methods.length) return showError(errorBox, new Error("Choose at least one method."));
    const steps = document.getElementById("batch-steps");
    if (!steps.checkValidity() || steps.value === "") {
      steps.focus();
      return showError(errorBox, new Error(`Steps: give a number from ${steps.min} to ${steps.max}.`));
    }
    const targets = form.querySelector("input[name=targets]:checked").value;
    const button = document.getElementById("batch-submit");
    button.disabled = true;
    try {
      const accepted = await submit("/v1/explanations",
        { model: model.name, method: methods.join(","), targets, steps: steps.value }, chosen);
      location.hash = `#/jobs/${accepted.id}`;
    } catch (error) {
      showError(errorBox, error);
    } finally {
      button.disabled = false;
    }
  });

  async function follow(id) {
    if (following) following.abort();
    const controller = new AbortController();
    following = controller;
    const shown = new Set();
    const url = `${location.origin}${location.pathname}#/jobs/${id}`;
    title.textContent = `Job ${id.slice(0, 8)}`;
    fill(link, "Link to this job (it shows the result again while the service keeps it): ",
         el("a", { href: `#/jobs/${id}`, text: url }));
    fill(imagesBox);
    showError(jobError, null);
    view.dataset.job = id;
    view.dataset.status = "queued";
    view.hidden = false;
    const add = (entry, scroll) => {
      if (shown.has(entry.index)) return;
      shown.add(entry.index);
      const card = imageCard(id, entry);
      const later = [...imagesBox.children].find((c) => Number(c.dataset.index) > entry.index);
      imagesBox.insertBefore(card, later || null);
      if (scroll) card.scrollIntoView({ block: "nearest", behavior: "smooth" });
    };
    try {
      await followEvents(id, (name, data) => {
        if (controller.signal.aborted) return;
        if (name === "queued") statusText.textContent = `Queued: ${data.position} job(s) before it.`;
        if (name === "progress") {
          statusText.textContent = `${data.status === "started" ? "Running" : data.status}: ${percent(data.progress)}`;
          bar.value = data.progress;
          view.dataset.status = data.status;
        }
        if (name === "partial") add(data, true);
        if (name === "end") {
          view.dataset.status = data.status;
          bar.value = data.status === "finished" ? 1 : bar.value;
          if (data.status === "finished") {
            for (const entry of entries(data)) add(entry, false);
            const failed = data.result.failed || 0;
            statusText.textContent = `Finished: ${shown.size} image(s)${failed ? `, ${failed} failed` : ""}.`;
          } else {
            statusText.textContent = `The job ${data.status}.`;
            showError(jobError, new Error(data.error || `The job ${data.status}.`));
          }
        }
      }, controller.signal);
    } catch (error) {
      if (error.name !== "AbortError") showError(jobError, error);
    }
  }

  showChosen();
  return {
    async load() {
      try {
        await fillModelSelect(select, info, (m) => { model = m; });
        showError(errorBox, null);
      } catch (error) {
        showError(errorBox, error);
      }
    },
    show(id) {
      if (view.dataset.job !== id || view.hidden) follow(id);
    },
  };
}
