// The attack view: POST /v1/attacks, follow the job, then show the adversarial image, the class
// before and after, the size of the change and Grad-CAM before and after.

import { cancelJob, followJob, submit } from "./api.js";
import { el, fill, fillModelSelect, num, percent, picture, progressList, setupDrop, showError } from "./ui.js";

const MODE_WORDS = {
  l2min: "minimal attack (smallest change of the prediction)",
  btr: "below-chance attack (smallest push of the class under chance)",
  l2: "bounded attack",
};

export function setupAttack() {
  const form = document.getElementById("attack-form");
  const select = document.getElementById("attack-model");
  const info = document.getElementById("attack-model-info");
  const target = document.getElementById("attack-target");
  const eps = document.getElementById("attack-eps");
  const steps = document.getElementById("attack-steps");
  const errorBox = document.getElementById("attack-error");
  const progressBox = document.getElementById("attack-progress");
  const resultBox = document.getElementById("attack-result");
  const submitButton = document.getElementById("attack-submit");
  const cancelButton = document.getElementById("attack-cancel");
  const drop = setupDrop(form.querySelector("[data-drop]"));
  let model = null;
  let current = null;

  function chooseModel(chosen) {
    model = chosen;
    target.replaceChildren(el("option", { value: "", text: "none" }),
      ...chosen.classes.map((name, index) => el("option", { value: String(index), text: name })));
  }

  const mode = () => form.querySelector("input[name=mode]:checked").value;
  form.addEventListener("change", (event) => {
    if (event.target.name === "mode") {
      target.disabled = mode() !== "l2";
      if (target.disabled) target.value = "";
    }
  });

  function readForm() {
    if (!model) return { error: "No model is available yet." };
    const file = drop.file();
    if (!file) return { error: "Choose an image first (or drop one on the image box).", focus: drop.input };
    for (const input of [eps, steps]) {
      if (!input.checkValidity()) {
        return { error: `${form.querySelector(`label[for=${input.id}]`).textContent}: give a number from ${input.min} to ${input.max}, or leave it empty.`, focus: input };
      }
    }
    return { file, fields: { model: model.name, mode: mode(), eps: eps.value, steps: steps.value,
                             target: mode() === "l2" ? target.value : "" } };
  }

  async function run(event) {
    event.preventDefault();
    showError(errorBox, null);
    const asked = readForm();
    if (asked.error) {
      showError(errorBox, new Error(asked.error));
      if (asked.focus) asked.focus.focus();
      return;
    }
    const state = { id: null };
    current = state;
    resultBox.hidden = true;
    resultBox.replaceChildren();
    const progress = progressList(progressBox, [{ key: "attack", label: "Attack" }]);
    submitButton.disabled = true;
    cancelButton.hidden = false;
    try {
      const accepted = await submit("/v1/attacks", asked.fields, asked.file);
      state.id = accepted.id;
      resultBox.dataset.job = accepted.id;
      const view = await followJob(accepted.id, (v) => progress.update("attack", v));
      if (current !== state) return;
      if (view.status === "finished") render(view);
      else {
        progress.fail("attack", view.status);
        showError(errorBox, new Error(view.status === "canceled" ? "The attack was canceled."
          : `The attack failed: ${view.error || "no reason given"}`));
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

  function predictionList(items) {
    return el("ol", { class: "predictions" }, items.slice(0, 5).map((p) => el("li", {},
      el("span", { class: "pred-class", text: p.class }),
      el("span", { class: "bar", "aria-hidden": "true" }, el("span", { style: { width: `${(100 * p.probability).toFixed(1)}%` } })),
      el("span", { class: "pred-prob", text: percent(p.probability) }))));
  }

  function render(view) {
    const r = view.result;
    const file = (name) => `${r.model}-${view.id.slice(0, 8)}-${name}`;
    const pic = (name, title) => picture(r.artifacts[name], title, file(name));
    const changed = r.before.index !== r.after.index;
    const verdict = r.success
      ? (changed ? `The network now answers “${r.after.class}” instead of “${r.before.class}”.`
                 : `The attack reached its goal; the answer stays “${r.after.class}”.`)
      : `The attack did not reach its goal within its budget; the answer is “${r.after.class}”.`;
    fill(resultBox,
      el("h2", { id: "attack-result-title", text: "Result" }),
      el("p", { class: "verdict", text: verdict }),
      el("dl", { class: "facts-list" },
        el("dt", { text: "Attack" }), el("dd", { text: MODE_WORDS[r.mode] + (r.target ? ` toward ${r.target.class}` : "") }),
        el("dt", { text: "Class before" }), el("dd", { class: "class-before" }, `${r.before.class} (${percent(r.before.probability)})`),
        el("dt", { text: "Class after" }), el("dd", { class: "class-after" }, `${r.after.class} (${percent(r.after.probability)})`),
        el("dt", { text: "Size of the change (RMS)" }), el("dd", { class: "perturbation", text: num(r.perturbation_rms) }),
        el("dt", { text: "Grad-CAM similarity before/after" }), el("dd", { class: "similarity", text: num(r.gradcam_similarity, 3) }),
        el("dt", { text: "Goal reached" }), el("dd", { text: r.success ? "yes" : "no" })),
      (r.warnings || []).length ? el("div", { class: "warnings" }, r.warnings.map((w) => el("p", { text: w }))) : null,
      el("div", { class: "compare" },
        el("section", { class: "compare-col", "aria-labelledby": "attack-before-title" },
          el("h3", { id: "attack-before-title", text: `Before: ${r.before.class}` }),
          el("div", { class: "pics" }, pic("input.png", "Input as the model saw it"),
             pic("gradcam_before.png", "Grad-CAM before")),
          predictionList(r.predictions_before)),
        el("section", { class: "compare-col", "aria-labelledby": "attack-after-title" },
          el("h3", { id: "attack-after-title", text: `After: ${r.after.class}` }),
          el("div", { class: "pics" }, pic("adversarial.png", "Adversarial image"),
             pic("gradcam_after.png", "Grad-CAM after")),
          predictionList(r.predictions_after)),
        el("section", { class: "compare-col", "aria-labelledby": "attack-diff-title" },
          el("h3", { id: "attack-diff-title", text: "The change" }),
          el("div", { class: "pics" }, pic("difference.png", "Difference (adversarial − input)")),
          el("p", { class: "help", text: "Grey: unchanged; brighter or darker: added or removed (per colour channel, scaled to the largest change). On a robust network the change is large enough to see." }))),
    );
    resultBox.dataset.job = view.id;
    resultBox.hidden = false;
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
