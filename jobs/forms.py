"""Page forms for applets and launching: they turn fields into the same JSON bodies the API takes.

The checks stay in jobs.specs and jobs.actions; these forms only parse what a browser sends
and put the actions' errors next to the field each names (DXError.field).
"""

import json
import re

from django import forms
from django.conf import settings

from .models import DEBUG_REASONS, PRIORITIES, State
from .specs import INTERPRETERS, input_field

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
    if klass.startswith("array:"):
        help_text = "A JSON array" if base == "hash" else "One value per line"
        common["help_text"] = " — ".join(filter(None, [spec.get("help", ""), help_text]))
        return forms.CharField(widget=forms.Textarea(attrs={**attrs, **TEXTAREA}), strip=False, **common)
    if "choices" in spec:
        choices = [("", "—")] + [(json.dumps(c), str(c)) for c in spec["choices"]]
        return forms.ChoiceField(choices=choices, widget=forms.Select(attrs=attrs), **common)
    if klass == "boolean":
        return forms.ChoiceField(
            choices=[("", "—"), ("true", "true"), ("false", "false")], widget=forms.Select(attrs=attrs), **common
        )
    if klass == "hash":
        return forms.CharField(widget=forms.Textarea(attrs={**attrs, **TEXTAREA}), strip=False, **common)
    if klass in ("int", "float"):
        attrs.update(type="number", step="1" if klass == "int" else "any")
        return forms.CharField(widget=forms.TextInput(attrs=attrs), **common)
    if klass in ("file", "applet", "record"):
        attrs.update(placeholder=f"{klass}-…", autocomplete="off", **{"data-picker": klass})
        return forms.CharField(widget=forms.TextInput(attrs=attrs), **common)
    return forms.CharField(widget=forms.TextInput(attrs=attrs), strip=False, **common)


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


def _parse_scalar(klass, text):
    if klass == "int":
        return int(text)
    if klass == "float":
        return float(text)
    if klass == "boolean":
        if text not in ("true", "false"):
            raise ValueError("write true or false")
        return text == "true"
    if klass == "hash":
        value = _loads(text)
        if not isinstance(value, dict):
            raise ValueError("write a JSON object")
        return value
    if klass in ("file", "applet", "record"):
        if text.startswith("{"):
            return _loads(text)
        return {"$dnanexus_link": text}
    return text


def parse_input(spec, text):
    """An input value as a form field writes it (one value per line for arrays); ValueError if it is not."""
    klass = spec["class"]
    base = klass.removeprefix("array:")
    if klass.startswith("array:"):
        if base == "hash" or text.lstrip().startswith("["):
            value = _loads(text)
            if not isinstance(value, list):
                raise ValueError("write a JSON array")
            return value
        return [_parse_scalar(base, line.strip()) for line in text.splitlines() if line.strip()]
    if "choices" in spec:
        return _loads(text)
    return _parse_scalar(klass, text.strip() if klass != "string" else text)


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

    def __init__(self, input_spec, *args, client_ip="", **kwargs):
        super().__init__(*args, **kwargs)
        self.input_spec = input_spec or []
        self.client_ip = client_ip
        self.fields["instance_type"].choices = [(t, t) for t in sorted(settings.DXWEB_INSTANCE_TYPES)]
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
                self.add_error(name, f"Expected {spec['class']}: {err}")
        properties, errors = parse_properties(data.get("properties"))
        for error in errors:
            self.add_error("properties", error)
        data["input"], data["property_map"] = values, properties
        if data.get("timeout") and parse_duration(data["timeout"]) is None:
            self.add_error("timeout", "Write it as a number with d, h or m, e.g. 90m or 2h")
        return data

    def _parse(self, spec, text):
        return parse_input(spec, text)

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

    state = forms.ChoiceField(label="State", required=False, choices=STATE_CHOICES)
    name = forms.CharField(label="Name", required=False, widget=forms.TextInput(attrs={"placeholder": "Name contains"}))
    tag = forms.CharField(label="Tag", required=False, widget=forms.TextInput(attrs={"placeholder": "Tag"}))
    launcher = forms.CharField(
        label="Launched by", required=False, widget=forms.TextInput(attrs={"placeholder": "Launched by (handle)"})
    )
    after = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    before = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    origin = forms.BooleanField(label="Origin jobs only", required=False)
