// The header's "Menu" on a phone: closed once the page is scripted (the template renders it
// open, so that without JavaScript the sections stay in view), open again at a desktop's width
// where its summary is hidden; Escape or a tap elsewhere closes it.
(function () {
  "use strict";

  const menu = document.querySelector("[data-site-menu]");
  if (!menu) return;
  const summary = menu.querySelector("summary");
  // The same width as the phone rules in app.css.
  const phone = window.matchMedia("(max-width: 40rem)");

  function fit() {
    menu.open = !phone.matches;
  }

  menu.classList.add("scripted");
  fit();
  phone.addEventListener("change", fit);

  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !phone.matches || !menu.open) return;
    const inside = menu.contains(document.activeElement);
    menu.open = false;
    if (inside) summary.focus();
  });

  document.addEventListener("click", (event) => {
    if (phone.matches && menu.open && !menu.contains(event.target)) menu.open = false;
  });
})();
