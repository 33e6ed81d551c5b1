"""Values: the links ($dnanexus_link to an object) and job-based object references (JBORs) inside a
job's input or output, and their substitution once the referenced jobs are done."""

from django.db import models

from dxweb.errors import InvalidInput

from .models import Job
from .specs import is_link, jbor, link_target


def walk(value):
    """Yield every dict, list and scalar inside a JSON value, the value itself first."""
    yield value
    if isinstance(value, dict) and jbor(value) is None and link_target(value) is None:
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def refs_in(value):
    return [ref for v in walk(value) if (ref := jbor(v)) is not None]


def links_in(value):
    return [target for v in walk(value) if (target := link_target(v)) is not None and jbor(v) is None]


def substitute(value, outputs):
    """Replace each JBOR in `value` with the referenced output (outputs: {job id: output dict})."""
    ref = jbor(value)
    if ref is not None:
        output = outputs[ref["job"]] or {}
        if ref["field"] not in output:
            raise InvalidInput(f'{ref["job"]} has no output field "{ref["field"]}"')
        result = output[ref["field"]]
        if "index" in ref:
            if not isinstance(result, list) or not isinstance(ref["index"], int) or not 0 <= ref["index"] < len(result):
                raise InvalidInput(f"{ref['job']}:{ref['field']} has no index {ref['index']}")
            result = result[ref["index"]]
        return result
    if isinstance(value, dict) and link_target(value) is None:
        return {k: substitute(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, outputs) for v in value]
    return value


def analysis_refs_to_jbors(value):
    """Replace each analysis output reference ({"$dnanexus_link": {"analysis", "field": "<stage>.<f>"}},
    what dxpy's DXAnalysis.get_output_ref makes) with a JBOR to that stage's job."""
    if is_link(value) and isinstance(value["$dnanexus_link"], dict) and "analysis" in value["$dnanexus_link"]:
        target = value["$dnanexus_link"]
        stage, dot, field = str(target.get("field", "")).partition(".")
        job_id = (
            Job.objects.filter(analysis_id=target["analysis"], stage=stage, origin_id=models.F("pk"))
            .values_list("pk", flat=True)
            .first()
            if isinstance(target["analysis"], str) and dot
            else None
        )
        if job_id is None:
            raise InvalidInput(
                f"{target.get('analysis')!r} has no stage output {target.get('field')!r} "
                '(an analysis output reference names "<stage ID>.<output field>")'
            )
        ref = {"job": job_id, "field": field}
        if "index" in target:
            ref["index"] = target["index"]
        return {"$dnanexus_link": ref}
    if isinstance(value, dict) and not is_link(value):
        return {k: analysis_refs_to_jbors(v) for k, v in value.items()}
    if isinstance(value, list):
        return [analysis_refs_to_jbors(v) for v in value]
    return value
