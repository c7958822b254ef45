// Series viewer on the case page: scroll the slices, switch window presets, mark the chosen slice, and
// send the slice on screen to "Run the prediction on this slice". No dependencies, no inline script.
(function () {
  "use strict";
  const scans = document.getElementById("scans");
  if (!scans) return;

  function field(element, name) {
    return element.querySelector('[data-field="' + name + '"]');
  }

  function previewUrl(card, scanId, windowName) {
    // The template's URL for scan 0, with the scan id put in its place.
    const url = card.dataset.previewUrl.replace(/\/0\/preview$/, "/" + scanId + "/preview");
    return windowName && windowName !== "default" ? url + "?window=" + encodeURIComponent(windowName) : url;
  }

  function currentWindow(card) {
    const pressed = card.querySelector('.window-preset[aria-pressed="true"]');
    return pressed ? pressed.dataset.window : "default";
  }

  function show(card) {
    const ids = card.dataset.sliceIds.split(",");
    const positions = card.dataset.slicePositions.split(",");
    const index = Number(field(card, "slider").value);
    const image = field(card, "slice-image");
    const source = previewUrl(card, ids[index], currentWindow(card));
    image.src = source;
    image.dataset.scanSrc = source;
    image.alt = "Slice " + (index + 1) + " of " + ids.length;
    field(card, "slice-number").textContent = String(index + 1);
    field(card, "slice-position").textContent = positions[index] ? " (" + positions[index] + " mm)" : "";
    field(card, "chosen-mark").hidden = index !== Number(card.dataset.chosenIndex);
    const choice = field(card, "slice-scan");
    if (choice) choice.value = ids[index];
    card.querySelectorAll(".heatmap-toggle").forEach(function (button) {
      button.setAttribute("aria-pressed", "false");
      button.textContent = "Show heatmap";
    });
  }

  scans.addEventListener("input", function (event) {
    if (!event.target.classList.contains("slice-slider")) return;
    show(event.target.closest(".series-card"));
  });

  scans.addEventListener("click", function (event) {
    const preset = event.target.closest(".window-preset");
    if (!preset) return;
    const card = preset.closest(".series-card");
    card.querySelectorAll(".window-preset").forEach(function (other) {
      other.setAttribute("aria-pressed", String(other === preset));
    });
    show(card);
  });

  scans.addEventListener("keydown", function (event) {
    // Up and down scroll through the slices from anywhere in the viewer, as in a PACS viewer.
    const card = event.target.closest && event.target.closest(".series-card");
    if (!card || !["ArrowUp", "ArrowDown"].includes(event.key) || event.target.matches("input, select, textarea")) return;
    const slider = field(card, "slider");
    const step = event.key === "ArrowUp" ? 1 : -1;
    slider.value = String(Math.min(Number(slider.max), Math.max(0, Number(slider.value) + step)));
    event.preventDefault();
    show(card);
  });

  scans.querySelectorAll(".series-card").forEach(function (card) {
    field(card, "chosen-mark").hidden = false;
    const positions = card.dataset.slicePositions.split(",");
    const index = Number(card.dataset.chosenIndex);
    field(card, "slice-position").textContent = positions[index] ? " (" + positions[index] + " mm)" : "";
  });
})();
