/* The job page: the tree's states and the log, live over one websocket that resumes from its cursors.

The log viewer keeps every line in memory but renders only the rows in view, so a full 4 MB log
scrolls smoothly. Unwrapped, every row is ROW pixels high. Wrapped, a row's height is worked out
from its length: the font is monospaced and messages break anywhere (`break-spaces`, `break-all`),
so a message of n characters in a column of c characters takes ceil(n / c) rows; the heights' running
sums place the window of rendered rows, found by binary search. After a dropped connection it
reconnects with the last line number seen per job: the server sends what follows, and lines already
held are skipped.

Line numbers are links: `#L123` scrolls to line 123 of this job and highlights it.
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
  const wrapBox = document.getElementById("log-wrap");
  const treeBox = document.getElementById("log-tree");
  const treeView = document.getElementById("job-tree");
  const current = card.dataset.job;
  const ROW = 20;
  const FINAL = new Set(["done", "failed", "terminated"]);
  const WAITING = new Set(["idle", "waiting_on_input", "runnable", "waiting_on_output"]);
  const NOT_STARTED = new Set(["idle", "waiting_on_input", "runnable"]);
  const KNOWN_LEVELS = ["STDOUT", "STDERR", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
  const COLOURS = ["#a5b4fc", "#6ee7b7", "#fcd34d", "#f9a8d4", "#67e8f9", "#fdba74", "#c4b5fd", "#bef264"];
  // The server's clock minus the browser's: elapsed times and the hold's countdown use the server's.
  const skew = Number(card.dataset.now || Date.now()) - Date.now();

  const lines = [];          // [job, seq, timestamp, level, msg]
  const cursors = {};        // job id -> last seq held
  const names = {};          // job id -> its label in the log: its name, numbered when several share it
  const colours = {};        // job id -> the label's colour
  const times = {};          // job id -> [startedRunning, stoppedRunning] (ms, or null)
  const states = {};         // job id -> its last state seen
  const treeJobs = new Map(); // job id -> {id, name, state, parent}: the tree as the socket sent it
  let shown = [];            // indexes into `lines` that pass the filters
  let offsets = [0];         // wrapped: offsets[i] is the top of shown[i]; offsets[shown.length] the height
  let cols = 0;              // wrapped: characters per row of a message
  let levels = new Set([...document.querySelectorAll("#level-filter input:checked")].map((box) => box.value));
  let needle = "";
  let socket = null;
  let ended = false;
  let drawPending = false;
  let lastState = null;
  let refreshing = null;     // the refresh in flight, if any
  let refreshAgain = false;
  let target = null;         // the line number of #L<n>, highlighted
  let targetPending = false; // still to scroll to (its line may not have arrived yet)

  window.jobDetailsRefreshed = 0;
  window.logStreamConnected = false;
  window.logStreamEnded = false;
  window.logReconnects = 0;

  // Durations as jobs/views.py says them: "45 s", "3 min 05 s", "2 h 03 min", "1 d 4 h".
  function duration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const pad = (n) => String(n).padStart(2, "0");
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function countdown(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const pad = (n) => String(n).padStart(2, "0");
    return `${Math.floor(s / 3600)}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
  }

  function readTimes(root) {
    for (const cell of root.querySelectorAll("#job-tree .tree-time")) {
      const id = cell.closest("[data-job]").dataset.job;
      times[id] = [Number(cell.dataset.started) || null, Number(cell.dataset.stopped) || null];
    }
  }

  // The clocks: each job's elapsed time in the tree (ticking while it runs), this job's "Running for",
  // and the debug hold's countdown.
  function tick() {
    const now = Date.now() + skew;
    for (const cell of document.querySelectorAll("#job-tree .tree-time")) {
      const [started, stopped] = times[cell.closest("[data-job]").dataset.job] || [];
      const text = started ? duration((stopped || now) - started) : "";
      if (cell.textContent !== text) cell.textContent = text;
      cell.classList.toggle("ticking", Boolean(started && !stopped));
    }
    const running = document.querySelector("#job-ran[data-started]");
    if (running) running.textContent = duration(now - Number(running.dataset.started));
    const left = document.getElementById("hold-left");
    if (left) {
      const ms = Number(left.dataset.until) - now;
      left.textContent = ms > 0 ? countdown(ms) : "0:00:00 (ending)";
    }
  }

  // The parts of the page the server renders from the job's record (actions, failure, waiting and
  // hold notices, outputs, details) are marked data-live: when a state changes they are fetched
  // again and swapped in, so timings, outputs and the failure show up without a reload.
  function refreshDetails() {
    if (refreshing) { refreshAgain = true; return; }
    refreshing = fetch(location.pathname + location.search, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then((response) => (response.ok ? response.text() : Promise.reject(response.status)))
      .then((html) => {
        const fresh = new DOMParser().parseFromString(html, "text/html");
        for (const part of document.querySelectorAll("[data-live]")) {
          const replacement = fresh.querySelector(`[data-live="${part.dataset.live}"]`);
          if (replacement) part.replaceWith(document.importNode(replacement, true));
        }
        readTimes(fresh);
        tick();
        window.jobDetailsRefreshed += 1;
      })
      .catch(() => {})  // the page stays as it was; the next change tries again
      .finally(() => {
        refreshing = null;
        if (refreshAgain) { refreshAgain = false; refreshDetails(); }
      });
  }

  function passes(line) {
    if (!treeBox.checked && line[0] !== current) return false;
    // Levels outside the checkboxes (NOTICE, METRICS, ...) follow INFO's box.
    const level = levels.has(line[3]) || (!KNOWN_LEVELS.includes(line[3]) && levels.has("INFO"));
    return level && (!needle || line[4].toLowerCase().includes(needle));
  }

  // Wrapped layout --------------------------------------------------------------------------------

  function rowsOf(line) {
    const n = line[4].length;
    return n <= cols ? 1 : Math.ceil(n / cols);
  }

  // The characters a message column holds, from a probe row laid out as the real ones.
  function measure() {
    const probe = row(["", 0, 0, "STDOUT", "0".repeat(200)], -1);
    probe.style.cssText = "position:absolute;visibility:hidden;top:0;left:0;right:0;white-space:pre";
    const msg = probe.querySelector(".msg");
    msg.style.cssText = "flex:1 1 auto;min-width:0;overflow:hidden";
    rowsBox.appendChild(probe);
    const width = msg.getBoundingClientRect().width;
    const glyph = document.createElement("span");
    glyph.textContent = "0".repeat(200);
    glyph.style.cssText = "position:absolute;visibility:hidden;white-space:pre";
    probe.appendChild(glyph);
    const char = glyph.getBoundingClientRect().width / 200;
    probe.remove();
    return Math.max(10, Math.floor(width / char));
  }

  function layout() {
    if (!wrapBox.checked) return;
    cols = measure();
    offsets = new Array(shown.length + 1);
    offsets[0] = 0;
    for (let i = 0; i < shown.length; i++) offsets[i + 1] = offsets[i] + rowsOf(lines[shown[i]]) * ROW;
  }

  function top(i) { return wrapBox.checked ? offsets[i] : i * ROW; }

  function totalHeight() { return wrapBox.checked ? offsets[shown.length] : shown.length * ROW; }

  // The index of the shown line at height y.
  function indexAt(y) {
    if (!wrapBox.checked) return Math.floor(y / ROW);
    let lo = 0;
    let hi = shown.length;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (offsets[mid] <= y) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

  function refilter() {
    shown = [];
    for (let i = 0; i < lines.length; i++) if (passes(lines[i])) shown.push(i);
    layout();
    schedule();
  }

  // Rendering ---------------------------------------------------------------------------------------

  function stamp(ms) {
    const d = new Date(ms);
    return d.toTimeString().slice(0, 8);
  }

  function row(line, index) {
    const div = document.createElement("div");
    div.className = `log-line lvl-${line[3].toLowerCase()}`;
    if (line[0] === current && line[1] === target) div.classList.add("target");
    const number = document.createElement("a");
    number.className = "ln";
    number.textContent = line[1];
    number.href = line[0] === current ? `#L${line[1]}` : `/jobs/${line[0]}/#L${line[1]}`;
    number.dataset.line = line[1];
    number.tabIndex = -1;
    div.appendChild(number);
    const parts = [["ts", stamp(line[2])], ["lvl", line[3]]];
    if (treeBox.checked) parts.push(["who", names[line[0]] || line[0]]);
    for (const [cls, text] of parts) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      if (cls === "who") {
        span.title = `${text} · ${line[0]}`;
        if (colours[line[0]]) span.style.color = colours[line[0]];
      }
      div.appendChild(span);
    }
    const msg = document.createElement("span");
    msg.className = "msg";
    const text = line[4];
    if (needle && index >= 0) {
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
    spacer.style.height = `${totalHeight()}px`;
    countLabel.textContent = shown.length.toLocaleString();
    if (targetPending) scrollToTarget();
    else if (follow.checked) view.scrollTop = view.scrollHeight;
    const first = Math.max(0, indexAt(view.scrollTop) - 10);
    let last = first;
    const bottom = view.scrollTop + view.clientHeight;
    while (last < shown.length && top(last) < bottom) last++;
    last = Math.min(shown.length, last + 10);
    rowsBox.style.transform = `translateY(${top(first)}px)`;
    const fragment = document.createDocumentFragment();
    for (let i = first; i < last; i++) fragment.appendChild(row(lines[shown[i]], i));
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
      if (passes(line)) {
        shown.push(lines.length - 1);
        if (wrapBox.checked) offsets.push(offsets[offsets.length - 1] + rowsOf(line) * ROW);
      }
    }
    window.logLineCount = lines.length;
    schedule();
  }

  // Links to a line ---------------------------------------------------------------------------------

  function readHash() {
    const match = /^#L(\d+)$/.exec(location.hash);
    target = match ? Number(match[1]) : null;
    targetPending = target !== null;
    window.logTarget = target;
    schedule();
  }

  // Scroll the log to the target line once it is held; a filter hiding it is lifted.
  function scrollToTarget() {
    const at = lines.findIndex((line) => line[0] === current && line[1] === target);
    if (at < 0) return; // not arrived yet: the next batch tries again
    let index = shown.indexOf(at);
    if (index < 0) {
      search.value = needle = "";
      for (const box of document.querySelectorAll("#level-filter input")) box.checked = true;
      levels = new Set(KNOWN_LEVELS);
      refilter();
      index = shown.indexOf(at);
    }
    targetPending = false;
    follow.checked = false;
    spacer.style.height = `${totalHeight()}px`; // the filters may have changed it: scroll within the new height
    view.scrollTop = Math.max(0, top(index) - view.clientHeight / 3);
    view.scrollIntoView({ block: "center" });
    window.logTargetShown = target;
  }

  rowsBox.addEventListener("click", (event) => {
    const number = event.target.closest("a.ln");
    if (!number || !number.getAttribute("href").startsWith("#")) return;
    event.preventDefault();
    history.replaceState(null, "", `${location.pathname}${location.search}#L${number.dataset.line}`);
    target = Number(number.dataset.line);
    window.logTarget = target;
    schedule();
  });
  window.addEventListener("hashchange", readHash);

  // The tree ----------------------------------------------------------------------------------------

  function badge(state) {
    const span = document.createElement("span");
    span.className = `badge job-state job-${state}`;
    span.dataset.state = state;
    span.textContent = state;
    return span;
  }

  // Subjobs are named "<parent>:<entry point>" unless they say otherwise: a scatter's are all called
  // the same. Their labels are numbered in the order they were made, and each job gets a colour.
  function label(jobs) {
    const count = {};
    for (const job of jobs) count[job.name] = (count[job.name] || 0) + 1;
    const seen = {};
    jobs.forEach((job, i) => {
      seen[job.name] = (seen[job.name] || 0) + 1;
      names[job.id] = count[job.name] > 1 ? `${job.name} #${seen[job.name]}` : job.name;
      colours[job.id] = COLOURS[i % COLOURS.length];
    });
    const longest = Math.min(28, Math.max(4, ...jobs.map((job) => names[job.id].length)));
    view.style.setProperty("--who-width", `${longest}ch`);
  }

  // The tree's counts by state, in the order jobs/models.py lists the states.
  const STATE_ORDER = ["idle", "waiting_on_input", "runnable", "running", "waiting_on_output", "done", "failed",
    "terminating", "terminated", "debug_hold"];

  function showCounts(jobs) {
    const counts = {};
    for (const job of jobs) counts[job.state] = (counts[job.state] || 0) + 1;
    const box = document.getElementById("tree-states");
    const fragment = document.createDocumentFragment();
    for (const state of STATE_ORDER.filter((s) => counts[s]).concat(Object.keys(counts).filter((s) => !STATE_ORDER.includes(s)))) {
      const item = document.createElement("span");
      item.className = "tree-state";
      item.dataset.state = state;
      item.append(badge(state), ` ${counts[state]}`);
      fragment.appendChild(item);
    }
    box.replaceChildren(fragment);
    box.hidden = jobs.length < 2;
  }

  // The tree shows one page of its depth-first order (the page the server chose: jobs/views.py job_tree),
  // so that a scatter of a thousand subjobs stays a page of rows; the pager follows the tree's growth.
  function showPager(total, page, size) {
    const pages = Math.max(1, Math.ceil(total / size));
    const start = total ? (page - 1) * size + 1 : 0;
    document.getElementById("tree-pager").hidden = pages < 2;
    document.getElementById("tree-range").textContent = `Jobs ${start}–${Math.min(total, page * size)} of ${total}`;
    document.getElementById("tree-prev").hidden = page <= 1;
    document.getElementById("tree-next").hidden = page >= pages;
  }

  function showTree(jobs) {
    const children = {};
    const ids = new Set(jobs.map((job) => job.id));
    label(jobs);
    jobs.forEach((job) => {
      const parent = ids.has(job.parent) ? job.parent : null;
      (children[parent] = children[parent] || []).push(job);
    });
    const order = [];
    (function walk(parent, depth) {
      for (const job of children[parent] || []) {
        order.push([job, depth]);
        walk(job.id, depth + 1);
      }
    })(null, 0);
    const size = Number(treeView.dataset.pageSize) || order.length || 1;
    const page = Math.min(Number(treeView.dataset.page) || 1, Math.max(1, Math.ceil(order.length / size)));
    const rows = order.slice((page - 1) * size, page * size);
    let timesMissing = false;
    for (const [job] of rows) {
      // A job shown that started or stopped since the page was drawn: its times come with the next refresh.
      if (states[job.id] !== undefined && states[job.id] !== job.state && !NOT_STARTED.has(job.state)) timesMissing = true;
      if (states[job.id] === undefined && !times[job.id] && !NOT_STARTED.has(job.state)) timesMissing = true;
    }
    for (const job of jobs) states[job.id] = job.state;
    const fragment = document.createDocumentFragment();
    for (const [job, depth] of rows) {
      const link = document.createElement("a");
      link.className = "tree-row" + (job.id === current ? " current" : "");
      link.href = `/jobs/${job.id}/`;
      link.dataset.job = job.id;
      link.style.setProperty("--depth", depth);
      link.innerHTML = "<span class='tree-name'></span><span class='mono muted small'></span><span class='tree-time mono small'></span>";
      link.firstChild.textContent = job.name;
      link.children[1].textContent = job.id;
      link.appendChild(badge(job.state));
      fragment.appendChild(link);
    }
    treeView.replaceChildren(fragment);
    document.getElementById("tree-count").textContent = `${jobs.length} job${jobs.length === 1 ? "" : "s"}`;
    showCounts(jobs);
    showPager(order.length, page, size);
    tick();
    const mine = jobs.find((job) => job.id === current);
    let refresh = timesMissing;
    if (mine) {
      const holder = document.getElementById("job-state");
      if (lastState === null) lastState = holder.querySelector("[data-state]").dataset.state;
      holder.replaceChildren(badge(mine.state));
      // Its own state changed, or, while it waits, one of the tree's did: the "waiting" line may change.
      if (mine.state !== lastState || WAITING.has(mine.state)) refresh = true;
      lastState = mine.state;
    }
    if (refresh) refreshDetails();
    if (jobs.every((job) => FINAL.has(job.state))) {
      const terminate = document.getElementById("terminate-form");
      if (terminate) terminate.remove();
    }
    if (treeBox.checked) schedule();
  }

  // The final word in the log's header: "complete: 123 lines" (this job's, or with subjobs the tree's),
  // or how the job ended.
  function finalStatus() {
    const held = treeBox.checked ? lines.length : lines.reduce((n, line) => n + (line[0] === current ? 1 : 0), 0);
    const count = `${held.toLocaleString()} line${held === 1 ? "" : "s"}`;
    if (lastState === "done") return `complete: ${count}`;
    return `ended: ${lastState || "unknown"} · ${count}`;
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
      if (frame.type === "tree") {
        // The whole tree first, then only the jobs that are new or changed.
        if (frame.full) treeJobs.clear();
        for (const job of frame.jobs) treeJobs.set(job.id, job);
        showTree(Array.from(treeJobs.values()));
      }
      else if (frame.type === "lines") addLines(frame.lines);
      else if (frame.type === "samples") document.dispatchEvent(new CustomEvent("dx:samples", { detail: frame }));
      else if (frame.type === "end") {
        ended = true;
        window.logStreamEnded = true;
        statusLabel.textContent = finalStatus();
        card.dataset.ended = lastState || "";
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

  // Controls ----------------------------------------------------------------------------------------

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
    if (ended) statusLabel.textContent = finalStatus();
    refilter();
  });
  function setWrap() {
    // Keep the line at the top of the view in place across the change.
    const anchor = indexAt(view.scrollTop);
    view.classList.toggle("wrap", wrapBox.checked);
    layout();
    if (!follow.checked) view.scrollTop = top(Math.min(anchor, shown.length));
    try { localStorage.setItem("dxweb.logWrap", wrapBox.checked ? "1" : ""); } catch (err) { /* private mode */ }
    schedule();
  }
  try { wrapBox.checked = localStorage.getItem("dxweb.logWrap") === "1"; } catch (err) { /* private mode */ }
  wrapBox.addEventListener("change", setWrap);
  follow.addEventListener("change", schedule);
  view.addEventListener("scroll", () => {
    // Scrolling up pauses following; scrolling back to the bottom resumes it.
    const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - ROW;
    if (follow.checked !== atBottom && document.activeElement !== follow && !targetPending) follow.checked = atBottom;
    schedule();
  }, { passive: true });
  // The view is resizable (its bottom edge): a new width changes where messages wrap.
  let lastWidth = view.clientWidth;
  new ResizeObserver(() => {
    if (view.clientWidth !== lastWidth) {
      lastWidth = view.clientWidth;
      layout();
    }
    schedule();
  }).observe(view);

  // For tests: drop the socket as a network failure would, and read what the viewer holds.
  window.dxJobPage = {
    dropSocket: () => socket && socket.close(),
    lines: () => lines.map((line) => `${line[0]}:${line[1]}:${line[4]}`),
    labels: () => ({ ...names }),
    layout: () => ({ wrap: wrapBox.checked, cols, height: totalHeight(), shown: shown.length }),
  };

  readTimes(document);
  tick();
  setInterval(tick, 1000);
  if (wrapBox.checked) setWrap();
  readHash();
  connect();
  schedule();
})();
