"""The one job query (jobs.querysets.JobQuerySet): who sees which jobs, each filter, and pages after a cursor."""

import pytest

from dxweb.errors import InvalidInput
from jobs.models import Job
from jobs.querysets import Cursor
from projects import actions as project_actions
from projects.accounts import create_user
from projects.api import _property_match, _tag_match
from projects.models import Level
from projects.permissions import Principal

T0 = 1_700_000_000_000
EXECUTABLE = "applet-" + "A" * 24
OTHER_EXECUTABLE = "applet-" + "B" * 24

# (name, state, tags, properties): each job's own; the fixture adds the rest.
JOBS = [
    ("bwa_mem", "done", ["batch", "prod"], {"sample": "NA12878", "run": "1"}),
    ("bwa_mem NA12878", "failed", ["batch"], {"sample": "NA12345"}),
    ("gatk HaplotypeCaller", "running", ["Batch"], {"1": "one", "a__b": "x", 'say "hi': "yes"}),
    ("Gatk joint", "done", [], {}),
    ("sort", "idle", ['say "hi', "naïve"], {"sample": "NA12878"}),
    ("sort again", "debug_hold", ["prod"], {"run": "2"}),
]


def job_id(n):
    return f"job-{n:04d}" + "Q" * 20


@pytest.fixture
def world(db):
    """alice's project (bob a VIEW member), bob's own, and charlie, an outsider; jobs in both projects."""
    alice, bob, charlie = create_user("alice"), create_user("bob"), create_user("charlie")
    mine = project_actions.create_container(alice, "mine")
    project_actions.invite(mine, "user-bob", "VIEW")
    theirs = project_actions.create_container(bob, "theirs")
    rows = []
    for n, (name, state, tags, properties) in enumerate(JOBS):
        launcher = alice if n % 2 == 0 else bob
        rows.append(
            Job(
                id=job_id(n),
                name=name,
                state=state,
                tags=tags,
                properties=properties,
                project=mine,
                launched_by=launcher,
                executable=EXECUTABLE if n < 4 else OTHER_EXECUTABLE,
                created=T0 + n * 1000,
            )
        )
    # A subjob of job 0 and one of that subjob; and a job of bob's own project.
    rows.append(
        Job(
            id=job_id(10),
            name="process",
            state="done",
            project=mine,
            launched_by=alice,
            executable=EXECUTABLE,
            created=T0 + 10_000,
            parent_id=job_id(0),
            origin_id=job_id(0),
            root_id=job_id(0),
        )
    )
    rows.append(
        Job(
            id=job_id(11),
            name="process",
            state="done",
            project=mine,
            launched_by=alice,
            executable=EXECUTABLE,
            created=T0 + 11_000,
            parent_id=job_id(10),
            origin_id=job_id(0),
            root_id=job_id(0),
        )
    )
    rows.append(
        Job(
            id=job_id(20),
            name="bwa_mem",
            state="done",
            tags=["batch"],
            project=theirs,
            launched_by=bob,
            executable=EXECUTABLE,
            created=T0 + 20_000,
        )
    )
    for job in rows:
        job.origin_id = job.origin_id or job.id
        job.root_id = job.root_id or job.id
    Job.objects.bulk_create(rows)
    return {"alice": alice, "bob": bob, "charlie": charlie, "mine": mine, "theirs": theirs}


def ids(jobs):
    return sorted(jobs.values_list("pk", flat=True))


def numbers(*ns):
    return sorted(job_id(n) for n in ns)


def in_mine(world):
    return Job.objects.within(project_id=world["mine"].pk)


# Who sees what ------------------------------------------------------------------


def test_an_outsider_sees_no_job(world):
    assert ids(Job.objects.visible_to(Principal.of(world["charlie"]))) == []


def test_a_member_sees_the_jobs_of_every_project_they_belong_to_and_no_other(world):
    assert ids(Job.objects.visible_to(Principal.of(world["alice"]))) == numbers(0, 1, 2, 3, 4, 5, 10, 11)
    assert ids(Job.objects.visible_to(Principal.of(world["bob"]))) == numbers(0, 1, 2, 3, 4, 5, 10, 11, 20)


def test_a_job_token_sees_only_the_projects_in_its_scopes(world):
    scoped = Principal(user=world["bob"], scopes={world["theirs"].pk: Level.VIEW, world["mine"].pk: Level.NONE})
    assert ids(Job.objects.visible_to(scoped)) == numbers(20)


def test_visibility_combines_with_a_scope_and_a_name(world):
    bob = Principal.of(world["bob"])
    assert ids(Job.objects.visible_to(bob, launched_by_id=world["bob"].pk)) == numbers(1, 3, 5, 20)
    assert ids(Job.objects.visible_to(bob, "BWA", launched_by_id=world["bob"].pk)) == numbers(1, 20)
    assert ids(Job.objects.visible_to(Principal.of(world["charlie"]), "bwa")) == []


# Each filter ------------------------------------------------------------------------


def test_a_name_contained_is_found_in_any_case(world):
    assert ids(in_mine(world).within("gatk", project_id=world["mine"].pk)) == numbers(2, 3)
    assert ids(Job.objects.within("NA12878", project_id=world["mine"].pk)) == numbers(1)


def test_a_name_is_matched_exactly_by_glob_or_by_regexp(world):
    assert ids(in_mine(world).named("bwa_mem")) == numbers(0)
    assert ids(in_mine(world).named({"glob": "sort*"})) == numbers(4, 5)
    assert ids(in_mine(world).named({"glob": "?atk*"})) == numbers(2, 3)
    assert ids(in_mine(world).named({"regexp": "^gatk"})) == numbers(2)
    assert ids(in_mine(world).named({"regexp": "^gatk", "flags": "i"})) == numbers(2, 3)
    with pytest.raises(InvalidInput):
        in_mine(world).named({"regexp": "("})
    with pytest.raises(InvalidInput):
        in_mine(world).named(5)


def test_states_one_or_several(world):
    assert ids(in_mine(world).in_state("done")) == numbers(0, 3, 10, 11)
    assert ids(in_mine(world).in_state("failed", "debug_hold")) == numbers(1, 5)
    assert ids(in_mine(world).in_state()) == []


def test_a_tag_is_matched_exactly(world):
    assert ids(in_mine(world).tagged("batch")) == numbers(0, 1)
    assert ids(in_mine(world).tagged("Batch")) == numbers(2)
    assert ids(in_mine(world).tagged('say "hi')) == numbers(4)
    assert ids(in_mine(world).tagged("hi")) == ids(in_mine(world).tagged("bat")) == []
    assert ids(in_mine(world).tagged("naïve")) == numbers(4)


TAG_QUERIES = [
    "batch",
    "prod",
    "nonesuch",
    ["batch", "prod"],
    ["batch"],
    [],
    {"$and": ["batch", "prod"]},
    {"$or": ["Batch", "prod"]},
    {"$or": []},
    {"$and": []},
    {"$or": [{"$and": ["batch", "prod"]}, "Batch"]},
    {"$and": [{"$or": ["prod", "Batch"]}, ["batch"]]},
    [{"$or": ["naïve", "nonesuch"]}],
]


@pytest.mark.parametrize("query", TAG_QUERIES, ids=str)
def test_a_tags_query_finds_what_the_other_finds_match(world, query):
    """The same answers as findProjects and findDataObjects give, which match tags in Python."""
    want = sorted(j.pk for j in in_mine(world) if _tag_match(j.tags, query))
    assert ids(in_mine(world).tagged(query)) == want


@pytest.mark.parametrize("query", [5, {"$not": ["a"]}, {"$and": "a"}, ["a", 1], {"$or": [None]}], ids=str)
def test_a_malformed_tags_query_is_refused(world, query):
    with pytest.raises(InvalidInput):
        in_mine(world).tagged(query)


PROPERTY_QUERIES = [
    {"sample": "NA12878"},
    {"sample": True},
    {"sample": False},
    {"sample": None},
    {"sample": "na12878"},
    {"sample": "NA12878", "run": "1"},
    {"sample": "NA12878", "run": True},
    {"run": 1},
    {"run": ["1"]},
    {"1": "one"},
    {"1": True},
    {"a__b": "x"},
    {'say "hi': "yes"},
    {},
    {"$or": [{"run": "2"}, {"sample": "NA12345"}]},
    {"$and": [{"sample": True}, {"run": False}]},
    {"$or": []},
    {"$and": []},
    {"$or": [{"run": True}], "sample": "NA12878"},
]


@pytest.mark.parametrize("query", PROPERTY_QUERIES, ids=str)
def test_a_properties_query_finds_what_the_other_finds_match(world, query):
    want = sorted(j.pk for j in in_mine(world) if _property_match(j.properties, query))
    assert ids(in_mine(world).with_properties(query)) == want


@pytest.mark.parametrize("query", ["sample", ["sample"], {"$or": ["sample"]}], ids=str)
def test_a_malformed_properties_query_is_refused(world, query):
    with pytest.raises(InvalidInput):
        in_mine(world).with_properties(query)


def test_the_launcher_executable_and_creation_times(world):
    assert ids(in_mine(world).launched_by("bob")) == ids(in_mine(world).launched_by("user-bob")) == numbers(1, 3, 5)
    assert ids(in_mine(world).launched_by("nobody")) == []
    assert ids(in_mine(world).of_executable(OTHER_EXECUTABLE)) == numbers(4, 5)
    assert ids(in_mine(world).created_between(T0 + 2000, T0 + 4000)) == numbers(2, 3, 4)
    assert ids(in_mine(world).created_between(after=T0 + 5000)) == numbers(5, 10, 11)
    assert ids(in_mine(world).created_between(before=T0)) == numbers(0)


def test_origin_root_parent_and_ids(world):
    assert ids(in_mine(world).related("parent_id", None)) == numbers(0, 1, 2, 3, 4, 5)
    assert ids(in_mine(world).related("parent_id", job_id(10))) == numbers(11)
    assert ids(in_mine(world).related("origin_id", [job_id(0), job_id(1)])) == numbers(0, 1, 10, 11)
    assert ids(in_mine(world).related("root_id", job_id(0))) == numbers(0, 10, 11)
    assert ids(in_mine(world).related("pk", [job_id(3), job_id(20)])) == numbers(3)
    assert ids(in_mine(world).origins_only()) == numbers(0, 1, 2, 3, 4, 5)


def test_filters_chain(world):
    jobs = Job.objects.visible_to(Principal.of(world["bob"]), "bwa").tagged("batch").in_state("done")
    assert ids(jobs) == numbers(0, 20)
    assert ids(jobs.launched_by("bob")) == numbers(20)


# Pages -------------------------------------------------------------------------------


@pytest.fixture
def ties(db):
    """23 jobs created in 4 milliseconds only: pages must break ties by id."""
    alice = create_user("alice")
    project = project_actions.create_container(alice, "ties")
    Job.objects.bulk_create(
        Job(
            id=f"job-{n:02d}" + "T" * 22,
            name=f"t{n}",
            project=project,
            launched_by=alice,
            executable=EXECUTABLE,
            created=T0 + n % 4,
        )
        for n in range(23)
    )
    return Job.objects.within(project_id=project.pk)


def test_jobs_come_newest_first_ties_broken_by_the_later_id(ties):
    order = list(ties.newest_first().values_list("created", "pk"))
    assert order == sorted(order, reverse=True) and len({c for c, _ in order}) == 4


@pytest.mark.parametrize("size", [1, 4, 5, 22, 23, 100])
def test_pages_after_the_last_job_of_each_return_every_job_once(ties, size):
    """As the job lists page: the cursor is the last job of the page before."""
    seen, cursor = [], None
    while True:
        rows = list(ties.page(size, cursor))
        seen += [j.pk for j in rows[:size]]
        if len(rows) <= size:
            break
        cursor = Cursor.of(rows[size - 1])
    assert seen == list(ties.newest_first().values_list("pk", flat=True))


@pytest.mark.parametrize("size", [1, 4, 5, 22, 23, 100])
def test_pages_from_the_first_job_of_each_return_every_job_once(ties, size):
    """As the API pages: the cursor (its `next`) is the first job of the next page."""
    seen, cursor = [], None
    while True:
        rows = list(ties.page(size, cursor, inclusive=True))
        seen += [j.pk for j in rows[:size]]
        if len(rows) <= size:
            break
        cursor = Cursor.of(rows[size])
    assert seen == list(ties.newest_first().values_list("pk", flat=True))


def test_a_page_keeps_the_filters(ties):
    rows = list(ties.filter(created=T0 + 1).page(3, Cursor(T0 + 2, "job-00")))
    assert [j.pk for j in rows] == [f"job-{n:02d}" + "T" * 22 for n in (21, 17, 13, 9)]


def test_no_job_matches_no_page(ties):
    assert list(ties.tagged({"$or": []}).page(10)) == []


# Through the API ---------------------------------------------------------------------


@pytest.fixture
def listed(alice, project):
    """17 jobs of alice's project created in 3 milliseconds, every third tagged and with a property."""
    Job.objects.bulk_create(
        Job(
            id=f"job-{n:02d}" + "A" * 22,
            name=f"a{n}",
            project_id=project,
            launched_by=alice.user,
            executable=EXECUTABLE,
            created=T0 + n % 3,
            tags=["third"] if n % 3 == 0 else [],
            properties={"third": "yes"} if n % 3 == 0 else {},
        )
        for n in range(17)
    )
    return [f"job-{n:02d}" + "A" * 22 for n in range(17)]


@pytest.mark.parametrize("method", ["findJobs", "findExecutions"])
def test_the_api_pages_across_equal_creation_times_with_every_job_once(alice, project, listed, method):
    seen, body = [], {"project": project, "limit": 4}
    while True:
        reply = alice.ok(f"/system/{method}", body)
        seen += [r["id"] for r in reply["results"]]
        if reply["next"] is None:
            break
        assert isinstance(reply["next"][0], int) and reply["next"][1] in listed  # [created, id], as before
        body = {**body, "starting": reply["next"]}
    assert seen == list(Job.objects.filter(project_id=project).newest_first().values_list("pk", flat=True))


def test_the_api_filters_tags_and_properties_before_counting_a_page(alice, project, listed):
    thirds = [j for n, j in enumerate(listed) if n % 3 == 0]
    for query in (
        {"tags": "third"},
        {"tags": {"$and": ["third"]}},
        {"properties": {"third": True}},
        {"properties": {"third": "yes"}},
    ):
        first = alice.ok("/system/findExecutions", {"project": project, "limit": 4, **query})
        rest = alice.ok("/system/findExecutions", {"project": project, "limit": 4, **query, "starting": first["next"]})
        assert len(first["results"]) == 4 and rest["next"] is None
        assert sorted(r["id"] for r in first["results"] + rest["results"]) == sorted(thirds)
    assert alice.call("/system/findExecutions", {"tags": {"$xor": []}})[1]["error"]["type"] == "InvalidInput"
    assert alice.call("/system/findJobs", {"properties": ["third"]})[1]["error"]["type"] == "InvalidInput"


def test_an_outsider_finds_no_job_through_the_api(charlie, listed):
    assert charlie.ok("/system/findJobs", {}) == {"results": [], "next": None}
    assert charlie.ok("/system/findExecutions", {"tags": "third"}) == {"results": [], "next": None}
