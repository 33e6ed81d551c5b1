"""Job name search through a trigram index (jobs.namesearch): the same answers as a plain scan, kept in step."""

import pytest
from django.db import connection

from jobs import namesearch
from jobs.forms import JobFilterForm
from jobs.lists import filtered_jobs
from jobs.models import Job
from projects import actions as project_actions
from projects.accounts import create_user

NAMES = [
    "bwa_mem",
    "bwa_mem NA12878",
    "BWA_MEM na12345",
    "gatk HaplotypeCaller",
    "100%_done",
    "a_b",
    "naïve Run",
    "back\\slash",
    "x",
    "xyz",
    "",
    "NA12878 again",
    "zz",
]
TEXTS = [
    "NA12878",
    "na12878",
    "bwa",
    "BWA_MEM",
    "haplotype",
    "nomatch",
    "%",
    "_",
    "a_b",
    "100%",
    "\\",
    "back\\s",
    "ïve",
    "naïve",
    "x",
    "xy",
    "xyz",
    "yz",
    "m na",
]


@pytest.fixture
def jobs(db):
    alice, bob = create_user("alice"), create_user("bob")
    mine = project_actions.create_container(alice, "mine")
    theirs = project_actions.create_container(bob, "theirs")
    rows = []
    for n, name in enumerate(NAMES * 3):
        project, launcher = [(mine, alice), (mine, bob), (theirs, bob)][n % 3]
        job = Job(
            id=f"job-{n:04d}" + "Q" * 20,
            name=name,
            executable="applet-" + "A" * 24,
            executable_name="app",
            project=project,
            launched_by=launcher,
            state="done",
            created=1_700_000_000_000 + n,
        )
        job.origin_id = job.id
        rows.append(job)
    Job.objects.bulk_create(rows)
    return {"alice": alice, "bob": bob, "mine": mine, "theirs": theirs}


def ids(qs):
    return sorted(qs.values_list("pk", flat=True))


@pytest.fixture(params=["few", "many"])
def candidates(request, monkeypatch):
    """Both of jobs_named's ways on SQLite: the index's candidates drive the query, or (past the limit) the scan."""
    monkeypatch.setattr(namesearch, "CANDIDATES", 500 if request.param == "few" else 1)


@pytest.mark.parametrize("text", TEXTS)
def test_a_name_search_answers_as_a_plain_scan_does(jobs, candidates, text):
    project_scope = {"project_id": jobs["mine"].pk}
    mine_scope = {"launched_by_id": jobs["bob"].pk, "project_id__in": [jobs["mine"].pk, jobs["theirs"].pk]}
    for scope in (project_scope, mine_scope):
        got = ids(filtered_jobs(JobFilterForm({"name": text}), **scope))
        assert got == ids(Job.objects.filter(name__icontains=text, **scope))
        ascii_names = [j for j in Job.objects.filter(**scope) if j.name.isascii()]
        assert {j.pk for j in ascii_names if text.lower() in j.name.lower()} <= set(got)
    # and with the other filters
    form = JobFilterForm({"name": text, "state": "done", "origin": "on"})
    assert ids(filtered_jobs(form, **project_scope)) == ids(Job.objects.filter(name__icontains=text, **project_scope))


def test_the_rare_name_is_found_among_the_projects_jobs_only(jobs):
    found = filtered_jobs(JobFilterForm({"name": "na12878"}), project_id=jobs["mine"].pk)
    assert {j.name for j in found} == {"bwa_mem NA12878", "NA12878 again"}
    assert {j.project_id for j in found} == {jobs["mine"].pk}
    assert Job.objects.filter(project=jobs["theirs"], name__icontains="na12878").exists()


def test_the_index_is_installed_with_every_trigger(db):
    if connection.vendor == "sqlite":
        namesearch._ready.clear()
        assert namesearch.sqlite_index_ready(), "a migration remade jobs_job: call namesearch.install_sqlite again"
    elif connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            constraints = connection.introspection.get_constraints(cursor, Job._meta.db_table)
        assert constraints[namesearch.TRIGRAM_INDEX]["type"] == "gin"


def test_the_index_follows_new_renamed_and_deleted_jobs(jobs):
    scope = {"project_id": jobs["mine"].pk}

    def found(text):
        return [j.pk for j in filtered_jobs(JobFilterForm({"name": text}), **scope)]

    job = Job.objects.create(
        id="job-" + "R" * 24,
        name="freshly Made",
        executable="applet-" + "A" * 24,
        project=jobs["mine"],
        launched_by=jobs["alice"],
        created=1,
    )
    assert found("shly ma") == [job.pk]
    Job.objects.filter(pk=job.pk).update(name="renamed Later")
    assert found("shly ma") == [] and found("NAMED LAT") == [job.pk]
    job.delete()
    assert found("named lat") == []
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {namesearch.NAMES} WHERE job_id = %s", [job.pk])
            assert cursor.fetchone()[0] == 0
            cursor.execute(f"SELECT count(*) FROM {namesearch.NAMES}")
            assert cursor.fetchone()[0] == Job.objects.count()
    # a project's destruction takes its jobs' names with it
    project_actions.destroy_container(jobs["theirs"])
    assert not Job.objects.filter(project_id=jobs["theirs"].pk).exists()
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {namesearch.NAMES}")
            assert cursor.fetchone()[0] == Job.objects.count()


def test_a_rare_name_is_looked_up_in_the_trigram_index(jobs):
    if connection.vendor == "sqlite":
        qs = filtered_jobs(JobFilterForm({"name": "NA12878"}), project_id=jobs["mine"].pk).values("pk")
        plan = qs.explain()
        assert "VIRTUAL TABLE" in plan and "SEARCH jobs_job USING INDEX sqlite_autoindex_jobs_job_1" in plan, plan
    elif connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # a few rows: make every other way dear, as 100,000 would
            for kind in ("seqscan", "indexscan", "indexonlyscan"):
                cursor.execute(f"SET LOCAL enable_{kind} = off")
        plan = Job.objects.filter(name__icontains="NA12878").values("pk").explain()
        assert namesearch.TRIGRAM_INDEX in plan, plan
