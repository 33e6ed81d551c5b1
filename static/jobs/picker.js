/* The data picker of the launch forms: a WAI-ARIA 1.2 combobox with a listbox popup over the file search
(/files/search/), for every field marked data-picker="file" (applet, record) in a form that names its
search URL (data-search-url) and its project (data-project).

Keys: typing searches (name, /path in this project, project-xxxx:/path, or an ID) after a short pause;
ArrowDown/ArrowUp open the list and move through it; Enter picks; Tab picks the active option and moves
on; Escape closes the list, and a second Escape clears the field. An array input (a textarea) becomes
chips, one per picked file, each with a remove button; Backspace in the empty box removes the last one.

What is sent stays the same field: a single input's value moves to a hidden input of the same name (the
ID of the picked file, `project-xxxx:file-xxxx` when it is in another project, or what was typed, which
the server resolves); an array's textarea is kept, hidden, one value per line.
*/
(function () {
  "use strict";

  const DEBOUNCE_MS = 150;
  const REFERENCE = /^(?:(project-[0-9A-Za-z]{24}):)?((?:file|applet|record)-[0-9A-Za-z]{24})$/;

  function element(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (key === "className") node.className = value;
      else node.setAttribute(key, value);
    });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /* The ID (and project) a stored value names, if it names one: "file-x", "project-x:file-x" or a link. */
  function referenceOf(value) {
    const text = (value || "").trim();
    const match = text.match(REFERENCE);
    if (match) return { project: match[1] || "", id: match[2] };
    if (text.startsWith("{")) {
      try {
        const target = JSON.parse(text).$dnanexus_link;
        if (typeof target === "string") return { project: "", id: target };
        if (target && typeof target.id === "string") return { project: target.project || "", id: target.id };
      } catch (e) { /* not a link: shown as written */ }
    }
    return null;
  }

  class Picker {
    /* The launching project, read at each search: the app launch form lets the user change it. */
    get project() {
      return this.form.dataset.project || "";
    }

    constructor(form, source) {
      this.form = form;
      this.klass = source.dataset.picker;
      this.url = form.dataset.searchUrl;
      this.multiple = source.tagName === "TEXTAREA";
      this.timer = null;
      this.pending = false;
      this.serial = 0;
      this.items = [];
      this.active = -1;
      const id = source.id;
      const wrapper = source.closest(".picker") || source.parentElement;
      wrapper.classList.add("picker");
      if (this.multiple) {
        // The textarea stays the submitted value, hidden; a text box takes its place (and its ID, for its label).
        this.store = source;
        this.input = element("input", {
          type: "text",
          id,
          className: "picker-input",
          placeholder: source.getAttribute("placeholder") || "",
          spellcheck: "false",
          "data-class": source.dataset.class,
          "data-picker": this.klass,
        });
        ["aria-describedby", "aria-invalid"].forEach((name) => {
          if (source.hasAttribute(name)) this.input.setAttribute(name, source.getAttribute(name));
        });
        source.id = `${id}-values`;
        source.hidden = true;
        source.removeAttribute("data-picker");
        source.setAttribute("aria-hidden", "true");
        source.tabIndex = -1;
        const help = document.getElementById(`${id}_helptext`);
        if (help) help.textContent = help.textContent.replace(/One (\w+) per line$/, "Pick one $1 after another; Backspace in the empty box removes the last");
        this.chips = element("ul", { className: "picker-chips", "aria-label": "Picked" });
        wrapper.insertBefore(this.chips, source);
        wrapper.insertBefore(this.input, source);
      } else {
        // The text box shows a name; a hidden input of the same name carries the ID to the server.
        this.input = source;
        this.store = element("input", { type: "hidden", name: source.name, "data-input": source.dataset.input,
                                        "data-class": source.dataset.class });
        this.store.value = source.value;
        source.removeAttribute("name");
        source.removeAttribute("data-input");
        source.insertAdjacentElement("afterend", this.store);
      }
      this.popup = element("div", { className: "picker-results card" });
      this.popup.hidden = true;
      this.listbox = element("div", { role: "listbox", id: `${id}-listbox`, className: "picker-listbox",
                                      "aria-label": `${this.klass[0].toUpperCase()}${this.klass.slice(1)}s found` });
      this.note = element("div", { className: "picker-note muted" });
      this.popup.append(this.listbox, this.note);
      this.status = element("div", { className: "sr-only", role: "status", "aria-live": "polite" });
      this.picked = element("div", { className: "picker-picked muted small", id: `${id}-picked` });
      wrapper.append(this.popup, this.picked, this.status);

      const input = this.input;
      input.setAttribute("role", "combobox");
      input.setAttribute("aria-autocomplete", "list");
      input.setAttribute("aria-expanded", "false");
      input.setAttribute("aria-controls", this.listbox.id);
      input.setAttribute("autocomplete", "off");
      const described = (input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
      input.setAttribute("aria-describedby", [...described, this.picked.id].join(" "));

      input.addEventListener("input", () => this.typed());
      input.addEventListener("keydown", (event) => this.key(event));
      input.addEventListener("blur", () => this.close());
      input.addEventListener("click", () => { if (this.popup.hidden) this.search(); });
      // A press on an option keeps the focus in the box; the click picks it.
      this.listbox.addEventListener("mousedown", (event) => event.preventDefault());
      this.listbox.addEventListener("click", (event) => {
        const option = event.target.closest("[role=option]");
        if (option) this.pick(this.items[Number(option.dataset.index)]);
      });
      // An array's name typed but not picked is sent too: the server resolves it or says why not.
      if (this.multiple) form.addEventListener("submit", () => {
        if (this.input.value.trim()) {
          this.addChip(this.input.value.trim(), null);
          this.input.value = "";
          this.save();
        }
      });
      this.restore();
    }

    // What is already in the field (a rerun, or a form sent back with an error) is shown by name.
    restore() {
      if (this.multiple) {
        let lines = this.store.value.split("\n").map((line) => line.trim()).filter(Boolean);
        const text = this.store.value.trim();
        if (text.startsWith("[")) {
          try {
            const list = JSON.parse(text);
            if (Array.isArray(list)) lines = list.map((item) => (typeof item === "string" ? item : JSON.stringify(item)));
          } catch (e) { /* left as lines */ }
        }
        this.values = [];
        this.chips.replaceChildren();
        lines.forEach((line) => this.addChip(line, null));
        this.save();
        this.values.forEach((entry) => this.describe(entry.value).then((item) => item && this.showChip(entry, item)));
      } else if (this.store.value) {
        this.describe(this.store.value).then((item) => {
          if (item && this.store.value && this.input.value === this.store.value) this.showPicked(item);
        });
      }
    }

    async describe(value) {
      const reference = referenceOf(value);
      if (!reference) return null;
      const found = await this.fetch(reference.project ? `${reference.project}:${reference.id}` : reference.id);
      return found && found.results.length ? found.results[0] : null;
    }

    async fetch(query) {
      const params = new URLSearchParams({ q: query, class: this.klass, project: this.project });
      const response = await fetch(`${this.url}?${params}`, { credentials: "same-origin",
                                                             headers: { Accept: "application/json" } });
      return response.ok ? response.json() : null;
    }

    typed() {
      if (!this.multiple) {
        this.store.value = this.input.value;
        this.picked.textContent = "";
      }
      clearTimeout(this.timer);
      this.pending = true;
      this.timer = setTimeout(() => this.search(), DEBOUNCE_MS);
    }

    async search(activate) {
      clearTimeout(this.timer);
      this.pending = false;
      const mine = ++this.serial;
      const text = this.input.value.trim();
      // A picked file's name searches for that name; an ID typed whole finds that object.
      let found;
      try {
        found = await this.fetch(text);
      } catch (e) {
        found = null;
      }
      if (mine !== this.serial || document.activeElement !== this.input) return;
      if (!found) {
        this.show([], "The search failed; try again");
        return;
      }
      this.show(found.results, found.message);
      if (activate !== undefined && this.items.length) this.move(activate === "last" ? this.items.length - 1 : 0);
    }

    show(items, message) {
      this.items = items;
      this.active = -1;
      this.input.removeAttribute("aria-activedescendant");
      this.listbox.replaceChildren(...items.map((item, index) => {
        const option = element("div", { role: "option", id: `${this.listbox.id}-${index}`, className: "picker-option",
                                        "aria-selected": "false", "data-id": item.id, "data-index": String(index) });
        const where = item.here ? item.folder : `${item.projectName}:${item.folder}`;
        option.append(element("span", { className: "picker-name" }, item.name),
                      element("span", { className: "picker-where muted" }, where));
        return option;
      }));
      this.note.textContent = items.length ? "" : message || "Nothing found";
      this.note.hidden = Boolean(items.length);
      this.popup.hidden = false;
      this.input.setAttribute("aria-expanded", items.length ? "true" : "false");
      const noun = items.length === 1 ? this.klass : `${this.klass}s`;
      this.status.textContent = items.length ? `${items.length} ${noun} found` : this.note.textContent;
    }

    isOpen() {
      return !this.popup.hidden;
    }

    close() {
      clearTimeout(this.timer);
      this.pending = false;
      this.serial++;
      this.popup.hidden = true;
      this.active = -1;
      this.input.setAttribute("aria-expanded", "false");
      this.input.removeAttribute("aria-activedescendant");
    }

    move(index) {
      const options = this.listbox.querySelectorAll("[role=option]");
      if (!options.length) return;
      this.active = (index + options.length) % options.length;
      options.forEach((option, i) => {
        option.classList.toggle("active", i === this.active);
        option.setAttribute("aria-selected", i === this.active ? "true" : "false");
      });
      const option = options[this.active];
      this.input.setAttribute("aria-activedescendant", option.id);
      option.scrollIntoView({ block: "nearest" });
    }

    key(event) {
      const open = this.isOpen() && this.items.length > 0;
      switch (event.key) {
        case "ArrowDown":
        case "ArrowUp": {
          event.preventDefault();
          const down = event.key === "ArrowDown";
          if (open && !this.pending && !event.altKey) this.move(this.active < 0 ? (down ? 0 : -1) : this.active + (down ? 1 : -1));
          else this.search(event.altKey ? undefined : down ? "first" : "last");
          break;
        }
        case "Enter":
          if (open && this.active >= 0) {
            event.preventDefault();
            this.pick(this.items[this.active]);
          } else if (this.isOpen()) {
            event.preventDefault();
            this.close();
          }
          break;
        case "Tab":
          if (open && this.active >= 0) this.pick(this.items[this.active]);
          this.close();
          break;
        case "Escape":
          if (this.isOpen()) {
            event.preventDefault();
            this.close();
          } else if (this.input.value) {
            event.preventDefault();
            this.clear();
          }
          break;
        case "Backspace":
          if (this.multiple && !this.input.value && this.values.length) {
            event.preventDefault();
            this.remove(this.values[this.values.length - 1]);
          }
          break;
        default:
      }
    }

    valueOf(item) {
      return item.here || !item.project ? item.id : `${item.project}:${item.id}`;
    }

    pick(item) {
      if (!item) return;
      if (this.multiple) {
        this.showChip(this.addChip(this.valueOf(item), item), item);
        this.input.value = "";
        this.save();
      } else {
        this.store.value = this.valueOf(item);
        this.showPicked(item);
      }
      this.close();
      this.status.textContent = `Picked ${item.name}`;
      this.changed();
    }

    showPicked(item) {
      this.input.value = item.name;
      this.picked.textContent = item.here ? `in ${item.folder}` : `in ${item.folder} of ${item.projectName}`;
      this.input.title = `${item.projectName}:${item.path} (${item.id})`;
    }

    clear() {
      this.input.value = "";
      if (!this.multiple) {
        this.store.value = "";
        this.picked.textContent = "";
        this.input.removeAttribute("title");
      }
      this.status.textContent = "Cleared";
      this.changed();
    }

    // The form hears of it as of any change: its dx command is redrawn and the field's error cleared.
    changed() {
      this.store.dispatchEvent(new Event("change", { bubbles: true }));
    }

    // Chips (array inputs): one per value, in the order picked.
    addChip(value, item) {
      const entry = { value, chip: element("li", { className: "chip picker-chip", "data-value": value }) };
      const label = element("span", { className: "picker-chip-name" }, value);
      const where = element("span", { className: "picker-chip-where muted" });
      const remove = element("button", { type: "button", className: "picker-chip-remove", "aria-label": `Remove ${value}` }, "×");
      remove.addEventListener("click", () => {
        this.remove(entry);
        this.input.focus();
      });
      entry.chip.append(label, where, remove);
      this.chips.append(entry.chip);
      this.values.push(entry);
      if (item) this.showChip(entry, item);
      return entry;
    }

    showChip(entry, item) {
      entry.chip.querySelector(".picker-chip-name").textContent = item.name;
      entry.chip.querySelector(".picker-chip-where").textContent = item.here ? item.folder : `${item.projectName}:${item.folder}`;
      entry.chip.querySelector(".picker-chip-remove").setAttribute("aria-label", `Remove ${item.name}`);
      entry.chip.title = item.id;
    }

    remove(entry) {
      const name = entry.chip.querySelector(".picker-chip-name").textContent;
      this.values = this.values.filter((other) => other !== entry);
      entry.chip.remove();
      this.save();
      this.status.textContent = `Removed ${name}`;
      this.changed();
    }

    save() {
      this.store.value = this.values.map((entry) => entry.value).join("\n");
    }
  }

  document.querySelectorAll("form[data-search-url]").forEach((form) => {
    form.querySelectorAll("input[data-picker], textarea[data-picker]").forEach((source) => new Picker(form, source));
  });
})();
