/* Behaviour shared by every page: flash messages, confirmations, dialogs, copy buttons, auto-submitting selects,
   the navigation's Menu button on narrow screens, and column labels for tables shown as cards. */
(function () {
  "use strict";

  document.addEventListener("click", (event) => {
    const close = event.target.closest(".flash-close");
    if (close) close.closest(".flash").remove();

    const confirmable = event.target.closest("[data-confirm]");
    if (confirmable && !window.confirm(confirmable.dataset.confirm)) {
      event.preventDefault();
      return;
    }

    const opener = event.target.closest("[data-open]");
    if (opener) {
      const dialog = document.getElementById(opener.dataset.open);
      dialog.showModal();
      const first = dialog.querySelector("input:not([type=hidden])");
      if (first) first.select();
    }

    if (event.target.closest("[data-close]")) event.target.closest("dialog").close();

    const copier = event.target.closest("[data-copy]");
    if (copier) {
      const text = document.querySelector(copier.dataset.copy).innerText.trim();
      navigator.clipboard.writeText(text).then(() => {
        copier.classList.add("copied");
        setTimeout(() => copier.classList.remove("copied"), 1500);
      });
    }
  });

  // Level and role pickers save on change; their Save button is for browsers without scripts.
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.requestSubmit());
  });

  // The Menu button (narrow screens): opens and closes the navigation; Escape or a click elsewhere closes it.
  const toggle = document.getElementById("nav-toggle");
  if (toggle) {
    const header = toggle.closest(".topnav");
    const setOpen = (open) => {
      header.classList.toggle("open", open);
      toggle.setAttribute("aria-expanded", String(open));
    };
    const isOpen = () => toggle.getAttribute("aria-expanded") === "true";
    toggle.addEventListener("click", () => setOpen(!isOpen()));
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || !isOpen()) return;
      setOpen(false);
      toggle.focus();
    });
    document.addEventListener("click", (event) => {
      if (isOpen() && !header.contains(event.target)) setOpen(false);
    });
    // Back on a wide screen the links are in the bar; a narrow screen later starts with the menu closed.
    window.matchMedia("(min-width: 1001px)").addEventListener("change", (event) => {
      if (event.matches) setOpen(false);
    });
  }

  // Tables shown as cards on narrow screens (app.css) name each cell after its column: data-label from the
  // header cell above it. Rows added later (live lists) are labelled as they come.
  function labelCells(table) {
    const head = table.tHead && table.tHead.rows[0];
    if (!head) return;
    const labels = [];
    for (const th of head.cells) {
      for (let i = 0; i < th.colSpan; i++) labels.push(th.textContent.trim());
    }
    for (const body of table.tBodies) {
      for (const row of body.rows) {
        let column = 0;
        for (const cell of row.cells) {
          const label = labels[column];
          if (label && !cell.hasAttribute("data-label")) cell.setAttribute("data-label", label);
          column += cell.colSpan;
        }
      }
    }
  }
  document.querySelectorAll(".table-card table.table").forEach(labelCells);
  const main = document.querySelector("main");
  if (main && "MutationObserver" in window) {
    new MutationObserver((changes) => {
      const touched = new Set();
      for (const change of changes) {
        const table = change.target.closest("table.table");
        if (table) touched.add(table);
        for (const node of change.addedNodes) {
          if (node.nodeType !== Node.ELEMENT_NODE || table) continue;
          if (node.matches("table.table")) touched.add(node);
          node.querySelectorAll("table.table").forEach((found) => touched.add(found));
        }
      }
      touched.forEach((table) => {
        if (table.closest(".table-card")) labelCells(table);
      });
    }).observe(main, { childList: true, subtree: true });
  }
  document.documentElement.classList.add("js");
})();
