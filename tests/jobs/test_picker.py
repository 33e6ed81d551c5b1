"""The launch forms' data picker on the server: the file search behind it (names, paths, `project:/path`,
IDs, only what the user may see) and the form turning what a person typed into a link, or a plain error."""

import re
from html import unescape

import pytest
from django.test import Client

from jobs import actions
from jobs.forms import DataRef, LaunchForm, instance_type_label, parse_data_ref, parse_input, resolve_data
from jobs.models import Job
from jobs.workflows.forms import WorkflowLaunchForm
from projects import actions as project_actions
from projects.accounts import create_user
from projects.models import DataObject
from projects.permissions import Principal

SPEC = [
    {"name": "reads", "class": "file"},
    {"name": "more", "class": "array:file", "optional": True},
    {"name": "counts", "class": "array:int", "optional": True},
    {"name": "n", "class": "int", "optional": True},
]
OPTIONS = {"folder": "/", "instance_type": "mem1_ssd1_x2", "priority": "normal"}


@pytest.fixture
def world(db):
    alice, bob, carol = create_user("alice"), create_user("bob"), create_user("carol")
    home = project_actions.create_container(alice, "home")
    shared = project_actions.create_container(bob, "shared data")
    project_actions.invite(shared, "user-alice", "VIEW")
    secret = project_actions.create_container(carol, "carol's")

    def closed(user, container, name, folder="/", cls="file"):
        return project_actions.new_object(
            user, container, cls, name=name, folder=folder, parents=True, state=DataObject.CLOSED
        )

    files = {
        "a_r1": closed(alice, home, "sample_A_R1.fastq", "/reads"),
        "a_r2": closed(alice, home, "sample_A_R2.fastq", "/reads"),
        "b_r1": closed(alice, home, "sample_B_R1.fastq", "/reads/run2"),
        "dup_top": closed(alice, home, "genome.fa"),
        "dup_ref": closed(alice, home, "genome.fa", "/ref"),
        "notes": closed(alice, home, "notes.txt", "/docs"),
        "shared": closed(bob, shared, "sample_A_R1.fastq", "/in"),
        "secret": closed(carol, secret, "sample_secret.fastq"),
    }
    project_actions.new_object(alice, home, "file", name="sample_open.fastq")  # still open: never offered
    applet = actions.new_applet(
        alice,
        home,
        {"name": "count", "inputSpec": SPEC, "runSpec": {"interpreter": "bash", "code": "main() { :; }"}},
    )
    return {"alice": alice, "home": home, "shared": shared, "secret": secret, "files": files, "applet": applet}


def search(world, q="", **params):
    client = Client()
    client.force_login(world["alice"])
    return client.get("/files/search/", {"q": q, "class": "file", "project": world["home"].pk, **params}).json()


def names(found):
    return [(r["name"], r["folder"], r["projectName"]) for r in found["results"]]


# The search ---------------------------------------------------------------------------------------


def test_a_part_of_a_name_finds_this_projects_files_first_then_the_others_the_user_sees(world):
    found = search(world, "sample_a")
    assert sorted(names(found)[:2]) == [
        ("sample_A_R1.fastq", "/reads", "home"),
        ("sample_A_R2.fastq", "/reads", "home"),
    ]
    assert names(found)[2:] == [("sample_A_R1.fastq", "/in", "shared data")]
    assert [r["here"] for r in found["results"]] == [True, True, False]
    first = found["results"][0]
    assert first["path"] == f"/reads/{first['name']}" and first["project"] == world["home"].pk
    # Never carol's project, never an open file.
    assert not any("secret" in r["name"] or "open" in r["name"] for r in search(world, "sample")["results"])


def test_a_path_searches_this_project_and_the_folders_under_it(world):
    assert sorted(n for n, _, _ in names(search(world, "/reads/sample"))) == [
        "sample_A_R1.fastq",
        "sample_A_R2.fastq",
        "sample_B_R1.fastq",
    ]
    assert names(search(world, "/reads/run2/")) == [("sample_B_R1.fastq", "/reads/run2", "home")]
    # A path being typed: its last part may be the start of a folder.
    assert names(search(world, "/do")) == [("notes.txt", "/docs", "home")]
    assert names(search(world, "/ref/genome")) == [("genome.fa", "/ref", "home")]


def test_project_colon_path_searches_that_project_only(world):
    shared = world["shared"].pk
    assert names(search(world, f"{shared}:/in/sample")) == [("sample_A_R1.fastq", "/in", "shared data")]
    assert names(search(world, f"{shared}:sample")) == [("sample_A_R1.fastq", "/in", "shared data")]
    secret = world["secret"].pk
    found = search(world, f"{secret}:/sample")
    assert found["results"] == [] and found["message"] == f"No file in {secret} matches “{secret}:/sample”"


def test_an_id_finds_that_file_if_the_user_sees_it(world):
    files = world["files"]
    found = search(world, files["a_r1"].obj_id)
    assert names(found) == [("sample_A_R1.fastq", "/reads", "home")]
    found = search(world, f"{world['shared'].pk}:{files['shared'].obj_id}")
    assert names(found) == [("sample_A_R1.fastq", "/in", "shared data")] and found["results"][0]["here"] is False
    found = search(world, files["secret"].obj_id)
    assert found["results"] == [] and found["message"] == f"No file {files['secret'].obj_id} that you can see"


def test_nothing_found_is_said_in_words(world):
    assert search(world, "nope.fastq")["message"] == "No file matches “nope.fastq”"
    assert search(world, "/reads/nope")["message"] == "No file in this project matches “/reads/nope”"
    assert search(world, "x", **{"class": "workflow"})["results"] == []


def test_the_data_references_a_person_writes():
    pid, fid = "project-" + "a" * 24, "file-" + "b" * 24
    assert parse_data_ref(fid) == DataRef(None, fid, None, "")
    assert parse_data_ref(f"{pid}:{fid}") == DataRef(pid, fid, None, "")
    assert parse_data_ref(f"{pid}:/a/b/c.txt") == DataRef(pid, None, "/a/b", "c.txt")
    assert parse_data_ref("/c.txt") == DataRef(None, None, "/", "c.txt")
    assert parse_data_ref("a//b/c.txt") == DataRef(None, None, "/a/b", "c.txt")
    assert parse_data_ref(" c.txt ") == DataRef(None, None, None, "c.txt")


# The form -----------------------------------------------------------------------------------------


def form(world, fields, principal=True, spec=SPEC, cls=LaunchForm):
    who = Principal.of(world["alice"]) if principal else None
    return cls(spec, {**OPTIONS, **fields}, principal=who, project=world["home"].pk)


def link(placement):
    return {"$dnanexus_link": {"project": placement.container_id, "id": placement.obj_id}}


def test_a_name_or_path_that_names_one_file_becomes_its_link(world):
    files = world["files"]
    shared = world["shared"].pk
    for text, expected in [
        ("sample_A_R2.fastq", files["a_r2"]),
        ("/reads/sample_A_R1.fastq", files["a_r1"]),
        ("reads/run2/sample_B_R1.fastq", files["b_r1"]),
        ("/genome.fa", files["dup_top"]),
        (f"{shared}:/in/sample_A_R1.fastq", files["shared"]),
        (f"{shared}:sample_A_R1.fastq", files["shared"]),
    ]:
        f = form(world, {"in_reads": text})
        assert f.is_valid(), (text, f.errors)
        assert f.cleaned_data["input"] == {"reads": link(expected)}, text
    # IDs (and written-out links) are kept as they are: the run checks them.
    f = form(world, {"in_reads": files["a_r1"].obj_id})
    assert f.is_valid() and f.cleaned_data["input"] == {"reads": {"$dnanexus_link": files["a_r1"].obj_id}}
    f = form(world, {"in_reads": f"{shared}:{files['shared'].obj_id}"})
    assert f.is_valid() and f.cleaned_data["input"] == {"reads": link(files["shared"])}


def test_a_name_that_resolves_to_nothing_or_to_several_is_a_plain_field_error(world):
    secret = world["secret"].pk
    for text, message in [
        ("sample.fastq", "No file named sample.fastq in this project"),
        ("/docs/sample_A_R1.fastq", "No file named sample_A_R1.fastq in /docs of this project"),
        (f"{world['shared'].pk}:/x.fa", "No file named x.fa in project shared data"),
        (f"{secret}:/sample_secret.fastq", f"No project {secret} that you can see"),
        (
            "genome.fa",
            "2 files are named genome.fa in this project (in /, /ref): write the path, e.g. /genome.fa, "
            "or pick one from the list",
        ),
        ("/reads/", "Write the file's name after the folder, or pick one from the list"),
    ]:
        f = form(world, {"in_reads": text})
        assert not f.is_valid() and f.errors["in_reads"] == [message], text


def test_without_the_user_a_typed_name_asks_for_a_pick_in_words(world):
    f = form(world, {"in_reads": "sample_A_R1.fastq"}, principal=False)
    assert not f.is_valid()
    assert f.errors["in_reads"] == [
        "No file picked for “sample_A_R1.fastq”: choose one from the list, or write its ID (file-…)"
    ]
    assert parse_input({"name": "x", "class": "file"}, "file-" + "c" * 24) == {"$dnanexus_link": "file-" + "c" * 24}


def test_array_of_files_one_per_line_each_resolved_and_errors_say_the_line(world):
    files = world["files"]
    text = f"sample_A_R1.fastq\n\n{files['notes'].obj_id}\n/ref/genome.fa\n"
    f = form(world, {"in_reads": files["a_r2"].obj_id, "in_more": text})
    assert f.is_valid(), f.errors
    assert f.cleaned_data["input"]["more"] == [
        link(files["a_r1"]),
        {"$dnanexus_link": files["notes"].obj_id},
        link(files["dup_ref"]),
    ]
    f = form(world, {"in_reads": files["a_r2"].obj_id, "in_more": "sample_A_R1.fastq\nmissing.bam"})
    assert f.errors["in_more"] == ["Line 2: No file named missing.bam in this project"]


def test_numbers_are_refused_in_plain_words(world):
    f = form(world, {"in_reads": world["files"]["a_r1"].obj_id, "in_counts": "1\nx\n3", "in_n": "three"})
    assert not f.is_valid()
    assert f.errors["in_counts"] == ["Line 2: 'x' is not a whole number"]
    assert f.errors["in_n"] == ["Expected int: 'three' is not a whole number"]
    assert parse_input({"name": "c", "class": "array:int"}, " 1\n-2\n+3") == [1, -2, 3]
    for spec, text, message in [
        ({"class": "array:int"}, "1\n2.5", "Line 2: '2.5' is not a whole number"),
        ({"class": "array:float"}, "1.5\nnan", "Line 2: 'nan' is not a number"),
        ({"class": "array:boolean"}, "true\nyes", "Line 2: 'yes' is neither true nor false"),
        ({"class": "float"}, "1,5", "'1,5' is not a number"),
        ({"class": "hash"}, "[1]", 'Write a JSON object, e.g. {"key": "value"}'),
        ({"class": "hash"}, "{oops", "This is not valid JSON (expecting property name enclosed in double quotes"),
        ({"class": "array:int"}, "[1, 2", "This is not valid JSON (expecting ',' delimiter at line 1, column 6)"),
    ]:
        with pytest.raises(ValueError) as caught:
            parse_input({"name": "x", **spec}, text)
        assert str(caught.value).startswith(message), (spec, text, str(caught.value))
        assert "invalid literal" not in str(caught.value) and "could not convert" not in str(caught.value)


def test_resolve_data_needs_view_on_the_launching_project(world):
    stranger = Principal.of(create_user("dave"))
    with pytest.raises(ValueError) as caught:
        resolve_data(stranger, "file", "sample_A_R1.fastq", world["home"].pk)
    assert str(caught.value) == f"No project {world['home'].pk} that you can see"


def test_the_workflow_launch_form_resolves_names_in_dotted_fields(world):
    spec = [{"name": "stage-0.reads", "class": "file"}, {"name": "stage-1.more", "class": "array:file"}]
    f = form(
        world,
        {"in_stage-0.reads": "/reads/sample_A_R1.fastq", "in_stage-1.more": "notes.txt\nnope"},
        spec=spec,
        cls=WorkflowLaunchForm,
    )
    assert not f.is_valid()
    assert f.cleaned_data["input"] == {"stage-0.reads": link(world["files"]["a_r1"])}
    assert f.errors["in_stage-1.more"] == ["Line 2: No file named nope in this project"]
    assert f.fields["in_stage-0.reads"].picker == "file" and f.fields["in_stage-1.more"].picker == "file"


# The page -----------------------------------------------------------------------------------------


def test_instance_types_show_their_cores_and_memory(world, settings):
    assert instance_type_label("mem1_ssd1_v2_x4", {"cpus": 4, "memory_mb": 7600}) == "mem1_ssd1_v2_x4 — 4 cores, 7.6 GB"
    assert instance_type_label("one", {"cpus": 1, "memory_mb": 3750}) == "one — 1 core, 3.75 GB"
    assert instance_type_label("bare", {}) == "bare"
    client = Client()
    client.force_login(world["alice"])
    html = client.get(f"/projects/{world['home'].pk}/applets/{world['applet'].obj_id}/run/").content.decode()
    assert '<option value="mem1_ssd1_v2_x4">mem1_ssd1_v2_x4 — 4 cores, 7.6 GB</option>' in html
    assert '<option value="mem3_ssd1_x4">mem3_ssd1_x4 — 4 cores, 30.5 GB</option>' in html


def test_the_launch_page_loads_the_picker_and_ties_errors_to_their_field(world):
    client = Client()
    client.force_login(world["alice"])
    url = f"/projects/{world['home'].pk}/applets/{world['applet'].obj_id}/run/"
    html = client.get(url).content.decode()
    assert "jobs/picker.css" in html and "jobs/picker.js" in html
    assert re.search(r'<div class="picker">\s*<input[^>]*data-picker="file"[^>]*id="id_in_reads"', html)
    assert re.search(r'<div class="picker picker-multiple">\s*<textarea[^>]*data-picker="file"', html)
    response = client.post(url, {**OPTIONS, "in_counts": "1\nx"})
    html = unescape(response.content.decode())
    assert response.status_code == 422 and "Line 2: 'x' is not a whole number" in html
    textarea = re.search(r"<textarea[^>]*name=\"in_counts\"[^>]*>", html).group(0)
    assert (
        'aria-invalid="true"' in textarea and 'aria-describedby="id_in_counts_helptext id_in_counts_error"' in textarea
    )
    assert '<div id="id_in_counts_error"><div class="field-error">' in html
    assert not Job.objects.exists()


def test_the_launch_page_resolves_a_typed_path_and_says_plainly_when_it_cannot(world, monkeypatch):
    from jobs import dispatch

    monkeypatch.setattr(dispatch, "run_job", lambda job_id: None)
    client = Client()
    client.force_login(world["alice"])
    url = f"/projects/{world['home'].pk}/applets/{world['applet'].obj_id}/run/"
    missing = client.post(url, {"in_reads": "/reads/nothing_here.fastq", **OPTIONS})
    assert missing.status_code == 422
    page = unescape(missing.content.decode())
    assert "nothing_here.fastq" in page and "Traceback" not in page and "$dnanexus_link" not in page
    launched = client.post(url, {"in_reads": "/reads/sample_A_R1.fastq", **OPTIONS})
    assert launched.status_code == 302
    job = Job.objects.get()
    assert job.input["reads"]["$dnanexus_link"]["id"] == world["files"]["a_r1"].obj_id


def test_a_use_as_input_link_prefills_the_launch_form(world):
    client = Client()
    client.force_login(world["alice"])
    file_id = world["files"]["notes"].obj_id
    page = client.get(
        f"/projects/{world['home'].pk}/applets/{world['applet'].obj_id}/run/", {"in_reads": file_id}
    ).content.decode()
    assert re.search(rf'name="in_reads"[^>]*value="{file_id}"|value="{file_id}"[^>]*name="in_reads"', page)
