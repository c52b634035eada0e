// The compare view, the page's first: POST /v1/comparisons (one job, two models), then two
// columns side by side (by default a standard network | the robust default): the input, the
// explanations toward the chosen classes, the minimal attack's adversarial image and
// difference, Grad-CAM before and after, the size of every change in levels of 255, and
// each column's caption of what was measured.

import { cancelJob, followJob, submit } from "./api.js";
import { el, fill, fillModelSelect, num, percent, picture, prob, progressList, setupDrop,
         showError } from "./ui.js";

const VISIBILITY_WORDS = {
  invisible: "invisible (no value changes by more than 8 levels)",
  faint: "faint (some values change by more than 8 levels, RMS under 8)",
  visible: "visible (RMS 8 levels or more)",
};

/** A size in levels as people read it: one decimal under 10, whole levels from 10. */
const levels = (value) => (value < 10 ? value.toFixed(1) : value.toFixed(0));

/** "RMS 0.3 · largest 1.7 levels of 255 · invisible", with parts tests and styles find. */
function sizeLine(size, cls) {
  return el("p", { class: `size ${cls}`, dataset: { visibility: size.visibility } },
    "RMS ", el("span", { class: "size-rms", text: levels(size.rms_levels) }),
    " · largest ", el("span", { class: "size-max", text: levels(size.max_levels) }),
    " levels of 255 · ",
    el("span", { class: "size-word", title: VISIBILITY_WORDS[size.visibility], text: size.visibility }));
}

/** The model's architecture and measured figures, for a column's heading. */
function facts(model) {
  const m = model.metrics || {};
  const parts = [model.arch || "network"];
  if (m.accuracy !== null && m.accuracy !== undefined) parts.push(`accuracy ${percent(m.accuracy)}`);
  if (m.ara_attack !== null && m.ara_attack !== undefined) parts.push(`ARA (attack) ${num(m.ara_attack)}`);
  return parts.join(" · ");
}

/** How much a difference picture amplifies its change (it spreads ±largest over ±127.5). */
function amplified(size) {
  return size.max_levels > 0 ? `×${Math.max(1, Math.round(127.5 / size.max_levels))}` : "";
}

export function setupCompare() {
  const form = document.getElementById("compare-form");
  const selects = { a: document.getElementById("compare-model-a"), b: document.getElementById("compare-model-b") };
  const infos = { a: document.getElementById("compare-model-a-info"), b: document.getElementById("compare-model-b-info") };
  const classBox = document.getElementById("compare-classes");
  const errorBox = document.getElementById("compare-error");
  const progressBox = document.getElementById("compare-progress");
  const resultBox = document.getElementById("compare-result");
  const submitButton = document.getElementById("compare-submit");
  const cancelButton = document.getElementById("compare-cancel");
  const rho = document.getElementById("compare-rho");
  const steps = document.getElementById("compare-steps");
  const drop = setupDrop(form.querySelector("[data-drop]"));
  const chosen = { a: null, b: null };
  let current = null;

  function showClasses() {
    // Classes are sent by name: each model resolves them against its own list.
    const names = [...new Set([chosen.a, chosen.b].filter(Boolean).flatMap((m) => m.classes))];
    const ticked = new Set([...classBox.querySelectorAll("input:checked")].map((i) => i.value));
    classBox.replaceChildren(...names.map((name) => el("label", { class: "check" },
      el("input", { type: "checkbox", name: "class", value: name, checked: ticked.has(name) }), ` ${name}`)));
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "targets") classBox.hidden = event.target.value !== "chosen";
  });

  function readForm() {
    if (!chosen.a || !chosen.b) return { error: "No model is available yet." };
    const file = drop.file();
    if (!file) return { error: "Choose an image first (or drop one on the image box).", focus: drop.input };
    let targets = ["predicted", "second"];
    if (form.querySelector("input[name=targets]:checked").value === "chosen") {
      const names = [...classBox.querySelectorAll("input:checked")].map((i) => i.value);
      if (!names.length) return { error: "Choose at least one class to explain.", focus: classBox.querySelector("input") };
      targets = [JSON.stringify(names)];
    }
    for (const input of [rho, steps]) {
      if (!input.checkValidity() || input.value === "") {
        const label = form.querySelector(`label[for=${input.id}]`).textContent;
        return { error: `${label}: give a number from ${input.min} to ${input.max}.`, focus: input, open: true };
      }
    }
    return { file, targets };
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
    const state = { id: null, models: { a: chosen.a, b: chosen.b } };
    current = state;
    resultBox.hidden = true;
    resultBox.replaceChildren();
    const progress = progressList(progressBox, [{ key: "comparison", label: `${chosen.a.name} and ${chosen.b.name}` }]);
    submitButton.disabled = true;
    cancelButton.hidden = false;
    try {
      const accepted = await submit("/v1/comparisons", {
        model_a: chosen.a.name, model_b: chosen.b.name, targets: asked.targets,
        rho: rho.value, steps: steps.value,
      }, asked.file);
      state.id = accepted.id;
      resultBox.dataset.job = accepted.id;
      const view = await followJob(accepted.id, (v) => progress.update("comparison", v));
      if (current !== state) return;
      if (view.status === "finished") render(state, view);
      else {
        progress.fail("comparison", view.status);
        showError(errorBox, new Error(view.status === "canceled" ? "The comparison was canceled."
          : `The comparison failed: ${view.error || "no reason given"}`));
      }
    } catch (error) {
      if (current === state) {
        showError(errorBox, error);
        if (!state.id) progressBox.hidden = true;
      }
    } finally {
      if (current === state) {
        submitButton.disabled = false;
        cancelButton.hidden = true;
      }
    }
  }

  cancelButton.addEventListener("click", async () => {
    if (current && current.id) {
      try {
        await cancelJob(current.id);
      } catch (error) {
        showError(errorBox, error);
      }
    }
  });

  function column(state, view, c) {
    const r = view.result;
    const model = state.models[c.column];
    const file = (name) => `${view.id.slice(0, 8)}-${name}`;
    const pic = (name, title, caption) => picture(r.artifacts[name], `${title} (${c.model})`, file(name),
                                                  { caption });
    const a = c.attack;
    const heading = `${c.model}${model && model.aliases.length ? ` (${model.aliases.join(", ")})` : ""}`;
    const sizes = c.resized
      ? `${c.input_size.join("×")} pixels, resized from ${c.original_size.join("×")}`
      : `${c.input_size.join("×")} pixels`;
    const answer = a.success
      ? `${a.before.class} → ${a.after.class}`
      : `${a.before.class}: not flipped`;
    return el("section", { class: "side", dataset: { column: c.column, model: c.model },
                           "aria-labelledby": `compare-${c.column}-title` },
      el("header", { class: "side-head" },
        el("h3", { id: `compare-${c.column}-title` }, el("span", { class: "side-letter", text: c.column.toUpperCase() }), heading),
        el("p", { class: "help", text: model ? facts(model) : "" })),
      el("p", { class: "caption", text: c.caption }),
      el("div", { class: "side-input" },
        el("div", { class: "pics one" }, pic(c.input, "Input as the model saw it", "Input")),
        el("div", {},
          el("p", { class: "help", text: sizes }),
          el("ol", { class: "predictions" }, c.predictions.slice(0, 3).map((p) => el("li", {},
            el("span", { class: "pred-class", text: p.class }),
            el("span", { class: "bar", "aria-hidden": "true" }, el("span", { style: { width: `${(100 * p.probability).toFixed(1)}%` } })),
            el("span", { class: "pred-prob", text: percent(p.probability) })))))),
      el("div", { class: "side-explanations" },
        el("h4", { text: `Explanations, ρ = ${r.rho}` }),
        el("div", { class: "explanation-list" }, c.explanations.map((e) => el("div", {
          class: "explanation", dataset: { index: e.index, class: e.class } },
          el("p", { class: "explanation-head" }, el("strong", { text: `toward ${e.class}` }),
             ` p ${prob(e.probability_before)} → `, el("span", { class: "p-after", text: prob(e.probability_after) })),
          el("div", { class: "pics two" },
            pic(e.artifact, `Explanation toward ${e.class}`, "Explanation"),
            pic(e.difference, `Difference toward ${e.class}, amplified ${amplified(e.size)}`,
                `Difference ${amplified(e.size)}`)),
          sizeLine(e.size, "explanation-size"))))),
      el("div", { class: "side-attack" },
        el("h4", {}, "Minimal attack: ", el("span", { class: "attack-answer", text: answer })),
        el("div", { class: "pics four" },
          pic(a.adversarial, "Adversarial image", "Adversarial"),
          pic(a.difference, `Difference of the attack, amplified ${amplified(a.size)}`,
              `Difference ${amplified(a.size)}`),
          pic(a.gradcam_before, `Grad-CAM before, of ${a.before.class}`, "Grad-CAM before"),
          pic(a.gradcam_after, `Grad-CAM after, of ${a.after.class}`, "Grad-CAM after")),
        sizeLine(a.size, "attack-size"),
        el("p", { class: "help" }, "Grad-CAM similarity before/after ",
           el("span", { class: "similarity", text: num(a.gradcam_similarity, 2) }))),
      (c.warnings || []).length ? el("div", { class: "warnings" }, c.warnings.map((w) => el("p", { text: w }))) : el("div"));
  }

  function render(state, view) {
    fill(resultBox,
      el("h2", { id: "compare-result-title", text: "Side by side" }),
      el("p", { class: "help legend", text: "Explanation: the image changed toward the class by RMS ρ (the smallest visible change the network needs). Minimal attack: the smallest change found that flips the network's answer. Difference: that change per colour channel, amplified by the factor shown (grey: unchanged). Sizes: in levels of 255, RMS over the whole image and the largest single change; invisible: nothing over 8 levels; faint: RMS under 8; visible: RMS 8 or more. Select a picture to see it full size." }),
      el("div", { class: "versus" }, view.result.columns.map((c) => column(state, view, c))));
    resultBox.dataset.job = view.id;
    resultBox.hidden = false;
  }

  function chooser(key) {
    return (model) => {
      chosen[key] = model;
      showClasses();
    };
  }

  form.addEventListener("submit", run);

  return {
    async load() {
      try {
        await fillModelSelect(selects.a, infos.a, chooser("a"), { alias: "standard" });
        await fillModelSelect(selects.b, infos.b, chooser("b"), { alias: "default" });
        showError(errorBox, null);
      } catch (error) {
        showError(errorBox, error);
      }
    },
  };
}
