"""Live lists: a job list learns of new jobs in its scope over its socket, the bell's count is pushed, a
batch's notices are one line, and notices are marked read one, a batch or all at once (own ones only)."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from jobs import actions, notifications
from jobs.models import Analysis, Job, Notification, State
from projects import actions as project_actions
from projects.models import Container, now_ms
from tests.jobs.test_ws_pages import frames_until, open_socket

APPLET = "applet-" + "b" * 24


def new_job(project, user, name="quick", created=None, executable=APPLET, **fields):
    job = Job.objects.create(
        id=f"job-{Job.objects.count() + 1:024d}",
        name=name,
        executable=executable,
        executable_name=name,
        project=project,
        launched_by=user,
        **({"created": created} if created is not None else {}),
        **fields,
    )
    job.origin = job.root = job
    job.save()
    return job


def run(job_id):
    """The job's first transition, which tells its project's and its launcher's lists."""
    actions.transition(job_id, State.RUNNABLE)


# The job lists' socket ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_list_is_told_how_many_jobs_its_scope_got_and_then_watches_them(alice, bob):
    project = project_actions.create_container(alice.user, "live")
    other = project_actions.create_container(alice.user, "elsewhere")
    project_actions.invite(project, "user-bob", "VIEW")
    old = new_job(project, alice.user, created=1000)

    async def scenario():
        since = await sync_to_async(lambda: Job.objects.get(pk=old.pk).created)()
        _, listing = await open_socket(
            f"/ws/projects/{project.pk}/jobs/", bob, first={"watch": [old.pk], "since": since}
        )
        initial = await frames_until(listing, lambda f: True)
        fresh = await sync_to_async(new_job)(project, alice.user, name="fresh")
        await sync_to_async(run)(fresh.pk)
        told = await frames_until(listing, lambda f: "new" in f[-1])
        # A job elsewhere (bob cannot see that project) is not this list's.
        hidden = await sync_to_async(new_job)(other, alice.user, name="hidden")
        await sync_to_async(run)(hidden.pk)
        assert await listing.receive_nothing(timeout=1.5)
        # The page swapped its rows in: it watches the new job from now on.
        await listing.send_to(text_data=json.dumps({"watch": [old.pk, fresh.pk]}))
        watched = await frames_until(listing, lambda f: fresh.pk in f[-1].get("states", {}))
        await sync_to_async(actions.transition)(fresh.pk, State.TERMINATED)
        ended = await frames_until(listing, lambda f: f[-1].get("states", {}).get(fresh.pk) == "terminated")
        await listing.disconnect()
        # My jobs: alice's own, in every project she sees.
        _, mine = await open_socket("/ws/jobs/mine/", alice, first={"watch": [], "since": since})
        own = await frames_until(mine, lambda f: True)
        await mine.disconnect()
        return fresh, initial, told, watched, ended, own

    fresh, initial, told, watched, ended, own = asyncio.run(scenario())
    assert initial == [{"states": {old.pk: "idle"}}]
    assert told[-1] == {"states": {}, "new": 1}
    assert watched[-1]["states"] == {fresh.pk: "runnable"} and "new" not in watched[-1]
    assert ended[-1]["states"] == {fresh.pk: "terminated"}
    assert own == [{"states": {}, "new": 2}]


@pytest.mark.django_db(transaction=True)
def test_an_analysis_counts_once_not_with_its_stage_jobs(alice):
    project = project_actions.create_container(alice.user, "live")
    analysis = Analysis.objects.create(
        id="analysis-" + "A" * 24,
        name="flow",
        executable="workflow-" + "w" * 24,
        project=project,
        launched_by=alice.user,
    )
    new_job(project, alice.user, name="stage one", analysis=analysis, stage="stage-1")
    new_job(project, alice.user, name="stage two", analysis=analysis, stage="stage-2")

    async def scenario():
        _, listing = await open_socket(f"/ws/projects/{project.pk}/jobs/", alice, first={"watch": [], "since": 0})
        frames = await frames_until(listing, lambda f: True)
        await listing.disconnect()
        return frames

    assert asyncio.run(scenario()) == [{"states": {}, "new": 1}]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("frame", [{"watch": "all"}, {"watch": [], "since": -1}, {"watch": [], "since": True}])
def test_a_bad_frame_is_refused_first_or_later(alice, frame):
    project = project_actions.create_container(alice.user, "live")

    async def scenario():
        _, first = await open_socket(f"/ws/projects/{project.pk}/jobs/", alice, first=frame)
        refused_first = await frames_until(first, lambda f: False)
        _, later = await open_socket(f"/ws/projects/{project.pk}/jobs/", alice, first={"watch": []})
        await later.send_to(text_data=json.dumps({"watch": "all"}))
        refused_later = await frames_until(later, lambda f: False)
        for socket in (first, later):
            await socket.disconnect()
        return refused_first[-1], refused_later[-1]

    first, later = asyncio.run(scenario())
    assert first[:2] == ("close", 4400) and later[:2] == ("close", 4400)


# The bell's socket --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_bell_is_pushed_the_users_own_unread_count(alice, bob):
    project = project_actions.create_container(alice.user, "live")
    first = new_job(project, alice.user, state=State.DONE)
    Notification.objects.create(user=alice.user, job=first, state="done", message="first done")
    Notification.objects.create(user=bob.user, job=first, state="done", message="not alice's")

    async def scenario():
        _, bell = await open_socket("/ws/notifications/", alice, first={})
        start = await frames_until(bell, lambda f: True)
        second = await sync_to_async(new_job)(project, alice.user, name="second")
        await sync_to_async(run)(second.pk)
        await sync_to_async(actions.transition)(second.pk, State.TERMINATED)  # its end makes a notice
        more = await frames_until(bell, lambda f: True)
        await sync_to_async(notifications.mark_read)(alice.user)
        none = await frames_until(bell, lambda f: True)
        await bell.disconnect()
        return start, more, none

    assert asyncio.run(scenario()) == ([{"unread": 1}], [{"unread": 2}], [{"unread": 0}])


@pytest.mark.django_db(transaction=True)
def test_the_bell_refuses_anonymous_sockets():
    async def scenario():
        _, bell = await open_socket("/ws/notifications/", None, first={})
        frames = await frames_until(bell, lambda f: False)
        await bell.disconnect()
        return frames

    close = asyncio.run(scenario())[-1]
    assert close[:2] == ("close", 4403)


# Batches and marking read -------------------------------------------------------------------------


@pytest.fixture
def batch(alice):
    """A batch of 14 jobs of one applet launched within seconds (12 done, 2 failed), a job of another applet
    and one of the same applet launched an hour later: three lines."""
    project = project_actions.create_container(alice.user, "batch")
    base = 1_700_000_000_000
    notices = []
    for i in range(14):
        state = State.FAILED if i in (3, 9) else State.DONE
        job = new_job(project, alice.user, name="wc_file", created=base + i * 900, state=state)
        notices.append(Notification.objects.create(user=alice.user, job=job, state=state, message=f"{job.pk} {state}"))
    lone = new_job(project, alice.user, name="other", executable="applet-" + "o" * 24, created=base + 5000)
    notices.append(Notification.objects.create(user=alice.user, job=lone, state="done", message="other done"))
    later = new_job(project, alice.user, name="wc_file", created=base + 3_600_000)
    notices.append(Notification.objects.create(user=alice.user, job=later, state="done", message="later done"))
    return {"project": project, "notices": notices}


def web_for(actor):
    web = Client()
    web.force_login(actor.user)
    return web


def test_a_batchs_notices_are_one_line_with_its_counts(alice, batch):
    found = notifications.batches(Notification.objects.filter(user=alice.user).select_related("job"))
    assert sorted(len(b.notices) for b in found) == [1, 1, 14]
    big = next(b for b in found if len(b.notices) == 14)
    assert big.summary == "14 jobs of wc_file ended: 12 done, 2 failed"
    page = web_for(alice).get("/notifications/").content.decode()
    assert "14 jobs of wc_file ended: 12 done, 2 failed" in page
    assert page.count('class="unread') == 3 and "Mark all read" in page
    # Opening the page marks nothing read.
    assert Notification.objects.filter(user=alice.user, read=False).count() == 16


def test_mark_one_a_batch_or_all_read(alice, batch):
    web = web_for(alice)
    one = batch["notices"][-1]
    answer = web.post(f"/notifications/{one.pk}/read/", HTTP_ACCEPT="application/json")
    assert answer.status_code == 200 and answer.json() == {"unread": 15}
    assert Notification.objects.get(pk=one.pk).read
    ids = [n.pk for n in batch["notices"][:14]]
    answer = web.post("/notifications/read/", {"ids": ids, "next": "/notifications/?page=1"})
    assert answer.status_code == 302 and answer["Location"] == "/notifications/?page=1"
    assert Notification.objects.filter(user=alice.user, read=False).count() == 1
    # A `next` off this site is ignored.
    answer = web.post("/notifications/read/", {"next": "https://evil.example/"})
    assert answer.status_code == 302 and answer["Location"] == "/notifications/"
    assert not Notification.objects.filter(user=alice.user, read=False).exists()
    page = web.get("/notifications/").content.decode()
    assert 'class="unread' not in page and "Mark read" not in page


def test_only_the_owner_marks_their_notices(alice, bob, batch):
    theirs = batch["notices"][0]
    web = web_for(bob)
    assert web.post(f"/notifications/{theirs.pk}/read/").status_code == 404
    assert web.post("/notifications/read/", {"ids": [theirs.pk]}).status_code == 404
    assert web.post("/notifications/read/", {"ids": ["x"]}).status_code == 404
    assert web.post("/notifications/999999/read/").status_code == 404
    # bob's "all" is bob's: none of alice's.
    assert web.post("/notifications/read/").status_code == 302
    assert Notification.objects.filter(user=alice.user, read=False).count() == 16
    assert web_for(alice).get(f"/notifications/{theirs.pk}/read/").status_code == 405
    assert Client().post(f"/notifications/{theirs.pk}/read/").status_code == 302  # to the login page
    assert not Notification.objects.get(pk=theirs.pk).read


def test_job_lists_tell_their_socket_when_they_were_rendered(alice, project):
    """To the millisecond: a job made just before the page is not one of its "new since this page opened"
    (whole seconds counted the jobs of the second before)."""
    before = new_job(Container.objects.get(pk=project), alice.user)
    page = web_for(alice).get(f"/projects/{project}/jobs/?cursor=9999999999999.job-zzzz").content.decode()
    assert f'data-ws="/ws/projects/{project}/jobs/"' in page
    since = int(page.split('data-since="', 1)[1].split('"', 1)[0])
    assert before.created <= since <= now_ms()
    assert not Job.objects.filter(project_id=project, created__gt=since).exists()
