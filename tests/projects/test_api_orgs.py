"""Orgs through the API: members, roles, and the project access an org carries."""

import pytest

from .api_helpers import assert_error


@pytest.fixture
def lab(alice, bob):
    """org-lab: alice is its ADMIN, bob a MEMBER."""
    assert alice.ok("/org/new", {"handle": "lab", "name": "The Lab"}) == {"id": "org-lab"}
    alice.ok("/org-lab/invite", {"invitee": "user-bob", "level": "MEMBER"})
    return "org-lab"


def members(client, org="org-lab"):
    return {m["id"]: m["level"] for m in client.ok(f"/{org}/describe")["members"]}


def test_a_new_org_has_its_creator_as_admin(alice, lab):
    described = alice.ok("/org-lab/describe")
    assert (described["id"], described["handle"], described["name"], described["level"]) == (
        "org-lab",
        "lab",
        "The Lab",
        "ADMIN",
    )
    assert members(alice) == {"user-alice": "ADMIN", "user-bob": "MEMBER"}


def test_org_handles_are_unique(alice, bob, lab):
    assert_error(bob.call("/org/new", {"handle": "lab"}), 422, "InvalidInput")


def test_members_see_the_org_and_their_role(bob, lab):
    assert bob.ok("/org-lab/describe")["level"] == "MEMBER"


def test_an_admin_promotes_demotes_and_removes_members(alice, bob, charlie, lab):
    alice.ok("/org-lab/setMemberAccess", {"user-bob": {"level": "ADMIN"}})
    assert members(alice)["user-bob"] == "ADMIN"
    bob.ok("/org-lab/invite", {"invitee": "user-charlie", "level": "MEMBER"})
    bob.ok("/org-lab/setMemberAccess", {"user-alice": {"level": "MEMBER"}})
    assert members(bob) == {"user-alice": "MEMBER", "user-bob": "ADMIN", "user-charlie": "MEMBER"}
    bob.ok("/org-lab/removeMember", {"user": "user-charlie"})
    assert_error(charlie.call("/org-lab/describe"), 404, "ResourceNotFound")


def test_an_org_keeps_at_least_one_admin(alice, bob, lab):
    for method, body in [
        ("setMemberAccess", {"user-alice": {"level": "MEMBER"}}),
        ("removeMember", {"user": "user-alice"}),
        ("invite", {"invitee": "user-alice", "level": "MEMBER"}),
    ]:
        status, reply = alice.call(f"/org-lab/{method}", body)
        assert_error((status, reply), 422, "InvalidState", context=method)
    assert members(alice) == {"user-alice": "ADMIN", "user-bob": "MEMBER"}


def test_member_access_changes_only_apply_to_members(alice, charlie, lab):
    status, reply = alice.call("/org-lab/setMemberAccess", {"user-charlie": {"level": "ADMIN"}})
    assert_error((status, reply), 422, "InvalidInput")
    assert_error(alice.call("/org-lab/setMemberAccess", {"user-bob": "ADMIN"}), 422, "InvalidInput")
    assert_error(alice.call("/org-lab/setMemberAccess", {"user-bob": {"level": "OWNER"}}), 422, "InvalidInput")
    assert_error(alice.call("/org-lab/removeMember", {"user": "user-charlie"}), 422, "InvalidInput")
    assert "user-charlie" not in members(alice)


def test_an_org_grant_reaches_every_member_and_follows_membership(alice, bob, charlie, lab, project):
    alice.ok(f"/{project}/invite", {"invitee": "org-lab", "level": "UPLOAD"})
    assert bob.ok(f"/{project}/describe")["level"] == "UPLOAD"
    assert alice.ok(f"/{project}/describe")["permissions"]["org-lab"] == "UPLOAD"
    assert_error(charlie.call(f"/{project}/describe"), 404, "ResourceNotFound")
    alice.ok("/org-lab/invite", {"invitee": "user-charlie", "level": "MEMBER"})
    assert charlie.ok(f"/{project}/describe")["level"] == "UPLOAD"
    row = charlie.ok("/system/findProjects", {})["results"][0]
    assert row["permissionSources"] == ["org-lab"] and row["level"] == "UPLOAD"
    alice.ok(f"/{project}/decreasePermissions", {"org-lab": None})
    assert_error(bob.call(f"/{project}/describe"), 404, "ResourceNotFound")
