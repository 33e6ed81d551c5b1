/* The project page's file browser: selection, rename and move dialogs, highlighting fresh uploads. */
(function () {
  "use strict";

  const listing = document.getElementById("selection");
  const boxes = () => listing.querySelectorAll("tbody input[type=checkbox]");
  const selectAll = document.getElementById("select-all");

  function refreshSelection() {
    const count = [...boxes()].filter((box) => box.checked).length;
    document.querySelectorAll("[data-needs-selection]").forEach((button) => { button.disabled = count === 0; });
    boxes().forEach((box) => box.closest("tr").classList.toggle("selected", box.checked));
    if (selectAll) {
      selectAll.checked = count > 0 && count === boxes().length;
      selectAll.indeterminate = count > 0 && count < boxes().length;
    }
  }

  listing.addEventListener("change", (event) => {
    if (event.target === selectAll) boxes().forEach((box) => { box.checked = selectAll.checked; });
    refreshSelection();
  });

  const rename = document.getElementById("rename-dialog");
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-rename-object], [data-rename-folder]");
    if (!button || !rename) return;
    const form = rename.querySelector("form");
    const isObject = button.hasAttribute("data-rename-object");
    form.action = isObject ? form.dataset.objectAction : form.dataset.folderAction;
    form.elements.object.value = isObject ? button.dataset.renameObject : "";
    form.elements.path.value = isObject ? "" : button.dataset.renameFolder;
    form.elements.name.value = button.dataset.name;
    rename.showModal();
    const name = form.elements.name;
    const dot = name.value.lastIndexOf(".");
    name.focus();
    name.setSelectionRange(0, isObject && dot > 0 ? dot : name.value.length);
  });

  // Rows for files uploaded just before the page reloaded get a short highlight.
  const fresh = JSON.parse(sessionStorage.getItem("dxweb.uploaded") || "[]");
  sessionStorage.removeItem("dxweb.uploaded");
  fresh.forEach((id) => {
    const row = document.querySelector(`tr[data-object="${CSS.escape(id)}"]`);
    if (row) row.classList.add("fresh");
  });

  refreshSelection();
})();
