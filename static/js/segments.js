// The segment editor: show the inputs and comparisons that fit each condition's field.
// Without this script every input shows and the server ignores the ones that do not apply.
(function () {
  function sync(row) {
    const select = row.querySelector("[data-field-select]");
    const field = select.value;
    const option = select.options[select.selectedIndex];
    const kind = option ? option.dataset.kind || "" : "";
    row.querySelectorAll("[data-show-field]").forEach(function (el) {
      el.hidden = el.dataset.showField !== field;
    });
    row.querySelectorAll("[data-show-kind]").forEach(function (el) {
      el.hidden = !field || el.dataset.showKind.split(" ").indexOf(kind) === -1;
    });
    const ops = row.querySelector("[data-op-select]");
    let current = ops.options[ops.selectedIndex];
    ops.querySelectorAll("optgroup").forEach(function (group) {
      group.hidden = group.dataset.field !== field;
    });
    if (!current || current.parentElement.dataset.field !== field) {
      const first = ops.querySelector('optgroup[data-field="' + field + '"] option');
      if (first) { first.selected = true; }
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-condition]").forEach(sync);
  });
  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-field-select]")) {
      sync(event.target.closest("[data-condition]"));
    }
  });
})();
