"""Making and editing workflows: /workflow/new, addStage, update, updateStageExecutable, removeStage,
moveStage, isStageCompatible, close.

Every edit names the workflow's current editVersion and adds one to it; a stale one is refused
(InvalidState) and changes nothing. A closed workflow is not edited. Edits lock the workflow's row, so
two racing edits with the same editVersion cannot both succeed.
"""

from dxweb.errors import InvalidInput, InvalidState
from dxweb.ids import id_class, new_id
from dxweb.validation import get
from projects import actions as project_actions
from projects.models import DataObject, Level, now_ms
from projects.permissions import access_object

from ..permissions import access_analysis
from ..references import links_in
from . import stages as st

# Keys of /workflow/new and /workflow-x/update that set the workflow's own fields.
TEXT_KEYS = ("title", "summary", "description")


def _output_folder(body):
    folder = get(body, "outputFolder", str, None)
    return None if folder is None else project_actions.clean_folder(folder, "outputFolder")


def _no_workflow_io(body):
    for key in ("inputs", "outputs"):
        if body.get(key) is not None:
            raise InvalidInput(f"Workflow-level {key} are not supported; stages' inputs and outputs are", field=key)


def new_workflow(principal, container, body):
    """/workflow/new: an open workflow (closed at once when `temporary`, as `dx run --clone` makes them)."""
    _no_workflow_io(body)
    stages = []
    initialized_from = None
    if body.get("initializeFrom") is not None:
        source = get(body, "initializeFrom", dict)
        stages = _stages_from(principal, source)
        initialized_from = {"id": source.get("id")}
    for i, raw in enumerate(get(body, "stages", list, [])):
        if not isinstance(raw, dict):
            raise InvalidInput(f"stages[{i}] must be a JSON object", field="stages")
        stages.append(_stage_from_body(raw, existing=stages))
    _check_stage_access(principal, stages)
    st.check_stages(stages)
    temporary = get(body, "temporary", bool, False)
    spec = {
        "title": get(body, "title", str, None),
        "summary": get(body, "summary", str, ""),
        "description": get(body, "description", str, ""),
        "outputFolder": _output_folder(body),
        "inputs": None,
        "outputs": None,
        "editVersion": 0,
        "stages": stages,
    }
    if initialized_from:
        spec["initializedFrom"] = initialized_from
    return project_actions.new_object(
        principal.user,
        container,
        "workflow",
        **{
            **project_actions.new_object_fields(body, "untitled-workflow"),
            # `dx run --clone` makes one per run: kept out of listings, as DNAnexus hides them.
            **({"hidden": True} if temporary else {}),
        },
        state=DataObject.CLOSED if temporary else DataObject.OPEN,
        spec=spec,
    )


def _stages_from(principal, source):
    """The stages of a workflow or analysis to start from; an analysis's inputs become bound inputs."""
    source_id = source.get("id")
    if id_class(source_id) == "analysis":
        analysis = access_analysis(principal, source_id)
        stages = [{k: stage[k] for k in st.STAGE_KEYS} for stage in analysis.stages]
        for stage in stages:
            prefix = stage["id"] + "."
            stage["input"] = {k[len(prefix) :]: v for k, v in analysis.input.items() if k.startswith(prefix)}
        return stages
    if id_class(source_id) == "workflow":
        hint = source.get("project") if isinstance(source.get("project"), str) else None
        placement = access_object(principal, source_id, Level.VIEW, project=hint)
        return [dict(stage) for stage in placement.obj.spec["stages"]]
    raise InvalidInput(
        '"initializeFrom" must be {"id": a workflow or analysis ID[, "project"]}', field="initializeFrom"
    )


def _stage_from_body(body, existing):
    stage_id = get(body, "id", str, None) or new_id("stage")
    if any(s["id"] == stage_id for s in existing):
        raise InvalidInput(f"The workflow already has a stage {stage_id}", field="id")
    requirements = get(body, "systemRequirements", dict, {})
    st.check_instance_types(requirements, "systemRequirements")
    return st.new_stage(
        stage_id,
        get(body, "executable", str),
        name=get(body, "name", str, None),
        folder=get(body, "folder", str, None),
        input=get(body, "input", dict, {}),
        requirements=requirements,
        policy=get(body, "executionPolicy", dict, {}),
    )


def _check_stage_access(principal, stages):
    """The editor must see each stage's executable (and each data object bound to an input)."""
    for stage in stages:
        st.stage_executable(principal, stage)  # an app-NAME becomes its version's ID
        for obj_id, hint in links_in(stage["input"]):
            access_object(principal, obj_id, Level.VIEW, project=hint)


class Edit:
    """The workflow being edited, locked, its editVersion checked: `with Edit(placement, body) as spec:`
    changes `spec` (a copy); on leaving without error, the stages are checked and it is saved, one
    editVersion on."""

    def __init__(self, placement, body):
        self.placement = placement
        self.body = body

    def __enter__(self):
        obj = DataObject.objects.select_for_update().get(pk=self.placement.obj_id)
        if obj.state != DataObject.OPEN:
            raise InvalidState(f"{obj.pk} is closed and can no longer be edited")
        version = self.body.get("editVersion")
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidInput('"editVersion" must be the workflow\'s current editVersion (an integer)')
        if version != obj.spec["editVersion"]:
            raise InvalidState(
                f"editVersion {version} is stale: {obj.pk} is at editVersion {obj.spec['editVersion']}; "
                "describe it again and retry"
            )
        self.obj = obj
        self.spec = {**obj.spec, "stages": [dict(stage) for stage in obj.spec["stages"]]}
        return self.spec

    def __exit__(self, kind, error, traceback):
        if kind is not None:
            return False
        self.specs = st.check_stages(self.spec["stages"])
        self.spec["editVersion"] += 1
        self.obj.spec = self.spec
        self.obj.save(update_fields=["spec"])
        self.placement.modified = now_ms()
        self.placement.save(update_fields=["modified"])
        return False


def _stage(spec, body):
    stage_id = get(body, "stage", str)
    return spec["stages"][st.index_of(spec["stages"], stage_id)]


def add_stage(principal, placement, body):
    edit = Edit(placement, body)
    with edit as spec:
        stage = _stage_from_body(body, existing=spec["stages"])
        _check_stage_access(principal, [stage])
        spec["stages"].append(stage)
    return {"id": placement.obj_id, "editVersion": spec["editVersion"], "stage": stage["id"]}


def update(principal, placement, body):
    _no_workflow_io(body)
    with Edit(placement, body) as spec:
        for key in TEXT_KEYS:
            if key in body:
                value = body[key]
                if value is not None and not isinstance(value, str):
                    raise InvalidInput(f'"{key}" must be a string or null', field=key)
                spec[key] = value if value is not None or key == "title" else ""
        if "outputFolder" in body:
            spec["outputFolder"] = _output_folder(body)
        changes = get(body, "stages", dict, {})
        for stage_id, change in changes.items():
            stage = spec["stages"][st.index_of(spec["stages"], stage_id)]
            if not isinstance(change, dict):
                raise InvalidInput(f"stages.{stage_id} must be a JSON object", field="stages")
            _update_stage(principal, stage, change)
    return {"id": placement.obj_id, "editVersion": spec["editVersion"]}


def _update_stage(principal, stage, change):
    for key in ("name", "folder"):
        if key in change:
            value = change[key]
            bad_name = key == "name" and isinstance(value, str) and "." in value
            if (value is not None and not isinstance(value, str)) or bad_name:
                raise InvalidInput(
                    f"stages.{stage['id']}.{key} must be a string (a name without '.') or null", field=key
                )
            stage[key] = value
    if "input" in change:
        given = get(change, "input", dict)
        bound = dict(stage["input"])
        for name, value in given.items():
            if value is None:
                bound.pop(name, None)
            else:
                bound[name] = value
        stage["input"] = bound
        _check_stage_access(principal, [{**stage, "input": given}])
    for key in ("systemRequirements", "executionPolicy"):
        if key in change:
            stage[key] = get(change, key, dict, None) or {}
    st.check_instance_types(stage["systemRequirements"], f"stages.{stage['id']}.systemRequirements")


def incompatibilities(spec, stage, executable_spec):
    """Why `executable_spec` cannot replace the stage's executable: bound inputs it lacks (or types
    differently), and outputs later stages take from this one that it lacks."""
    found = []
    inputs = {f["name"]: f for f in executable_spec.get("inputSpec") or []}
    for name in stage["input"]:
        if executable_spec.get("inputSpec") is not None and name not in inputs:
            found.append(f"The input {name!r} bound in stage {stage['id']} is not an input of the new executable")
    outputs = {f["name"] for f in executable_spec.get("outputSpec") or []}
    for other in spec["stages"]:
        for value in other["input"].values():
            for target, kind, field in st.links_of(value):
                if target == stage["id"] and kind == "outputField" and field not in outputs:
                    found.append(f"Stage {other['id']} takes the output {field!r}, which the new executable lacks")
    return found


def update_stage_executable(principal, placement, body):
    with Edit(placement, body) as spec:
        stage = _stage(spec, body)
        executable = get(body, "executable", str)
        source = access_object(principal, executable, Level.VIEW)
        if source.obj.cls != "applet":
            raise InvalidInput(f"{executable} is not an applet", field="executable")
        found = incompatibilities(spec, stage, source.obj.spec)
        if found and not get(body, "force", bool, False):
            raise InvalidState(
                f"The executable {executable} is not compatible with stage {stage['id']} (use force to replace it)",
                details={"incompatibilities": found},
            )
        stage["executable"] = executable
        if found:  # forced: drop the bindings the new executable has no input for
            inputs = {f["name"] for f in source.obj.spec.get("inputSpec") or []}
            if source.obj.spec.get("inputSpec") is not None:
                stage["input"] = {k: v for k, v in stage["input"].items() if k in inputs}
    return {"id": placement.obj_id, "editVersion": spec["editVersion"]}


def is_stage_compatible(principal, placement, body):
    spec = placement.obj.spec
    stage = _stage(spec, body)
    source = access_object(principal, get(body, "executable", str), Level.VIEW)
    found = incompatibilities(spec, stage, source.obj.spec)
    return {"compatible": not found, "incompatibilities": found}


def _dependants(spec, stage_id):
    return sorted(
        {
            other["id"]
            for other in spec["stages"]
            for value in other["input"].values()
            for target, _, _ in st.links_of(value)
            if target == stage_id and other["id"] != stage_id
        }
    )


def remove_stage(principal, placement, body):
    with Edit(placement, body) as spec:
        stage = _stage(spec, body)
        users = _dependants(spec, stage["id"])
        if users:
            raise InvalidState(
                f"Stage {stage['id']} cannot be removed: {', '.join(users)} take(s) input from it; "
                "unbind those inputs first"
            )
        spec["stages"].remove(stage)
    return {"id": placement.obj_id, "editVersion": spec["editVersion"]}


def move_stage(principal, placement, body):
    with Edit(placement, body) as spec:
        stage = _stage(spec, body)
        index = body.get("newIndex")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(spec["stages"]):
            raise InvalidInput(f'"newIndex" must be an index from 0 to {len(spec["stages"]) - 1}', field="newIndex")
        spec["stages"].remove(stage)
        spec["stages"].insert(index, stage)
    return {"id": placement.obj_id, "editVersion": spec["editVersion"]}


def close(placement):
    """Close the workflow (again: no change)."""
    DataObject.objects.filter(pk=placement.obj_id).update(state=DataObject.CLOSED)
    return {"id": placement.obj_id}
