/* The CLI access page: the `dx select` line follows the chosen project. */
(function () {
  "use strict";
  const picker = document.getElementById("cli-project");
  const target = document.getElementById("cli-project-id");
  if (picker && target) picker.addEventListener("change", () => { target.textContent = picker.value; });
})();
