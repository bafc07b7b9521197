// Forms marked data-auto-submit are sent once the page has loaded, as if their first button
// had been pressed (so busy-submit.js shows that they are busy). Without JavaScript the
// person presses the button.
(function () {
  "use strict";

  window.addEventListener("load", () => {
    document.querySelectorAll("form[data-auto-submit]").forEach((form) => {
      form.requestSubmit(form.querySelector("button[type=submit]"));
    });
  });
})();
