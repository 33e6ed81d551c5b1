/* The launch forms: the equivalent `dx run` command, kept up to date, and each field's error cleared when
   its value changes. The data picker is static/jobs/picker.js (loaded first). */
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

  // A field's error goes as soon as its value changes: the message, the red border, aria-invalid.
  function clearError(event) {
    const field = event.target.closest && event.target.closest(".field");
    if (!field || !field.classList.contains("has-error")) return;
    field.classList.remove("has-error");
    field.querySelectorAll(".field-error").forEach((error) => error.remove());
    field.querySelectorAll("[aria-invalid]").forEach((control) => control.setAttribute("aria-invalid", "false"));
  }

  form.addEventListener("input", clearError);
  form.addEventListener("change", clearError);
})();
