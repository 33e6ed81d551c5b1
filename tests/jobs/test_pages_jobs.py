"""The applet and job pages: who may open and post what, the launch form's fields and errors, job lists.

alice administers the project; viewer and contributor hold those levels; charlie is an outsider.
"""

import json
import random
import re
import string
from datetime import UTC, date, datetime
from html import unescape
from urllib.parse import parse_qs, urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from jobs import actions
from jobs.models import Job, JobDependency, LogLine, State
from projects import actions as project_actions
from projects.accounts import create_user
from projects.models import DataObject
from projects.permissions import Principal

ACTORS = ("anonymous", "charlie", "viewer", "contributor", "alice")
BASH = {"interpreter": "bash", "code": "main() { echo hi; }"}
SPEC = [
    {"name": "n", "class": "int", "default": 3, "help": "How many"},
    {"name": "ratio", "class": "float", "optional": True},
    {"name": "label", "class": "string", "choices": ["a", "b"], "default": "a"},
    {"name": "flag", "class": "boolean", "optional": True},
    {"name": "opts", "class": "hash", "optional": True},
    {"name": "reads", "class": "file"},
    {"name": "more", "class": "array:int", "optional": True},
    {"name": "tool", "class": "applet", "optional": True},
]


@pytest.fixture
def world(db):
    users = {handle: create_user(handle) for handle in ACTORS if handle != "anonymous"}
    project = project_actions.create_container(users["alice"], "pipelines")
    project_actions.invite(project, "user-viewer", "VIEW")
    project_actions.invite(project, "user-contributor", "CONTRIBUTE")
    applet = actions.new_applet(
        users["alice"],
        project,
        {
            "name": "counter",
            "title": "Counts",
            "inputSpec": SPEC,
            "outputSpec": [{"name": "total", "class": "int"}],
            "runSpec": BASH,
        },
    )
    reads = project_actions.new_object(users["alice"], project, "file", name="reads.txt", state=DataObject.CLOSED)
    job = actions.run_applet(
        Principal.of(users["alice"]),
        applet,
        {
            "project": project.pk,
            "input": {"reads": {"$dnanexus_link": reads.obj_id}},
            "tags": ["first"],
        },
    )
    return {"users": users, "project": project, "applet": applet, "reads": reads, "job": job}


def client(world, actor):
    c = Client()
    if actor != "anonymous":
        c.force_login(world["users"][actor])
    return c


def urls(world):
    p, a, j = world["project"].pk, world["applet"].obj_id, world["job"].pk
    return {
        "applets": f"/projects/{p}/applets/",
        "applet": f"/projects/{p}/applets/{a}/",
        "launch": f"/projects/{p}/applets/{a}/run/",
        "jobs": f"/projects/{p}/jobs/",
        "job": f"/jobs/{j}/",
        "log": f"/jobs/{j}/log/",
        "new": f"/projects/{p}/applets/new/",
    }


EXPECTED_GET = {
    # page: status for anonymous, charlie, viewer, contributor, alice
    "applets": (302, 404, 200, 200, 200),
    "applet": (302, 404, 200, 200, 200),
    "launch": (302, 404, 200, 200, 200),
    "jobs": (302, 404, 200, 200, 200),
    "job": (302, 404, 200, 200, 200),
    "log": (302, 404, 200, 200, 200),
    "new": (302, 404, 403, 200, 200),
}


@pytest.mark.parametrize("page", sorted(EXPECTED_GET))
def test_who_may_open_each_page(world, page):
    got = tuple(client(world, actor).get(urls(world)[page]).status_code for actor in ACTORS)
    assert got == EXPECTED_GET[page]


def test_my_jobs_lists_only_the_users_own_jobs_in_projects_they_see(world):
    assert world["job"].pk in client(world, "alice").get("/jobs/").content.decode()
    assert world["job"].pk not in client(world, "contributor").get("/jobs/").content.decode()
    assert client(world, "anonymous").get("/jobs/").status_code == 302


@pytest.mark.parametrize(
    "action,post",
    [
        ("terminate", {}),
        ("tags", {"tags": "a, b"}),
        ("properties", {"properties": "k=v"}),
    ],
)
def test_job_actions_need_contribute(world, action, post):
    path = f"/jobs/{world['job'].pk}/{action}/"
    statuses = {actor: client(world, actor).post(path, post).status_code for actor in ACTORS}
    assert statuses == {"anonymous": 302, "charlie": 404, "viewer": 403, "contributor": 302, "alice": 302}
    job = Job.objects.get(pk=world["job"].pk)
    if action == "terminate":
        assert job.state == State.TERMINATED
    elif action == "tags":
        assert job.tags == ["a", "b"]
    else:
        assert job.properties == {"k": "v"}


def test_the_launch_form_has_a_field_per_input_with_defaults_choices_and_help(world):
    html = client(world, "contributor").get(urls(world)["launch"]).content.decode()
    for name in ("n", "ratio", "label", "flag", "opts", "reads", "more", "tool"):
        assert f'name="in_{name}"' in html
    assert 'name="in_n" value="3"' in html.replace('type="number" ', "").replace(' step="1"', "") or 'value="3"' in html
    assert "How many" in html and '<option value="&quot;b&quot;">b</option>' in html
    assert 'data-picker="file"' in html and 'data-picker="applet"' in html
    assert "mem1_ssd1_x2" in html and "Allow SSH from my address (127.0.0.1)" in html


def test_a_viewer_sees_the_form_disabled_with_the_reason_and_cannot_post(world):
    response = client(world, "viewer").get(urls(world)["launch"])
    html = response.content.decode()
    assert "launching needs CONTRIBUTE" in html and '<fieldset class="bare stack" disabled>' in html
    before = Job.objects.count()
    assert client(world, "viewer").post(urls(world)["launch"], {"in_reads": world["reads"].obj_id}).status_code == 403
    assert Job.objects.count() == before


def launch(world, actor="contributor", **fields):
    data = {"folder": "/", "instance_type": "mem1_ssd1_x2", "priority": "normal", **fields}
    return client(world, actor).post(urls(world)["launch"], data, REMOTE_ADDR="10.1.2.3")


def test_launching_creates_a_job_with_the_parsed_input_and_options(world):
    response = launch(
        world,
        in_reads=world["reads"].obj_id,
        in_n="7",
        in_ratio="0.5",
        in_label='"b"',
        in_flag="true",
        in_opts='{"k": [1]}',
        in_more="1\n2\n\n3",
        name="from the page",
        tags="x, y",
        properties="k=v",
        timeout="90m",
        debug_on=["AppError"],
        allow_ssh="on",
        priority="high",
    )
    assert response.status_code == 302
    job = Job.objects.get(pk=response["Location"].strip("/").rsplit("/", 1)[1])
    assert job.original_input == {
        "reads": {"$dnanexus_link": world["reads"].obj_id},
        "n": 7,
        "ratio": 0.5,
        "label": "b",
        "flag": True,
        "opts": {"k": [1]},
        "more": [1, 2, 3],
    }
    assert job.name == "from the page" and job.tags == ["x", "y"] and job.properties == {"k": "v"}
    assert job.timeout_s == 5400 and job.debug == {"debugOn": ["AppError"]} and job.allow_ssh == ["10.1.2.3"]
    assert job.priority == "high" and job.instance_type == "mem1_ssd1_x2" and job.launched_by.username == "contributor"


def field_errors(html, name):
    """The error messages rendered inside the launch form's block for input `name`."""
    block = next((chunk for chunk in html.split('data-field="')[1:] if chunk.startswith(f'{name}"')), "")
    block = block.split("</fieldset>")[0].split('<div class="card pad">')[0]
    return re.findall(r'<div class="field-error">(.*?)</div>', block)


def test_errors_are_shown_next_to_their_field(world):
    response = launch(world, in_n="three", in_opts="[1]")
    assert response.status_code == 422
    html = response.content.decode()
    assert field_errors(html, "n") and "Expected int" in field_errors(html, "n")[0]
    assert field_errors(html, "opts")
    # check_input's own message (a required file left empty) lands next to the field it names.
    response = launch(world, in_n="2")
    html = response.content.decode()
    assert response.status_code == 422 and field_errors(html, "reads") == ["input &quot;reads&quot; is required"]
    response = launch(world, in_reads="record-" + "x" * 24)
    assert "expected a link to a file" in " ".join(field_errors(response.content.decode(), "reads"))
    assert not Job.objects.exclude(pk=world["job"].pk).exists()


def test_json_holding_a_lone_surrogate_is_a_form_error_not_a_server_error(world):
    response = launch(world, in_reads=world["reads"].obj_id, in_opts='{"k": "\\ud800"}', in_more='["\\udfff"]')
    assert response.status_code == 422
    assert "surrogate" in " ".join(field_errors(response.content.decode(), "opts"))
    response = client(world, "alice").post(
        urls(world)["new"],
        {
            "name": "bad",
            "interpreter": "bash",
            "code": "x",
            "input_spec": '[{"name": "\\ud800", "class": "int"}]',
        },
    )
    assert response.status_code == 200 and "surrogate" in response.content.decode()
    response = client(world, "alice").post(
        urls(world)["new"],
        {
            "name": "bad",
            "interpreter": "bash",
            "code": "x",
            "dxapp": '{"title": "\\udc00"}',
        },
    )
    assert response.status_code == 200 and "This is not a JSON object" in response.content.decode()
    assert not Job.objects.exclude(pk=world["job"].pk).exists()


def test_rerun_prefills_the_form_with_the_original_input(world):
    html = client(world, "alice").get(urls(world)["launch"] + f"?from={world['job'].pk}").content.decode()
    assert world["reads"].obj_id in html and 'value="first"' in html


def test_creating_and_editing_an_applet_makes_versions(world):
    c = client(world, "contributor")
    response = c.post(
        urls(world)["new"],
        {
            "name": "adder",
            "interpreter": "bash",
            "code": "main() { echo add; }",
            "input_spec": '[{"name": "x", "class": "int"}]',
            "output_spec": "[]",
        },
    )
    assert response.status_code == 302
    first = response["Location"].strip("/").rsplit("/", 1)[1]
    edit = c.get(urls(world)["new"] + f"?from={first}").content.decode()
    assert "echo add" in edit and "New version of adder" in edit
    response = c.post(
        urls(world)["new"] + f"?from={first}",
        {
            "name": "adder",
            "interpreter": "bash",
            "code": "main() { echo add2; }",
            "input_spec": "[]",
            "output_spec": "[]",
        },
    )
    second = response["Location"].strip("/").rsplit("/", 1)[1]
    page = c.get(f"/projects/{world['project'].pk}/applets/{first}/").content.decode()
    assert page.index(second) < page.index(first, page.index("Versions"))
    assert "older version" in page
    listing = c.get(urls(world)["applets"]).content.decode()
    assert second in listing and f'data-applet="{first}"' not in listing


def test_code_posted_with_crlf_line_endings_is_stored_with_lf_in_new_applets_and_new_versions(world):
    # Browsers send a text area's lines with CRLF.
    c = client(world, "contributor")
    fields = {"name": "crlf", "interpreter": "bash", "input_spec": "[]", "output_spec": "[]"}
    response = c.post(urls(world)["new"], {**fields, "code": "main() {\r\n    echo one\r\n}\r\n"})
    assert response.status_code == 302
    first = response["Location"].strip("/").rsplit("/", 1)[1]
    response = c.post(urls(world)["new"] + f"?from={first}", {**fields, "code": "main() {\r\n    echo two\r\n}\r\n"})
    assert response.status_code == 302
    second = response["Location"].strip("/").rsplit("/", 1)[1]
    upload = SimpleUploadedFile("code.sh", b"main() {\r\n    echo three\r\n}\r\n")
    response = c.post(urls(world)["new"] + f"?from={second}", {**fields, "code_file": upload})
    assert response.status_code == 302
    third = response["Location"].strip("/").rsplit("/", 1)[1]
    stored = [DataObject.objects.get(pk=a).spec["runSpec"]["code"] for a in (first, second, third)]
    assert stored == [f"main() {{\n    echo {n}\n}}\n" for n in ("one", "two", "three")]


def test_a_dxapp_json_is_imported_with_separate_code_and_spec_errors_are_inline(world):
    dxapp = json.load(open("tests/jobs/apps/scatter_bash/dxapp.json"))
    response = client(world, "alice").post(
        urls(world)["new"],
        {
            "interpreter": "python3",
            "code": open("tests/jobs/apps/scatter_bash/src/code.sh").read(),
            "dxapp": json.dumps(dxapp),
        },
    )
    assert response.status_code == 302
    placement = world["project"].placements.get(name="scatter_bash")
    assert (
        placement.obj.spec["runSpec"]["interpreter"] == "bash"
        and "dx-jobutil-new-job" in placement.obj.spec["runSpec"]["code"]
    )
    assert placement.obj.spec["inputSpec"] == dxapp["inputSpec"] and "file" not in placement.obj.spec["runSpec"]
    response = client(world, "alice").post(
        urls(world)["new"],
        {
            "name": "bad",
            "interpreter": "bash",
            "code": "x",
            "input_spec": '[{"name": "1x", "class": "int"}]',
        },
    )
    html = response.content.decode()
    assert response.status_code == 200 and "inputSpec[0]" in html and "has-error" in html


def test_the_job_page_shows_links_waiting_reasons_and_the_log(world):
    job = world["job"]
    html = client(world, "viewer").get(urls(world)["job"]).content.decode()
    assert f"/projects/{world['project'].pk}/files/{world['reads'].obj_id}/download/" in html
    assert "Waiting for a worker with 2 cores / 3.7 GiB free" in html and 'id="terminate"' not in html
    other = actions.run_applet(
        Principal.of(world["users"]["alice"]),
        world["applet"],
        {
            "project": world["project"].pk,
            "input": {"reads": {"$dnanexus_link": {"job": job.pk, "field": "report"}}},
        },
    )
    assert JobDependency.objects.filter(job=other).exists()
    html = client(world, "alice").get(f"/jobs/{other.pk}/").content.decode()
    assert f"Waiting on input: {job.name} ({job.pk}) is runnable" in html
    assert f'href="/jobs/{job.pk}/"' in html and 'id="terminate"' in html
    LogLine.objects.bulk_create(
        LogLine(job=job, seq=i, timestamp=1000 + i, level="STDOUT", msg=f"l{i}") for i in (1, 2)
    )
    text = b"".join(client(world, "viewer").get(urls(world)["log"]).streaming_content).decode()
    assert text.splitlines()[1].endswith("STDOUT l2")


def test_job_lists_filter_and_page_newest_first(world, settings):
    alice = Principal.of(world["users"]["alice"])
    for i in range(4):
        actions.run_applet(
            alice,
            world["applet"],
            {
                "project": world["project"].pk,
                "name": f"batch {i}",
                "tags": ["batch"] if i % 2 else [],
                "input": {"reads": {"$dnanexus_link": world["reads"].obj_id}},
            },
        )
    c = client(world, "viewer")
    page = c.get(urls(world)["jobs"] + "?tag=batch").content.decode()
    assert page.count("data-job=") == 2 and "batch 3" in page and "batch 2" not in page
    assert c.get(urls(world)["jobs"] + "?name=batch+1").content.decode().count("data-job=") == 1
    assert c.get(urls(world)["jobs"] + "?state=failed").content.decode().count("data-job=") == 0
    assert c.get(urls(world)["jobs"] + "?launcher=viewer").content.decode().count("data-job=") == 0
    assert c.get(urls(world)["jobs"] + "?origin=on&after=2000-01-01").content.decode().count("data-job=") == 5
    import jobs.lists

    monkey = jobs.lists.PAGE_SIZE
    jobs.lists.PAGE_SIZE = 2
    try:
        first = c.get(urls(world)["jobs"]).content.decode()
        older = re.search(r'href="(\?cursor=[^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
        second = c.get(urls(world)["jobs"] + older).content.decode()
    finally:
        jobs.lists.PAGE_SIZE = monkey
    ids = lambda html: re.findall(r'<tr data-job="([^"]+)"', html)  # noqa: E731
    assert ids(first)[0] == Job.objects.order_by("-created", "-pk")[0].pk
    assert len(ids(first)) == len(ids(second)) == 2 and not set(ids(first)) & set(ids(second))


def test_the_project_job_list_query_uses_the_project_list_index(world):
    qs = Job.objects.filter(project=world["project"]).order_by("-created", "-pk")[:101]
    plan = qs.explain()
    if connection.vendor == "sqlite":
        assert "jobs_job_project_list_idx" in plan
    else:
        assert "jobs_job_project_list_idx" in plan or "Index" in plan


def test_the_file_search_finds_visible_files_only(world):
    outsider_project = project_actions.create_container(world["users"]["charlie"], "charlie's")
    project_actions.new_object(
        world["users"]["charlie"], outsider_project, "file", name="reads-secret.txt", state=DataObject.CLOSED
    )
    found = client(world, "viewer").get("/files/search/?q=reads").json()["results"]
    assert [r["id"] for r in found] == [world["reads"].obj_id]
    assert client(world, "anonymous").get("/files/search/?q=reads").status_code == 302


@pytest.fixture
def held(world):
    """The world's job, held for debugging and allowing SSH from the test client's address."""
    job = world["job"]
    Job.objects.filter(pk=job.pk).update(
        state=State.DEBUG_HOLD, allow_ssh=["127.0.0.1"], debug={"failureReason": "AppError", "holdUntil": 2**50}
    )
    return job


def test_who_may_open_the_debug_page(world, held):
    path = f"/jobs/{held.pk}/debug/"
    statuses = {actor: client(world, actor).get(path).status_code for actor in ACTORS}
    # Only the launcher (alice): project members see why not, outsiders see nothing.
    assert statuses == {"anonymous": 302, "charlie": 404, "viewer": 403, "contributor": 403, "alice": 200}


@pytest.mark.parametrize(
    "action, expected",
    [
        # who may: allow SSH from their address (CONTRIBUTE, as /job-x/update), extend or release a hold
        # (the launcher or a project administrator); failures redirect back with a message, outsiders get 404.
        ("allow-ssh", {"anonymous": 302, "charlie": 404, "viewer": 302, "contributor": 302, "alice": 302}),
        ("hold/extend", {"anonymous": 302, "charlie": 404, "viewer": 302, "contributor": 302, "alice": 302}),
    ],
)
def test_debug_actions_answer_every_actor(world, held, action, expected):
    path = f"/jobs/{held.pk}/{action}/"
    statuses = {actor: client(world, actor).post(path).status_code for actor in ACTORS}
    assert statuses == expected


def test_only_the_launcher_or_an_administrator_changes_a_hold(world, held):
    before = Job.objects.get(pk=held.pk).debug["holdUntil"]
    for actor in ("viewer", "contributor"):
        client(world, actor).post(f"/jobs/{held.pk}/hold/extend/")
        client(world, actor).post(f"/jobs/{held.pk}/hold/release/")
    assert Job.objects.get(pk=held.pk).state == State.DEBUG_HOLD
    assert Job.objects.get(pk=held.pk).debug["holdUntil"] == before
    client(world, "alice").post(f"/jobs/{held.pk}/hold/release/")
    assert Job.objects.get(pk=held.pk).state == State.FAILED


# Job lists: every filter, every page, against a plain Python reading of the same jobs -------------------------

LIST_PAGE = 4
T0 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
HOUR = 3600 * 1000
LIST_NAMES = ["bwa_mem", "bwa_mem NA12878", "gatk HaplotypeCaller", "fastqc", "salmon_quant", "100%_done", "a_b"]
LIST_TAGS = [
    [],
    ["batch"],
    ["Batch"],
    ["batch-07", "prod"],
    ["x", "y"],
    ['say "hi'],
    ["naïve", 'a "b" c'],
    ["prod"],
    [],
]
LIST_STATES = ["done", "failed", "done", "running", "done", "terminated"]


def job_id(n):
    # Digits and capitals only: the same order on SQLite (bytes) and PostgreSQL whatever its collation.
    return f"job-{n:04d}" + "K" * 20


@pytest.fixture
def many_jobs(world):
    """44 jobs in the world's project, 6 in alice's second project, 2 by alice in charlie's (hidden from her).

    Ties on `created` (jobs 10-13 share one) so that the id breaks them across page boundaries; a rare name,
    a rare state and a rare launcher only on the oldest jobs, so that finding them scans past every page.
    """
    users = world["users"]
    other = project_actions.create_container(users["alice"], "other")
    hidden = project_actions.create_container(users["charlie"], "charlie's")
    rows = []
    for n in range(52):
        project = world["project"] if n < 44 else other if n < 50 else hidden
        launcher = users["alice"] if n % 3 else users["contributor"]
        if n >= 50:
            launcher = users["alice"]
        origin = rows[n - 1] if n % 4 == 3 and rows[n - 1].project_id == project.pk else None
        job = Job(
            id=job_id(n),
            name=LIST_NAMES[n % len(LIST_NAMES)],
            executable="applet-" + "A" * 24,
            executable_name="counter",
            project=project,
            launched_by=launcher,
            state=LIST_STATES[n % len(LIST_STATES)],
            tags=LIST_TAGS[n % len(LIST_TAGS)],
            created=T0 + (10 if 10 <= n <= 13 else n) * 7 * HOUR,
            function="process" if origin else "main",
        )
        job.origin_id = origin.origin_id if origin else job.id
        job.parent_id = origin.id if origin else None
        rows.append(job)
    rows[0].name, rows[1].name = "oldest RareNeedle", "rareneedle too"
    rows[0].state, rows[2].launched_by = State.DEBUG_HOLD, users["viewer"]
    rows[5].created = int(datetime(2026, 3, 3, tzinfo=UTC).timestamp() * 1000)  # on the `after` boundary
    Job.objects.bulk_create(rows)
    return {"other": other, "hidden": hidden}


def expected_ids(world, many_jobs, mine, query):
    """What the page must list, read in Python: the filters' meaning, newest first, ties by id descending."""
    jobs = Job.objects.select_related("launched_by")
    if mine:  # alice's jobs in the projects she can see: not charlie's
        visible = {world["project"].pk, many_jobs["other"].pk}
        jobs = [j for j in jobs if j.launched_by == world["users"]["alice"] and j.project_id in visible]
    else:
        jobs = [j for j in jobs if j.project_id == world["project"].pk]

    def day_ms(day, end):
        moment = datetime.combine(date.fromisoformat(day), datetime.max.time() if end else datetime.min.time(), UTC)
        return int(moment.timestamp() * 1000)

    keep = {
        "state": lambda j, v: j.state == v,
        "name": lambda j, v: v.lower() in j.name.lower(),
        "tag": lambda j, v: v in j.tags,
        "launcher": lambda j, v: j.launched_by.username == v.removeprefix("user-"),
        "after": lambda j, v: j.created >= day_ms(v, False),
        "before": lambda j, v: j.created <= day_ms(v, True),
        "origin": lambda j, v: j.origin_id == j.pk,
    }
    for key, value in query.items():
        jobs = [j for j in jobs if keep[key](j, value)]
    return [j.pk for j in sorted(jobs, key=lambda j: (j.created, j.pk), reverse=True)]


def walk_pages(c, path, query):
    """Follow the list's "Older" links from the first page: each page's ids and links."""
    pages, url = [], path + ("?" + urlencode(query) if query else "")
    while url:
        response = c.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        older = re.search(r'href="(\?[^"]+)" rel="next"', html)
        newest = re.search(r'href="(\?[^"]*)" rel="first"', html)
        pages.append(
            {
                "ids": re.findall(r'<tr data-job="([^"]+)"', html),
                "older": unescape(older.group(1)) if older else None,
                "newest": unescape(newest.group(1)) if newest else None,
            }
        )
        url = path + pages[-1]["older"] if older else None
        assert len(pages) <= 20
    return pages


LIST_QUERIES = [
    {},
    {"state": "failed"},
    {"state": "debug_hold"},
    {"state": "waiting_on_output"},
    {"name": "bwa_mem"},
    {"name": "HAPLOTYPE"},
    {"name": "rareneedle"},
    {"name": "nomatch"},
    {"name": "%"},
    {"name": "_"},
    {"tag": "batch"},
    {"tag": "Batch"},
    {"tag": "prod"},
    {"tag": "batch-07"},
    {"tag": "nonesuch"},
    {"tag": "hi"},
    {"tag": '"x", "y"'},
    {"tag": 'say "hi'},
    {"tag": "naïve"},
    {"tag": 'a "b" c'},
    {"tag": "b"},
    {"tag": "bat"},
    {"launcher": "contributor"},
    {"launcher": "user-viewer"},
    {"launcher": "nobody"},
    {"origin": "on"},
    {"after": "2026-03-03"},
    {"before": "2026-03-05"},
    {"after": "2026-03-03", "before": "2026-03-05"},
    {"after": "2027-01-01"},
    {"name": "bwa", "tag": "prod", "origin": "on"},
    {"state": "done", "launcher": "alice", "name": "_"},
]


@pytest.mark.parametrize("query", LIST_QUERIES, ids=lambda q: urlencode(q) or "no-filter")
@pytest.mark.parametrize("mine", [False, True], ids=["project", "mine"])
def test_every_page_of_a_filtered_job_list_holds_the_matching_jobs_newest_first(
    world, many_jobs, monkeypatch, mine, query
):
    import jobs.lists

    monkeypatch.setattr(jobs.lists, "PAGE_SIZE", LIST_PAGE)
    path = "/jobs/" if mine else urls(world)["jobs"]
    pages = walk_pages(client(world, "alice"), path, query)
    want = expected_ids(world, many_jobs, mine, query)
    assert [page["ids"] for page in pages] == (
        [want[i : i + LIST_PAGE] for i in range(0, len(want), LIST_PAGE)] or [[]]
    )
    for number, page in enumerate(pages):
        # "Newest" on every page but the first; "Older" on every page but the last, keeping the filters.
        assert (page["newest"] is not None) == (number > 0)
        assert (page["older"] is not None) == (number < len(pages) - 1)
        if page["older"]:
            kept = {k: v[0] for k, v in parse_qs(page["older"][1:]).items() if k != "cursor"}
            assert kept == query
            last = Job.objects.get(pk=page["ids"][-1])
            assert parse_qs(page["older"][1:])["cursor"] == [f"{last.created}.{last.pk}"]


def test_the_filters_are_tested_on_every_kind_of_page(world, many_jobs):
    """The data above exercises what the filters must tell apart: deep pages, ties, exact tags, the hidden project."""

    def expected(mine, query):
        return expected_ids(world, many_jobs, mine, query)

    assert len(expected(False, {})) > 8 * LIST_PAGE and len(expected(True, {})) > 4 * LIST_PAGE
    assert expected(False, {"name": "rareneedle"}) == [job_id(1), job_id(0)]
    assert expected(False, {"state": "debug_hold"}) == [job_id(0)]
    assert expected(False, {"launcher": "viewer"}) == [job_id(2)]
    created = [Job.objects.get(pk=job_id(n)).created for n in range(10, 14)]
    order = expected(False, {})
    assert len(set(created)) == 1 and order.index(job_id(13)) // LIST_PAGE != order.index(job_id(10)) // LIST_PAGE
    assert expected(False, {"tag": "batch"}) and expected(False, {"tag": "Batch"})
    assert not set(expected(False, {"tag": "batch"})) & set(expected(False, {"tag": "Batch"}))
    # Stored as JSON text, 'say "hi' holds '"hi"' (after an escaped quote): no tag "hi" for all that.
    assert expected(False, {"tag": "hi"}) == [] and expected(False, {"tag": 'say "hi'})
    assert expected(False, {"tag": "naïve"}) and expected(False, {"tag": 'a "b" c'})
    assert len(expected(False, {"after": "2026-03-03", "before": "2026-03-05"})) > LIST_PAGE
    assert Job.objects.filter(project=many_jobs["hidden"], launched_by=world["users"]["alice"]).count() == 2
    assert job_id(50) not in expected(True, {}) and job_id(44) in expected(True, {})


def test_a_job_list_finds_jobs_by_a_tag_among_a_hundred_long_ones(world):
    """A job may carry 100 tags of 256 characters: saving it must not fail on an index, and the tag filter finds it."""
    rng = random.Random(5)
    tags = ["".join(rng.choice(string.ascii_letters + string.digits) for _ in range(256)) for _ in range(100)]
    Job.objects.filter(pk=world["job"].pk).update(tags=tags, name="x" * 255)
    c = client(world, "alice")
    for path in (urls(world)["jobs"], "/jobs/"):
        assert re.findall(r'<tr data-job="([^"]+)"', c.get(path + "?tag=" + tags[57]).content.decode()) == [
            world["job"].pk
        ]
        assert c.get(path + "?tag=" + tags[57][:-1]).content.decode().count("data-job=") == 0


def list_query_plan(c, url, postgresql_off=("seqscan",)):
    """The plan of the query a job list page ran for its rows (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN).

    The tests' tables hold a few dozen rows, for which PostgreSQL's planner may prefer anything: `postgresql_off`
    turns plan types off (SET LOCAL enable_...) so that the plan shows what the indexes make possible.
    """
    with CaptureQueriesContext(connection) as ctx:
        assert c.get(url).status_code == 200
    sql = [q["sql"] for q in ctx.captured_queries if 'FROM "jobs_job"' in q["sql"] and "LIMIT" in q["sql"]]
    assert len(sql) == 1
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for kind in postgresql_off:
                cursor.execute(f"SET LOCAL enable_{kind} = off")
        cursor.execute(("EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ") + sql[0])
        return "\n".join(" ".join(str(col) for col in row) for row in cursor.fetchall())


@pytest.mark.parametrize(
    "mine, query, index",
    [
        (False, "name=rareneedle", "jobs_job_project_list_idx"),
        (False, "state=debug_hold&origin=on&after=2026-03-02", "jobs_job_project_list_idx"),
        (True, "name=rareneedle", "jobs_job_launcher_list_idx"),
        (True, "state=failed&origin=on", "jobs_job_launcher_list_idx"),
    ],
)
def test_a_filtered_job_list_finds_its_page_in_a_list_index_without_reading_job_rows(
    world, many_jobs, mine, query, index
):
    # PostgreSQL: with no sort and no seq or bitmap scan, only the list index gives the order; an index-only scan
    # shows that it holds every column the ids' query reads.
    plan = list_query_plan(
        client(world, "alice"),
        ("/jobs/" if mine else urls(world)["jobs"]) + "?" + query,
        postgresql_off=("seqscan", "bitmapscan", "sort"),
    )
    if connection.vendor == "sqlite" and "name=" in query:
        # A name few jobs have: its trigram index finds them, they are read by primary key (jobs.namesearch).
        assert "SCAN f VIRTUAL TABLE" in plan and "list_idx" not in plan, plan
    elif connection.vendor == "sqlite":
        assert f"COVERING INDEX {index}" in plan, plan
    else:
        assert f"Index Only Scan using {index}" in plan, plan


def test_the_tag_filter_is_answered_from_an_index_too(world, many_jobs):
    if connection.vendor == "sqlite":
        plan = list_query_plan(client(world, "alice"), urls(world)["jobs"] + "?tag=nonesuch&state=done")
        assert "COVERING INDEX jobs_job_project_list_idx" in plan, plan
    else:  # tags stay out of PostgreSQL's btrees (entries are limited to ~2.7 kB): a GIN index answers `@>`
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_indexscan = off")  # what is left: bitmap scans, of an index on tags
        plan = Job.objects.filter(tags__contains=["nonesuch"]).values("pk").explain()
        assert "jobs_job_tags_gin" in plan, plan


def test_the_list_indexes_hold_every_filtered_column(db):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Job._meta.db_table)
    filtered = ["name", "state", "origin_id"]
    assert constraints["jobs_job_project_list_idx"]["columns"][:3] == ["project_id", "created", "id"]
    assert constraints["jobs_job_launcher_list_idx"]["columns"][:3] == ["launched_by_id", "created", "id"]
    for name, other in (("jobs_job_project_list_idx", "launched_by_id"), ("jobs_job_launcher_list_idx", "project_id")):
        assert set(filtered + [other]) <= set(constraints[name]["columns"])
        assert ("tags" in constraints[name]["columns"]) == (connection.vendor != "postgresql")
    if connection.vendor == "postgresql":
        gin = constraints["jobs_job_tags_gin"]
        assert gin["type"] == "gin" and gin["columns"] == ["tags"]
        with connection.cursor() as cursor:  # and what name__icontains compares has statistics
            cursor.execute(
                "SELECT pg_get_statisticsobjdef(oid) FROM pg_statistic_ext WHERE stxname = %s",
                ["jobs_job_upper_name_stats"],
            )
            assert "upper(name::text)" in cursor.fetchone()[0]
