"""API methods for workflows (data objects of class "workflow") and analyses.

The generic object methods (describe, rename, tags, properties, details, clone, remove) come from
projects.api; a workflow's describe is completed by stages.describe_workflow.
"""

from dxweb.api import api_method
from dxweb.validation import get
from projects.api import object_method, tagging_methods
from projects.models import Level, select_fields
from projects.permissions import access_container

from ..permissions import access_analysis
from . import analyses, editing


@api_method("workflow", "new", write=True)
def workflow_new(principal, body):
    container = access_container(principal, get(body, "project", str), Level.UPLOAD)
    return {"id": editing.new_workflow(principal, container, body).obj_id}


def workflow_edit(name, fn):
    """Register /workflow-x/<name>, an edit (CONTRIBUTE; editVersion checked)."""
    object_method(name, Level.CONTRIBUTE, write=True, classes=("workflow",))(fn)


workflow_edit("addStage", editing.add_stage)
workflow_edit("update", editing.update)
workflow_edit("updateStageExecutable", editing.update_stage_executable)
workflow_edit("removeStage", editing.remove_stage)
workflow_edit("moveStage", editing.move_stage)


@object_method("close", Level.CONTRIBUTE, write=True, classes=("workflow",))
def workflow_close(principal, placement, body):
    return editing.close(placement)


@object_method("isStageCompatible", Level.VIEW, classes=("workflow",))
def workflow_is_stage_compatible(principal, placement, body):
    return editing.is_stage_compatible(principal, placement, body)


@object_method("run", Level.VIEW, classes=("workflow",))
def workflow_run(principal, placement, body):
    analysis = analyses.run_workflow(principal, placement, body)
    return {"id": analysis.pk, "stages": [stage["execution"] for stage in analysis.stages]}


@object_method("dryRun", Level.VIEW, classes=("workflow",))
def workflow_dry_run(principal, placement, body):
    """Everything /run checks, nothing made; the reply names no executions (none would be reused)."""
    analysis = analyses.run_workflow(principal, placement, body, check_only=True)
    return {"id": analysis.pk, "stages": []}


def analysis_method(name, needed=Level.VIEW, write=False):
    """Register /analysis-x/<name>; the analysis is reached through its project's permissions."""

    def register(fn):
        def handler(principal, analysis_id, body):
            return fn(principal, access_analysis(principal, analysis_id, needed), body)

        api_method("analysis", name, write=write)(handler)
        return fn

    return register


@analysis_method("describe")
def analysis_describe(principal, analysis, body):
    return select_fields(analyses.describe_analysis(analysis, io=get(body, "io", bool, True)), body)


@analysis_method("terminate", Level.CONTRIBUTE, write=True)
def analysis_terminate(principal, analysis, body):
    analyses.terminate(principal, analysis)
    return {"id": analysis.pk}


tagging_methods(analysis_method, lambda analysis: analysis.pk)
