/* Workflow pages: the builder's "bind to" choice shows the value box or the earlier outputs; the
   analysis graph follows its stage jobs' states live over the project's job-state websocket. */
(function () {
  "use strict";

  document.querySelectorAll(".bind-form").forEach((form) => {
    const kind = form.querySelector(".bind-kind");
    const value = form.querySelector(".bind-value");
    const output = form.querySelector(".bind-output");
    const show = () => {
      value.hidden = kind.value !== "value";
      if (output) output.hidden = kind.value !== "output";
    };
    kind.addEventListener("change", show);
    show();
  });

  const page = document.getElementById("analysis-page");
  if (!page) return;
  const ids = page.dataset.watch.split(",").filter(Boolean);

  function show(id, state) {
    document.querySelectorAll(`.graph-node[data-job="${CSS.escape(id)}"]`).forEach((node) => {
      node.setAttribute("class", `graph-node job-${state}`);
    });
    document.querySelectorAll(`[data-state-of="${CSS.escape(id)}"]`).forEach((el) => { el.textContent = state; });
    if (id === page.dataset.analysis) {
      const badge = document.getElementById("analysis-state");
      badge.className = `badge job-state job-${state}`;
      badge.textContent = state;
      badge.dataset.state = state;
    }
  }

  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${page.dataset.ws}`);
    socket.onopen = () => socket.send(JSON.stringify({ watch: ids }));
    socket.onmessage = (event) => {
      const states = JSON.parse(event.data).states || {};
      Object.entries(states).forEach(([id, state]) => show(id, state));
      if (["done", "failed", "terminated"].includes(states[page.dataset.analysis])) {
        setTimeout(() => location.reload(), 600);  // the outputs and links of a finished analysis
      }
    };
    socket.onclose = (event) => {
      if (event.code < 4400 || event.code > 4499) setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
    };
  }

  connect(500);
})();
