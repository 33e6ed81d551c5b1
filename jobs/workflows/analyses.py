"""Analyses: running a workflow, following its stage jobs, terminating it, describing it.

/workflow-x/run makes one job per stage through the same path as /applet-x/run (actions.run_applet),
in stage order. A stage's link to an earlier stage's output becomes a job-based object reference to that
stage's job, so the stage waits for it as any job waits on a JBOR; a link to another stage's input
becomes that input's value. Nothing runs until the whole analysis is committed.

The analysis follows its stage jobs (stage_ended, called once each has ended): their outputs fill its
`output`; the first stage to fail fails it (partially_failed while others still run, which are
terminated) and names itself in failureFrom; when every stage is done, it is done.
"""

from django.db import transaction
from django.db.models import F

from dxweb.errors import DXError, InvalidInput, InvalidState
from dxweb.ids import new_id
from dxweb.validation import get, string_list
from projects import actions as project_actions
from projects.models import Container, DataObject, Level, now_ms
from projects.permissions import access_container

from .. import actions, references
from ..logs.store import notify_state
from ..models import (
    ANALYSIS_TRANSITIONS,
    FINAL_STATES,
    Analysis,
    AnalysisState,
    State,
    describe_job,
)
from . import stages as st


def move(analysis_id, new_state, **fields):
    """Move an analysis to `new_state` by compare-and-swap, as actions.transition moves jobs; return
    True if this call made the change (False: it was in a state the table lets not go there)."""
    new_state = AnalysisState(new_state)
    while True:
        row = (
            Analysis.objects.filter(pk=analysis_id)
            .values_list("state", "transitions", "project_id", "launched_by_id")
            .first()
        )
        if row is None or new_state not in ANALYSIS_TRANSITIONS[AnalysisState(row[0])]:
            return False
        current, transitions, project_id, launcher_id = row
        now = now_ms()
        changed = Analysis.objects.filter(pk=analysis_id, state=current).update(
            state=new_state,
            modified=now,
            transitions=[*transitions, {"newState": new_state.value, "setAt": now}],
            **fields,
        )
        if changed:
            transaction.on_commit(lambda p=project_id, u=launcher_id: notify_state(p, u))
            return True


# Running ------------------------------------------------------------------------------


def _folder(base, folder):
    """Where a stage's outputs go: its folder under the analysis's, or its own absolute folder."""
    if not folder:
        return base
    if folder.startswith("/"):
        return project_actions.clean_folder(folder, "folder")
    return project_actions.clean_folder(base.rstrip("/") + "/" + folder, "folder")


def _requirements(body, stage):
    """The stage job's systemRequirements: the run's for this stage, for every stage, for its executable,
    for the whole run, then the stage's own."""
    by_stage = get(body, "stageSystemRequirements", dict, {})
    by_executable = get(body, "systemRequirementsByExecutable", dict, {})
    for source in (
        by_stage.get(stage["id"]),
        by_stage.get("*"),
        by_executable.get(stage["executable"]),
        body.get("systemRequirements"),
        stage["systemRequirements"],
    ):
        if isinstance(source, dict) and source:
            st.check_instance_types(source, f"systemRequirements of stage {stage['id']}")
            return source
    return {}


def _resolve(value, jobs, inputs):
    """A stage input with its stage links made concrete: JBORs to earlier stage jobs, or their inputs."""
    link = st.stage_link(value)
    if link is not None:
        target, kind, field = link
        if kind == "outputField":
            return {"$dnanexus_link": {"job": jobs[target], "field": field}}
        if field not in inputs[target]:
            raise InvalidInput(f"Stage {target} has no value for its input {field!r}, which another stage takes")
        return inputs[target][field]
    if isinstance(value, dict) and "$dnanexus_link" not in value:
        return {k: _resolve(v, jobs, inputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, jobs, inputs) for v in value]
    return value


def stage_inputs(stages, given):
    """Each stage's input for a run: its bound inputs, overridden by the run's "<stage>.<field>" keys
    (the stage named by ID, index or name)."""
    per_stage = {stage["id"]: dict(stage["input"]) for stage in stages}
    for key, value in given.items():
        token, dot, field = key.partition(".")
        if not dot or not field:
            raise InvalidInput(f'input {key!r}: keys are "<stage ID>.<field>"', field="input")
        per_stage[st.stage_reference(stages, token)["id"]][field] = value
    return per_stage


def _job_body(body, project, stage, folder, executable_name, value):
    return {
        "project": project.pk,
        "input": value,
        "name": stage["name"] or executable_name,
        "folder": _folder(folder, get(body, "stageFolders", dict, {}).get(stage["id"], stage["folder"])),
        "systemRequirements": _requirements(body, stage),
        **{
            key: body[key]
            for key in (
                "priority",
                "debug",
                "allowSSH",
                "delayWorkspaceDestruction",
                "dependsOn",
                "timeoutPolicyByExecutable",
            )
            if body.get(key) is not None
        },
    }


@transaction.atomic
def run_workflow(principal, placement, body, check_only=False):
    """/workflow-x/run (and dryRun, with `check_only`: everything checked, nothing made)."""
    workflow, spec = placement.obj, placement.obj.spec
    if workflow.state != DataObject.CLOSED:
        raise InvalidState(f"{workflow.pk} is open: close it before running it (dx close {workflow.pk})")
    if not spec["stages"]:
        raise InvalidState(f"{workflow.pk} has no stages to run")
    caller = actions.calling_job(principal)
    if caller is None:
        project = access_container(principal, get(body, "project", str), Level.CONTRIBUTE, kinds=(Container.PROJECT,))
    else:
        project = caller.project
    folder = project_actions.clean_folder(get(body, "folder", str, spec.get("outputFolder") or "/"))
    given = references.analysis_refs_to_jbors(get(body, "input", dict, {}))
    per_stage = stage_inputs(spec["stages"], given)
    st.check_stages([{**stage, "input": per_stage[stage["id"]]} for stage in spec["stages"]], allow_refs=True)
    priority = get(body, "priority", str, "normal")
    analysis = Analysis(
        id=new_id("analysis"),
        name=project_actions.clean_name(get(body, "name", str, placement.name)),
        workflow=workflow,
        executable=workflow.pk,
        executable_name=placement.name,
        project=project,
        folder=folder,
        launched_by=principal.user,
        input={f"{sid}.{k}": v for sid, values in per_stage.items() for k, v in values.items()},
        original_input=given,
        run_input=given,
        depends_on=string_list(body, "dependsOn", []),
        priority=priority,
        tags=project_actions.clean_tags(string_list(body, "tags", [])),
        properties=project_actions.clean_properties(get(body, "properties", dict, {})),
        details=get(body, "details", (dict, list), {}),
    )
    analysis.transitions = [{"newState": AnalysisState.IN_PROGRESS.value, "setAt": analysis.created}]
    analysis.save()
    jobs, inputs, stages = {}, {}, []
    for stage in spec["stages"]:
        sid = stage["id"]
        name, run = st.stage_executable(principal, dict(stage))
        try:
            value = _resolve(per_stage[sid], jobs, inputs)
            job = run(_job_body(body, project, stage, folder, name, value), analysis=analysis, stage=sid)
        except DXError as err:
            err.message = f"Stage {sid} ({stage['name'] or name}): {err.message}"
            err.args = (err.message,)
            raise
        jobs[sid], inputs[sid] = job.id, job.input
        stages.append({**stage, "execution": job.id})
    analysis.stages = stages
    analysis.save(update_fields=["stages"])
    if check_only:
        transaction.set_rollback(True)
    return analysis


# Following the stages -------------------------------------------------------------------


def stage_ended(sender, analysis_id, **kwargs):
    """A stage's job has ended (committed): update the analysis's output and state."""
    with transaction.atomic():
        analysis = Analysis.objects.select_for_update().filter(pk=analysis_id).first()
        if analysis is None or analysis.is_final:
            return
        jobs = {job.stage: job for job in analysis.stage_jobs.filter(origin_id=F("pk"))}
        output = {}
        for stage in analysis.stages:
            job = jobs.get(stage["id"])
            if job is not None and job.state == State.DONE:
                output.update({f"{stage['id']}.{k}": v for k, v in (job.output or {}).items()})
        Analysis.objects.filter(pk=analysis_id).update(output=output or None)
        unfinished = [job for job in jobs.values() if job.state not in FINAL_STATES]
        ended_badly = [job for job in jobs.values() if job.state in (State.FAILED, State.TERMINATED)]
        if analysis.state == AnalysisState.TERMINATING:
            if not unfinished:
                move(analysis_id, AnalysisState.TERMINATED)
            return
        if ended_badly:
            _stage_failed(analysis, ended_badly, unfinished)
        elif not unfinished:
            move(analysis_id, AnalysisState.DONE)


def _stage_failed(analysis, ended_badly, unfinished):
    """The first stage to end badly fails the analysis; the stages still going are terminated."""
    if analysis.failure_reason:
        failure = {}
    else:
        # The stage that failed first, not those that failed because they depended on it.
        first = min(ended_badly, key=lambda j: (j.failure_reason == "DependencyFailed", j.modified))
        failure = {
            "failure_reason": first.failure_reason or "Terminated",
            "failure_message": first.failure_message or f"{first.id} was {first.state}",
            "failure_from": first,
        }
    if unfinished:
        if analysis.state == AnalysisState.IN_PROGRESS:
            move(analysis.pk, AnalysisState.PARTIALLY_FAILED, **failure)
        for job in unfinished:
            actions.end_tree(job, "Terminated", f"Terminated because stage {analysis.pk} failed", include_origin=True)
    else:
        move(analysis.pk, AnalysisState.FAILED, **failure)


def terminate(principal, analysis):
    """/analysis-x/terminate: terminate every stage job still going; the analysis ends terminated."""
    if analysis.is_final:
        raise InvalidState(f"{analysis.pk} has already finished ({analysis.state})")
    move(analysis.pk, AnalysisState.TERMINATING)
    unfinished = list(analysis.stage_jobs.filter(origin_id=F("pk")).exclude(state__in=FINAL_STATES))
    for job in unfinished:
        actions.end_tree(job, "Terminated", f"Terminated by {principal.user.dx_id}", include_origin=True)
    if not unfinished:
        move(analysis.pk, AnalysisState.TERMINATED)


# Describing --------------------------------------------------------------------------


def describe_analysis(analysis, io=True):
    """The fields /analysis-x/describe returns (dxpy and `dx describe` read them all)."""
    jobs = {
        job.stage: job
        for job in analysis.stage_jobs.filter(origin_id=F("pk"))
        .select_related("project", "launched_by", "failure_from", "root")
        .prefetch_related("transitions")
    }
    definitions = [{k: stage.get(k) for k in st.STAGE_KEYS} for stage in analysis.stages]
    data = {
        "id": analysis.pk,
        "class": "analysis",
        "name": analysis.name,
        "executable": analysis.executable,
        "executableName": analysis.executable_name,
        "workflow": {
            "id": analysis.executable,
            "name": analysis.executable_name,
            "stages": definitions,
        },
        "stages": [
            {"id": stage["id"], "execution": describe_job(jobs[stage["id"]], io=io)}
            if stage["id"] in jobs
            else {"id": stage["id"], "execution": {"id": stage.get("execution")}}
            for stage in analysis.stages
        ],
        "state": analysis.state,
        "project": analysis.project_id,
        "folder": analysis.folder,
        "launchedBy": analysis.launched_by.dx_id,
        "created": analysis.created,
        "modified": analysis.modified,
        "parentJob": None,
        "parentAnalysis": None,
        "originJob": None,
        "rootExecution": analysis.pk,
        "analysis": None,
        "dependsOn": analysis.depends_on,
        "tags": analysis.tags,
        "properties": analysis.properties,
        "details": analysis.details,
        "priority": analysis.priority,
        "billTo": analysis.project.bill_to,
        "region": analysis.project.region,
        "stateTransitions": analysis.transitions,
        "isFree": True,
    }
    if io:
        data.update(
            input=analysis.input,
            originalInput=analysis.original_input,
            runInput=analysis.run_input,
            output=analysis.output,
        )
    if analysis.state in (AnalysisState.FAILED, AnalysisState.PARTIALLY_FAILED) or analysis.failure_reason:
        data["failureReason"] = analysis.failure_reason
        data["failureMessage"] = analysis.failure_message
        if analysis.failure_from_id:
            data["failureFrom"] = {"id": analysis.failure_from_id, "name": analysis.failure_from.name}
    return data
