// "Use a passkey" on the sign-in page: allauth's script only logs a failure to the console,
// so say in the page that no passkey signed the person in, and what to do instead.
(function () {
  "use strict";

  document.addEventListener("allauth.error", (event) => {
    const note = document.querySelector("[data-passkey-error]");
    if (!note) return;
    event.preventDefault();
    note.textContent =
      "No passkey signed you in. Use one you added as passwordless, or sign in with your " +
      "address and password.";
    note.hidden = false;
  });
})();
