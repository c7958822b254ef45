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
      const fill = field(element, "bar-fill");
      fill.setAttribute("width", Math.round(p.probability * 1000));
      fill.classList.toggle("above", p.threshold !== null && p.probability >= p.threshold);
      field(element, "probability").textContent = "P(DDD) " + p.probability.toFixed(2);
      if (p.threshold !== null) {
        const line = field(element, "bar-threshold");
        line.setAttribute("x1", Math.round(p.threshold * 1000));
        line.setAttribute("x2", Math.round(p.threshold * 1000));
        line.removeAttribute("visibility");
        const threshold = field(element, "threshold");
        threshold.textContent = "threshold " + p.threshold.toFixed(2);
        threshold.hidden = false;
      }
    }
    const reason = field(element, "reason");
    reason.textContent = p.reason ? "Not assessable: " + p.reason : "";
    reason.hidden = !p.reason;
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
    // The server renders these forms only for whoever may use them (the owner; a referred clinician gets
    // the opinion form alone); here they just appear once the prediction has finished.
    const reviewForm = field(element, "review-form");
    if (reviewForm) reviewForm.hidden = p.status !== "done";
    const rerunForm = field(element, "rerun-form");
    if (rerunForm) rerunForm.hidden = !(p.status === "done" || p.status === "failed");
    const sendForm = field(element, "send-form");
    if (sendForm) sendForm.hidden = p.status !== "done";
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

  // New scans and predictions are inserted; the cards of scans whose prediction just finished are replaced,
  // so that the levels table and the boxes drawn on the image appear.
  async function insertMissing(finishedScans = new Set()) {
    const response = await fetch(scans.dataset.partialUrl, { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const cards = Array.from(doc.querySelectorAll(".scan-card")).reverse();
    for (const card of cards) {
      const existing = scans.querySelector('.scan-card[data-scan-id="' + card.dataset.scanId + '"]');
      if (existing && finishedScans.has(card.dataset.scanId)) {
        existing.replaceWith(document.importNode(card, true));
        continue;
      }
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
      // Only what changed since the page was rendered or since the last answer.
      const url = scans.dataset.statusUrl + "?since=" + encodeURIComponent(scans.dataset.statusCursor || "");
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
      scans.dataset.statusCursor = data.cursor;
      let missing = false;
      const finishedScans = new Set();
      for (const p of data.predictions) {
        const element = scans.querySelector('[data-prediction-id="' + p.id + '"]');
        if (!element) {
          missing = true;
          continue;
        }
        if (element.dataset.status !== "done" && p.status === "done") finishedScans.add(String(p.scan));
        updatePrediction(element, p);
      }
      const caseStatus = document.getElementById("case-status");
      caseStatus.textContent = data.case.status_display;
      caseStatus.className = "badge status-" + data.case.status;
      showBlockers(data.case.sign_off_blockers);
      if (missing || finishedScans.size) {
        await insertMissing(finishedScans);
        showReviewOutcomes(scans);
      }
    } catch (error) {
      liveNote.textContent = "Live updates paused (" + error.message + "); retrying.";
      schedule();
      return;
    }
    if (hasPending()) schedule();
  }

  // The heatmap replaces the scan in the card's image; where the card has a stage (single scans), the scan
  // stays underneath so that the opacity slider can fade the heatmap over it, and the colour legend shows.
  function showHeatmap(card, button) {
    const image = card.querySelector("img.thumb");
    const legend = card.querySelector('[data-field="heatmap-legend"]');
    const stage = card.querySelector(".scan-stage");
    const showing = button.getAttribute("aria-pressed") === "true";
    card.querySelectorAll(".heatmap-toggle").forEach(function (other) {
      other.setAttribute("aria-pressed", "false");
      other.textContent = "Show heatmap";
    });
    if (!image.dataset.scanAlt) image.dataset.scanAlt = image.alt;
    const underlay = card.querySelector("img.scan-underlay");
    if (underlay) underlay.remove();
    if (showing) {
      image.src = image.dataset.scanSrc;
      image.alt = image.dataset.scanAlt;
      image.style.opacity = "";
      if (legend) legend.hidden = true;
      return;
    }
    image.src = button.dataset.heatmapUrl;
    image.alt = "Heatmap overlay: " + image.dataset.scanAlt;
    button.setAttribute("aria-pressed", "true");
    button.textContent = "Hide heatmap";
    if (stage && legend) {
      const scan = document.createElement("img");
      scan.className = "scan-underlay";
      scan.src = image.dataset.scanSrc;
      scan.alt = "";
      stage.prepend(scan);
      legend.hidden = false;
      image.style.opacity = String(legend.querySelector(".heatmap-opacity").value / 100);
    }
  }

  const ZOOMS = [1, 1.5, 2, 3];

  function zoom(card, step) {
    const viewport = card.querySelector('[data-field="viewport"]');
    const current = Number(viewport.dataset.zoom || "1");
    const index = Math.min(ZOOMS.length - 1, Math.max(0, ZOOMS.indexOf(current) + step));
    viewport.dataset.zoom = String(ZOOMS[index]);
    card.querySelector(".scan-stage").style.width = ZOOMS[index] * 100 + "%";
    card.querySelector('[data-field="zoom-level"]').textContent = ZOOMS[index] * 100 + "%";
  }

  scans.addEventListener("click", function (event) {
    const card = event.target.closest(".scan-card");
    const button = event.target.closest(".heatmap-toggle");
    if (button) showHeatmap(card, button);
    const zoomButton = event.target.closest(".zoom-button");
    if (zoomButton) zoom(card, Number(zoomButton.dataset.zoom));
  });

  scans.addEventListener("input", function (event) {
    if (!event.target.classList.contains("heatmap-opacity")) return;
    const image = event.target.closest(".scan-card").querySelector("img.thumb");
    image.style.opacity = String(event.target.value / 100);
  });

  // A per-level review: the image decision follows the grades as it does for the model (DDD when any level
  // is graded at or above the threshold); shown as the clinician changes a grade.
  function showReviewOutcome(fieldset) {
    const threshold = Number(fieldset.dataset.degeneratedFrom);
    const selects = Array.from(fieldset.querySelectorAll(".grade-select"));
    const ddd = selects.some(function (select) {
      return Number(select.value) >= threshold;
    });
    const corrected = selects.filter(function (select) {
      return select.value !== select.dataset.modelGrade;
    }).length;
    const label = ddd ? "ddd" : "normal";
    const decision = label === fieldset.dataset.modelLabel ? "agree" : "override";
    const outcome = field(fieldset, "review-outcome");
    outcome.textContent = "Image decision: " + (ddd ? "Degenerative disc disease" : "Normal") +
      " (" + (decision === "agree" ? "agrees with the model" : "overrides the model") + "); " +
      (corrected ? corrected + " level" + (corrected > 1 ? "s" : "") + " corrected." : "every grade confirmed.");
    outcome.dataset.decision = decision;
  }

  function showReviewOutcomes(root) {
    root.querySelectorAll("fieldset.level-grades").forEach(showReviewOutcome);
  }

  scans.addEventListener("change", function (event) {
    if (!event.target.classList.contains("grade-select")) return;
    showReviewOutcome(event.target.closest("fieldset.level-grades"));
  });
  showReviewOutcomes(scans);

  if (hasPending()) schedule();

  // Uploads: all files in one request, so that the slices of a DICOM series arrive together and become one
  // series; one line per file (a ZIP's members each get one) with its own outcome. Only the owner of a case
  // that is not signed off has the form.
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = document.getElementById("upload-files");
  const dropzone = document.getElementById("dropzone");
  const results = document.getElementById("upload-results");

  function listItem(name) {
    const item = document.createElement("li");
    item.className = "upload-item";
    const label = document.createElement("span");
    label.className = "upload-name";
    label.textContent = name;
    const outcome = document.createElement("span");
    outcome.className = "upload-outcome";
    item.append(label, outcome);
    results.append(item);
    return item;
  }

  function describe(result) {
    if (result.series) {
      return (result.created ? "Added to series " : "Already in series ") + result.series.description;
    }
    return result.created ? "Uploaded; prediction queued" : "Already uploaded; showing the existing scan";
  }

  function showResult(result) {
    const item = listItem(result.name || "Upload");
    const outcome = item.querySelector(".upload-outcome");
    if (result.ok) {
      item.classList.add("ok");
      outcome.textContent = describe(result);
    } else {
      item.classList.add("failed");
      outcome.className = "upload-outcome error";
      outcome.setAttribute("role", "alert");
      outcome.textContent = result.error;
    }
  }

  function showFailure(items, message) {
    items.forEach(function (item) {
      item.classList.add("failed");
      const outcome = item.querySelector(".upload-outcome");
      outcome.className = "upload-outcome error";
      outcome.setAttribute("role", "alert");
      outcome.textContent = message;
    });
  }

  function send(files) {
    const pending = files.map(function (file) {
      const item = listItem(file.name);
      const progress = document.createElement("progress");
      progress.max = 100;
      progress.value = 0;
      progress.setAttribute("aria-label", "Upload of " + file.name);
      item.querySelector(".upload-name").after(progress);
      item.querySelector(".upload-outcome").textContent = "Uploading";
      return item;
    });
    return new Promise(function (resolve) {
      const request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.setRequestHeader("X-CSRFToken", csrfToken());
      request.setRequestHeader("Accept", "application/json");
      request.upload.addEventListener("progress", function (event) {
        if (!event.lengthComputable) return;
        pending.forEach(function (item) {
          item.querySelector("progress").value = (event.loaded / event.total) * 100;
        });
      });
      request.addEventListener("load", function () {
        let answer = null;
        try {
          answer = JSON.parse(request.responseText).results;
        } catch (error) {
          answer = null;
        }
        if (!answer) {
          showFailure(pending, "Upload failed (HTTP " + request.status + ").");
          resolve(false);
          return;
        }
        pending.forEach(function (item) {
          item.remove();
        });
        answer.forEach(showResult);
        resolve(answer.some(function (result) {
          return result.ok;
        }));
      });
      request.addEventListener("error", function () {
        showFailure(pending, "Network error; the files were not uploaded.");
        resolve(false);
      });
      const body = new FormData();
      files.forEach(function (file) {
        body.append("file", file);
      });
      request.send(body);
    });
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
    input.value = "";
    if (await send(files)) {
      await insertMissing();
      poll();
    }
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
