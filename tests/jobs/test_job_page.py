"""The job page: outputs and timings, Rerun and Clone with edits, the debug-hold banner and who sees Debug.

alice (the launcher) administers the project; viewer and contributor hold those levels; charlie is an outsider.
"""

import re

import pytest

from jobs.models import Job, State
from jobs.views import duration_text
from projects.models import Placement, now_ms
from tests.jobs.test_pages_jobs import ACTORS, client, world  # noqa: F401 (world is a fixture)


def page(world, actor, job=None):  # noqa: F811
    return client(world, actor).get(f"/jobs/{(job or world['job']).pk}/").content.decode()


@pytest.mark.parametrize(
    "ms, text",
    [(0, "0 s"), (45_999, "45 s"), (185_000, "3 min 05 s"), (7_380_000, "2 h 03 min"), (100_800_000, "1 d 4 h")],
)
def test_durations_are_said_for_people(ms, text):
    assert duration_text(ms) == text


def test_a_finished_job_says_no_outputs_and_how_long_it_ran(world):  # noqa: F811
    job = world["job"]
    assert "No output yet" in page(world, "viewer")
    Job.objects.filter(pk=job.pk).update(state=State.DONE, started_running=1_000, stopped_running=186_000)
    html = page(world, "viewer")
    assert "No outputs" in html and "No output yet" not in html
    assert re.search(r"<dt>Ran for</dt><dd[^>]*>3 min 05 s</dd>", html)
    # The tree says it too, and the list of the project's jobs.
    assert re.search(r'class="tree-time[^"]*" data-started="1000" data-stopped="186000">3 min 05 s<', html)
    listing = client(world, "viewer").get(f"/projects/{world['project'].pk}/jobs/").content.decode()
    assert "3 min 05 s" in listing


def test_a_running_job_carries_its_start_for_the_ticking_clock(world):  # noqa: F811
    job = world["job"]
    started = now_ms() - 5_000
    Job.objects.filter(pk=job.pk).update(state=State.RUNNING, started_running=started)
    html = page(world, "viewer")
    assert f'<dd id="job-ran" class="mono" data-started="{started}">' in html
    assert re.search(rf'data-started="{started}" data-stopped="">\s*<', html)
    assert re.search(r'data-now="\d{13}"', html)


def test_rerun_needs_contribute_and_runs_the_same_input_and_options(world):  # noqa: F811
    job = world["job"]
    Job.objects.filter(pk=job.pk).update(
        priority="high", timeout_s=5400, properties={"k": "v"}, debug={"debugOn": ["AppError"]}, folder="/out"
    )
    path = f"/jobs/{job.pk}/rerun/"
    statuses = {actor: client(world, actor).post(path).status_code for actor in ACTORS}
    assert statuses == {"anonymous": 302, "charlie": 404, "viewer": 403, "contributor": 302, "alice": 302}
    assert client(world, "alice").get(path).status_code == 405
    reruns = Job.objects.exclude(pk=job.pk).order_by("created")
    assert reruns.count() == 2  # the contributor's and alice's
    response = client(world, "alice").post(path)
    new = Job.objects.exclude(pk=job.pk).order_by("-created", "-pk").first()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{new.pk}/"
    assert new.original_input == job.original_input and new.executable == job.executable
    assert (new.name, new.folder, new.priority, new.timeout_s) == (job.name, "/out", "high", 5400)
    assert new.tags == ["first"] and new.properties == {"k": "v"} and new.debug == {"debugOn": ["AppError"]}
    assert new.launched_by == world["users"]["alice"]


def test_rerun_refuses_cleanly_when_the_applet_is_gone(world):  # noqa: F811
    job = world["job"]
    Placement.objects.filter(container=world["project"], obj_id=job.executable).delete()
    c = client(world, "alice")
    response = c.post(f"/jobs/{job.pk}/rerun/", follow=True)
    assert response.status_code == 200 and response.redirect_chain[-1][0] == f"/jobs/{job.pk}/"
    assert f"its applet {job.executable} is gone" in response.content.decode()
    assert not Job.objects.exclude(pk=job.pk).exists()


def test_rerun_is_a_confirmed_post_and_clone_opens_the_form(world):  # noqa: F811
    job = world["job"]
    html = page(world, "contributor")
    assert re.search(rf'<form method="post" action="/jobs/{job.pk}/rerun/"[^>]*id="rerun-form"', html)
    assert re.search(r'id="rerun" data-confirm="Run counter again with the same input', html)
    launch = f"/projects/{world['project'].pk}/applets/{world['applet'].obj_id}/run/?from={job.pk}"
    assert f'href="{launch}" id="clone"' in html
    assert 'id="rerun"' not in page(world, "viewer") and 'id="clone"' not in page(world, "viewer")


def test_a_subjob_offers_no_rerun(world):  # noqa: F811
    job = world["job"]
    Job.objects.filter(pk=job.pk).update(state=State.RUNNING)
    child = Job.objects.create(
        **{
            f.name: getattr(job, f.name)
            for f in Job._meta.concrete_fields
            if f.name not in ("id", "parent", "origin", "root", "workspace")
        },
        id="job-" + "c" * 24,
        parent=job,
        origin=job,
        root=job,
    )
    assert 'id="rerun"' not in page(world, "alice", child)
    response = client(world, "alice").post(f"/jobs/{child.pk}/rerun/")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{child.pk}/"
    assert Job.objects.count() == 2


@pytest.fixture
def held(world):  # noqa: F811
    job = world["job"]
    until = now_ms() + 3_600_000
    Job.objects.filter(pk=job.pk).update(
        state=State.DEBUG_HOLD, allow_ssh=["127.0.0.1"], debug={"failureReason": "AppError", "holdUntil": until}
    )
    return job, until


def test_the_hold_banner_shows_each_button_to_those_who_may_use_it(world, held, settings):  # noqa: F811
    job, until = held
    seen = {}
    for actor in ("viewer", "contributor", "alice"):
        html = page(world, actor)
        assert 'id="hold-banner"' in html and f'data-until="{until}"' in html and "AppError" in html
        seen[actor] = tuple(
            f'id="{button}"' in html for button in ("hold-terminal", "hold-extend", "hold-release", "debug")
        )
    # Open terminal and Debug: the launcher only (the debug policy); Extend and Release: the launcher or an admin.
    assert seen == {
        "viewer": (False, False, False, False),
        "contributor": (False, False, False, False),
        "alice": (True, True, True, True),
    }
    # An administrator who did not launch the job changes the hold; a shell needs DXWEB_DEBUG_BY_ADMINS.
    Job.objects.filter(pk=job.pk).update(launched_by=world["users"]["contributor"])
    html = page(world, "alice")
    assert 'id="hold-extend"' in html and 'id="hold-terminal"' not in html and 'id="debug"' not in html
    settings.DXWEB_DEBUG_BY_ADMINS = True
    html = page(world, "alice")
    assert 'id="hold-terminal"' in html and 'id="debug"' in html


def test_a_running_job_shows_debug_only_to_who_may_open_a_shell(world):  # noqa: F811
    job = world["job"]
    Job.objects.filter(pk=job.pk).update(state=State.RUNNING, allow_ssh=["127.0.0.1"], started_running=now_ms())
    assert 'id="debug"' in page(world, "alice")
    for actor in ("viewer", "contributor"):
        html = page(world, actor)
        assert 'id="debug"' not in html and 'id="hold-banner"' not in html


def test_the_banners_buttons_come_back_to_the_job_page(world, held):  # noqa: F811
    job, until = held
    c = client(world, "alice")
    response = c.post(f"/jobs/{job.pk}/hold/extend/", {"back": "job"})
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert Job.objects.get(pk=job.pk).debug["holdUntil"] > until
    # The terminal page's own buttons still lead back to it.
    response = c.post(f"/jobs/{job.pk}/hold/extend/")
    assert response["Location"] == f"/jobs/{job.pk}/debug/"
    response = client(world, "viewer").post(f"/jobs/{job.pk}/hold/release/", {"back": "job"})
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert Job.objects.get(pk=job.pk).state == State.DEBUG_HOLD
    response = c.post(f"/jobs/{job.pk}/hold/release/", {"back": "job"})
    assert response["Location"] == f"/jobs/{job.pk}/" and Job.objects.get(pk=job.pk).state == State.FAILED
    assert 'id="hold-banner"' not in page(world, "alice")


def test_the_job_page_reads_its_tree_in_a_bounded_number_of_queries(world, django_assert_max_num_queries):  # noqa: F811
    job = world["job"]
    for i in range(5):
        Job.objects.create(
            **{
                f.name: getattr(job, f.name)
                for f in Job._meta.concrete_fields
                if f.name not in ("id", "parent", "origin", "root", "workspace")
            },
            id=f"job-{i:024d}",
            parent=job,
            origin=job,
            root=job,
        )
    with django_assert_max_num_queries(40):
        assert client(world, "viewer").get(f"/jobs/{job.pk}/").status_code == 200
