// The admin's filter_horizontal lists put an aria-label on a plain <span> (the magnifier
// icon), which assistive technology ignores; give it the image role its label describes.
// SelectFilter builds the lists in its own "load" handler, so this runs after every one.
(function () {
  "use strict";

  window.addEventListener("load", () => {
    window.setTimeout(() => {
      document.querySelectorAll(".selector .help-tooltip[aria-label]:not([role])").forEach((icon) => {
        icon.setAttribute("role", "img");
      });
    }, 0);
  });
})();
