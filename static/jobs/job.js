/* The job page: the tree's states and the log, live over one websocket that resumes from its cursors.

The log viewer keeps every line in memory but renders only the rows in view (fixed row height),
so a full 4 MB log scrolls smoothly. After a dropped connection it reconnects with the last line
number seen per job: the server sends what follows, and lines already held are skipped.
*/
(function () {
  "use strict";

  const card = document.getElementById("log-card");
  const view = document.getElementById("log-view");
  const spacer = document.getElementById("log-spacer");
  const rowsBox = document.getElementById("log-rows");
  const countLabel = document.getElementById("log-count");
  const statusLabel = document.getElementById("log-status");
  const search = document.getElementById("log-search");
  const follow = document.getElementById("log-follow");
  const treeBox = document.getElementById("log-tree");
  const treeView = document.getElementById("job-tree");
  const current = card.dataset.job;
  const ROW = 20;
  const FINAL = new Set(["done", "failed", "terminated"]);
  const WAITING = new Set(["idle", "waiting_on_input", "runnable", "waiting_on_output"]);

  const lines = [];          // [job, seq, timestamp, level, msg]
  const cursors = {};        // job id -> last seq held
  const names = {};
  let shown = [];            // indexes into `lines` that pass the filters
  let levels = new Set([...document.querySelectorAll("#level-filter input:checked")].map((box) => box.value));
  let needle = "";
  let socket = null;
  let ended = false;
  let drawPending = false;
  let lastState = null;
  let refreshing = null;     // the refresh in flight, if any
  let refreshAgain = false;

  window.jobDetailsRefreshed = 0;

  // The parts of the page the server renders from the job's record (actions, failure and waiting
  // notices, outputs, details) are marked data-live: when the job's state changes they are fetched
  // again and swapped in, so timings, outputs and the failure show up without a reload.
  function refreshDetails() {
    if (refreshing) { refreshAgain = true; return; }
    refreshing = fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then((response) => (response.ok ? response.text() : Promise.reject(response.status)))
      .then((html) => {
        const fresh = new DOMParser().parseFromString(html, "text/html");
        for (const part of document.querySelectorAll("[data-live]")) {
          const replacement = fresh.querySelector(`[data-live="${part.dataset.live}"]`);
          if (replacement) part.replaceWith(document.importNode(replacement, true));
        }
        window.jobDetailsRefreshed += 1;
      })
      .catch(() => {})  // the page stays as it was; the next change tries again
      .finally(() => {
        refreshing = null;
        if (refreshAgain) { refreshAgain = false; refreshDetails(); }
      });
  }

  window.logStreamConnected = false;
  window.logStreamEnded = false;
  window.logReconnects = 0;

  function passes(line) {
    if (!treeBox.checked && line[0] !== current) return false;
    // Levels outside the checkboxes (NOTICE, METRICS, ...) follow INFO's box.
    const level = levels.has(line[3]) || (!["STDOUT", "STDERR", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"].includes(line[3]) && levels.has("INFO"));
    return level && (!needle || line[4].toLowerCase().includes(needle));
  }

  function refilter() {
    shown = [];
    for (let i = 0; i < lines.length; i++) if (passes(lines[i])) shown.push(i);
    schedule(true);
  }

  function stamp(ms) {
    const d = new Date(ms);
    return d.toTimeString().slice(0, 8);
  }

  function row(line) {
    const div = document.createElement("div");
    div.className = `log-line lvl-${line[3].toLowerCase()}`;
    const parts = [["ts", stamp(line[2])], ["lvl", line[3]]];
    if (treeBox.checked) parts.push(["who", names[line[0]] || line[0]]);
    for (const [cls, text] of parts) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      div.appendChild(span);
    }
    const msg = document.createElement("span");
    msg.className = "msg";
    const text = line[4];
    if (needle) {
      // Highlight the first match only: enough to find it, cheap for long lines.
      const at = text.toLowerCase().indexOf(needle);
      msg.append(text.slice(0, at));
      const mark = document.createElement("mark");
      mark.textContent = text.slice(at, at + needle.length);
      msg.append(mark, text.slice(at + needle.length));
    } else {
      msg.textContent = text;
    }
    div.appendChild(msg);
    return div;
  }

  function draw() {
    drawPending = false;
    spacer.style.height = `${shown.length * ROW}px`;
    countLabel.textContent = shown.length.toLocaleString();
    if (follow.checked) view.scrollTop = view.scrollHeight;
    const first = Math.max(0, Math.floor(view.scrollTop / ROW) - 10);
    const last = Math.min(shown.length, first + Math.ceil(view.clientHeight / ROW) + 20);
    rowsBox.style.transform = `translateY(${first * ROW}px)`;
    const fragment = document.createDocumentFragment();
    for (let i = first; i < last; i++) fragment.appendChild(row(lines[shown[i]]));
    if (!shown.length) {
      const empty = document.createElement("div");
      empty.className = "log-empty";
      empty.textContent = lines.length ? "No line matches the filters" : (ended ? "This job wrote no log" : "Waiting for log lines…");
      fragment.appendChild(empty);
    }
    rowsBox.replaceChildren(fragment);
  }

  function schedule() {
    if (!drawPending) {
      drawPending = true;
      requestAnimationFrame(draw);
    }
  }

  function addLines(batch) {
    for (const line of batch) {
      if (line[1] <= (cursors[line[0]] || 0)) continue; // already held: never show a line twice
      cursors[line[0]] = line[1];
      lines.push(line);
      if (passes(line)) shown.push(lines.length - 1);
    }
    window.logLineCount = lines.length;
    schedule();
  }

  function badge(state) {
    const span = document.createElement("span");
    span.className = `badge job-state job-${state}`;
    span.dataset.state = state;
    span.textContent = state;
    return span;
  }

  function showTree(jobs) {
    const children = {};
    const ids = new Set(jobs.map((job) => job.id));
    jobs.forEach((job) => {
      names[job.id] = job.name;
      const parent = ids.has(job.parent) ? job.parent : null;
      (children[parent] = children[parent] || []).push(job);
    });
    const fragment = document.createDocumentFragment();
    (function walk(parent, depth) {
      for (const job of children[parent] || []) {
        const link = document.createElement("a");
        link.className = "tree-row" + (job.id === current ? " current" : "");
        link.href = `/jobs/${job.id}/`;
        link.dataset.job = job.id;
        link.style.setProperty("--depth", depth);
        link.innerHTML = "<span class='tree-name'></span><span class='mono muted small'></span>";
        link.firstChild.textContent = job.name;
        link.children[1].textContent = job.id;
        link.appendChild(badge(job.state));
        fragment.appendChild(link);
        walk(job.id, depth + 1);
      }
    })(null, 0);
    treeView.replaceChildren(fragment);
    document.getElementById("tree-count").textContent = `${jobs.length} job${jobs.length === 1 ? "" : "s"}`;
    const mine = jobs.find((job) => job.id === current);
    if (mine) {
      const holder = document.getElementById("job-state");
      if (lastState === null) lastState = holder.querySelector("[data-state]").dataset.state;
      holder.replaceChildren(badge(mine.state));
      // Its own state changed, or, while it waits, one of the tree's did: the "waiting" line may change.
      if (mine.state !== lastState || WAITING.has(mine.state)) refreshDetails();
      lastState = mine.state;
    }
    if (jobs.every((job) => FINAL.has(job.state))) {
      const terminate = document.getElementById("terminate-form");
      if (terminate) terminate.remove();
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${card.dataset.ws}`);
    socket.onopen = () => {
      socket.send(JSON.stringify({ cursors }));
      window.logStreamConnected = true;
      statusLabel.textContent = "live";
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "tree") showTree(frame.jobs);
      else if (frame.type === "lines") addLines(frame.lines);
      else if (frame.type === "samples") document.dispatchEvent(new CustomEvent("dx:samples", { detail: frame }));
      else if (frame.type === "end") {
        ended = true;
        window.logStreamEnded = true;
        statusLabel.textContent = "complete";
        schedule();
        socket.close();
      }
    };
    socket.onclose = (event) => {
      window.logStreamConnected = false;
      if (ended) return;
      if (event.code >= 4400 && event.code <= 4499) {
        statusLabel.textContent = event.reason ? JSON.parse(event.reason).message : "refused";
        return;
      }
      statusLabel.textContent = "reconnecting…";
      window.logReconnects += 1;
      setTimeout(connect, 300);
    };
  }

  document.getElementById("level-filter").addEventListener("change", () => {
    levels = new Set([...document.querySelectorAll("#level-filter input:checked")].map((box) => box.value));
    refilter();
  });
  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { needle = search.value.toLowerCase(); refilter(); }, 150);
  });
  treeBox.addEventListener("change", () => {
    const download = document.getElementById("log-download");
    download.href = download.href.split("?")[0] + (treeBox.checked ? "?tree=1" : "");
    refilter();
  });
  follow.addEventListener("change", schedule);
  view.addEventListener("scroll", () => {
    // Scrolling up pauses following; scrolling back to the bottom resumes it.
    const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - ROW;
    if (follow.checked !== atBottom && document.activeElement !== follow) follow.checked = atBottom;
    schedule();
  }, { passive: true });

  // For tests: drop the socket as a network failure would, and read what the viewer holds.
  window.dxJobPage = {
    dropSocket: () => socket && socket.close(),
    lines: () => lines.map((line) => `${line[0]}:${line[1]}:${line[4]}`),
  };

  connect();
  schedule();
})();
