// Dates in the reader's own time zone: each <time data-timestamp> the server rendered in the
// portal's zone is rewritten from its ISO datetime as "YYYY-MM-DD HH:MM[:SS] <zone>", and the
// relative form beside it ("in 29 min", "3 min ago") is kept current. Same rules as
// connections_app/templatetags/portal_dates.py.
(function () {
  "use strict";

  const MINUTE = 60, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
  const pad = (n) => String(n).padStart(2, "0");

  function zoneName(date) {
    const part = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" })
      .formatToParts(date)
      .find((p) => p.type === "timeZoneName");
    return part ? part.value : "";
  }

  function absolute(date, seconds) {
    const day = date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate());
    let time = pad(date.getHours()) + ":" + pad(date.getMinutes());
    if (seconds) time += ":" + pad(date.getSeconds());
    return day + " " + time + " " + zoneName(date);
  }

  function relative(date, now) {
    const seconds = (date.getTime() - now) / 1000;
    const size = Math.abs(seconds);
    if (size < 45) return "now";
    let amount;
    if (size < 90 * MINUTE) amount = Math.max(1, Math.round(size / MINUTE)) + " min";
    else if (size < 36 * HOUR) amount = Math.round(size / HOUR) + " h";
    else {
      const days = Math.round(size / DAY);
      amount = days + (days === 1 ? " day" : " days");
    }
    return seconds > 0 ? "in " + amount : amount + " ago";
  }

  function update(root) {
    const now = Date.now();
    root.querySelectorAll("time[data-timestamp]").forEach((node) => {
      const date = new Date(node.dateTime);
      if (Number.isNaN(date.getTime())) return;
      if (!node.title) node.title = node.textContent;  // the portal's own zone, on hover
      node.textContent = absolute(date, node.hasAttribute("data-seconds"));
      const next = node.nextElementSibling;
      if (next && next.hasAttribute("data-relative")) next.textContent = "· " + relative(date, now);
    });
  }

  update(document);
  window.setInterval(() => update(document), 30 * 1000);
})();
