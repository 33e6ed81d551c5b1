/* The job's terminal ("Debug"): xterm.js over /ws/jobs/<id>/terminal/, which proxies the job's SSH gateway.

Output arrives in binary frames that xterm decodes as UTF-8 itself (a character split across two
frames is kept whole); the page acks what xterm has processed so the server can pause reading from
SSH while the page is behind. A dropped connection reconnects on its own, and so does a refreshed
page: the gateway runs the shell under tmux, which restores the session. A refusal or an ended
session does not reconnect; the status line says why. Browser tests wait on
document.body.dataset.terminal ("connecting", "open", "closed") and read window.dxTerminal's buffer.
*/
(function () {
  "use strict";

  const box = document.getElementById("terminal");
  const statusLine = document.getElementById("terminal-status");
  const hold = document.getElementById("hold");
  const holdLeft = document.getElementById("hold-left");
  const reconnectButton = document.getElementById("term-reconnect");
  // Codes after which reconnecting cannot help: the shell exited, a refusal, an ended session, the gateway's no.
  const FINAL_CODES = new Set([1000, 4403, 4404, 4409, 4410, 4502]);
  const RETRIES = 5;
  const ACK_BYTES = 64 * 1024;

  const term = new Terminal({
    cursorBlink: true,
    scrollback: 5000,
    fontFamily: 'ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace',
    fontSize: 13,
    theme: { background: "#0f172a", foreground: "#e2e8f0", cursor: "#a5b4fc", selectionBackground: "#334155" },
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  window.dxTerminal = term;

  let socket = null;
  let retries = 0;
  let lastMessage = "";
  let unacked = 0;
  let ackTimer = null;
  let holdUntil = box.dataset.holdUntil ? Number(box.dataset.holdUntil) : null;
  let clockSkew = 0; // server time minus this browser's time, from status frames

  function setState(state, message) {
    document.body.dataset.terminal = state;
    statusLine.dataset.state = state;
    statusLine.textContent = message;
    reconnectButton.hidden = state === "open";
  }

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  function flushAck() {
    clearTimeout(ackTimer);
    ackTimer = null;
    if (unacked) send({ type: "ack", bytes: unacked });
    unacked = 0;
  }

  function rendered(count) {
    unacked += count;
    if (unacked >= ACK_BYTES) flushAck();
    else if (!ackTimer) ackTimer = setTimeout(flushAck, 100);
  }

  function showHold() {
    hold.hidden = holdUntil === null;
    if (holdUntil === null) return;
    const left = Math.max(0, Math.round((holdUntil - (Date.now() + clockSkew)) / 1000));
    const h = Math.floor(left / 3600);
    const m = String(Math.floor((left % 3600) / 60)).padStart(h ? 2 : 1, "0");
    const s = String(left % 60).padStart(2, "0");
    holdLeft.textContent = left ? (h ? `${h}:${m}:${s}` : `${m}:${s}`) : "expired";
  }

  function onStatus(frame) {
    if (typeof frame.now === "number") clockSkew = frame.now - Date.now();
    if (frame.state === "open") {
      retries = 0;
      holdUntil = typeof frame.holdUntil === "number" ? frame.holdUntil : null;
      showHold();
      setState("open", "Connected");
      term.focus();
    } else if (frame.state === "error") {
      console.warn("terminal:", frame.message);
    } else {
      lastMessage = frame.message || "";
    }
  }

  function connect() {
    clearTimeout(connect.timer);
    if (socket) socket.close();
    lastMessage = "";
    unacked = 0;
    setState("connecting", retries ? `Reconnecting (attempt ${retries} of ${RETRIES})…` : "Connecting…");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const current = new WebSocket(`${scheme}://${location.host}${box.dataset.ws}`);
    current.binaryType = "arraybuffer";
    socket = current;
    current.onopen = () => send({ type: "resize", cols: term.cols, rows: term.rows });
    current.onmessage = (event) => {
      if (current !== socket) return;
      if (typeof event.data === "string") {
        onStatus(JSON.parse(event.data));
        return;
      }
      const bytes = new Uint8Array(event.data);
      term.write(bytes, () => rendered(bytes.length));
    };
    current.onclose = (event) => {
      if (current !== socket) return;
      socket = null;
      const message = lastMessage || event.reason;
      if (FINAL_CODES.has(event.code)) {
        setState("closed", message || "The terminal closed");
      } else if (retries < RETRIES) {
        retries += 1;
        setState("closed", "Connection lost; reconnecting…");
        connect.timer = setTimeout(connect, Math.min(8000, 500 * 2 ** retries));
      } else {
        setState("closed", message || "Could not connect to the terminal: the server is unreachable or refused this page");
      }
    };
  }

  // Copy and paste: xterm pastes from the clipboard by itself (Ctrl+Shift+V, the context menu, middle click).
  function copySelection() {
    const text = term.getSelection();
    if (!text) return;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text);
    } else {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    term.focus();
  }

  term.attachCustomKeyEventHandler((event) => {
    if (event.type === "keydown" && event.ctrlKey && event.shiftKey && event.code === "KeyC") {
      copySelection();
      return false;
    }
    // Ctrl+Shift+V: let the browser deliver a paste event (to xterm) instead of sending ^V.
    return !(event.ctrlKey && event.shiftKey && event.code === "KeyV");
  });
  term.onData((data) => send({ type: "input", data }));
  term.onResize(({ cols, rows }) => send({ type: "resize", cols, rows }));

  document.getElementById("term-copy").addEventListener("click", copySelection);
  document.getElementById("term-paste").addEventListener("click", () => {
    if (!navigator.clipboard || !navigator.clipboard.readText) {
      setState(document.body.dataset.terminal, "This browser only pastes with Ctrl+Shift+V here");
      return;
    }
    navigator.clipboard.readText().then((text) => term.paste(text)).finally(() => term.focus());
  });
  reconnectButton.addEventListener("click", () => {
    retries = 0;
    connect();
  });

  let fitPending = false;
  window.addEventListener("resize", () => {
    if (fitPending) return;
    fitPending = true;
    requestAnimationFrame(() => {
      fitPending = false;
      fit.fit();
    });
  });

  showHold();
  setInterval(showHold, 1000);
  connect();
})();
