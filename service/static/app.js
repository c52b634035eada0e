// The page's entry point: views by URL hash (#/compare, the first; #/explain, #/attack,
// #/batch, #/jobs/ID, #/models, #/models/NAME) and the API key box. Everything it shows comes from the public /v1 API.

import { getKey, setKey } from "./api.js";
import { setupAttack } from "./attack.js";
import { setupCompare } from "./compare.js";
import { setupExplain } from "./explain.js";
import { setupJobs } from "./jobs.js";
import { showModels } from "./models.js";
import { models } from "./ui.js";

const VIEWS = ["compare", "explain", "attack", "models", "batch", "jobs"];
const compare = setupCompare();
const explain = setupExplain();
const attack = setupAttack();
const jobs = setupJobs();

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  let view = VIEWS.includes(parts[0]) ? parts[0] : "compare";
  if (view === "jobs" && !/^[0-9a-f]{32}$/.test(parts[1] || "")) view = "batch";
  const name = (view === "models" || view === "jobs") && parts[1] ? decodeURIComponent(parts[1]) : "";
  return { view, name };
}

function showView({ focus = true } = {}) {
  const { view, name } = route();
  for (const v of VIEWS) document.getElementById(`view-${v}`).hidden = v !== view;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${{ compare: "Compare", explain: "Explain", attack: "Attack", models: name ? `Model ${name}` : "Models",
                        batch: "Batch", jobs: `Job ${name.slice(0, 8)}` }[view]} · aex`;
  if (view === "models") showModels(name);
  if (view === "compare") compare.load();
  if (view === "explain") explain.load();
  if (view === "attack") attack.load();
  if (view === "batch") jobs.load();
  if (view === "jobs") jobs.show(name);
  // Move the focus to the new view's heading when the person navigated (not on first load).
  if (focus) document.getElementById(`${view}-title`).focus();
}

// API key box ------------------------------------------------------------------------------
const panel = document.getElementById("key-panel");
const keyInput = document.getElementById("api-key");
const keyState = document.getElementById("key-state");
const keyMessage = document.getElementById("key-message");

function showKeyState() {
  keyState.textContent = getKey() ? "set" : "none";
  keyInput.value = getKey();
}

window.addEventListener("aex:key-needed", (event) => {
  panel.open = true;
  keyMessage.textContent = event.detail && event.detail.status === 403
    ? "The key was not accepted: enter a valid one."
    : "This service needs an API key: enter it here.";
  keyMessage.dataset.tone = "warn";
  keyInput.focus();
});

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setKey(keyInput.value.trim());
  showKeyState();
  keyMessage.textContent = getKey() ? "Key saved for this tab." : "No key is sent now.";
  keyMessage.dataset.tone = "ok";
  models(true).catch(() => {});
  showView({ focus: false });
});

document.getElementById("key-forget").addEventListener("click", () => {
  setKey("");
  showKeyState();
  keyMessage.textContent = "Key forgotten.";
  keyMessage.dataset.tone = "ok";
});

showKeyState();
window.addEventListener("hashchange", () => showView());
showView({ focus: false });
