/* Job lists: state badges follow the jobs live over the page's websocket, and reconnect if it drops. */
(function () {
  "use strict";

  const list = document.getElementById("job-list");
  const rows = [...document.querySelectorAll("tr[data-job]")];
  if (!list || !rows.length) return;
  const ids = rows.map((row) => row.dataset.job);

  function badge(cell, state) {
    const span = cell.querySelector(".job-state");
    if (!span || span.dataset.state === state) return;
    span.className = `badge job-state job-${state}`;
    span.dataset.state = state;
    span.textContent = state;
  }

  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${list.dataset.ws}`);
    socket.onopen = () => {
      window.jobStatesConnected = true;
      socket.send(JSON.stringify({ watch: ids }));
    };
    socket.onmessage = (event) => {
      const states = JSON.parse(event.data).states || {};
      Object.entries(states).forEach(([id, state]) => {
        const row = document.querySelector(`tr[data-job="${CSS.escape(id)}"]`);
        if (row) badge(row, state);
      });
    };
    socket.onclose = (event) => {
      window.jobStatesConnected = false;
      // 44xx: refused (logged out, no access); anything else is a dropped connection worth retrying.
      if (event.code < 4400 || event.code > 4499) setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
    };
  }

  connect(500);
})();
