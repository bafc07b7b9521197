// "Copy" buttons: copy the text of the element named by data-copy-target to the clipboard.
(function () {
  "use strict";

  function reveal(root) {
    root.querySelectorAll("[data-copy-target]").forEach((button) => {
      if (navigator.clipboard) button.hidden = false;
    });
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy-target]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copyTarget);
    const status = button.parentElement.querySelector("[data-copy-status]");
    navigator.clipboard.writeText(source.textContent.trim()).then(
      () => { if (status) status.textContent = "Copied."; },
      () => { if (status) status.textContent = "Could not copy: select the text and copy it."; }
    );
  });

  // Content loaded later (the client dialog) announces itself with this event.
  document.addEventListener("portal:content", (event) => reveal(event.target));
  reveal(document);
})();
