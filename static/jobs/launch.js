/* The launch form: the equivalent `dx run` command, kept up to date, and the searchable data picker. */
(function () {
  "use strict";

  const form = document.getElementById("launch-form");
  const output = document.getElementById("dx-command");

  function quote(text) {
    return /^[\w@%+=:,./-]+$/.test(text) ? text : "'" + text.replace(/'/g, "'\\''") + "'";
  }

  function inputArgs(element) {
    const name = element.dataset.input;
    const klass = element.dataset.class;
    const value = element.value;
    if (!value.trim()) return [];
    if (klass.startsWith("array:")) {
      if (klass === "array:hash" || value.trim().startsWith("[")) return [`-i${name}=${quote(value.replace(/\s*\n\s*/g, " "))}`];
      return value.split("\n").filter((line) => line.trim()).map((line) => `-i${name}=${quote(line.trim())}`);
    }
    if (element.tagName === "SELECT" && klass !== "boolean") {
      try { return [`-i${name}=${quote(String(JSON.parse(value)))}`]; } catch (e) { return []; }
    }
    return [`-i${name}=${quote(klass === "hash" ? value.replace(/\s*\n\s*/g, " ") : value)}`];
  }

  function command() {
    const field = (name) => form.elements[name];
    const parts = ["dx", "run", form.dataset.applet];
    form.querySelectorAll("[data-input]").forEach((element) => parts.push(...inputArgs(element)));
    if (field("name").value.trim()) parts.push("--name", quote(field("name").value.trim()));
    parts.push("--destination", quote(`${form.dataset.project}:${field("folder").value.trim() || "/"}`));
    if (field("instance_type").value) parts.push("--instance-type", field("instance_type").value);
    if (field("priority").value !== "normal") parts.push("--priority", field("priority").value);
    field("tags").value.split(",").map((t) => t.trim()).filter(Boolean).forEach((t) => parts.push("--tag", quote(t)));
    field("properties").value.split("\n").map((l) => l.trim()).filter(Boolean).forEach((l) => parts.push("--property", quote(l)));
    form.querySelectorAll("input[name=debug_on]:checked").forEach((box) => parts.push("--debug-on", box.value));
    if (field("allow_ssh").checked) parts.push("--allow-ssh");
    const timeout = field("timeout") && field("timeout").value.trim().match(/^(\d+(?:\.\d+)?)\s*([dhm])$/);
    if (timeout) {
      const unit = { d: "days", h: "hours", m: "minutes" }[timeout[2]];
      const policy = { timeoutPolicyByExecutable: { [form.dataset.applet]: { "*": { [unit]: Number(timeout[1]) } } } };
      parts.push("--extra-args", quote(JSON.stringify(policy)));
    }
    parts.push("-y");
    output.textContent = parts.join(" ");
  }

  form.addEventListener("input", command);
  form.addEventListener("change", command);
  command();

  // The picker: search files (applets, records) the user can see, newest first, this project's first.
  form.querySelectorAll("[data-picker]").forEach((input) => {
    const results = input.parentElement.querySelector(".picker-results");
    let timer = null;
    let serial = 0;

    async function search() {
      const mine = ++serial;
      const params = new URLSearchParams({ q: input.value.startsWith(input.dataset.picker + "-") ? "" : input.value,
                                           class: input.dataset.picker, project: form.dataset.project });
      const response = await fetch(`${form.dataset.searchUrl}?${params}`, { credentials: "same-origin" });
      if (!response.ok || mine !== serial) return;
      const found = (await response.json()).results;
      results.replaceChildren(...found.map((item) => {
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.id = item.id;
        button.innerHTML = "<span></span><span class='muted'></span>";
        button.firstChild.textContent = item.name;
        button.lastChild.textContent = `${item.projectName}:${item.folder} · ${item.id}`;
        return button;
      }));
      if (!found.length) results.innerHTML = "<div class='muted pad'>Nothing found</div>";
      results.hidden = false;
    }

    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 200); });
    input.addEventListener("focus", () => { if (!input.value) search(); });
    input.addEventListener("blur", () => setTimeout(() => { results.hidden = true; }, 200));
    results.addEventListener("mousedown", (event) => {
      const choice = event.target.closest("button[data-id]");
      if (!choice) return;
      event.preventDefault();
      input.value = choice.dataset.id;
      input.title = choice.firstChild.textContent;
      results.hidden = true;
      command();
    });
  });
})();
