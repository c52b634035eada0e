// The model pages: the list (GET /v1/models) and one model (GET /v1/models/{name}) with its
// card (what it is, how it was trained, accuracy and ARA, limits, licence), its metadata, its
// ARA curves as a picture (GET /v1/models/{name}/ara.png, when one was drawn)
// and the checkpoint download (GET /v1/models/{name}/checkpoint).

import { ApiError, getKey, getModel, pictureUrl, request } from "./api.js";
import { el, fill, modelFacts, models, num, percent, picture, showError } from "./ui.js";

const body = () => document.getElementById("models-body");
const errorBox = () => document.getElementById("models-error");
const title = () => document.getElementById("models-title");

// metrics the card shows in words; any others are listed as they are
const CARD_METRICS = ["accuracy", "ara_attack", "ara_btr", "n_test", "ara_images", "ara_settings",
                      "explainers"];
const measured = (value, format) => (value === null || value === undefined ? "not measured" : format(value));
const show = (value) => {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
};

function table(rows, caption) {
  return el("table", { class: "kv" }, caption ? el("caption", { text: caption }) : null,
    el("tbody", {}, rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: k }),
                                             el("td", {}, v instanceof Node ? v : show(v))))));
}

async function renderList() {
  title().textContent = "Models";
  const list = await models(true);
  if (!list.length) {
    body().replaceChildren(el("p", { text: "No model is registered on this service." }));
    return;
  }
  body().replaceChildren(el("ul", { class: "model-cards" }, list.map((m) => el("li", { class: "model-card" },
    el("h2", {}, el("a", { href: `#/models/${encodeURIComponent(m.name)}`, text: m.name })),
    m.aliases.length ? el("p", { class: "help", text: `also called ${m.aliases.join(", ")}` }) : null,
    el("p", { text: `${m.arch || "unknown architecture"}${m.bundled ? " · bundled with the service" : ""}` }),
    el("p", { class: "facts", text: modelFacts(m) })))));
}

async function curveFigure(model) {
  const path = `/v1/models/${encodeURIComponent(model.name)}/ara.png`;
  try {
    await pictureUrl(path);
    return el("div", { class: "curve" }, picture(path, `ARA curves of ${model.name}`, `${model.name}-ara.png`,
      { alt: `Accuracy against perturbation size for ${model.name}, attack and BTR` }));
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
    const m = model.metrics || {};
    const known = ["ara_attack", "ara_btr"].filter((k) => m[k] !== undefined && m[k] !== null);
    return el("div", { class: "curve missing" },
      el("p", { text: known.length
        ? "No curve picture was drawn for this model: its metadata holds the ARA values (above), not the curve they integrate."
        : "This model's metadata holds no ARA data, so there is no curve to show." }),
      el("p", { class: "help" }, "Draw one with ",
        el("code", { text: `aex evaluate ${model.name} --data TEST_DIR --plot MODEL_DIR/${model.name}.ara.png` }),
        " (MODEL_DIR is the service's model registry folder)."));
  }
}

function checkpointLink(model) {
  const mb = (model.size_bytes / 1048576).toFixed(model.size_bytes < 1048576 ? 2 : 1);
  const link = el("a", { class: "button", href: model.checkpoint_url, download: `${model.name}.safetensors`,
                         id: "checkpoint-link" }, `Download the checkpoint (${mb} MB, safetensors)`);
  // With an API key the browser's own download would go without it: fetch, then save.
  link.addEventListener("click", async (event) => {
    if (!getKey()) return;
    event.preventDefault();
    try {
      const blob = await (await request(model.checkpoint_url, { accept: "application/octet-stream" })).blob();
      const url = URL.createObjectURL(blob);
      const temp = el("a", { href: url, download: `${model.name}.safetensors`, hidden: true });
      document.body.append(temp);
      temp.click();
      temp.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (error) {
      showError(errorBox(), error);
    }
  });
  return link;
}

/** Seconds as people say them: "45 s", "75 minutes", "3.2 hours". */
function duration(seconds) {
  if (seconds === null || seconds === undefined) return null;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 3 * 3600) return `${Math.round(seconds / 60)} minutes`;
  return `${(seconds / 3600).toFixed(1)} hours`;
}

const images = (n) => (n === null || n === undefined ? "" : ` on ${n.toLocaleString("en-US")} test images`);
const recorded = (value) => (value === null || value === undefined ? "not recorded" : value);

function settingsText(settings) {
  if (!settings) return "not recorded";
  const { eps, steps, momentum, overshoot, ...rest } = settings;
  const parts = [eps !== undefined ? `eps ${eps}` : null, steps !== undefined ? `${steps} steps` : null,
                 momentum !== undefined ? `momentum ${momentum}` : null,
                 overshoot !== undefined ? `overshoot ${overshoot}` : null,
                 ...Object.entries(rest).map(([k, v]) => `${k} ${show(v)}`)];
  return parts.filter(Boolean).join(", ");
}

// The figures of `aex benchmark-explainers --save-metrics` or an `explainers` evaluation.
function explainersSection(figures) {
  if (!figures || typeof figures.methods !== "object") return null;
  const rows = Object.entries(figures.methods).map(([method, m]) => {
    const flag = m.randomisation_flagged === null || m.randomisation_flagged === undefined ? "—"
      : `${show(m.randomisation_correlation)}${m.randomisation_flagged ? " (flagged: the map ignores the weights)" : ""}`;
    const valid = m.counterfactual_valid === null || m.counterfactual_valid === undefined ? ""
      : `; counterfactual valid ${Math.round(100 * m.counterfactual_valid)} %`;
    return [method, `deletion ${show(m.deletion_area)}, insertion ${show(m.insertion_area)}, `
                    + `infidelity ${show(m.infidelity)}, max-sensitivity ${show(m.max_sensitivity)}; `
                    + `rank correlation with all layers randomised ${flag}${valid}`];
  });
  return el("section", { class: "card-explainers", "aria-labelledby": "model-explainers" },
    el("h2", { id: "model-explainers", text: "Which explanation to trust" }),
    table(rows, `Measured on ${show(figures.n_images)} test images (lower deletion, higher insertion, `
                + "lower infidelity and max-sensitivity are better)"));
}

function cardSections(model) {
  const card = model.card;
  const t = card.training;
  const q = card.quality;
  return [
    el("section", { class: "card-about", "aria-labelledby": "model-about" },
      el("h2", { id: "model-about", text: "What it is" }),
      el("p", { class: "card-description", text: card.description }),
      table([["Licence of the weights", el("span", { class: "card-licence", text: card.licence })]])),
    el("div", { class: "model-grid" },
      el("section", { "aria-labelledby": "model-how" },
        el("h2", { id: "model-how", text: "How it was trained" }),
        table([["Command", t.command ? el("code", { class: "card-command", text: t.command }) : "not recorded"],
               ["Data", recorded(t.data)], ["Hardware", recorded(t.hardware)],
               ["Training time", recorded(duration(t.seconds))], ["Epochs", recorded(t.epochs)]])),
      el("section", { "aria-labelledby": "model-quality" },
        el("h2", { id: "model-quality", text: "Accuracy and robustness" }),
        table([["Accuracy", measured(q.accuracy, (v) => `${percent(v)}${images(q.accuracy_images)}`)],
               ["ARA, attack", measured(q.ara_attack, (v) => `${num(v)}${images(q.ara_images)}`)],
               ["ARA, better than random (BTR)", measured(q.ara_btr, (v) => `${num(v)}${images(q.ara_images)}`)],
               ["Settings of the ARA attacks", settingsText(q.ara_settings)],
               ...Object.entries(model.metrics || {}).filter(([k]) => !CARD_METRICS.includes(k))]))),
    explainersSection(q.explainers),
  ].filter(Boolean);
}

async function renderModel(name) {
  title().textContent = `Model ${name}`;
  const model = await getModel(name);
  title().textContent = `Model ${model.name}`;
  const training = Object.entries(model.training || {});
  // arch_kwargs repeats some facts shown on their own rows; list the others
  const kwargs = Object.entries(model.arch_kwargs || {})
    .filter(([k]) => !["input_size", "mean", "std"].includes(k));
  fill(body(),
    el("p", {}, el("a", { href: "#/models", text: "← All models" })),
    model.aliases.length ? el("p", { class: "help", text: `Also called ${model.aliases.join(", ")}.` }) : null,
    cardSections(model),
    el("section", { "aria-labelledby": "model-curves" },
      el("h2", { id: "model-curves", text: "ARA curves: accuracy against perturbation size" }),
      el("p", { class: "help", text: "The share of test images still classified right (attack) or still above chance (BTR) as the allowed change grows; the ARA is the area between the curve and chance." }),
      el("div", { id: "model-curve-slot" }, el("p", { class: "help", text: "Loading…" }))),
    el("section", { "aria-labelledby": "model-limits" },
      el("h2", { id: "model-limits", text: "Known limits" }),
      el("ul", { class: "card-limits" }, model.card.limits.map((limit) => el("li", { text: limit })))),
    el("section", { "aria-labelledby": "model-download" },
      el("h2", { id: "model-download", text: "Checkpoint" }),
      el("p", {}, checkpointLink(model)),
      table([["SHA-256", el("code", { class: "hash", text: model.sha256 })],
             ["Size", `${model.size_bytes} bytes`], ["Created", model.created]])),
    el("div", { class: "model-grid" },
      el("section", { "aria-labelledby": "model-arch" },
        el("h2", { id: "model-arch", text: "Architecture" }),
        table([["Architecture", model.arch], ["Input size", model.input_size ? model.input_size.join(" × ") : null],
               ["Mean", model.mean], ["Std", model.std], ...kwargs])),
      el("section", { "aria-labelledby": "model-training" },
        el("h2", { id: "model-training", text: "Training options (all)" }),
        training.length ? table(training) : el("p", { text: "The metadata records no training options." }))),
    el("section", { "aria-labelledby": "model-classes" },
      el("h2", { id: "model-classes", text: `Classes (${model.classes.length})` }),
      el("ol", { class: "class-list", start: 0 }, model.classes.map((c) => el("li", { text: c })))),
    el("details", { class: "raw" }, el("summary", { text: "Full metadata (JSON)" }),
      el("pre", { text: JSON.stringify(model.metadata, null, 2) })),
  );
  document.getElementById("model-curve-slot").replaceChildren(await curveFigure(model));
}

/** Show the list (name empty) or one model. */
export async function showModels(name) {
  showError(errorBox(), null);
  body().replaceChildren(el("p", { class: "help", text: "Loading…" }));
  try {
    if (name) await renderModel(name);
    else await renderList();
  } catch (error) {
    body().replaceChildren();
    showError(errorBox(), error);
  }
}
