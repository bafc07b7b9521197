// The "Create connection" panel's OAuth 2.0 client select: only clients of the chosen
// environment are offered, and "+" / the pencil open the client form in a dialog instead of
// leaving the panel, so nothing typed in the panel is lost.
(function () {
  "use strict";

  const panel = document.querySelector("[data-connection-panel]");
  const dialog = document.querySelector("[data-client-dialog]");
  if (!panel || !dialog) return;
  const body = dialog.querySelector("[data-client-dialog-body]");
  const environment = panel.querySelector("select[name=environment]");
  const clientSelect = panel.querySelector("select[name=client]");
  const editButton = panel.querySelector("[data-client-dialog-open=edit]");
  const status = panel.querySelector("[data-panel-status]");
  const PLACEHOLDER = "00000000-0000-0000-0000-000000000000";
  let opener = null;

  function filterClients() {
    Array.from(clientSelect.options).forEach((option) => {
      if (!option.value) return;
      const other = option.dataset.environment !== environment.value;
      option.hidden = other;
      option.disabled = other;
    });
    const chosen = clientSelect.selectedOptions[0];
    if (chosen && chosen.disabled) {
      clientSelect.value = "";
      clientSelect.dispatchEvent(new Event("change"));
    }
    editButton.disabled = !clientSelect.value;
  }

  function show(html) {
    body.innerHTML = html;
    body.dispatchEvent(new CustomEvent("portal:content", { bubbles: true }));
    const first =
      body.querySelector("[data-error-summary]") ||
      body.querySelector(".has-error input, .has-error select") ||
      body.querySelector("input:not([type=hidden]), select");
    if (first) first.focus();
  }

  async function open(url, button) {
    opener = button;
    const response = await fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" });
    if (response.redirected) {
      // Signed out meanwhile: show the sign-in page itself rather than inside the dialog.
      window.location.assign(response.url);
      return;
    }
    if (!response.ok) {
      status.textContent = "The OAuth 2.0 client form could not be opened (" + response.status + ").";
      return;
    }
    show(await response.text());
    dialog.showModal();
  }

  function close() {
    dialog.close();
  }

  dialog.addEventListener("close", () => {
    body.replaceChildren();
    if (opener) opener.focus();
  });

  function chooseClient(client) {
    let option = Array.from(clientSelect.options).find((o) => o.value === client.code);
    if (!option) {
      option = new Option(client.name, client.code);
      const after = Array.from(clientSelect.options).find(
        (o) => o.value && o.text.localeCompare(client.name) > 0
      );
      clientSelect.add(option, after || null);
    }
    option.text = client.name;
    option.dataset.environment = client.environment;
    option.dataset.grantType = client.grant_type;
    if (environment.value !== client.environment) {
      environment.value = client.environment;
      environment.dispatchEvent(new Event("change"));
    }
    filterClients();
    clientSelect.value = client.code;
    clientSelect.dispatchEvent(new Event("change"));
  }

  panel.querySelectorAll("[data-client-dialog-open]").forEach((button) => {
    button.addEventListener("click", (event) => {
      event.preventDefault();
      let url = button.dataset.url;
      if (button.dataset.clientDialogOpen === "edit") {
        if (!clientSelect.value) return;
        url = url.replace(PLACEHOLDER, clientSelect.value);
      }
      open(url + "?dialog=1", button);
    });
  });

  dialog.addEventListener("click", (event) => {
    if (event.target.closest("[data-client-dialog-close]")) close();
  });

  dialog.addEventListener("submit", async (event) => {
    const form = event.target.closest("[data-client-form]");
    if (!form) return;
    event.preventDefault();
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-Requested-With": "fetch" },
      credentials: "same-origin",
    });
    const type = response.headers.get("Content-Type") || "";
    if (response.ok && type.includes("application/json")) {
      const client = await response.json();
      chooseClient(client);
      status.textContent = "OAuth 2.0 client “" + client.name + "” saved and selected.";
      opener = clientSelect;
      close();
    } else if (type.includes("text/html")) {
      show(await response.text());
    } else {
      status.textContent = "The OAuth 2.0 client could not be saved (" + response.status + ").";
      close();
    }
  });

  environment.addEventListener("change", filterClients);
  clientSelect.addEventListener("change", () => { editButton.disabled = !clientSelect.value; });
  filterClients();
})();
