// Posts that wait on Kroger (up to its timeout) say so: the pressed button is relabelled
// (data-busy-label, e.g. "Refreshing…"), every button of the form is disabled, the form is
// aria-busy, and a second submit is ignored, so nobody sends the same request twice. An element
// of the form with data-busy-text (a role=status line) shows that text meanwhile.
// Without JavaScript the buttons are plain submit buttons.
(function () {
  "use strict";

  function labelled(form, submitter) {
    if (!submitter) return form.querySelector("button[data-busy-label]");
    if (submitter.dataset.busyLabel) return submitter;
    // A visually hidden default button (Enter's) stands for the visible one it mirrors.
    return Array.from(form.querySelectorAll("button[data-busy-label]")).find(
      (button) => button.name === submitter.name && button.value === submitter.value
    );
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (event.defaultPrevented || !(form instanceof HTMLFormElement)) return;
    if (form.getAttribute("aria-busy") === "true") {
      event.preventDefault();
      return;
    }
    const button = labelled(form, event.submitter);
    if (!button) return;
    form.setAttribute("aria-busy", "true");
    // Disabled after the browser has read the form: a disabled submitter's name and value
    // (action=authorize) would be left out of the post.
    window.setTimeout(() => {
      button.dataset.idleLabel = button.textContent;
      button.textContent = button.dataset.busyLabel;
      form.querySelectorAll("button").forEach((each) => { each.disabled = true; });
      form.querySelectorAll("[data-busy-text]").forEach((each) => {
        each.dataset.idleText = each.textContent;
        each.textContent = each.dataset.busyText;
      });
    }, 0);
  });

  // Back from Kroger's page through the history cache: the form is usable again.
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    document.querySelectorAll("form[aria-busy=true]").forEach((form) => {
      form.removeAttribute("aria-busy");
      form.querySelectorAll("button").forEach((button) => {
        button.disabled = false;
        if (button.dataset.idleLabel) button.textContent = button.dataset.idleLabel;
      });
      form.querySelectorAll("[data-busy-text]").forEach((each) => {
        if (each.dataset.idleText) each.textContent = each.dataset.idleText;
      });
    });
  });
})();
