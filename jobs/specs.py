"""Applet specs: validate inputSpec/outputSpec/runSpec, and check run inputs against an inputSpec.

Every error is an InvalidInput that names the field, e.g. `inputSpec[2] ("reads"): ...`, in its message
and in its `field` ("inputSpec", "runSpec.code", "input.reads").
"""

import re

from dxweb.errors import InvalidInput, about
from dxweb.ids import id_class

IO_NAME_RE = re.compile(r"^[a-zA-Z_][0-9a-zA-Z_]*$")
SCALAR_CLASSES = {"int", "float", "string", "boolean", "hash", "file", "applet", "record"}
IO_CLASSES = SCALAR_CLASSES | {f"array:{c}" for c in SCALAR_CLASSES - {"hash"}} | {"array:hash"}
DATA_CLASSES = {"file", "applet", "record"}
INTERPRETERS = {"bash", "python3"}


def is_link(value):
    return isinstance(value, dict) and "$dnanexus_link" in value and len(value) == 1


def link_target(value):
    """Return (object id, project hint) of a data link, or None."""
    if not is_link(value):
        return None
    target = value["$dnanexus_link"]
    if isinstance(target, str):
        return target, None
    if isinstance(target, dict) and isinstance(target.get("id"), str):
        return target["id"], target.get("project")
    return None


def jbor(value):
    """Return {"job", "field", "index"?} if `value` is a job-based object reference (either form), else None."""
    if not isinstance(value, dict):
        return None
    target = value.get("$dnanexus_link") if is_link(value) else value
    if (
        isinstance(target, dict)
        and isinstance(target.get("job"), str)
        and isinstance(target.get("field"), str)
        and (target is not value or set(value) == {"job", "field"})
    ):
        ref = {"job": target["job"], "field": target["field"]}
        if "index" in target:
            ref["index"] = target["index"]
        return ref
    return None


def _value_error(where, klass, value):
    return InvalidInput(f"{where}: expected a value of class {klass}, got {value!r:.80}")


def check_value(where, klass, value, allow_refs=True):
    """Check one value against an IO class; JBORs are accepted where `allow_refs`."""
    if allow_refs and jbor(value) is not None:
        return
    if klass.startswith("array:"):
        if not isinstance(value, list):
            raise _value_error(where, klass, value)
        for i, item in enumerate(value):
            check_value(f"{where}[{i}]", klass[6:], item, allow_refs)
        return
    ok = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "hash": lambda v: isinstance(v, dict),
    }.get(klass)
    if ok is not None:
        if not ok(value):
            raise _value_error(where, klass, value)
        return
    target = link_target(value)
    if target is None or id_class(target[0]) != klass:
        raise InvalidInput(
            f'{where}: expected a link to a {klass} ({{"$dnanexus_link": "{klass}-..."}}), got {value!r:.80}'
        )


def _check_io_spec(kind, spec, output=False):
    with about(kind):
        _check_fields(kind, spec, output)


def _check_fields(kind, spec, output):
    if not isinstance(spec, list):
        raise InvalidInput(f"{kind} must be an array of field specifications")
    seen = set()
    for i, field in enumerate(spec):
        label = f"{kind}[{i}]"
        if not isinstance(field, dict):
            raise InvalidInput(f"{label} must be a JSON object")
        name = field.get("name")
        if not isinstance(name, str) or not IO_NAME_RE.match(name):
            raise InvalidInput(f'{label}: "name" must be a letter or _ followed by letters, digits or _')
        label = f'{kind}[{i}] ("{name}")'
        if name in seen:
            raise InvalidInput(f"{label}: the name is used twice")
        seen.add(name)
        klass = field.get("class")
        if klass not in IO_CLASSES:
            raise InvalidInput(f'{label}: "class" must be one of {", ".join(sorted(IO_CLASSES))}')
        if "optional" in field and not isinstance(field["optional"], bool):
            raise InvalidInput(f'{label}: "optional" must be a boolean')
        for key in ("label", "help", "group"):
            if key in field and not isinstance(field[key], str):
                raise InvalidInput(f'{label}: "{key}" must be a string')
        if "choices" in field:
            if not isinstance(field["choices"], list) or not field["choices"]:
                raise InvalidInput(f'{label}: "choices" must be a non-empty array')
            for j, choice in enumerate(field["choices"]):
                check_value(f"{label} choices[{j}]", klass.removeprefix("array:"), choice, allow_refs=False)
        if "default" in field:
            if output:
                raise InvalidInput(f'{label}: outputs take no "default"')
            check_value(f"{label} default", klass, field["default"], allow_refs=False)
            _check_choice(label, field, field["default"])
        if "patterns" in field:
            patterns = field["patterns"]
            if isinstance(patterns, dict):
                patterns = patterns.get("name", [])
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise InvalidInput(f'{label}: "patterns" must be an array of glob strings or {{"name": [...]}}')
            if klass.removeprefix("array:") not in DATA_CLASSES:
                raise InvalidInput(f'{label}: "patterns" apply only to file, applet or record inputs')


def _check_choice(label, field, value):
    choices = field.get("choices")
    if choices is None:
        return
    values = value if field["class"].startswith("array:") and isinstance(value, list) else [value]
    for v in values:
        if jbor(v) is None and v not in choices:
            raise InvalidInput(f"{label}: {v!r:.80} is not one of the choices {choices!r:.200}")


def normalise_line_endings(text):
    """CRLF and lone CR become LF. Browsers send a text area's lines with CRLF, and bash takes
    the CR for part of a word (`main() {` ends in a syntax error)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_run_spec(run_spec):
    """Validate a runSpec, and normalise the line endings of its code in place: the code becomes
    a file in the job, so it is stored as the job will run it, whether it came from the page or the API."""
    if not isinstance(run_spec, dict):
        raise InvalidInput("runSpec must be a JSON object", field="runSpec")
    if run_spec.get("interpreter") not in INTERPRETERS:
        raise InvalidInput(
            f"runSpec.interpreter must be one of {', '.join(sorted(INTERPRETERS))}", field="runSpec.interpreter"
        )
    if not isinstance(run_spec.get("code"), str):
        raise InvalidInput("runSpec.code must be a string (the applet's script)", field="runSpec.code")
    run_spec["code"] = normalise_line_endings(run_spec["code"])
    for key in ("distribution", "release", "version"):
        if key in run_spec and not isinstance(run_spec[key], str):
            raise InvalidInput(f"runSpec.{key} must be a string", field=f"runSpec.{key}")
    policy = run_spec.get("timeoutPolicy", {})
    if not isinstance(policy, dict):
        raise InvalidInput("runSpec.timeoutPolicy must be a JSON object", field="runSpec.timeoutPolicy")
    for fn, limit in policy.items():
        timeout_seconds(limit, f"runSpec.timeoutPolicy.{fn}", field="runSpec.timeoutPolicy")
    for i, dep in enumerate(run_spec.get("execDepends", [])):
        if not isinstance(dep, dict) or not isinstance(dep.get("name"), str):
            raise InvalidInput(
                f'runSpec.execDepends[{i}] must be {{"name": ..., "package_manager"?: ...}}',
                field="runSpec.execDepends",
            )
    for i, dep in enumerate(run_spec.get("bundledDepends", [])):
        if not isinstance(dep, dict) or link_target(dep.get("id")) is None:
            raise InvalidInput(
                f'runSpec.bundledDepends[{i}] must be {{"name": ..., "id": {{"$dnanexus_link": "file-..."}}}}',
                field="runSpec.bundledDepends",
            )
    requirements = run_spec.get("systemRequirements", {})
    if not isinstance(requirements, dict) or not all(isinstance(v, dict) for v in requirements.values()):
        raise InvalidInput(
            'runSpec.systemRequirements must map entry points to {"instanceType": ...}',
            field="runSpec.systemRequirements",
        )


def timeout_seconds(limit, where, field=None):
    """Convert a timeoutPolicy entry ({"days", "hours", "minutes"}) to seconds; errors name `field`."""
    with about(field):
        return _seconds(limit, where)


def _seconds(limit, where):
    if not isinstance(limit, dict) or not limit:
        raise InvalidInput(f'{where} must be like {{"hours": 2}}')
    units = {"days": 86400, "hours": 3600, "minutes": 60}
    total = 0
    for unit, amount in limit.items():
        if unit not in units or not isinstance(amount, (int, float)) or isinstance(amount, bool) or amount < 0:
            raise InvalidInput(f'{where}: "{unit}" must be one of days, hours, minutes with a non-negative number')
        total += amount * units[unit]
    if total <= 0:
        raise InvalidInput(f"{where} must be longer than zero")
    return int(total)


def check_applet_specs(body, region=None):
    """Validate the specs of an /applet/new body (the API's and the applet form's), normalise the line
    endings of its runSpec.code in place, and merge its regionalOptions for `region` (the project's)
    into its runSpec. inputSpec and outputSpec are optional: an applet without them takes any input
    and gives any output."""
    for kind in ("inputSpec", "outputSpec"):
        if body.get(kind) is None:
            body.pop(kind, None)  # null is as absent: described without it
        else:
            _check_io_spec(kind, body[kind], output=kind == "outputSpec")
    check_run_spec(body.get("runSpec"))
    if region is not None:
        apply_regional_options(body, region)
        run_spec = body["runSpec"]
        # As DNAnexus describes a built applet: its dependencies and requirements per region (`dx get`
        # writes regionalOptions from them, and reads the regions from bundledDependsByRegion's keys).
        run_spec["bundledDependsByRegion"] = {region: run_spec.get("bundledDepends", [])}
        run_spec["systemRequirementsByRegion"] = {region: run_spec.get("systemRequirements", {})}
    access = body.get("access", {})
    if not isinstance(access, dict):
        raise InvalidInput("access must be a JSON object", field="access")


def apply_regional_options(body, region):
    """Merge `regionalOptions[region]` into body["runSpec"] as `dx build` does (systemRequirements replace
    the runSpec's; bundledDepends and assetDepends are added; `resources`, a file, becomes a bundled
    dependency). Non-empty regionalOptions without the region are refused with DNAnexus's message."""
    regional = body.get("regionalOptions")
    if regional is None or regional == {}:
        return
    if not isinstance(regional, dict) or not all(isinstance(v, dict) for v in regional.values()):
        raise InvalidInput('"regionalOptions" must map region names to JSON objects', field="regionalOptions")
    if region not in regional:
        raise InvalidInput(
            f'destination project is in region {region} but "regionalOptions" do not contain this region. '
            f'Please, update your "regionalOptions" specification',
            field="regionalOptions",
        )
    options, run_spec = regional[region], body["runSpec"]
    with about("regionalOptions"):
        if "systemRequirements" in options:
            run_spec["systemRequirements"] = options["systemRequirements"]
        for key in ("bundledDepends", "assetDepends"):
            extra = options.get(key, [])
            if not isinstance(extra, list):
                raise InvalidInput(f"regionalOptions.{region}.{key} must be an array")
            run_spec[key] = [*run_spec.get(key, []), *(d for d in extra if d not in run_spec.get(key, []))]
        resources = options.get("resources")
        if resources is not None:
            target = link_target(resources) or ((resources, None) if isinstance(resources, str) else None)
            if target is None or id_class(target[0]) != "file":
                raise InvalidInput(f'regionalOptions.{region}.resources must be a file ("file-..." or a link)')
            bundle = {"name": "resources.tar.gz", "id": {"$dnanexus_link": target[0]}}
            run_spec["bundledDepends"] = [*run_spec.get("bundledDepends", []), bundle]
        check_run_spec(run_spec)


# What /applet-x/get answers (DNAnexus's fields; `dx get` writes dxapp.json from them).
APPLET_GET_KEYS = (
    "name", "title", "summary", "description", "developerNotes", "types", "tags", "properties", "details",
    "dxapi", "inputSpec", "outputSpec", "runSpec", "access", "ignoreReuse", "treeTurnaroundTimeThreshold", "hidden",
)  # fmt: skip


def applet_get_reply(described):
    """/applet-x/get: the applet's describe (projects.models.describe_placement) narrowed to APPLET_GET_KEYS."""
    return {key: described[key] for key in APPLET_GET_KEYS if key in described}


def check_input(input_spec, values):
    """Check run input against an inputSpec; return it with defaults filled in."""
    if not isinstance(values, dict):
        raise InvalidInput('"input" must be a JSON object', field="input")
    fields = {f["name"]: f for f in input_spec or []}
    unknown = sorted(set(values) - set(fields))
    if unknown and input_spec is not None:
        raise InvalidInput(
            f"input: unknown field(s) {', '.join(unknown)}; the applet takes {', '.join(fields) or 'none'}",
            field="input",
        )
    resolved = dict(values)
    for name, field in fields.items():
        where = f'input "{name}"'
        if name not in values:
            if "default" in field:
                resolved[name] = field["default"]
            elif not field.get("optional"):
                raise InvalidInput(f"{where} is required", field=input_field(name))
            continue
        with about(input_field(name)):
            check_value(where, field["class"], values[name])
            _check_choice(where, field, values[name])
    return resolved


def input_field(name):
    """The `field` of an error about the run input `name`."""
    return f"input.{name}"
