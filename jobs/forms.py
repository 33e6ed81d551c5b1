"""Page forms for applets and launching: they turn fields into the same JSON bodies the API takes.

The checks stay in jobs.specs and jobs.actions; these forms only parse what a browser sends
and put the actions' errors next to the field each names (DXError.field).
"""

import json
import re
from dataclasses import dataclass

from django import forms
from django.conf import settings

from dxweb.errors import DXError
from dxweb.ids import ID_BODY, id_class
from projects import permissions
from projects.models import Placement

from .models import DEBUG_REASONS, PRIORITIES, State
from .specs import DATA_CLASSES, INTERPRETERS, input_field

DEBUG_CHOICES = [(r, r) for r in DEBUG_REASONS]
PRIORITY_CHOICES = [(p, p) for p in PRIORITIES]
TEXTAREA = {"rows": 4, "spellcheck": "false"}


def parse_tags(text):
    """Tags written comma-separated, blanks left out."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def tags_text(tags):
    return ", ".join(tags)


def parse_properties(text):
    """Properties written one key=value per line: (the properties, a message for each line that is not)."""
    properties, errors = {}, []
    for line in (text or "").splitlines():
        if line.strip():
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                errors.append(f"Write each property as key=value: {line.strip()!r}")
                continue
            properties[key.strip()] = value.strip()
    return properties, errors


def properties_text(properties):
    return "\n".join(f"{k}={v}" for k, v in properties.items())


def json_field(label, help_text, rows=6):
    return forms.CharField(
        label=label,
        required=False,
        help_text=help_text,
        strip=False,
        widget=forms.Textarea(attrs={**TEXTAREA, "rows": rows}),
    )


def _loads(text):
    """json.loads, refusing what no database can store: lone UTF-16 surrogates ("\\ud800")."""
    value = json.loads(text)
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("it holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape), which is not text") from None
    return value


class AppletForm(forms.Form):
    """An applet's specs and code; a dxapp.json (pasted or uploaded) fills what the other fields leave empty."""

    name = forms.CharField(label="Name", required=False, help_text="Versions of an applet share its name")
    title = forms.CharField(label="Title", required=False)
    summary = forms.CharField(label="Summary", required=False)
    description = forms.CharField(label="Description", required=False, widget=forms.Textarea(attrs={"rows": 3}))
    interpreter = forms.ChoiceField(label="Interpreter", choices=[(i, i) for i in sorted(INTERPRETERS)])
    code = forms.CharField(
        label="Code",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "false", "class": "code-editor"}),
    )
    code_file = forms.FileField(label="…or upload the code", required=False)
    input_spec = json_field("inputSpec", 'A JSON array, e.g. [{"name": "n", "class": "int", "default": 3}]')
    output_spec = json_field("outputSpec", 'A JSON array, e.g. [{"name": "total", "class": "int"}]')
    timeout = forms.CharField(label="Timeout", required=False, help_text="runSpec.timeoutPolicy, e.g. 2h or 30m")
    dxapp = json_field(
        "dxapp.json", "Paste a dxapp.json to import it; its runSpec.file is replaced by the code above", rows=8
    )
    dxapp_file = forms.FileField(label="…or upload a dxapp.json", required=False)

    # The form field that shows an action's error about each field of the /applet/new body.
    ERROR_FIELDS = {
        "inputSpec": "input_spec",
        "outputSpec": "output_spec",
        "runSpec.code": "code",
        "runSpec.interpreter": "interpreter",
        "runSpec.timeoutPolicy": "timeout",
        "name": "name",
    }

    def clean(self):
        data = super().clean()
        dxapp = {}
        raw = data.get("dxapp", "")
        if data.get("dxapp_file"):
            raw = data["dxapp_file"].read().decode("utf-8", "replace")
        if raw.strip():
            try:
                dxapp = _loads(raw)
                if not isinstance(dxapp, dict):
                    raise ValueError
            except ValueError:
                self.add_error("dxapp", "This is not a JSON object (a dxapp.json)")
                return data
        code = data.get("code", "")
        if data.get("code_file"):
            code = data["code_file"].read().decode("utf-8", "replace")
        body = {
            key: dxapp[key] for key in ("title", "summary", "description", "version", "access", "dxapi") if key in dxapp
        }
        body["name"] = data.get("name") or dxapp.get("name") or ""
        if not body["name"]:
            self.add_error("name", "Name the applet (or import a dxapp.json that does)")
        for key in ("title", "summary", "description"):
            if data.get(key):
                body[key] = data[key]
        for field, key in (("input_spec", "inputSpec"), ("output_spec", "outputSpec")):
            if data.get(field, "").strip():
                try:
                    body[key] = _loads(data[field])
                except ValueError as err:
                    self.add_error(field, f"Not valid JSON: {err}")
            elif key in dxapp:
                body[key] = dxapp[key]
        run_spec = (
            {k: v for k, v in dxapp.get("runSpec", {}).items() if k != "file"}
            if isinstance(dxapp.get("runSpec"), dict)
            else {}
        )
        run_spec["interpreter"] = run_spec.get("interpreter") or data.get("interpreter")
        run_spec["code"] = code
        if not code.strip():
            self.add_error("code", "Paste or upload the applet's script")
        if data.get("timeout"):
            limit = parse_duration(data["timeout"])
            if limit is None:
                self.add_error("timeout", "Write it as a number with d, h or m, e.g. 90m or 2h")
            else:
                run_spec["timeoutPolicy"] = {"*": limit}
        body["runSpec"] = run_spec
        data["body"] = body
        return data

    def add_action_error(self, err):
        """Put an action's DXError next to the field it is about (or at the top of the form)."""
        self.add_error(self.ERROR_FIELDS.get(err.field), err.message)


def parse_duration(text):
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhm])\s*", text or "")
    if not match:
        return None
    return {
        {"d": "days", "h": "hours", "m": "minutes"}[match.group(2)]: float(match.group(1))
        if "." in match.group(1)
        else int(match.group(1))
    }


def applet_initial(placement):
    """The applet form's fields for a new version of an existing applet."""
    spec = placement.obj.spec
    run_spec = spec.get("runSpec", {})
    timeout = run_spec.get("timeoutPolicy", {}).get("*")
    return {
        "name": placement.name,
        "title": spec.get("title", ""),
        "summary": spec.get("summary", ""),
        "description": spec.get("description", ""),
        "interpreter": run_spec.get("interpreter", "bash"),
        "code": run_spec.get("code", ""),
        "input_spec": json.dumps(spec.get("inputSpec", []), indent=2),
        "output_spec": json.dumps(spec.get("outputSpec", []), indent=2),
        "timeout": "".join(f"{v}{k[0]}" for k, v in timeout.items())
        if isinstance(timeout, dict) and len(timeout) == 1
        else "",
    }


# Launching ---------------------------------------------------------------------------


def field_name(input_name):
    return f"in_{input_name}"


def _input_field(spec):
    klass = spec["class"]
    base = klass.removeprefix("array:")
    label = spec.get("label") or spec["name"]
    attrs = {"data-input": spec["name"], "data-class": klass}
    common = {"label": label, "required": False, "help_text": spec.get("help", "")}
    picker = base in DATA_CLASSES and "choices" not in spec
    if picker:
        # The page's picker (static/jobs/picker.js) turns this into a searchable list; without it, a name,
        # a path or an ID typed here is resolved when the form is sent.
        attrs.update(autocomplete="off", spellcheck="false", placeholder=f"Name, /path or {base}-ID")
        attrs["data-picker"] = base
    if klass.startswith("array:"):
        help_text = "A JSON array" if base == "hash" else f"One {base} per line" if picker else "One value per line"
        common["help_text"] = " — ".join(filter(None, [spec.get("help", ""), help_text]))
        field = forms.CharField(widget=forms.Textarea(attrs={**attrs, **TEXTAREA}), strip=False, **common)
    elif "choices" in spec:
        choices = [("", "—")] + [(json.dumps(c), str(c)) for c in spec["choices"]]
        field = forms.ChoiceField(choices=choices, widget=forms.Select(attrs=attrs), **common)
    elif klass == "boolean":
        field = forms.ChoiceField(
            choices=[("", "—"), ("true", "true"), ("false", "false")], widget=forms.Select(attrs=attrs), **common
        )
    elif klass == "hash":
        field = forms.CharField(widget=forms.Textarea(attrs={**attrs, **TEXTAREA}), strip=False, **common)
    elif klass in ("int", "float"):
        attrs.update(type="number", step="1" if klass == "int" else "any")
        field = forms.CharField(widget=forms.TextInput(attrs=attrs), **common)
    elif picker:
        field = forms.CharField(widget=forms.TextInput(attrs=attrs), **common)
    else:
        field = forms.CharField(widget=forms.TextInput(attrs=attrs), strip=False, **common)
    field.picker = base if picker else ""
    return field


def _initial_text(spec, value):
    """Show an input value (a default, or a job's original input) in its field."""
    klass = spec["class"]
    if "choices" in spec and not klass.startswith("array:"):
        return json.dumps(value)
    if klass == "boolean":
        return "true" if value else "false"
    if klass == "hash" or (klass.startswith("array:") and (klass == "array:hash" or _has_refs(value))):
        return json.dumps(value, indent=2)
    if klass.startswith("array:"):
        return "\n".join(_scalar_text(v) for v in value) if isinstance(value, list) else json.dumps(value)
    return _scalar_text(value)


def _has_refs(values):
    return isinstance(values, list) and any(isinstance(v, dict) and "$dnanexus_link" not in v for v in values)


def _scalar_text(value):
    if isinstance(value, dict) and "$dnanexus_link" in value:
        target = value["$dnanexus_link"]
        return target if isinstance(target, str) else json.dumps(value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _json(text):
    """A JSON value written in a field; ValueError in words (where it goes wrong), not the parser's."""
    try:
        return _loads(text)
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}, column {err.colno}"
        raise ValueError(f"This is not valid JSON ({err.msg.lower()} at {where})") from None


def _parse_scalar(klass, text, resolve):
    if klass == "int":
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError(f"'{text}' is not a whole number")
        return int(text)
    if klass == "float":
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"'{text}' is not a number")
        return value
    if klass == "boolean":
        if text not in ("true", "false"):
            raise ValueError(f"'{text}' is neither true nor false")
        return text == "true"
    if klass == "hash":
        value = _json(text)
        if not isinstance(value, dict):
            raise ValueError('Write a JSON object, e.g. {"key": "value"}')
        return value
    if klass in DATA_CLASSES:
        return resolve(klass, text)
    return text


def parse_input(spec, text, resolve=None):
    """An input value as a form field writes it (one value per line for arrays); ValueError, in plain
    words, if it is not. `resolve(klass, text)` turns a typed file (applet, record) into its link
    (resolve_data); without it, only IDs and written-out links are taken."""
    resolve = resolve or (lambda klass, text: resolve_data(None, klass, text))
    klass = spec["class"]
    base = klass.removeprefix("array:")
    if klass.startswith("array:"):
        if base == "hash" or text.lstrip().startswith("["):
            value = _json(text)
            if not isinstance(value, list):
                raise ValueError("Write a JSON array, e.g. [1, 2]")
            return value
        values = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    values.append(_parse_scalar(base, line.strip(), resolve))
                except ValueError as err:
                    raise ValueError(f"Line {number}: {err}") from None
        return values
    if "choices" in spec:
        return _json(text)
    return _parse_scalar(klass, text.strip() if klass != "string" else text, resolve)


# Data references: what a person writes for a file (applet, record) --------------------------------

_IN_PROJECT = re.compile(rf"^(project-{ID_BODY}):(.*)$", re.S)


@dataclass(frozen=True)
class DataRef:
    """A file (applet, record) as written: `file-xxxx`, `project-xxxx:/path/to/name`, `/path/name`, `name`.

    `project`: the project written before a colon (else None: the launching project); `object_id`: an ID;
    `folder`: the folder of a path ("/" for "/name"; None when only a name is written, any folder);
    `name`: the name, or the part of it typed so far.
    """

    project: str | None
    object_id: str | None
    folder: str | None
    name: str


def parse_data_ref(text):
    text = (text or "").strip()
    project = None
    if match := _IN_PROJECT.match(text):
        project, text = match.group(1), match.group(2).strip()
    if id_class(text):
        return DataRef(project, text, None, "")
    if "/" in text:
        folder, _, name = text.rpartition("/")
        return DataRef(project, None, "/" + "/".join(p for p in folder.split("/") if p), name)
    return DataRef(project, None, None, text)


def _where(folder, place):
    return f"in {folder} of {place}" if folder not in (None, "/") else f"in {place}"


def resolve_data(principal, klass, text, project_id=None):
    """The link a typed file (applet, record) stands for, looked up as `principal` may see it.

    An ID (or `project-x:file-y`) and a written-out link are kept as they are: the run checks them. A
    name or a path must name exactly one object of `klass` in its project (the launching `project_id`
    unless written `project-x:...`); otherwise ValueError says so in plain words.
    """
    text = text.strip()
    if text.startswith("{"):
        return _json(text)
    ref = parse_data_ref(text)
    if ref.object_id:
        if ref.project:
            return {"$dnanexus_link": {"project": ref.project, "id": ref.object_id}}
        return {"$dnanexus_link": ref.object_id}
    if not ref.name:
        raise ValueError(f"Write the {klass}'s name after the folder, or pick one from the list")
    project_id = ref.project or project_id
    if principal is None or not project_id:
        raise ValueError(f"No {klass} picked for “{text}”: choose one from the list, or write its ID ({klass}-…)")
    try:
        container = permissions.access_container(principal, project_id)
    except DXError:
        raise ValueError(f"No project {project_id} that you can see") from None
    place = f"project {container.name}" if ref.project else "this project"
    found = Placement.objects.filter(container=container, obj__cls=klass, name=ref.name, hidden=False)
    if ref.folder is not None:
        found = found.filter(folder=ref.folder)
    found = list(found.order_by("folder")[:6])
    if not found:
        raise ValueError(f"No {klass} named {ref.name} {_where(ref.folder, place)}")
    if len(found) > 1:
        folders = ", ".join(p.folder for p in found[:5]) + (", …" if len(found) > 5 else "")
        example = f"{found[0].folder.rstrip('/')}/{ref.name}"
        raise ValueError(
            f"{'Several' if len(found) > 5 else len(found)} {klass}s are named {ref.name} {_where(ref.folder, place)}"
            f" (in {folders}): write the path, e.g. {example}, or pick one from the list"
        )
    return {"$dnanexus_link": {"project": container.pk, "id": found[0].obj_id}}


def instance_type_label(name, limits):
    """ "mem1_ssd1_v2_x4 — 4 cores, 7.6 GB" for the instance type select."""
    cpus, memory = limits.get("cpus"), limits.get("memory_mb")
    parts = []
    if isinstance(cpus, (int, float)):
        parts.append(f"{cpus:g} core{'s' if cpus != 1 else ''}")
    if isinstance(memory, (int, float)):
        parts.append(f"{memory / 1000:g} GB")
    return f"{name} — {', '.join(parts)}" if parts else name


def input_error(spec, err):
    """The message of a value that parse_input refused: a scalar's says which class was expected."""
    klass = spec["class"]
    if klass in ("int", "float", "boolean") and "choices" not in spec:
        return f"Expected {klass}: {err}"
    return str(err)


class LaunchForm(forms.Form):
    """A run of one applet: a field per inputSpec entry, then the advanced options of /applet-x/run."""

    name = forms.CharField(label="Job name", required=False)
    folder = forms.CharField(label="Output folder", initial="/", help_text="Where the outputs are placed")
    instance_type = forms.ChoiceField(label="Instance type")
    priority = forms.ChoiceField(label="Priority", choices=PRIORITY_CHOICES, initial="normal")
    timeout = forms.CharField(label="Timeout", required=False, help_text="e.g. 90m, 2h or 1d; empty: the applet's")
    debug_on = forms.MultipleChoiceField(
        label="Debug on",
        required=False,
        choices=DEBUG_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        help_text="Hold the job for SSH instead of failing on these errors",
    )
    allow_ssh = forms.BooleanField(label="Allow SSH from my address", required=False)
    tags = forms.CharField(label="Tags", required=False, help_text="Comma-separated")
    properties = forms.CharField(
        label="Properties",
        required=False,
        help_text="One key=value per line",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
    )

    # The form field that shows a run error about each option of the /applet-x/run body (inputs: their own).
    ERROR_FIELDS = {"systemRequirements": "instance_type", "folder": "folder", "timeoutPolicy": "timeout"}

    def __init__(self, input_spec, *args, client_ip="", principal=None, project=None, **kwargs):
        """`principal` and `project` (the launching project's ID) let a typed file name or path be
        resolved to its file; without them, file inputs take IDs only."""
        super().__init__(*args, **kwargs)
        self.input_spec = input_spec or []
        self.client_ip = client_ip
        self.principal = principal
        self.project = project
        self.fields["instance_type"].choices = [
            (name, instance_type_label(name, limits)) for name, limits in sorted(settings.DXWEB_INSTANCE_TYPES.items())
        ]
        self.fields["instance_type"].initial = settings.DXWEB_DEFAULT_INSTANCE_TYPE
        self.fields["allow_ssh"].label = f"Allow SSH from my address ({client_ip})"
        for spec in self.input_spec:
            field = _input_field(spec)
            field.spec = spec
            if "default" in spec:
                field.initial = _initial_text(spec, spec["default"])
            self.fields[field_name(spec["name"])] = field

    def input_fields(self):
        return [self[field_name(spec["name"])] for spec in self.input_spec]

    def advanced_fields(self):
        return [self[name] for name in ("instance_type", "priority", "timeout", "tags", "properties")]

    def prefill_query(self, query):
        """Start from a link's query string: `?in_<input>=<value>` (a file page's "Use as input")."""
        for spec in self.input_spec:
            name = field_name(spec["name"])
            if query.get(name):
                self.initial[name] = query[name]

    def prefill(self, job):
        """Start from a job's launch: its original input and options (rerun, clone with edits)."""
        specs = {spec["name"]: spec for spec in self.input_spec}
        for name, value in job.original_input.items():
            if name in specs:
                self.initial[field_name(name)] = _initial_text(specs[name], value)
        timeout = job.timeout_s
        self.initial.update(
            name=job.name,
            folder=job.folder,
            instance_type=job.instance_type,
            priority=job.priority,
            timeout=f"{timeout // 60}m" if timeout else "",
            tags=tags_text(job.tags),
            properties=properties_text(job.properties),
            debug_on=job.debug.get("debugOn", []),
            allow_ssh=bool(job.allow_ssh),
        )

    def clean(self):
        data = super().clean()
        values = {}
        for spec in self.input_spec:
            name = field_name(spec["name"])
            text = data.get(name, "")
            if text is None or not str(text).strip():
                continue
            try:
                values[spec["name"]] = self._parse(spec, text)
            except (ValueError, TypeError) as err:
                self.add_error(name, input_error(spec, err))
        properties, errors = parse_properties(data.get("properties"))
        for error in errors:
            self.add_error("properties", error)
        data["input"], data["property_map"] = values, properties
        if data.get("timeout") and parse_duration(data["timeout"]) is None:
            self.add_error("timeout", "Write it as a number with d, h or m, e.g. 90m or 2h")
        return data

    def _parse(self, spec, text):
        return parse_input(spec, text, self._resolve)

    def _resolve(self, klass, text):
        return resolve_data(self.principal, klass, text, self.project)

    def body(self, project_id, applet_id):
        """The /applet-x/run body these fields describe."""
        data = self.cleaned_data
        body = {
            "project": project_id,
            "input": data["input"],
            "folder": data["folder"],
            "systemRequirements": {"*": {"instanceType": data["instance_type"]}},
            "priority": data["priority"],
            "tags": parse_tags(data["tags"]),
            "properties": data["property_map"],
        }
        if data["name"]:
            body["name"] = data["name"]
        if data["timeout"]:
            body["timeoutPolicyByExecutable"] = {applet_id: {"*": parse_duration(data["timeout"])}}
        if data["debug_on"]:
            body["debug"] = {"debugOn": data["debug_on"]}
        if data["allow_ssh"] and self.client_ip:
            body["allowSSH"] = [self.client_ip]
        return body

    def add_action_error(self, err):
        """Put a run error next to the input or option it is about (DXError.field), else at the top."""
        inputs = {input_field(spec["name"]): field_name(spec["name"]) for spec in self.input_spec}
        self.add_error(inputs.get(err.field) or self.ERROR_FIELDS.get(err.field), err.message)


class TagsForm(forms.Form):
    tags = forms.CharField(label="Tags", required=False, help_text="Comma-separated; replaces the job's tags")


class PropertiesForm(forms.Form):
    properties = forms.CharField(
        label="Properties",
        required=False,
        help_text="One key=value per line",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
    )


class JobFilterForm(forms.Form):
    """The filters of a job list (GET); every field is optional."""

    STATE_CHOICES = [("", "Any state")] + [(s.value, s.value) for s in State]

    state = forms.ChoiceField(
        label="State", required=False, choices=STATE_CHOICES, widget=forms.Select(attrs={"aria-label": "State"})
    )
    name = forms.CharField(label="Name", required=False, widget=forms.TextInput(attrs={"placeholder": "Name contains"}))
    tag = forms.CharField(label="Tag", required=False, widget=forms.TextInput(attrs={"placeholder": "Tag"}))
    launcher = forms.CharField(
        label="Launched by", required=False, widget=forms.TextInput(attrs={"placeholder": "Launched by (handle)"})
    )
    after = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    before = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    origin = forms.BooleanField(label="Origin jobs only", required=False)
