// Small dashboard behaviours, kept out of the HTML so the CSP can forbid inline scripts.
document.addEventListener("click", function (event) {
  // <button data-confirm="Really delete?"> asks before submitting.
  const target = event.target.closest("[data-confirm]");
  if (target && !window.confirm(target.dataset.confirm)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
  // <button data-copy="#id"> copies the text of the element it names.
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const source = document.querySelector(copy.dataset.copy);
    if (source && navigator.clipboard) {
      navigator.clipboard.writeText(source.value || source.textContent).then(function () {
        copy.textContent = "Copied";
      });
    }
  }
}, true);
