/* Behaviour shared by every page: flash messages, confirmations, dialogs, copy buttons, auto-submitting selects. */
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
  document.documentElement.classList.add("js");
})();
