// skin-cnn local page: upload a photo, show the crop box, per-task predictions and Grad-CAM.
"use strict";

const TASK_LABELS = {
  psoriasis_vs_eczema: "Psoriasis vs eczema",
  acne_vs_rosacea: "Acne vs rosacea",
  ctcl_vs_eczema: "CTCL vs eczema",
};

const $ = (id) => document.getElementById(id);
let currentFile = null;
let photoUrl = null;
let maxBytes = 10e6;

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

function capitalise(word) {
  return word === "ctcl" ? "CTCL" : word.charAt(0).toUpperCase() + word.slice(1);
}

async function loadInfo() {
  try {
    const response = await fetch("/api/info");
    const info = await response.json();
    const select = $("task");
    for (const [task, classes] of Object.entries(info.tasks)) {
      const option = document.createElement("option");
      option.value = task;
      option.textContent = TASK_LABELS[task] || `${classes.positive} vs ${classes.negative}`;
      select.appendChild(option);
    }
    maxBytes = info.max_upload_bytes;
    $("max-size").textContent = `${(maxBytes / 1e6).toLocaleString()} MB`;
    $("model-name").textContent = `· model ${info.model}`;
    $("version").textContent = info.version;
  } catch (err) {
    setStatus("Cannot reach the skin-cnn server.", true);
  }
}

function drawCropBox(answer) {
  const box = answer.crop_box;
  const { width, height } = answer.image;
  const el = $("crop-box");
  el.style.left = `${(100 * box.left) / width}%`;
  el.style.top = `${(100 * box.top) / height}%`;
  el.style.width = `${(100 * (box.right - box.left)) / width}%`;
  el.style.height = `${(100 * (box.bottom - box.top)) / height}%`;
}

function taskCard(task, result) {
  const card = document.createElement("article");
  card.className = "task-result";
  card.dataset.task = task;

  const text = document.createElement("div");
  text.className = "task-text";
  card.appendChild(text);

  const title = document.createElement("h2");
  title.textContent = TASK_LABELS[task] || task;
  text.appendChild(title);

  const verdict = document.createElement("p");
  verdict.className = "verdict";
  const cls = document.createElement("span");
  cls.className = "predicted-class";
  cls.textContent = capitalise(result.predicted_class);
  const pct = document.createElement("span");
  pct.className = "probability";
  pct.textContent = `${(100 * result.probability).toFixed(1)}%`;
  verdict.append(cls, pct);
  text.appendChild(verdict);

  // One bar: the positive class's share from the left, the negative class's the rest.
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.setAttribute("role", "meter");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "1");
  bar.setAttribute("aria-valuenow", result.probability_positive.toFixed(3));
  bar.setAttribute("aria-label", `probability of ${result.positive}`);
  const fill = document.createElement("div");
  fill.className = "bar-fill";
  fill.style.width = `${100 * result.probability_positive}%`;
  const mark = document.createElement("div");
  mark.className = "bar-threshold";
  bar.append(fill, mark);
  text.appendChild(bar);

  const legend = document.createElement("p");
  legend.className = "bar-legend";
  const neg = document.createElement("span");
  neg.textContent = `${capitalise(result.negative)} ${(100 * (1 - result.probability_positive)).toFixed(0)}%`;
  const pos = document.createElement("span");
  pos.textContent = `${capitalise(result.positive)} ${(100 * result.probability_positive).toFixed(0)}%`;
  legend.append(pos, neg);
  text.appendChild(legend);

  if (result.gradcam_png) {
    const fig = document.createElement("figure");
    fig.className = "gradcam";
    const img = document.createElement("img");
    img.src = `data:image/png;base64,${result.gradcam_png}`;
    img.alt = `Grad-CAM heat map for ${TASK_LABELS[task] || task}`;
    const cap = document.createElement("figcaption");
    cap.textContent = `Grad-CAM: evidence for ${capitalise(result.predicted_class)} (red = most).`;
    fig.append(img, cap);
    card.appendChild(fig);
  }
  return card;
}

async function predict() {
  if (!currentFile) return;
  if (currentFile.size > maxBytes) {
    setStatus(`This file is ${(currentFile.size / 1e6).toFixed(1)} MB; the limit is ${(maxBytes / 1e6).toLocaleString()} MB.`, true);
    return;
  }
  const form = new FormData();
  form.append("file", currentFile);
  form.append("task", $("task").value);
  form.append("gradcam", $("gradcam").checked ? "true" : "false");
  setStatus("Predicting…");
  const started = performance.now();
  document.body.classList.add("busy");
  try {
    const response = await fetch("/api/predict", { method: "POST", body: form });
    const answer = await response.json();
    if (!response.ok) {
      setStatus(`Not predicted: ${answer.detail || response.statusText}`, true);
      $("results").hidden = true;
      return;
    }
    $("photo").src = photoUrl;
    drawCropBox(answer);
    const list = $("task-results");
    list.replaceChildren(...Object.entries(answer.tasks).map(([t, r]) => taskCard(t, r)));
    $("results").hidden = false;
    setStatus(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
  } catch (err) {
    setStatus("The request failed: is the skin-cnn server still running?", true);
  } finally {
    document.body.classList.remove("busy");
  }
}

function useFile(file) {
  if (!file) return;
  currentFile = file;
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  predict();
}

function init() {
  $("photo").addEventListener("error", () => {
    if ($("photo").getAttribute("src")) setStatus("Predicted; this browser cannot display the photo's format, so only the results are shown.");
  });
  const zone = $("drop-zone");
  $("file-input").addEventListener("change", (e) => useFile(e.target.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.remove("dragging"); });
  }
  zone.addEventListener("drop", (e) => useFile(e.dataTransfer.files[0]));
  $("task").addEventListener("change", predict);
  $("gradcam").addEventListener("change", predict);
  loadInfo();
}

document.addEventListener("DOMContentLoaded", init);
