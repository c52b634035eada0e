// The explain view: one job per chosen method (POST /v1/explanations with method=...), each
// followed by its own progress bar; the result grid has one row per target class, with the
// adversarial explanation, its difference map and the classic heat maps side by side.

import { cancelJob, followJob, submit, TERMINAL } from "./api.js";
import { el, fill, fillModelSelect, METHOD_NAMES, percent, picture, placeholder, prob, progressList,
         setupDrop, showError } from "./ui.js";

const METHOD_ORDER = ["adversarial", "saliency", "integrated_gradients", "smoothgrad", "gradcam"];

export function setupExplain() {
  const form = document.getElementById("explain-form");
  const select = document.getElementById("explain-model");
  const info = document.getElementById("explain-model-info");
  const classBox = document.getElementById("explain-classes");
  const errorBox = document.getElementById("explain-error");
  const progressBox = document.getElementById("explain-progress");
  const resultBox = document.getElementById("explain-result");
  const submitButton = document.getElementById("explain-submit");
  const cancelButton = document.getElementById("explain-cancel");
  const rho = document.getElementById("explain-rho");
  const steps = document.getElementById("explain-steps");
  const drop = setupDrop(form.querySelector("[data-drop]"));
  let model = null;
  let current = null; // the run on screen: { jobs: {method: id}, views: {method: view} }

  function chooseModel(chosen) {
    model = chosen;
    classBox.replaceChildren(...chosen.classes.map((name, index) => el("label", { class: "check" },
      el("input", { type: "checkbox", name: "class", value: index }), ` ${name}`)));
    // Every class of a model with many classes would be many jobs' worth of work.
    const all = form.querySelector("input[name=targets][value=all]");
    if (chosen.classes.length > 10 && all.checked) {
      form.querySelector("input[name=targets][value=predicted]").checked = true;
      classBox.hidden = true;
    }
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "targets") classBox.hidden = event.target.value !== "chosen";
  });

  function readForm() {
    if (!model) return { error: "No model is available yet." };
    const file = drop.file();
    if (!file) return { error: "Choose an image first (or drop one on the image box).", focus: drop.input };
    const methods = METHOD_ORDER.filter((m) => form.querySelector(`input[name=method][value=${m}]`).checked);
    if (!methods.length) return { error: "Choose at least one method.", focus: form.querySelector("input[name=method]") };
    let targets = form.querySelector("input[name=targets]:checked").value;
    if (targets === "chosen") {
      const chosen = [...classBox.querySelectorAll("input:checked")].map((i) => Number(i.value));
      if (!chosen.length) return { error: "Choose at least one class to explain.", focus: classBox.querySelector("input") };
      targets = JSON.stringify(chosen);
    }
    for (const input of [rho, steps]) {
      if (!input.checkValidity() || input.value === "") {
        const label = form.querySelector(`label[for=${input.id}]`).textContent;
        return { error: `${label}: give a number from ${input.min} to ${input.max}.`, focus: input, open: true };
      }
    }
    return { file, methods, targets };
  }

  async function run(event) {
    event.preventDefault();
    showError(errorBox, null);
    const asked = readForm();
    if (asked.error) {
      showError(errorBox, new Error(asked.error));
      if (asked.open) form.querySelector("details.advanced").open = true;
      if (asked.focus) asked.focus.focus();
      return;
    }
    const { file, methods, targets } = asked;
    const state = { jobs: {}, views: {}, methods, model: model.name, built: false, cells: new Map() };
    current = state;
    resultBox.hidden = true;
    resultBox.replaceChildren();
    const progress = progressList(progressBox, methods.map((m) => ({ key: m, label: METHOD_NAMES[m] })));
    submitButton.disabled = true;
    cancelButton.hidden = false;
    try {
      // Submit one after the other (a refused upload is refused for every method), then
      // follow all the jobs at once.
      for (const method of methods) {
        const fields = { model: model.name, method, targets };
        if (method === "adversarial") Object.assign(fields, { rho: rho.value, steps: steps.value });
        const accepted = await submit("/v1/explanations", fields, file);
        state.jobs[method] = accepted.id;
        progress.update(method, { status: "queued", progress: 0 });
        resultBox.dataset.jobs = JSON.stringify(state.jobs);
      }
    } catch (error) {
      showError(errorBox, error);
      await Promise.all(Object.values(state.jobs).map((id) => cancelJob(id).catch(() => {})));
      progressBox.hidden = true;
      submitButton.disabled = false;
      cancelButton.hidden = true;
      return;
    }
    const followed = methods.map((method) => followJob(state.jobs[method], (view) => {
      progress.update(method, view);
      if (TERMINAL.includes(view.status) && current === state) {
        state.views[method] = view;
        if (view.status !== "finished") progress.fail(method, view.status === "canceled" ? "canceled" : "failed");
        render(state, method);
      }
    }).catch((error) => {
      progress.fail(method, "lost");
      if (current === state) showError(errorBox, error);
    }));
    await Promise.all(followed);
    if (current === state) {
      submitButton.disabled = false;
      cancelButton.hidden = true;
      const failed = Object.entries(state.views).filter(([, v]) => v.status !== "finished");
      if (failed.length === methods.length && failed.length) {
        showError(errorBox, new Error(failed.map(([m, v]) => `${METHOD_NAMES[m]}: ${v.error || v.status}`).join(" ")));
      }
    }
  }

  cancelButton.addEventListener("click", async () => {
    if (!current) return;
    cancelButton.disabled = true;
    try {
      await Promise.all(Object.entries(current.jobs)
        .filter(([m]) => !current.views[m])
        .map(([, id]) => cancelJob(id)));
    } catch (error) {
      showError(errorBox, error);
    } finally {
      cancelButton.disabled = false;
    }
  });

  function build(state, base) {
    const jobs = state.jobs;
    const shortId = (jobs.adversarial || Object.values(jobs)[0]).slice(0, 8);
    const file = (name) => `${state.model}-${shortId}-${name}`;
    const input = picture(base.artifacts["input.png"], "Input as the model saw it", file("input.png"));
    const sizes = base.resized
      ? `${base.input_size.join("×")} pixels, resized from ${base.original_size.join("×")}`
      : `${base.input_size.join("×")} pixels`;
    const predictions = el("ol", { class: "predictions" }, base.predictions.map((p) => el("li", {
      dataset: { index: p.index, probability: p.probability } },
      el("span", { class: "pred-class", text: p.class }),
      el("span", { class: "bar", "aria-hidden": "true" }, el("span", { style: { width: `${(100 * p.probability).toFixed(1)}%` } })),
      el("span", { class: "pred-prob", text: percent(p.probability) }))));
    const rows = base.targets.map((t) => {
      const cells = el("div", { class: "cells" });
      for (const method of state.methods) {
        const cell = el("div", { class: `cell cell-${method}`, dataset: { method } });
        if (method === "adversarial") {
          cell.append(placeholder("Explanation", "waiting…"), placeholder("Difference", "waiting…"));
        } else {
          cell.append(placeholder(METHOD_NAMES[method], "waiting…"));
        }
        state.cells.set(`${t.index}:${method}`, cell);
        cells.append(cell);
      }
      const numbers = el("div", { class: "target-numbers" },
        el("p", {}, el("span", { class: "k", text: `p(${t.class})` }), " ",
          el("span", { class: "p-before", text: prob(t.probability_before) })));
      if (state.methods.includes("adversarial")) {
        numbers.firstChild.append(" → ", el("span", { class: "p-after", text: "…" }));
        numbers.append(el("p", {}, el("span", { class: "k", text: "change (RMS)" }), " ",
                          el("span", { class: "rms", text: "…" })));
      }
      return el("article", { class: "target", dataset: { index: t.index, class: t.class } },
        el("h4", { text: t.class }), numbers, cells);
    });
    const downloads = el("ul", { class: "downloads" });
    fill(resultBox,
      el("h2", { id: "explain-result-title", text: "Result" }),
      el("div", { class: "result-head" },
        el("div", { class: "input-col" }, input, el("p", { class: "help", text: sizes })),
        el("div", { class: "pred-col" }, el("h3", { text: "Predictions" }), predictions)),
      el("div", { class: "warnings", hidden: true }),
      el("h3", { text: "Explanations, one row per target class" }),
      el("p", { class: "help legend" },
        "Explanation: the image changed toward the class, as little as the network allows. ",
        "Difference: that change, per colour channel (grey: unchanged; brighter or darker: added or removed, scaled to the largest change). ",
        "Heat maps: the classic methods, for comparison. ",
        "p(class): the network's probability before → after the change. ",
        "Select a picture to see it full size."),
      el("div", { class: "targets", role: "list" }, rows.map((r) => { r.setAttribute("role", "listitem"); return r; })),
      el("h3", { text: "All targets in one picture" }), downloads,
    );
    resultBox.dataset.jobs = JSON.stringify(jobs);
    resultBox.hidden = false;
    state.built = true;
  }

  function render(state, method) {
    const view = state.views[method];
    const finished = Object.values(state.views).filter((v) => v.status === "finished");
    if (!state.built) {
      if (!finished.length) return;
      build(state, finished[0].result);
    }
    const shortId = state.jobs[method].slice(0, 8);
    const file = (name) => `${state.model}-${shortId}-${name}`;
    if (view.status === "finished") {
      const result = view.result;
      for (const t of result.targets) {
        const cell = state.cells.get(`${t.index}:${method}`);
        if (!cell) continue;
        if (method === "adversarial") {
          cell.replaceChildren(
            picture(result.artifacts[t.artifact], `Explanation toward ${t.class}`, file(t.artifact)),
            picture(result.artifacts[t.difference], `Difference toward ${t.class}`, file(t.difference)));
          const row = cell.closest(".target");
          row.querySelector(".p-after").textContent = prob(t.probability_after);
          row.querySelector(".rms").textContent = prob(t.perturbation_rms);
          row.dataset.probabilityBefore = t.probability_before;
          row.dataset.probabilityAfter = t.probability_after;
        } else {
          cell.replaceChildren(picture(result.artifacts[t.artifact], `${METHOD_NAMES[method]} for ${t.class}`, file(t.artifact)));
        }
      }
      if (result.artifacts["grid.png"]) {
        resultBox.querySelector(".downloads").append(el("li", {},
          picture(result.artifacts["grid.png"], `${METHOD_NAMES[method]}: every target`, file(`${result.method}-grid.png`), { small: true }),
          el("a", { class: "job-link", href: `#/jobs/${state.jobs[method]}`,
                    text: `Link to this ${METHOD_NAMES[method]} result` })));
      }
      const warnings = result.warnings || [];
      if (warnings.length) {
        const box = resultBox.querySelector(".warnings");
        box.append(...warnings.map((w) => el("p", { text: `${METHOD_NAMES[method]}: ${w}` })));
        box.hidden = false;
      }
    } else {
      const why = view.status === "canceled" ? "canceled" : `failed: ${view.error || "no reason given"}`;
      for (const [key, cell] of state.cells) {
        if (key.endsWith(`:${method}`)) cell.replaceChildren(placeholder(METHOD_NAMES[method], why, "failed"));
      }
      if (method === "adversarial") {
        for (const row of resultBox.querySelectorAll(".target")) {
          row.querySelector(".p-after").textContent = "—";
          row.querySelector(".rms").textContent = "—";
        }
      }
    }
  }

  form.addEventListener("submit", run);

  return {
    async load() {
      try {
        await fillModelSelect(select, info, chooseModel);
        showError(errorBox, null);
      } catch (error) {
        showError(errorBox, error);
      }
    },
  };
}
