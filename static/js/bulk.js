// The subscriber index's bulk actions: "tick every subscriber on this page".
// Delegated from the document, so it keeps working after htmx swaps the table.
document.addEventListener("change", function (event) {
  var all = event.target.closest("[data-pick-all]");
  if (!all) return;
  var form = all.getAttribute("form");
  document.querySelectorAll('input[type=checkbox][name="' + all.dataset.pickAll + '"][form="' + form + '"]')
    .forEach(function (box) { box.checked = all.checked; });
});
