// skin-cnn local page: pick the question, upload a photo, see the crop box, the conditional
// answer at the model's threshold and the Grad-CAM heat map on the photo.
"use strict";

const ALL = "all";

const $ = (id) => document.getElementById(id);
let currentFile = null;
let photoUrl = null;
let maxBytes = 10e6;
let taskInfo = {};

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

function capitalise(word) {
  return word.toLowerCase() === "ctcl" ? "CTCL" : word.charAt(0).toUpperCase() + word.slice(1);
}

function percent(p, digits) {
  return `${(100 * p).toFixed(digits)}%`;
}

function chosenTask() {
  const checked = document.querySelector('input[name="task"]:checked');
  return checked ? checked.value : null;
}

function taskOption(value, text, detail) {
  const label = document.createElement("label");
  label.className = "task-option";
  const input = document.createElement("input");
  input.type = "radio";
  input.name = "task";
  input.value = value;
  input.addEventListener("change", predict);
  const title = document.createElement("span");
  title.className = "task-option-title";
  title.textContent = text;
  const small = document.createElement("span");
  small.className = "task-option-detail";
  small.textContent = detail;
  label.append(input, title, small);
  return label;
}

async function loadInfo() {
  try {
    const response = await fetch("/api/info");
    const info = await response.json();
    taskInfo = info.tasks;
    const options = $("task-options");
    for (const [task, d] of Object.entries(info.tasks)) {
      options.appendChild(taskOption(task, d.question, `threshold ${d.threshold_text}`));
    }
    options.appendChild(taskOption(ALL, "All three, to compare",
      "each still answers only its own question"));
    $("note").textContent = info.note;
    if (info.synthetic_model) {  // a model trained on the demo's drawn images
      const warning = document.createElement("strong");
      warning.id = "synthetic-warning";
      warning.textContent = ` ${info.synthetic_model}`;
      $("disclaimer").appendChild(warning);
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

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function taskCard(task, result) {
  const card = element("article", "task-result");
  card.dataset.task = task;
  const text = element("div", "task-text");
  card.appendChild(text);

  text.appendChild(element("h2", "", result.question));

  const verdict = element("p", "verdict");
  verdict.append(
    element("span", "verdict-if", "If it is one of these two:"),
    element("span", "predicted-class", capitalise(result.predicted_class)),
  );
  text.appendChild(verdict);
  text.appendChild(element("p", "probability",
    `P(${capitalise(result.positive)}) ${result.reading}`));

  // One bar: the positive class's share from the left; the mark is the threshold.
  const bar = element("div", "bar");
  bar.setAttribute("role", "meter");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "1");
  bar.setAttribute("aria-valuenow", result.probability_positive.toFixed(3));
  bar.setAttribute("aria-label", `probability of ${result.positive}`);
  const fill = element("div", "bar-fill");
  fill.style.width = `${100 * result.probability_positive}%`;
  const mark = element("div", "bar-threshold");
  mark.style.left = `${100 * result.threshold}%`;
  mark.title = `threshold ${result.threshold_text}`;
  bar.append(fill, mark);
  text.appendChild(bar);

  const legend = element("p", "bar-legend");
  legend.append(
    element("span", "", `${capitalise(result.positive)} ${percent(result.probability_positive, 0)}`),
    element("span", "", `${capitalise(result.negative)} ${percent(1 - result.probability_positive, 0)}`),
  );
  text.appendChild(legend);
  text.appendChild(element("p", "threshold",
    `Threshold ${result.threshold_text}: ${capitalise(result.positive)} when its probability is at least ${percent(result.threshold, 1)}.`));

  if (result.gradcam_png) {
    const fig = element("figure", "gradcam");
    const img = document.createElement("img");
    img.src = `data:image/png;base64,${result.gradcam_png}`;
    img.alt = `Grad-CAM heat map: ${result.question}`;
    img.addEventListener("click", () => card.classList.toggle("large"));
    fig.append(img, element("figcaption", "",
      `Grad-CAM: where the photo speaks for ${capitalise(result.predicted_class)} (red = most).`));
    card.appendChild(fig);
  }
  return card;
}

async function predict() {
  if (!currentFile) return;
  const task = chosenTask();
  if (!task) {
    setStatus("Choose the question you are asking above; the photo is then predicted.");
    return;
  }
  if (currentFile.size > maxBytes) {
    setStatus(`This file is ${(currentFile.size / 1e6).toFixed(1)} MB; the limit is ${(maxBytes / 1e6).toLocaleString()} MB.`, true);
    return;
  }
  const form = new FormData();
  form.append("file", currentFile);
  form.append("task", task);
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
    $("note").textContent = answer.note;
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
  $("gradcam").addEventListener("change", predict);
  loadInfo();
}

document.addEventListener("DOMContentLoaded", init);
