// Campaigns dashboard: the preview's desktop/mobile width toggle. Everything else
// (debounced live preview, counts, test sends, progress polling) is htmx markup.
document.addEventListener("click", function (event) {
  const button = event.target.closest("[data-preview-width]");
  if (!button) {
    return;
  }
  const panel = button.closest(".preview-panel");
  const stage = panel && panel.querySelector(".preview-stage");
  if (!stage) {
    return;
  }
  const mobile = button.dataset.previewWidth === "mobile";
  stage.classList.toggle("mobile", mobile);
  panel.querySelectorAll("[data-preview-width]").forEach(function (other) {
    other.setAttribute("aria-pressed", String(other === button));
  });
});
