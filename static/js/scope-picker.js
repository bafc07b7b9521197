// The dual-list scope picker: "Available scopes" and "Selected scopes" with move buttons.
// Without JavaScript the panel shows a plain list of checkboxes named "scopes"; this script
// keeps that field by writing one hidden "scopes" input per selected scope.
(function () {
  "use strict";

  const CLIENT_CREDENTIALS = "client_credentials";

  function element(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([name, value]) => node.setAttribute(name, value));
    if (text) node.textContent = text;
    return node;
  }

  function setUp(picker, index) {
    const source = picker.querySelector("[data-scope-source]");
    const form = picker.closest("form");
    const clientSelect = document.getElementById(picker.dataset.clientSelect);
    if (!source || !form) return;
    const items = Array.from(source.querySelectorAll("li[data-scope]"));
    const prefix = "scope-picker-" + index;

    const filterLabel = element("label", { for: prefix + "-filter" }, "Filter scopes");
    const filter = element("input", { type: "search", id: prefix + "-filter", autocomplete: "off" });
    const columns = element("div", { class: "picker-columns" });
    const lists = {};
    function column(key, title) {
      const box = element("div", { class: "picker-column" });
      // Not a heading: the lists belong to the Scopes fieldset, whose legend heads them.
      box.appendChild(element("p", { class: "picker-title", id: prefix + "-" + key + "-title" }, title));
      const list = element("ul", {
        class: "scope-list picker-list",
        "aria-labelledby": prefix + "-" + key + "-title",
        "data-picker-list": key,
      });
      box.appendChild(list);
      lists[key] = list;
      return box;
    }
    const buttons = element("div", { class: "picker-buttons" });
    const moves = [
      ["»", "Add all scopes", () => move("available", "selected", true)],
      [">", "Add selected scopes", () => move("available", "selected", false)],
      ["<", "Remove selected scopes", () => move("selected", "available", false)],
      ["«", "Remove all scopes", () => move("selected", "available", true)],
    ];
    moves.forEach(([symbol, name, action]) => {
      const button = element("button", { type: "button", "aria-label": name, title: name }, symbol);
      button.addEventListener("click", action);
      buttons.appendChild(button);
    });
    columns.append(column("available", "Available scopes"), buttons, column("selected", "Selected scopes"));
    const empty = element("p", { class: "picker-empty", hidden: "" });
    const status = element("p", { class: "muted picker-status", "aria-live": "polite" });
    const hidden = element("div", { hidden: "" });

    const selected = new Set();
    items.forEach((item) => {
      const checkbox = item.querySelector("input[type=checkbox]");
      if (checkbox.checked && !checkbox.disabled) selected.add(item.dataset.scope);
      checkbox.removeAttribute("name");
      checkbox.checked = false;
    });
    source.remove();
    picker.append(filterLabel, filter, empty, columns, status, hidden);

    function grantType() {
      const option = clientSelect && clientSelect.selectedOptions[0];
      return (option && option.dataset.grantType) || "";
    }

    function unusable(item) {
      return grantType() === CLIENT_CREDENTIALS && item.dataset.allowsClientCredentials !== "true";
    }

    function visible(item) {
      const needle = filter.value.trim().toLowerCase();
      // The name and description only: a hidden reason must not make a scope match.
      const label = item.querySelector("label");
      return !needle || label.textContent.toLowerCase().includes(needle);
    }

    function render(announcement) {
      const removed = [];
      items.forEach((item) => {
        const checkbox = item.querySelector("input[type=checkbox]");
        const reason = item.querySelector("[data-scope-reason]");
        const blocked = unusable(item);
        if (blocked && selected.has(item.dataset.scope)) {
          selected.delete(item.dataset.scope);
          removed.push(item.dataset.scope);
        }
        checkbox.disabled = blocked;
        if (blocked) checkbox.checked = false;
        if (reason) reason.hidden = !blocked;
        item.hidden = !visible(item);
        lists[selected.has(item.dataset.scope) ? "selected" : "available"].appendChild(item);
      });
      hidden.replaceChildren(
        ...Array.from(selected).map((name) => element("input", { type: "hidden", name: "scopes", value: name }))
      );
      const needle = filter.value.trim();
      const shown = (key) => Array.from(lists[key].children).filter((item) => !item.hidden).length;
      const counts = needle
        ? shown("available") + " of " + lists.available.children.length + " available and " +
          shown("selected") + " of " + lists.selected.children.length + " selected match “" + needle + "”."
        : lists.available.children.length + " available, " + selected.size + " selected.";
      const none = Boolean(needle) && shown("available") + shown("selected") === 0;
      empty.textContent = none ? "No scopes match “" + needle + "”." : "";
      empty.hidden = !none;
      const notes = removed.length
        ? " Removed " + removed.join(", ") + ": the OAuth 2.0 client uses Client credentials."
        : "";
      status.textContent = (announcement ? announcement + " " : "") + "Scopes: " + counts + notes;
    }

    function move(from, to, all) {
      let moved = 0;
      Array.from(lists[from].children).forEach((item) => {
        const checkbox = item.querySelector("input[type=checkbox]");
        if (item.hidden || checkbox.disabled || !(all || checkbox.checked)) return;
        if (to === "selected") selected.add(item.dataset.scope);
        else selected.delete(item.dataset.scope);
        checkbox.checked = false;
        moved += 1;
      });
      const verb = to === "selected" ? "Added" : "Removed";
      render(moved ? verb + " " + moved + (moved === 1 ? " scope." : " scopes.") : "Nothing to move.");
    }

    filter.addEventListener("input", () => render(""));
    // Enter in the filter box must not submit the panel.
    filter.addEventListener("keydown", (event) => {
      if (event.key === "Enter") event.preventDefault();
    });
    if (clientSelect) clientSelect.addEventListener("change", () => render(""));
    render("");
  }

  document.querySelectorAll("[data-scope-picker]").forEach(setUp);
})();
