"""A workflow's content: its stages, the links between them, and what /workflow-x/describe shows.

A workflow is a data object (class "workflow") whose `spec` holds:
    title, summary, description, outputFolder, editVersion, stages, inputs, outputs[, initializedFrom]
and each stage is
    {"id", "name", "executable", "folder", "input", "systemRequirements", "executionPolicy"}.

A stage input is a value, a data link, or a link to another stage:
    {"$dnanexus_link": {"stage": S, "outputField": F}}   S's output F, once S's job is done
    {"$dnanexus_link": {"stage": S, "inputField": F}}    the value S's input F has in the run
Links point only to earlier stages: the order of the stages is an order they can run in, so a
workflow never holds a cycle.
"""

import re

from django.conf import settings

from dxweb.errors import InvalidInput, ResourceNotFound
from dxweb.ids import id_class
from projects.models import DataObject, Level
from projects.permissions import access_object

from ..actions import run_applet
from ..apps import actions as app_actions
from ..models import AppVersion
from ..specs import check_value, is_link

# A stage ID the caller chooses ("stage_0", "align_reads") or one the platform makes ("stage-<24>").
STAGE_ID_RE = re.compile(r"^([a-zA-Z_]|stage-)[0-9a-zA-Z_]*$")
STAGE_KEYS = ("id", "name", "executable", "folder", "input", "systemRequirements", "executionPolicy")
LINK_FIELDS = ("outputField", "inputField")


def stage_link(value):
    """Return (stage ID, "outputField" | "inputField", field) if `value` links to a stage, else None."""
    if not is_link(value) or not isinstance(value["$dnanexus_link"], dict):
        return None
    target = value["$dnanexus_link"]
    if "workflowInputField" in target:
        raise InvalidInput("Workflow-level inputs (workflowInputField) are not supported; link to a stage instead")
    if "stage" not in target:
        return None
    kinds = [k for k in LINK_FIELDS if k in target]
    if len(kinds) != 1 or not isinstance(target["stage"], str) or not isinstance(target[kinds[0]], str):
        raise InvalidInput(
            'A stage link is {"$dnanexus_link": {"stage": "<stage ID>", "outputField" or "inputField": "<field>"}}, '
            f"got {value!r:.120}"
        )
    return target["stage"], kinds[0], target[kinds[0]]


def links_of(value):
    """Every stage link inside a value (arrays and hashes included)."""
    link = stage_link(value)
    if link is not None:
        return [link]
    if isinstance(value, dict) and not is_link(value):
        return [found for item in value.values() for found in links_of(item)]
    if isinstance(value, list):
        return [found for item in value for found in links_of(item)]
    return []


def index_of(stages, stage_id):
    for i, stage in enumerate(stages):
        if stage["id"] == stage_id:
            return i
    raise ResourceNotFound(f"The workflow has no stage {stage_id!r}")


def executables(stages):
    """{executable ID: its spec} for the stages' executables that still exist."""
    ids = {stage["executable"] for stage in stages}
    found = dict(DataObject.objects.filter(pk__in=ids).values_list("pk", "spec"))
    found.update(AppVersion.objects.filter(pk__in=ids, deleted=False).values_list("pk", "spec"))
    return found


def is_app(executable):
    return isinstance(executable, str) and executable.startswith("app-")


def stage_executable(principal, stage):
    """Check that the principal may run the stage's executable (an applet they can see, or an app version
    they may run); an app named `app-NAME[/ALIAS]` becomes the ID of its version in the stage.
    Return (its name, a function running it: run(body, analysis=, stage=) -> job)."""
    if is_app(stage["executable"]):
        version = app_actions.resolve_app(principal, stage["executable"])
        stage["executable"] = version.pk
        return version.app.name, lambda body, **kw: app_actions.run_app(principal, version, body, **kw)
    placement = access_object(principal, stage["executable"], Level.VIEW)
    if placement.obj.cls != "applet":
        raise InvalidInput(f"{stage['executable']} is not an applet or an app", field="executable")
    return placement.name, lambda body, **kw: run_applet(principal, placement, body, **kw)


def _fields(spec, kind):
    """{name: field} of an executable's inputSpec or outputSpec, or None if it declares none."""
    fields = spec.get(kind)
    return None if fields is None else {f["name"]: f for f in fields}


def check_instance_types(requirements, where):
    """systemRequirements: {entry point or "*": {"instanceType": known type}}."""
    if not isinstance(requirements, dict):
        raise InvalidInput(f"{where} must be a JSON object", field="systemRequirements")
    for entry, wanted in requirements.items():
        itype = wanted.get("instanceType") if isinstance(wanted, dict) else None
        if not isinstance(wanted, dict) or (itype is not None and itype not in settings.DXWEB_INSTANCE_TYPES):
            raise InvalidInput(
                f"{where}.{entry}: unknown instance type {itype!r}; "
                f"available: {', '.join(sorted(settings.DXWEB_INSTANCE_TYPES))}",
                field="systemRequirements",
            )


def check_stage(stages, index, specs, allow_refs=False):
    """Check the stage at `index` of `stages`: its input against its executable's inputSpec, and that each
    of its links names an earlier stage and a field that stage's executable has."""
    stage = stages[index]
    sid = stage["id"]
    spec = specs.get(stage["executable"])
    if spec is None:
        raise InvalidInput(f"Stage {sid}: its executable {stage['executable']} no longer exists")
    if not isinstance(stage["input"], dict):
        raise InvalidInput(f"Stage {sid}: input must be a JSON object", field="input")
    inputs = _fields(spec, "inputSpec")
    earlier = {s["id"]: s for s in stages[:index]}
    for name, value in stage["input"].items():
        where = f"stage {sid} input {name!r}"
        if inputs is not None and name not in inputs:
            raise InvalidInput(
                f"{where}: the executable {stage['executable']} has no such input; "
                f"it takes {', '.join(inputs) or 'none'}",
                field=f"input.{name}",
            )
        links = links_of(value)
        for target, kind, field in links:
            _check_link(where, sid, earlier, stages, specs, target, kind, field)
        if inputs is not None and not links:
            check_value(where, inputs[name]["class"], value, allow_refs=allow_refs)
        elif inputs is not None and stage_link(value) and stage_link(value)[1] == "outputField":
            _check_link_class(where, inputs[name]["class"], stages, specs, stage_link(value))
    check_instance_types(stage["systemRequirements"], f"stage {sid} systemRequirements")


def _check_link(where, sid, earlier, stages, specs, target, kind, field):
    if target == sid:
        raise InvalidInput(f"{where} links to its own stage; a stage can only take what earlier stages give")
    if target not in earlier:
        if any(s["id"] == target for s in stages):
            raise InvalidInput(
                f"{where} links to {target}, a later stage; a stage can only take what earlier stages give "
                "(move the stages so that the one that gives comes first)"
            )
        raise InvalidInput(f"{where} links to {target}, which is not a stage of this workflow")
    target_spec = specs.get(earlier[target]["executable"]) or {}
    fields = _fields(target_spec, "outputSpec" if kind == "outputField" else "inputSpec")
    if fields is not None and field not in fields:
        what = "output" if kind == "outputField" else "input"
        raise InvalidInput(
            f"{where} links to {target}'s {what} {field!r}, which its executable does not have; "
            f"its {what}s are {', '.join(fields) or 'none'}"
        )


def _check_link_class(where, klass, stages, specs, link):
    target, _, field = link
    spec = specs.get(stages[index_of(stages, target)]["executable"]) or {}
    outputs = _fields(spec, "outputSpec")
    given = outputs[field]["class"] if outputs and field in outputs else None
    if given is not None and given != klass and klass != f"array:{given}":
        raise InvalidInput(f"{where} is of class {klass}, but {target}'s output {field!r} is of class {given}")


def check_stages(stages, allow_refs=False):
    """Check every stage of a workflow, in order (`allow_refs`: a run's input may hold JBORs)."""
    specs = executables(stages)
    ids = [s["id"] for s in stages]
    if len(set(ids)) != len(ids):
        raise InvalidInput("Stage IDs must be unique within a workflow")
    for index in range(len(stages)):
        check_stage(stages, index, specs, allow_refs)
    return specs


def new_stage(stage_id, executable, name=None, folder=None, input=None, requirements=None, policy=None):
    if not isinstance(stage_id, str) or not STAGE_ID_RE.match(stage_id) or len(stage_id) > 128:
        raise InvalidInput(
            f"{stage_id!r} is not a valid stage ID (letters, digits and _, not starting with a digit)", field="id"
        )
    if id_class(executable) != "applet" and not is_app(executable):
        raise InvalidInput(
            f"{executable!r} is not an applet or app ID (or app-NAME); a stage runs one", field="executable"
        )
    if name is not None and (not isinstance(name, str) or "." in name):
        raise InvalidInput("A stage name must be a string without '.'", field="name")
    if folder is not None and not isinstance(folder, str):
        raise InvalidInput("A stage folder must be a string (absolute, or relative to the analysis)", field="folder")
    return {
        "id": stage_id,
        "name": name,
        "executable": executable,
        "folder": folder,
        "input": {} if input is None else input,
        "systemRequirements": requirements or {},
        "executionPolicy": policy or {},
    }


def stage_reference(stages, token):
    """A stage named by ID, index or (unique) name, as the client resolves `-i 0.reads` and `-i qc.reads`."""
    for stage in stages:
        if stage["id"] == token:
            return stage
    if isinstance(token, str) and token.isdigit() and int(token) < len(stages):
        return stages[int(token)]
    named = [s for s in stages if s["name"] == token]
    if len(named) == 1:
        return named[0]
    raise InvalidInput(f"{token!r} names no stage of this workflow (a stage ID, index or unique name)")


def io_specs(spec, specs):
    """The workflow's inputSpec and outputSpec: each stage's fields as "<stage ID>.<field>", bound inputs
    with their binding as "default" (so that `dx run` asks only for what is unbound)."""
    input_spec, output_spec = [], []
    for stage in spec["stages"]:
        exe = specs.get(stage["executable"]) or {}
        for field in exe.get("inputSpec") or []:
            entry = {**field, "name": f"{stage['id']}.{field['name']}"}
            if field["name"] in stage["input"]:
                entry["default"] = stage["input"][field["name"]]
            input_spec.append(entry)
        for field in exe.get("outputSpec") or []:
            output_spec.append({**field, "name": f"{stage['id']}.{field['name']}"})
    return input_spec, output_spec


def describe_workflow(placement, data):
    """Complete a workflow's describe (projects.models.describe_placement) with what its stages imply."""
    spec = placement.obj.spec
    specs = executables(spec["stages"])
    input_spec, output_spec = io_specs(spec, specs)
    data.update(
        title=spec.get("title") or placement.name,
        stages=[{**stage, "accessible": stage["executable"] in specs} for stage in spec["stages"]],
        inputSpec=input_spec,
        outputSpec=output_spec,
    )
    # initializedFrom is absent or {"id"}: a null crashes `dx describe`.
    if not spec.get("initializedFrom"):
        data.pop("initializedFrom", None)
