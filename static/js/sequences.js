// Step editor: show the delay fields or the date fields, whichever the "Send" choice needs.
(function () {
  const DELAY = ["delay_amount", "delay_unit"];
  const DATE = ["date_attribute", "date_offset_days", "yearly"];

  function sync(form) {
    const chosen = form.querySelector("input[name='timing']:checked");
    const onDate = chosen !== null && chosen.value === "date";
    DELAY.forEach(function (name) { toggle(form, name, !onDate); });
    DATE.forEach(function (name) { toggle(form, name, onDate); });
  }

  function toggle(form, name, visible) {
    const wrapper = form.querySelector("[data-timing-field='" + name + "']");
    if (wrapper) {
      wrapper.hidden = !visible;
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.querySelector("[data-step-editor]");
    if (!form) {
      return;
    }
    sync(form);
    form.addEventListener("change", function (event) {
      if (event.target.name === "timing") {
        sync(form);
      }
    });
  });
})();
