"""The workflow pages: list and create, the builder (every edit through the page, errors on the form),
the launch form grouped by stage, the analysis page; and who may see and change what."""

import pytest
from django.test import Client

from jobs import dispatch
from jobs.models import Analysis
from projects.models import DataObject

from .test_workflow_api import applet, link


@pytest.fixture
def no_dispatch(monkeypatch):
    monkeypatch.setattr(dispatch, "run_job", lambda job_id: None)


@pytest.fixture
def pieces(alice, project):
    qc = applet(
        alice,
        project,
        "qc",
        [{"name": "reads", "class": "file"}, {"name": "min_quality", "class": "int", "default": 20}],
        [{"name": "filtered_reads", "class": "file"}],
    )
    align = applet(alice, project, "align", [{"name": "reads", "class": "file"}], [{"name": "bam", "class": "file"}])
    reads = alice.ok("/file/new", {"project": project, "name": "sample.fastq"})["id"]
    alice.ok(f"/{reads}/close")
    return qc, align, reads


def workflow_of(project):
    return DataObject.objects.get(cls="workflow", placements__container_id=project)


def post(web, url, **data):
    return web.post(url, data)


def test_a_workflow_built_and_run_entirely_from_the_pages(web, project, pieces, no_dispatch):
    qc, align, reads = pieces
    base = f"/projects/{project}/workflows/"
    response = post(web, base, name="pipeline", folder="/", output_folder="/out")
    workflow = workflow_of(project)
    assert response.status_code == 302 and response["Location"] == f"{base}{workflow.pk}/"
    page = web.get(base)
    assert workflow.pk in page.content.decode()
    wf = f"{base}{workflow.pk}/"
    assert post(web, wf + "add/", edit_version=0, applet=qc, name="QC", folder="qc").status_code == 302
    assert post(web, wf + "add/", edit_version=1, applet=align, name="Align").status_code == 302
    workflow.refresh_from_db()
    first, second = (s["id"] for s in workflow.spec["stages"])
    # Bind align's reads to QC's output, and QC's quality to a value.
    bind = post(
        web, wf + "bind/", edit_version=2, stage=second, field="reads", kind="output", output=f"{first}.filtered_reads"
    )
    assert bind.status_code == 302
    assert (
        post(web, wf + "bind/", edit_version=3, stage=first, field="min_quality", kind="value", value="30").status_code
        == 302
    )
    workflow.refresh_from_db()
    assert workflow.spec["stages"][1]["input"] == {"reads": link(first, "filtered_reads")}
    assert workflow.spec["stages"][0]["input"] == {"min_quality": 30}
    page = web.get(wf).content.decode()
    assert "<svg" in page and f'data-from="{first}"' in page and f'data-to="{second}"' in page
    assert post(web, wf + "close/").status_code == 302
    # The launch form asks only for what no stage binds, grouped by stage.
    launch = web.get(wf + "run/").content.decode()
    assert f'data-stage="{first}"' in launch and f'data-stage="{second}"' not in launch
    assert f'name="in_{first}.reads"' in launch
    response = post(
        web,
        wf + "run/",
        **{f"in_{first}.reads": reads, f"in_{first}.min_quality": "30", "folder": "/out", "priority": "normal"},
    )
    analysis = Analysis.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/analyses/{analysis.pk}/"
    page = web.get(f"/analyses/{analysis.pk}/").content.decode()
    assert analysis.pk in page and "in_progress" in page
    for job in analysis.stage_jobs.all():
        assert f'data-job="{job.pk}"' in page and f"/jobs/{job.pk}/" in page
    assert analysis.folder == "/out"


def test_builder_errors_show_on_the_page_and_change_nothing(web, project, pieces):
    qc, align, reads = pieces
    base = f"/projects/{project}/workflows/"
    post(web, base, name="pipeline", folder="/")
    workflow = workflow_of(project)
    wf = f"{base}{workflow.pk}/"
    post(web, wf + "add/", edit_version=0, applet=qc, name="QC")
    first = workflow_of(project).spec["stages"][0]["id"]
    bad_value = post(web, wf + "bind/", edit_version=1, stage=first, field="min_quality", kind="value", value="high")
    assert bad_value.status_code == 422 and "Expected int" in bad_value.content.decode()
    stale = post(web, wf + "add/", edit_version=0, applet=align)
    assert stale.status_code == 422 and "stale" in stale.content.decode()
    self_link = post(
        web, wf + "bind/", edit_version=1, stage=first, field="reads", kind="output", output=f"{first}.filtered_reads"
    )
    assert self_link.status_code == 422 and "its own stage" in self_link.content.decode()
    bad_name = post(web, wf + "add/", edit_version=1, applet=align, name="a.b")
    assert bad_name.status_code == 422
    assert workflow_of(project).spec["editVersion"] == 1
    unknown = post(web, wf + "nonsense/", edit_version=1)
    assert unknown.status_code == 404


def test_an_open_workflow_has_no_run_button_and_its_launch_form_says_why(web, project, pieces):
    qc, align, reads = pieces
    post(web, f"/projects/{project}/workflows/", name="pipeline", folder="/")
    wf = f"/projects/{project}/workflows/{workflow_of(project).pk}/"
    assert 'id="run-workflow"' not in web.get(wf).content.decode()
    page = web.get(wf + "run/").content.decode()
    assert 'id="cannot-run"' in page and "is open" in page


def test_outsiders_get_not_found_and_viewers_cannot_change(alice, bob, project, pieces, no_dispatch):
    qc, align, reads = pieces
    workflow = alice.ok("/workflow/new", {"project": project, "name": "p"})["id"]
    alice.ok(
        f"/{workflow}/addStage", {"executable": qc, "editVersion": 0, "input": {"reads": {"$dnanexus_link": reads}}}
    )
    alice.ok(f"/{workflow}/close")
    analysis = alice.ok(f"/{workflow}/run", {"project": project})["id"]
    browser = Client()
    browser.force_login(bob.user)
    wf = f"/projects/{project}/workflows/{workflow}/"
    pages = [f"/projects/{project}/workflows/", wf, wf + "run/", f"/analyses/{analysis}/"]
    for url in pages:
        assert browser.get(url).status_code == 404, url
    for url in (wf + "add/", wf + "close/", f"/analyses/{analysis}/terminate/"):
        assert browser.post(url, {"edit_version": 1}).status_code == 404, url
    alice.ok(f"/{project}/invite", {"invitee": bob.user.dx_id, "level": "VIEW"})
    for url in pages:
        assert browser.get(url).status_code == 200, url
    assert browser.post(wf + "close/").status_code == 403
    assert browser.post(f"/analyses/{analysis}/terminate/").status_code == 403
    assert browser.post(wf + "run/", {"folder": "/"}).status_code == 403
    assert Analysis.objects.count() == 1
    anonymous = Client()
    for url in pages:
        assert anonymous.get(url).status_code == 302, url  # to the login page


def test_job_lists_show_an_analysis_with_its_stage_jobs_under_it(alice, web, project, pieces, no_dispatch):
    qc, align, reads = pieces
    lone = alice.ok(f"/{qc}/run", {"project": project, "input": {"reads": {"$dnanexus_link": reads}}})["id"]
    workflow = alice.ok("/workflow/new", {"project": project, "name": "pipeline"})["id"]
    first = alice.ok(
        f"/{workflow}/addStage", {"executable": qc, "editVersion": 0, "input": {"reads": {"$dnanexus_link": reads}}}
    )["stage"]
    alice.ok(
        f"/{workflow}/addStage",
        {"executable": align, "editVersion": 1, "input": {"reads": link(first, "filtered_reads")}},
    )
    alice.ok(f"/{workflow}/close")
    analysis = alice.ok(f"/{workflow}/run", {"project": project, "name": "nightly"})["id"]
    stage_jobs = [j.pk for j in Analysis.objects.get(pk=analysis).stage_jobs.order_by("created")]
    for url in (f"/projects/{project}/jobs/", "/jobs/"):
        page = web.get(url).content.decode()
        rows = [chunk.split('"', 1)[0] for chunk in page.split('<tr data-job="')[1:]]
        assert rows == [analysis, *stage_jobs, lone], url  # each stage job once, under its analysis
        assert f'href="/analyses/{analysis}/"' in page and 'class="stage-row"' in page
    filtered = web.get(f"/projects/{project}/jobs/?name=nightly").content.decode()
    assert analysis in filtered and lone not in filtered


def test_a_stage_jobs_page_links_its_analysis(alice, web, project, pieces, no_dispatch):
    qc, align, reads = pieces
    workflow = alice.ok("/workflow/new", {"project": project, "name": "p"})["id"]
    alice.ok(
        f"/{workflow}/addStage", {"executable": qc, "editVersion": 0, "input": {"reads": {"$dnanexus_link": reads}}}
    )
    alice.ok(f"/{workflow}/close")
    analysis = alice.ok(f"/{workflow}/run", {"project": project})["id"]
    job = Analysis.objects.get(pk=analysis).stage_jobs.get()
    page = web.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="/analyses/{analysis}/"' in page and job.stage in page
