/* The bell's count, pushed over one websocket per tab (/ws/notifications/, reconnecting with backoff; no
   polling), and the "Mark read" forms of the notifications page sent without leaving it. Loaded once per
   page (base.html includes it for signed-in users). */
(function () {
  "use strict";

  if (window.dxBell) return;
  window.dxBell = true;
  const bell = document.getElementById("bell");
  if (!bell) return; // not signed in

  function show(unread) {
    window.bellUnread = unread;
    let count = document.getElementById("bell-count");
    if (unread > 0) {
      if (!count) {
        count = document.createElement("span");
        count.className = "bell-count";
        count.id = "bell-count";
        bell.append(count);
      }
      count.textContent = unread > 99 ? "99+" : String(unread);
    } else if (count) {
      count.remove();
    }
    bell.classList.toggle("has-unread", unread > 0);
    // The name holds the count as shown (not in parentheses), so that it contains the visible text.
    bell.setAttribute("aria-label", unread > 0 ? `Notifications, ${count.textContent} unread` : "Notifications");
    const all = document.querySelector("#mark-all-read button");
    if (all) all.disabled = unread === 0;
  }

  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/notifications/`);
    socket.onopen = () => {
      delay = 1000;
      window.bellConnected = true;
      socket.send("{}");
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (typeof frame.unread === "number") show(frame.unread);
    };
    socket.onclose = (event) => {
      window.bellConnected = false;
      // 44xx: refused (logged out); anything else is a dropped connection worth retrying.
      if (event.code < 4400 || event.code > 4499) setTimeout(() => connect(Math.min(delay * 2, 30000)), delay);
    };
  }

  // Mark read without a reload: the row (or every row, for "Mark all read") loses its "new" look.
  function markedRead(form) {
    const rows = form.id === "mark-all-read" ? document.querySelectorAll("#notification-list tr.unread") : [form.closest("tr")];
    rows.forEach((row) => {
      if (!row) return;
      row.classList.remove("unread");
      row.querySelectorAll(".new-badge").forEach((badge) => badge.remove());
      row.querySelectorAll("form.mark-read").forEach((other) => other.remove());
    });
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("mark-read")) return;
    event.preventDefault();
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(String(response.status));
      const answer = await response.json();
      markedRead(form);
      show(answer.unread);
      const next = document.querySelector("#notification-list form.mark-read button, #mark-all-read button:not([disabled])");
      if (next && document.activeElement === document.body) next.focus();
    } catch (err) {
      form.submit(); // the plain form: it answers with the page again
    }
  });

  connect(1000);
})();
