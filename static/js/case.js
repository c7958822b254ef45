// Case page: uploads with per-file progress, live prediction statuses, heatmap toggle. No dependencies.
(function () {
  "use strict";
  const scans = document.getElementById("scans");
  if (!scans) return;
  const liveNote = document.getElementById("live-note");
  const POLL_MS = 2000;
  let timer = null;

  function csrfToken() {
    return document.querySelector("input[name=csrfmiddlewaretoken]").value;
  }

  function hasPending() {
    return Boolean(scans.querySelector('.prediction[data-status="queued"], .prediction[data-status="running"]'));
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(poll, POLL_MS);
  }

  function field(element, name) {
    return element.querySelector('[data-field="' + name + '"]');
  }

  function updatePrediction(element, p) {
    const changed = element.dataset.status !== p.status;
    element.dataset.status = p.status;
    const badge = field(element, "status");
    badge.textContent = p.status_display;
    badge.className = "badge status-" + p.status;
    field(element, "label").textContent = p.label_display;
    field(element, "model").textContent = p.model_version;
    if (p.probability !== null) {
      field(element, "probability-wrap").hidden = false;
      field(element, "bar").value = p.probability;
      field(element, "probability").textContent = "P(DDD) " + p.probability.toFixed(2);
    }
    const error = field(element, "error");
    error.textContent = p.error;
    error.hidden = !p.error;
    if (p.inference_ms !== null) {
      const timings = field(element, "timings");
      timings.textContent = "preprocessing " + Math.round(p.preprocess_ms) + " ms · inference " + Math.round(p.inference_ms) + " ms";
      timings.hidden = false;
    }
    const heatmap = field(element, "heatmap");
    if (p.heatmap_url) {
      heatmap.dataset.heatmapUrl = p.heatmap_url;
      heatmap.hidden = false;
    }
    const reviewForm = field(element, "review-form");
    if (reviewForm) reviewForm.hidden = !(p.status === "done" && !p.review);
    // A signed-off case has no review or re-run forms on its page.
    const rerunForm = field(element, "rerun-form");
    if (rerunForm) rerunForm.hidden = !(p.status === "done" || p.status === "failed");
    if (changed) liveNote.textContent = "Prediction " + p.id + ": " + p.status_display + (p.label_display ? ", " + p.label_display : "") + ".";
  }

  // What keeps the case from being signed off changes as predictions finish (absent once signed off).
  function showBlockers(blockers) {
    const box = document.getElementById("sign-off-blockers");
    if (!box) return;
    const list = box.querySelector("ul");
    list.replaceChildren(...blockers.map(function (text) {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
    box.hidden = blockers.length === 0;
    document.getElementById("sign-off-ready").hidden = blockers.length > 0;
  }

  async function insertMissing() {
    const response = await fetch(scans.dataset.partialUrl, { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const cards = Array.from(doc.querySelectorAll(".scan-card")).reverse();
    for (const card of cards) {
      const existing = scans.querySelector('.scan-card[data-scan-id="' + card.dataset.scanId + '"]');
      if (!existing) {
        const empty = document.getElementById("no-scans");
        if (empty) empty.remove();
        scans.prepend(document.importNode(card, true));
        continue;
      }
      const predictions = Array.from(card.querySelectorAll(".prediction")).reverse();
      for (const prediction of predictions) {
        if (existing.querySelector('[data-prediction-id="' + prediction.dataset.predictionId + '"]')) continue;
        const first = existing.querySelector(".prediction");
        const node = document.importNode(prediction, true);
        if (first) first.before(node);
        else existing.querySelector(".scan-body").append(node);
      }
    }
  }

  async function poll() {
    if (document.hidden) {
      schedule();
      return;
    }
    try {
      const response = await fetch(scans.dataset.statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
      let missing = false;
      for (const p of data.predictions) {
        const element = scans.querySelector('[data-prediction-id="' + p.id + '"]');
        if (element) updatePrediction(element, p);
        else missing = true;
      }
      const caseStatus = document.getElementById("case-status");
      caseStatus.textContent = data.case.status_display;
      caseStatus.className = "badge status-" + data.case.status;
      showBlockers(data.case.sign_off_blockers);
      if (missing) await insertMissing();
    } catch (error) {
      liveNote.textContent = "Live updates paused (" + error.message + "); retrying.";
      schedule();
      return;
    }
    if (hasPending()) schedule();
  }

  scans.addEventListener("click", function (event) {
    const button = event.target.closest(".heatmap-toggle");
    if (!button) return;
    const card = button.closest(".scan-card");
    const image = card.querySelector("img.thumb");
    const showing = button.getAttribute("aria-pressed") === "true";
    card.querySelectorAll(".heatmap-toggle").forEach(function (other) {
      other.setAttribute("aria-pressed", "false");
      other.textContent = "Show heatmap";
    });
    if (!image.dataset.scanAlt) image.dataset.scanAlt = image.alt;
    if (showing) {
      image.src = image.dataset.scanSrc;
      image.alt = image.dataset.scanAlt;
    } else {
      image.src = button.dataset.heatmapUrl;
      image.alt = "Heatmap overlay: " + image.dataset.scanAlt;
      button.setAttribute("aria-pressed", "true");
      button.textContent = "Hide heatmap";
    }
  });

  if (hasPending()) schedule();

  // Uploads: one request per file, one after another, each with its own progress bar and outcome.
  // A signed-off case has no upload form.
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = document.getElementById("upload-files");
  const dropzone = document.getElementById("dropzone");
  const results = document.getElementById("upload-results");

  function uploadOne(file) {
    const item = document.createElement("li");
    item.className = "upload-item";
    const name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    const progress = document.createElement("progress");
    progress.max = 100;
    progress.value = 0;
    progress.setAttribute("aria-label", "Upload of " + file.name);
    const outcome = document.createElement("span");
    outcome.className = "upload-outcome";
    outcome.textContent = "Waiting";
    item.append(name, progress, outcome);
    results.append(item);
    return function send() {
      return new Promise(function (resolve) {
        const request = new XMLHttpRequest();
        request.open("POST", form.action);
        request.setRequestHeader("X-CSRFToken", csrfToken());
        request.setRequestHeader("Accept", "application/json");
        request.upload.addEventListener("progress", function (event) {
          if (event.lengthComputable) progress.value = (event.loaded / event.total) * 100;
        });
        request.addEventListener("load", function () {
          let result = null;
          try {
            result = JSON.parse(request.responseText).results[0];
          } catch (error) {
            result = null;
          }
          if (result && result.ok) {
            progress.value = 100;
            item.classList.add("ok");
            outcome.textContent = result.created ? "Uploaded; prediction queued" : "Already uploaded; showing the existing scan";
          } else {
            item.classList.add("failed");
            outcome.className = "upload-outcome error";
            outcome.setAttribute("role", "alert");
            outcome.textContent = (result && result.error) || "Upload failed (HTTP " + request.status + ").";
          }
          resolve(Boolean(result && result.ok));
        });
        request.addEventListener("error", function () {
          item.classList.add("failed");
          outcome.className = "upload-outcome error";
          outcome.setAttribute("role", "alert");
          outcome.textContent = "Network error; the file was not uploaded.";
          resolve(false);
        });
        outcome.textContent = "Uploading";
        const body = new FormData();
        body.append("file", file);
        request.send(body);
      });
    };
  }

  async function uploadAll(files) {
    if (!files.length) {
      results.innerHTML = "";
      const item = document.createElement("li");
      item.className = "error";
      item.setAttribute("role", "alert");
      item.textContent = "Choose at least one file to upload.";
      results.append(item);
      return;
    }
    const senders = files.map(uploadOne);
    input.value = "";
    let any = false;
    for (const send of senders) {
      if (await send()) {
        any = true;
        await insertMissing();
      }
    }
    if (any) poll();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    uploadAll(Array.from(input.files));
  });
  ["dragenter", "dragover"].forEach(function (type) {
    dropzone.addEventListener(type, function (event) {
      event.preventDefault();
      dropzone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    dropzone.addEventListener(type, function () {
      dropzone.classList.remove("dragging");
    });
  });
  dropzone.addEventListener("drop", function (event) {
    event.preventDefault();
    uploadAll(Array.from(event.dataTransfer.files));
  });
})();
