"""The data pages: a file's page (facts, preview, tags and properties, use as input, copy), the project's
data search, copying a selection to another project and renaming a project."""

import hashlib
import re
from html import unescape
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client

from projects import actions
from projects.models import ApiToken, Container, DataObject, Level, Placement
from tests.projects.test_pages import flashes, upload_via_api

FASTQ = b"".join(b"@read%d\nACGT\n+\nIIII\n" % i for i in range(4))


def page_of(project, obj):
    return f"/projects/{project}/files/{obj}/"


def text(response):
    return unescape(response.content.decode())


def client_of(actor):
    client = Client()
    client.force_login(actor.user)
    return client


@pytest.fixture
def reads(alice, project):
    actions.new_folder(Container.objects.get(pk=project), "/data/raw", parents=True)
    return upload_via_api(alice, project, "sample_A_R1.fastq", FASTQ, folder="/data/raw")


@pytest.fixture
def member(bob, project):
    """bob, at the level a test sets with member(level)."""

    def join(level):
        actions.invite(Container.objects.get(pk=project), "user-bob", level)
        return client_of(bob)

    return join


@pytest.fixture
def mapper(alice, project):
    """An applet with a file input and an array of files."""
    return alice.ok(
        "/applet/new",
        {
            "project": project,
            "name": "mapper",
            "inputSpec": [
                {"name": "reads", "class": "file", "label": "Reads"},
                {"name": "extra", "class": "array:file", "optional": True},
                {"name": "threads", "class": "int", "optional": True},
            ],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": "main() { :; }"},
        },
    )["id"]


# The file page ---------------------------------------------------------------------------


def test_a_file_page_shows_its_facts_preview_and_download(web, alice, project, reads):
    alice.ok(f"/{reads}/addTags", {"project": project, "tags": ["raw", "lane1"]})
    alice.ok(f"/{reads}/setProperties", {"project": project, "properties": {"sample": "A", "run": "7"}})
    page = web.get(page_of(project, reads))
    assert page.status_code == 200
    html = text(page)
    assert reads in html and "sample_A_R1.fastq" in html
    assert f"{len(FASTQ)} bytes" in html
    assert hashlib.md5(FASTQ).hexdigest() in html
    assert 'class="badge state-closed"' in html
    assert '<span class="tag">raw</span>' in html and '<span class="tag">lane1</span>' in html
    assert re.search(r'<dt class="mono">sample</dt><dd>A</dd>', html)
    assert f'href="/projects/{project}/?folder=%2Fdata%2Fraw"' in html and ">/data/raw</a>" in html
    assert 'id="object-creator">alice' in html
    assert "@read0\nACGT\n+\nIIII" in html  # the preview
    assert f'href="/projects/{project}/files/{reads}/download/"' in html


def test_the_files_page_links_each_object_to_its_page(web, project, reads, mapper):
    html = text(web.get(f"/projects/{project}/?folder=/data/raw"))
    assert f'href="/projects/{project}/files/{reads}/"' in html
    root = text(web.get(f"/projects/{project}/"))
    assert f'href="/projects/{project}/applets/{mapper}/"' in root
    assert f'data-action="run" href="/projects/{project}/applets/{mapper}/run/"' in root


def test_the_files_page_offers_run_only_to_those_who_may_launch(member, project, mapper):
    viewer = member("VIEW")
    html = text(viewer.get(f"/projects/{project}/"))
    assert f'href="/projects/{project}/applets/{mapper}/"' in html
    assert 'data-action="run"' not in html


def test_an_applet_or_workflow_id_under_files_goes_to_its_own_page(web, project, mapper):
    response = web.get(page_of(project, mapper))
    assert response.status_code == 302 and response["Location"] == f"/projects/{project}/applets/{mapper}/"


def test_a_binary_file_has_no_preview(web, alice, project):
    blob = upload_via_api(alice, project, "reads.bam", b"BAM\x01\x00\x00binary")
    html = text(web.get(page_of(project, blob)))
    assert 'id="no-preview"' in html and 'id="preview-text"' not in html
    named_text = upload_via_api(alice, project, "table.tsv", b"a\tb\x00c\n")
    assert "binary data" in text(web.get(page_of(project, named_text)))


def test_a_long_text_file_shows_its_first_64_kib_in_whole_lines(web, alice, project):
    data = b"".join(b"line %06d\n" % i for i in range(20_000))  # 240 kB
    big = upload_via_api(alice, project, "long.txt", data)
    html = text(web.get(page_of(project, big)))
    shown = re.search(r'<pre id="preview-text">(.*?)</pre>', html, re.S).group(1)
    assert shown.startswith("line 000000\n") and shown.endswith("\n")
    assert 60_000 < len(shown) <= 64 * 1024
    assert "the rest is in the download" in html


def test_an_open_file_has_no_download_nor_use_as_input(web, alice, project, mapper):
    opened = alice.ok("/file/new", {"project": project, "name": "growing.txt"})["id"]
    html = text(web.get(page_of(project, opened)))
    assert 'id="download"' not in html and 'id="use-as-input"' not in html
    assert "the file is open" in html


def test_a_file_a_job_uploaded_names_the_job(web, alice, project):
    _, raw = ApiToken.issue(alice.user, "job", scopes={project: int(Level.CONTRIBUTE)}, job_id="job-0123456789abcdef")
    from tests.conftest import ApiClient

    job = ApiClient(alice.user, raw)
    made = job.ok("/file/new", {"project": project, "name": "out.txt"})["id"]
    assert job.ok(f"/{made}/describe")["createdBy"] == {"user": "user-alice", "job": "job-0123456789abcdef"}
    html = text(web.get(page_of(project, made)))
    assert 'href="/jobs/job-0123456789abcdef/"' in html
    own = alice.ok("/file/new", {"project": project, "name": "mine.txt"})["id"]
    assert alice.ok(f"/{own}/describe")["createdBy"] == {"user": "user-alice"}


# Tags and properties --------------------------------------------------------------------


def test_a_contributor_sets_tags_and_properties_through_the_actions(member, alice, project, reads):
    bob = member("CONTRIBUTE")
    alice.ok(f"/{reads}/addTags", {"project": project, "tags": ["old"]})
    alice.ok(f"/{reads}/setProperties", {"project": project, "properties": {"gone": "1", "kept": "x"}})
    url = page_of(project, reads)
    assert flashes(bob, bob.post(url + "tags/", {"tags": "raw, lane1, raw"})) == ["Saved the tags"]
    assert flashes(bob, bob.post(url + "properties/", {"properties": "kept=y\nsample = A=B\n\n"})) == [
        "Saved the properties"
    ]
    described = alice.ok(f"/{reads}/describe", {"project": project})
    assert described["tags"] == ["raw", "lane1"]
    assert described["properties"] == {"kept": "y", "sample": "A=B"}


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("tags", "x" * 300, "too long"),
        ("tags", "bad\x01tag", "control characters"),
        ("properties", "no equals sign", "key=value"),
        ("properties", "=value", "key=value"),
        ("properties", "k=" + "v" * 9000, "too long"),
    ],
)
def test_bad_tags_or_properties_are_form_errors(web, alice, project, reads, field, value, error):
    before = alice.ok(f"/{reads}/describe", {"project": project})
    response = web.post(page_of(project, reads) + f"{field}/", {field: value})
    assert response.status_code == 422
    assert "field-error" in text(response) and error in text(response)
    after = alice.ok(f"/{reads}/describe", {"project": project})
    assert (after["tags"], after["properties"]) == (before["tags"], before["properties"])


# Use as input ------------------------------------------------------------------------------


def test_use_as_input_lists_file_inputs_and_leads_to_the_prefilled_launch_form(web, project, reads, mapper):
    html = text(web.get(page_of(project, reads)))
    assert f'<option value="{mapper}:reads">mapper → Reads</option>' in html
    assert f'<option value="{mapper}:extra">' in html and f"{mapper}:threads" not in html
    response = web.get(page_of(project, reads) + "use/", {"target": f"{mapper}:reads"})
    assert response.status_code == 302
    location = urlparse(response["Location"])
    assert location.path == f"/projects/{project}/applets/{mapper}/run/"
    assert parse_qs(location.query) == {"in_reads": [reads]}


@pytest.mark.parametrize("target", ["", "nonsense", "applet-x:reads", "{mapper}:threads", "{mapper}:nope"])
def test_use_as_input_refuses_what_is_not_a_file_input(web, project, reads, mapper, target):
    response = web.get(page_of(project, reads) + "use/", {"target": target.format(mapper=mapper)})
    assert flashes(web, response) == ["Choose an applet's file input to use this file for"]


# Who may do what ----------------------------------------------------------------------------------


def data_urls(project, reads):
    base = page_of(project, reads)
    return {
        "get": [base, base + "use/", f"/projects/{project}/search/?name=*", f"/projects/{project}/settings/"],
        "post": [
            (base + "tags/", {"tags": "x"}),
            (base + "properties/", {"properties": "k=v"}),
            (base + "copy/", {"copy-project": project, "copy-destination": "/"}),
            (f"/projects/{project}/objects/copy/", {"objects": reads, "copy-project": project}),
            (f"/projects/{project}/settings/", {"name": "renamed"}),
        ],
    }


def test_an_outsider_gets_the_404_page_everywhere(charlie, project, reads):
    client = client_of(charlie)
    urls = data_urls(project, reads)
    for url in urls["get"]:
        assert client.get(url).status_code == 404, url
    for url, data in urls["post"]:
        assert client.post(url, data).status_code == 404, url
    assert Container.objects.get(pk=project).name == "alice's project"


def test_anonymous_goes_to_log_in_everywhere(project, reads):
    client = Client()
    urls = data_urls(project, reads)
    for url in urls["get"]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    for url, data in urls["post"]:
        response = client.post(url, data)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


def test_a_viewer_sees_but_cannot_change(member, alice, project, reads):
    viewer = member("VIEW")
    html = text(viewer.get(page_of(project, reads)))
    assert "sample_A_R1.fastq" in html
    assert 'id="tags-form"' not in html and 'id="properties-form"' not in html
    assert 'id="project-rename"' not in html
    base = page_of(project, reads)
    assert viewer.post(base + "tags/", {"tags": "x"}).status_code == 403
    assert viewer.post(base + "properties/", {"properties": "k=v"}).status_code == 403
    assert viewer.get(f"/projects/{project}/settings/").status_code == 403
    assert viewer.post(f"/projects/{project}/settings/", {"name": "renamed"}).status_code == 403
    assert viewer.get(f"/projects/{project}/search/?name=*.fastq").status_code == 200
    described = alice.ok(f"/{reads}/describe", {"project": project})
    assert described["tags"] == [] and described["properties"] == {}
    assert Container.objects.get(pk=project).name == "alice's project"


# Search ---------------------------------------------------------------------------------------


@pytest.fixture
def catalogue(alice, project, mapper):
    """Files with names, tags and properties to search, and another project's file that must not show."""
    container = Container.objects.get(pk=project)
    made = {}
    for name, folder, tags, props in [
        ("sample_A_R1.fastq", "/raw", ["raw"], {"sample": "A"}),
        ("sample_A_R2.fastq", "/raw", ["raw"], {"sample": "A"}),
        ("sample_B_R1.fastq", "/raw/b", ["raw", "b"], {"sample": "B"}),
        ("report.txt", "/", ["final"], {"qc": "pass"}),
    ]:
        made[name] = actions.new_object(
            alice.user, container, "file", name, folder, parents=True, tags=tags, properties=props
        ).obj_id
    other = actions.create_container(alice.user, "elsewhere")
    actions.new_object(alice.user, other, "file", "sample_Z_R1.fastq")
    return made


def found_ids(response):
    return re.findall(r'<tr class="result-row" data-object="([^"]+)"', response.content.decode())


@pytest.mark.parametrize(
    "query, body",
    [
        ({"name": "sample_?_R1.fastq"}, {"name": {"glob": "sample_?_R1.fastq"}}),
        ({"name": "*.fastq", "tag": "b"}, {"name": {"glob": "*.fastq"}, "tags": "b"}),
        ({"property": "sample=A"}, {"properties": {"sample": "A"}}),
        ({"property": "qc"}, {"properties": {"qc": True}}),
        ({"class": "applet"}, {"class": "applet"}),
        ({"name": "*", "folder": "/raw"}, {"name": {"glob": "*"}, "scope_folder": "/raw"}),
        ({"name": "report.txt"}, {"name": {"glob": "report.txt"}}),
    ],
)
def test_search_finds_what_find_data_objects_finds(web, alice, project, catalogue, query, body):
    scope = {"project": project}
    if "scope_folder" in body:
        scope["folder"] = body.pop("scope_folder")
    expected = [r["id"] for r in alice.ok("/system/findDataObjects", {"scope": scope, **body})["results"]]
    response = web.get(f"/projects/{project}/search/", query)
    assert response.status_code == 200
    assert found_ids(response) == expected and expected
    for obj in expected:
        assert f"/projects/{project}/" in text(response)
        assert re.search(rf'href="/projects/{project}/(files|applets)/{obj}/"', text(response))


def test_search_without_matches_says_so(web, project, catalogue):
    response = web.get(f"/projects/{project}/search/", {"name": "sample"})  # whole names: no wildcard, no match
    assert found_ids(response) == [] and "Nothing matches" in text(response)


def test_search_pages_through_many_results(web, alice, project):
    container = Container.objects.get(pk=project)
    for i in range(120):
        actions.new_object(alice.user, container, "file", f"f{i:03d}.txt")
    seen, url = [], f"/projects/{project}/search/?name=f*.txt"
    while url:
        response = web.get(url)
        seen += found_ids(response)
        following = re.search(r'href="(\?[^"]*starting=[^"]+)" rel="next"', response.content.decode())
        url = f"/projects/{project}/search/" + unescape(following.group(1)) if following else None
    assert len(seen) == len(set(seen)) == 120


@pytest.mark.parametrize(
    "query, error",
    [
        ({"class": "spaceship"}, "Select a valid choice"),
        ({"name": "x" * 300}, "at most 255"),
        ({"property": "=v"}, "key=value"),
        ({"folder": "relative/path"}, "absolute path"),
        ({"tag": "bad\x01"}, "control characters"),
        ({"name": "*", "starting": "not-a-key"}, ""),
    ],
)
def test_bad_search_input_is_a_form_error_not_a_500(web, project, catalogue, query, error):
    response = web.get(f"/projects/{project}/search/", query)
    assert response.status_code in (200, 422)
    if error:
        assert response.status_code == 422 and error in text(response)


# Copy to another project ----------------------------------------------------------------------


@pytest.fixture
def destination(alice):
    return actions.create_container(alice.user, "destination").pk


def test_copy_a_selection_to_another_project(web, alice, project, reads, destination):
    container = Container.objects.get(pk=project)
    actions.new_folder(container, "/keep/deep", parents=True)
    kept = actions.new_object(alice.user, container, "file", "k.txt", "/keep/deep", state=DataObject.CLOSED).obj_id
    response = web.post(
        f"/projects/{project}/objects/copy/",
        {
            "folder": "/",
            "objects": [reads],
            "folders": ["/keep"],
            "copy-project": destination,
            "copy-destination": "/incoming",
            "copy-parents": "on",
        },
    )
    assert flashes(web, response) == ["Copied 2 items to destination:/incoming"]
    placed = dict(Placement.objects.filter(container_id=destination).values_list("obj_id", "folder"))
    assert placed == {reads: "/incoming", kept: "/incoming/keep/deep"}
    assert Placement.objects.filter(container_id=project, obj_id__in=[reads, kept]).count() == 2  # nothing lost
    again = web.post(
        f"/projects/{project}/objects/copy/",
        {"objects": [reads], "copy-project": destination, "copy-destination": "/incoming"},
    )
    assert "1 already there" in flashes(web, again)[0]


def test_copy_errors_are_messages_and_change_nothing(web, alice, bob, project, reads, destination):
    opened = alice.ok("/file/new", {"project": project, "name": "growing.txt"})["id"]
    url = f"/projects/{project}/objects/copy/"
    cases = [
        ({"objects": [opened], "copy-project": destination}, "is not closed"),
        ({"objects": [reads], "copy-project": destination, "copy-destination": "/missing"}, "could not be found"),
        ({"objects": [reads], "copy-project": project}, "Choose another project"),
        ({"objects": [reads], "copy-project": "project-nope"}, "could not be found"),
        ({"copy-project": destination}, "Select at least one"),
        ({"objects": [reads], "copy-project": destination, "copy-destination": "rel"}, "absolute path"),
    ]
    bobs = actions.create_container(bob.user, "bob's")
    actions.invite(bobs, "user-alice", "VIEW")
    cases.append(({"objects": [reads], "copy-project": bobs.pk}, "UPLOAD permission is required"))
    for data, message in cases:
        said = flashes(web, web.post(url, {"copy-destination": "/", **data}))
        assert len(said) == 1 and message in said[0], (data, said)
    assert not Placement.objects.filter(container_id__in=[destination, bobs.pk]).exists()


def test_a_viewer_copies_one_file_from_its_page_into_their_own_project(member, bob, project, reads):
    viewer = member("VIEW")
    mine = actions.create_container(bob.user, "bob's copies")
    html = text(viewer.get(page_of(project, reads)))
    assert f'<option value="{mine.pk}">' in html
    response = viewer.post(
        page_of(project, reads) + "copy/", {"copy-project": mine.pk, "copy-destination": "/", "copy-parents": "on"}
    )
    assert flashes(viewer, response) == ["Copied 1 item to bob's copies:/"]
    assert Placement.objects.filter(container=mine, obj_id=reads).exists()
    refused = viewer.post(page_of(project, reads) + "copy/", {"copy-project": project, "copy-destination": "/"})
    assert refused.status_code == 422 and "UPLOAD permission is required" in text(refused), text(refused)[-3000:]


# Renaming a project ---------------------------------------------------------------------------


def test_a_contributor_renames_the_project(member, project):
    bob = member("CONTRIBUTE")
    html = text(bob.get(f"/projects/{project}/"))
    assert f'id="project-rename" href="/projects/{project}/settings/"' in html
    response = bob.post(f"/projects/{project}/settings/", {"name": "renamed results", "summary": "for the paper"})
    assert flashes(bob, response) == ["Saved the project renamed results"]
    container = Container.objects.get(pk=project)
    assert (container.name, container.summary) == ("renamed results", "for the paper")


@pytest.mark.parametrize("name", ["", "   ", "a/b", "..", "x" * 300, "tab\there"])
def test_a_bad_project_name_is_a_form_error(web, project, name):
    response = web.post(f"/projects/{project}/settings/", {"name": name})
    assert response.status_code == 422 and "field-error" in text(response)
    assert Container.objects.get(pk=project).name == "alice's project"
