/* Job lists stay live over the page's websocket (reconnecting with backoff when it drops, no polling):
   state badges follow the jobs; when the server says jobs were created in the list's scope, the first page
   swaps in its rows as the server renders them now (its filters apply), and an older page shows a bar that
   leads to the newest; a job that ends has its row swapped in the same way (finish, duration). */
(function () {
  "use strict";

  const list = document.getElementById("job-list");
  if (!list) return;
  const firstPage = !new URLSearchParams(location.search).has("cursor");
  const since = Number(list.dataset.since) || 0;
  const FINAL = new Set(["done", "failed", "terminated", "partially_failed"]);
  const REFRESH_GAP_MS = 1000; // at most one swap a second, whatever a batch of jobs does
  let socket = null;
  let seenNew = 0;
  let lastRefresh = 0;
  let timer = null;
  let busy = false;
  window.jobListRefreshed = 0;

  const rowIds = () => [...list.querySelectorAll("tr[data-job]")].map((row) => row.dataset.job);

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  function badge(row, state) {
    const span = row.querySelector(".job-state");
    if (!span || span.dataset.state === state) return false;
    span.className = `badge job-state job-${state}`;
    span.dataset.state = state;
    span.textContent = state;
    return true;
  }

  function newBar(count) {
    let bar = document.getElementById("new-jobs");
    if (!bar) {
      bar = document.createElement("div");
      bar.id = "new-jobs";
      bar.className = "flash flash-info new-jobs-bar";
      bar.setAttribute("role", "status");
      list.parentNode.insertBefore(bar, list);
    }
    const link = document.querySelector('nav.pagination a[rel="first"]');
    const text = document.createElement("span");
    text.className = "flash-text";
    text.append(`${count >= 100 ? "100+" : count} new job${count === 1 ? "" : "s"} since this page opened — `);
    const show = document.createElement("a");
    show.href = link ? link.getAttribute("href") : "?";
    show.textContent = "show the newest";
    text.append(show);
    bar.replaceChildren(text);
  }

  // Swap in this page's rows as the server renders them now: new jobs, ended jobs' finish and duration.
  async function refresh() {
    timer = null;
    if (busy) return schedule();
    busy = true;
    lastRefresh = Date.now();
    try {
      const response = await fetch(location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" });
      if (!response.ok || response.redirected) return; // logged out, or gone: the socket says so too
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById("job-list");
      if (!fresh) return;
      const before = new Set(rowIds());
      const focused = document.activeElement && list.contains(document.activeElement) ? document.activeElement : null;
      const focusHref = focused && focused.getAttribute("href");
      list.innerHTML = fresh.innerHTML;
      list.querySelectorAll("tr[data-job]").forEach((row) => {
        if (before.has(row.dataset.job)) return;
        row.classList.add("row-new"); // a short highlight, then as the others
        row.style.transition = "background-color 2s";
        row.style.backgroundColor = "var(--info-soft)";
        setTimeout(() => (row.style.backgroundColor = ""), 3000);
      });
      if (focusHref) {
        const again = list.querySelector(`a[href="${CSS.escape(focusHref)}"]`);
        if (again) again.focus();
      }
      const nav = document.querySelector("nav.pagination");
      const freshNav = doc.querySelector("nav.pagination");
      if (nav && freshNav) nav.replaceWith(freshNav);
      else if (!nav && freshNav) list.after(freshNav);
      else if (nav && !freshNav) nav.remove();
      send({ watch: rowIds() });
      window.jobListRefreshed += 1;
    } catch (err) {
      // A failed fetch leaves the rows as they were; the next news tries again.
    } finally {
      busy = false;
    }
  }

  function schedule() {
    if (timer) return;
    timer = setTimeout(refresh, Math.max(0, lastRefresh + REFRESH_GAP_MS - Date.now()));
  }

  function onFrame(frame) {
    let ended = false;
    Object.entries(frame.states || {}).forEach(([id, state]) => {
      const row = list.querySelector(`tr[data-job="${CSS.escape(id)}"]`);
      if (row && badge(row, state) && FINAL.has(state)) ended = true;
    });
    if (typeof frame.new === "number" && frame.new > seenNew) {
      seenNew = frame.new;
      if (firstPage) ended = true;
      else newBar(frame.new);
    }
    if (ended) schedule();
  }

  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${list.dataset.ws}`);
    socket.onopen = () => {
      window.jobStatesConnected = true;
      delay = 500;
      socket.send(JSON.stringify({ watch: rowIds(), since }));
    };
    socket.onmessage = (event) => onFrame(JSON.parse(event.data));
    socket.onclose = (event) => {
      window.jobStatesConnected = false;
      // 44xx: refused (logged out, no access); anything else is a dropped connection worth retrying.
      if (event.code < 4400 || event.code > 4499) setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
    };
  }

  connect(500);
})();
