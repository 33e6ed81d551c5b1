"""The job page of a scatter with a thousand subjobs: a page of the tree at a time, its counts by state,
and as many queries as for a small tree.

alice (the launcher) administers the project; viewer holds VIEW; charlie is an outsider.
"""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dxweb.ids import new_id
from jobs.logs.store import LogReader
from jobs.models import Job, LogLine, State
from jobs.views import TREE_PAGE_SIZE
from tests.jobs.test_pages_jobs import client, world  # noqa: F401 (world is a fixture)

CHILDREN = 1_000


def scatter(root, n, offset=0):
    """n "square" subjobs of a job, made straight in the database: 3 of every 4 done, the rest running."""
    Job.objects.bulk_create(
        Job(
            id=new_id("job"),
            name=f"{root.name}:square",
            function="square",
            executable=root.executable,
            project=root.project,
            launched_by=root.launched_by,
            parent=root,
            origin=root.origin or root,
            root=root.root or root,
            state=State.RUNNING if i % 4 == 3 else State.DONE,
            created=root.created + 1 + offset + i,
            started_running=root.created + 10,
            stopped_running=None if i % 4 == 3 else root.created + 2_000,
        )
        for i in range(n)
    )
    Job.objects.filter(pk=root.pk).update(state=State.WAITING_ON_OUTPUT)
    return list(Job.objects.filter(parent=root).order_by("created", "pk").values_list("pk", flat=True))


@pytest.fixture
def big(world):  # noqa: F811
    return {**world, "children": scatter(world["job"], CHILDREN)}


def rows(html):
    return re.findall(r'<a class="tree-row[^"]*" href="/jobs/([^/]+)/"', html)


def get(world, actor, path):  # noqa: F811
    response = client(world, actor).get(path)
    return response.status_code, response.content.decode()


def test_the_tree_shows_one_page_of_rows_and_counts_every_job_by_state(big):
    root, children = big["job"], big["children"]
    status, html = get(big, "viewer", f"/jobs/{root.pk}/")
    assert status == 200
    assert rows(html) == [root.pk, *children[: TREE_PAGE_SIZE - 1]]
    assert f"{CHILDREN + 1} jobs" in html
    counts = dict(re.findall(r'class="tree-state" data-state="(\w+)">.*?</span> (\d+)</span>', html))
    assert counts == {"running": "250", "waiting_on_output": "1", "done": "750"}
    assert f"Jobs 1–{TREE_PAGE_SIZE} of {CHILDREN + 1}" in html
    assert 'id="tree-prev" href="?tree_page=0#job-tree" hidden' in html
    assert re.search(r'id="tree-next" href="\?tree_page=2#job-tree">', html)


def test_the_pager_walks_the_tree_to_its_last_page(big):
    root, children = big["job"], big["children"]
    _, second = get(big, "viewer", f"/jobs/{root.pk}/?tree_page=2")
    assert rows(second) == children[TREE_PAGE_SIZE - 1 : 2 * TREE_PAGE_SIZE - 1]
    assert 'data-page="2"' in second
    assert re.search(r'id="tree-prev" href="\?tree_page=1#job-tree">', second)
    last_page = (CHILDREN + 1 + TREE_PAGE_SIZE - 1) // TREE_PAGE_SIZE
    _, last = get(big, "viewer", f"/jobs/{root.pk}/?tree_page={last_page}")
    assert rows(last) == children[(last_page - 1) * TREE_PAGE_SIZE - 1 :]
    assert 'id="tree-next"' in last and re.search(r'id="tree-next" href="[^"]*" hidden', last)
    # Past the end, or not a number: the last page, or the first.
    assert rows(get(big, "viewer", f"/jobs/{root.pk}/?tree_page=999")[1]) == rows(last)
    assert rows(get(big, "viewer", f"/jobs/{root.pk}/?tree_page=x")[1])[0] == root.pk


def test_a_subjobs_page_opens_the_tree_at_the_page_that_holds_it(big):
    child = big["children"][700]
    _, html = get(big, "viewer", f"/jobs/{child}/")
    shown = rows(html)
    assert len(shown) == TREE_PAGE_SIZE and child in shown
    assert re.search(rf'<a class="tree-row current" href="/jobs/{child}/"', html)
    assert f'data-page="{(700 + 1) // TREE_PAGE_SIZE + 1}"' in html


def test_subjobs_of_subjobs_sit_under_their_parent_in_depth_first_order(big):
    root, children = big["job"], big["children"]
    grandchildren = scatter(Job.objects.get(pk=children[0]), 3, offset=CHILDREN)
    _, html = get(big, "viewer", f"/jobs/{root.pk}/")
    assert rows(html)[:6] == [root.pk, children[0], *grandchildren, children[1]]
    depths = re.findall(r'data-job="[^"]+" style="--depth: (\d+)"', html)
    assert depths[:6] == ["0", "1", "2", "2", "2", "1"]


def test_a_small_tree_has_no_pager(world):  # noqa: F811
    scatter(world["job"], 3)
    _, html = get(world, "viewer", f"/jobs/{world['job'].pk}/")
    assert len(rows(html)) == 4
    assert re.search(r'<nav class="tree-pager small" id="tree-pager"[^>]* hidden>', html)


def queries_for_the_page(world, job_id):  # noqa: F811
    c = client(world, "viewer")
    with CaptureQueriesContext(connection) as captured:
        assert c.get(f"/jobs/{job_id}/").status_code == 200
    return len(captured)


def test_the_page_makes_as_many_queries_for_a_thousand_subjobs_as_for_ten(world):  # noqa: F811
    small_root = world["job"]
    scatter(small_root, 10)
    small = queries_for_the_page(world, small_root.pk)
    scatter(small_root, CHILDREN - 10, offset=10)
    assert queries_for_the_page(world, small_root.pk) == small
    assert small <= 40


def test_an_outsider_gets_nothing_of_the_big_tree(big):
    for path in (f"/jobs/{big['job'].pk}/?tree_page=2", f"/jobs/{big['children'][5]}/"):
        status, html = get(big, "charlie", path)
        assert status == 404 and big["children"][5] not in html
    assert get(big, "anonymous", f"/jobs/{big['job'].pk}/")[0] == 302


def say(job_id, seq, msg, at):
    LogLine.objects.create(job_id=job_id, seq=seq, timestamp=at, level="STDOUT", msg=msg)


def test_the_trees_log_is_read_across_a_thousand_subjobs(big):
    """The page's socket and `dx watch --tree` read the whole tree's log (SQLite once refused the query)."""
    root, children = big["job"], big["children"]
    say(root.pk, 1, "started", 1)
    say(children[0], 1, "first square", 2)
    say(children[-1], 1, "last square", 3)
    reader = LogReader(root, tree=True)
    assert len(reader.jobs()) == CHILDREN + 1
    assert [line.msg for line in reader.backlog(10)] == ["started", "first square", "last square"]
    say(children[-1], 2, "last square again", 5)
    say(children[500], 1, "a middle square", 4)
    assert [line.msg for line in reader.new_lines(10)] == ["a middle square", "last square again"]
    assert reader.new_lines(10) == []
    # Batches cut short lose nothing and repeat nothing, whichever chunk of jobs their lines are in.
    say(children[999], 3, "late", 9)
    say(children[1], 1, "early", 8)
    say(children[2], 1, "earlier", 7)
    got = [line.msg for _ in range(4) for line in reader.new_lines(1)]
    assert sorted(got) == ["earlier", "early", "late"]
