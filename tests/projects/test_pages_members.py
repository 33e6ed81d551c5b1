"""The Members tab and the org pages: invite, change, revoke; orgs with members and roles."""

import re
from html import unescape

import pytest

from projects import actions
from projects.models import Container, Grant, Level, Org, OrgMember


@pytest.fixture
def container(project):
    return Container.objects.get(pk=project)


def flashes(client, response):
    """Follow the redirect and return the flash messages the next page shows."""
    assert response.status_code == 302, response.content[:300]
    html = client.get(response["Location"]).content.decode()
    return [unescape(m) for m in re.findall(r'<span class="flash-text">(.*?)</span>', html, re.S)]


def level_of(container, grantee):
    user, org = actions.resolve_grantee(grantee)
    grant = Grant.objects.filter(container=container, user=user, org=org).first()
    return Level(grant.level).label if grant else None


# Members of a project ---------------------------------------------------------------------------


@pytest.mark.parametrize("invitee", ["bob", "user-bob", "  bob  "])
def test_inviting_a_user_by_handle_or_id(web, bob, project, container, invitee):
    response = web.post(f"/projects/{project}/members/", {"invitee": invitee, "level": "UPLOAD"})
    assert response.status_code == 302 and response["Location"] == f"/projects/{project}/members/"
    assert flashes(web, response) == ["user-bob now has UPLOAD access"]
    assert level_of(container, "user-bob") == "UPLOAD"


def test_inviting_an_org(web, alice, project, container):
    actions.create_org(alice.user, "lab")
    web.post(f"/projects/{project}/members/", {"invitee": "org-lab", "level": "CONTRIBUTE"})
    assert level_of(container, "org-lab") == "CONTRIBUTE"


BAD_INVITEES = {
    "unknown user": "nobody",
    "unknown org": "org-nothing",
    "empty": "",
    "traversal": "../admin",
    "NUL": "bob\x00",
    "10 kB": "b" * 10_000,
}


@pytest.mark.parametrize("invitee", BAD_INVITEES.values(), ids=BAD_INVITEES.keys())
def test_inviting_someone_unknown_is_an_inline_form_error(web, bob, project, container, invitee):
    response = web.post(f"/projects/{project}/members/", {"invitee": invitee, "level": "VIEW"})
    assert response.status_code == 200
    assert re.search(rb'<div class="field has-error">\s*<label for="id_invitee">', response.content)
    assert b'class="field-error"' in response.content
    assert Grant.objects.filter(container=container).count() == 1


def test_an_unknown_level_is_an_inline_form_error(web, bob, project, container):
    response = web.post(f"/projects/{project}/members/", {"invitee": "bob", "level": "OWNER"})
    assert response.status_code == 200 and b"Select a valid choice" in response.content
    assert level_of(container, "user-bob") is None


def test_changing_a_level_up_and_down(web, bob, project, container):
    actions.invite(container, "user-bob", "VIEW")
    url = f"/projects/{project}/members/change/"
    raised = web.post(url, {"grantee": "user-bob", "level": "ADMINISTER"})
    assert flashes(web, raised) == ["user-bob now has ADMINISTER access"]
    assert level_of(container, "user-bob") == "ADMINISTER"
    web.post(url, {"grantee": "user-bob", "level": "UPLOAD"})
    assert level_of(container, "user-bob") == "UPLOAD"


def test_the_last_administrator_cannot_be_demoted_or_revoked(web, alice, project, container):
    demoted = web.post(f"/projects/{project}/members/change/", {"grantee": "user-alice", "level": "VIEW"})
    assert flashes(web, demoted) == ["A project must keep at least one ADMINISTER member"]
    revoked = web.post(f"/projects/{project}/members/revoke/", {"grantee": "user-alice"})
    assert flashes(web, revoked) == ["A project must keep at least one ADMINISTER member"]
    assert level_of(container, "user-alice") == "ADMINISTER"


@pytest.mark.parametrize("grantee,level", [("user-nobody", "VIEW"), ("user-bob", "ROOT"), ("../x", "VIEW"), ("", "")])
def test_changing_an_unknown_member_or_to_an_unknown_level_is_a_flash_error(
    web, bob, project, container, grantee, level
):
    actions.invite(container, "user-bob", "VIEW")
    response = web.post(f"/projects/{project}/members/change/", {"grantee": grantee, "level": level})
    assert response.status_code == 302 and flashes(web, response)
    assert level_of(container, "user-bob") == "VIEW"


def test_revoking_a_member(web, bob, project, container):
    actions.invite(container, "user-bob", "CONTRIBUTE")
    response = web.post(f"/projects/{project}/members/revoke/", {"grantee": "user-bob"})
    assert flashes(web, response) == ["Revoked the access of user-bob"]
    assert level_of(container, "user-bob") is None


def test_effective_access_names_every_route_in(web, alice, bob, charlie, project, container):
    org = actions.create_org(alice.user, "lab", "The lab")
    actions.set_org_member(org, bob.user, OrgMember.MEMBER)
    actions.set_org_member(org, charlie.user, OrgMember.MEMBER)
    actions.invite(container, "org-lab", "UPLOAD")
    actions.invite(container, "user-bob", "VIEW")
    html = web.get(f"/projects/{project}/members/").content.decode()
    table = re.search(r'<table class="table" id="effective-access">.*?</table>', html, re.S).group(0)
    rows = dict(re.findall(r'<tr data-user="(user-\w+)">(.*?)</tr>', table, re.S))
    assert set(rows) == {"user-alice", "user-bob", "user-charlie"}
    assert "level-upload" in rows["user-bob"] and "direct" in rows["user-bob"] and "org-lab" in rows["user-bob"]
    assert "org-lab" in rows["user-charlie"] and "direct" not in rows["user-charlie"]
    # alice is an org ADMIN and a direct ADMINISTER: both routes are listed.
    assert "level-administer" in rows["user-alice"] and "org-lab" in rows["user-alice"]


def test_members_without_administer_see_read_only_lists(bob, project, container):
    actions.invite(container, "user-bob", "CONTRIBUTE")
    bob.client.force_login(bob.user)
    html = bob.client.get(f"/projects/{project}/members/").content.decode()
    assert 'id="grants"' in html and 'id="effective-access"' in html
    for control in ('id="invite"', "members/change/", "members/revoke/", "destroy/"):
        assert control not in html
    assert "leave/" in html


def test_leaving_a_project(bob, project, container):
    actions.invite(container, "user-bob", "VIEW")
    bob.client.force_login(bob.user)
    response = bob.client.post(f"/projects/{project}/leave/")
    assert response["Location"] == "/" and level_of(container, "user-bob") is None


def test_the_only_administrator_cannot_leave(web, project, container):
    response = web.post(f"/projects/{project}/leave/")
    assert response["Location"] == f"/projects/{project}/members/"
    assert "The last ADMINISTER member cannot leave" in flashes(web, response)[0]


def test_deleting_a_project_needs_its_name_typed(web, project):
    response = web.post(f"/projects/{project}/destroy/", {"confirm": "wrong"})
    assert flashes(web, response) == ["Type the project's name exactly to delete it"]
    assert Container.objects.filter(pk=project).exists()
    response = web.post(f"/projects/{project}/destroy/", {"confirm": "alice's project"})
    assert response["Location"] == "/" and not Container.objects.filter(pk=project).exists()


# Orgs ------------------------------------------------------------------------------------------


def test_creating_an_org_makes_me_its_admin(web, alice):
    response = web.post("/orgs/", {"handle": "genomics", "name": "Genomics core"})
    assert response["Location"] == "/orgs/org-genomics/"
    assert Org.objects.get(pk="org-genomics").name == "Genomics core"
    assert OrgMember.objects.get(org_id="org-genomics", user=alice.user).level == OrgMember.ADMIN
    html = web.get("/orgs/").content.decode()
    assert 'data-org="org-genomics"' in html and "role-admin" in html


@pytest.mark.parametrize("handle", ["", "Bad Handle", "../x", "x" * 100, "a\x00b", "-dash"])
def test_a_bad_org_handle_is_an_inline_form_error(web, handle):
    response = web.post("/orgs/", {"handle": handle, "name": ""})
    assert response.status_code == 200 and b'class="field-error"' in response.content
    assert not Org.objects.exists()


def test_a_taken_org_handle_is_an_inline_form_error(web, bob):
    actions.create_org(bob.user, "lab")
    response = web.post("/orgs/", {"handle": "lab", "name": "Mine"})
    assert response.status_code == 200 and b"already taken" in response.content


def test_an_org_admin_adds_members_and_changes_their_roles(web, alice, bob):
    org = actions.create_org(alice.user, "lab")
    response = web.post("/orgs/org-lab/", {"user": "bob", "role": "MEMBER"})
    assert response["Location"] == "/orgs/org-lab/"
    assert OrgMember.objects.get(org=org, user=bob.user).level == OrgMember.MEMBER
    html = web.get("/orgs/org-lab/").content.decode()
    assert 'data-member="user-bob"' in html and 'data-member="user-alice"' in html
    web.post("/orgs/org-lab/members/role/", {"user": "user-bob", "role": "ADMIN"})
    assert OrgMember.objects.get(org=org, user=bob.user).level == OrgMember.ADMIN


@pytest.mark.parametrize("user", ["nobody", "org-lab", "", "x" * 10_000])
def test_adding_an_unknown_user_to_an_org_is_an_inline_form_error(web, alice, user):
    actions.create_org(alice.user, "lab")
    response = web.post("/orgs/org-lab/", {"user": user, "role": "MEMBER"})
    assert response.status_code == 200 and b'class="field-error"' in response.content
    assert OrgMember.objects.filter(org_id="org-lab").count() == 1


def test_the_last_org_admin_cannot_step_down_or_leave(web, alice):
    actions.create_org(alice.user, "lab")
    demoted = web.post("/orgs/org-lab/members/role/", {"user": "user-alice", "role": "MEMBER"})
    assert flashes(web, demoted) == ["An org must keep at least one ADMIN"]
    removed = web.post("/orgs/org-lab/members/remove/", {"user": "user-alice"})
    assert flashes(web, removed) == ["An org must keep at least one ADMIN"]
    assert OrgMember.objects.get(org_id="org-lab", user=alice.user).level == OrgMember.ADMIN


def test_changing_the_role_of_a_non_member_is_a_flash_error(web, alice, bob):
    actions.create_org(alice.user, "lab")
    response = web.post("/orgs/org-lab/members/role/", {"user": "user-bob", "role": "ADMIN"})
    assert flashes(web, response) == ["user-bob is not a member of org-lab"]
    assert not OrgMember.objects.filter(org_id="org-lab", user=bob.user).exists()


def test_removing_a_member_and_removing_myself(web, alice, bob):
    org = actions.create_org(alice.user, "lab")
    actions.set_org_member(org, bob.user, OrgMember.ADMIN)
    response = web.post("/orgs/org-lab/members/remove/", {"user": "user-bob"})
    assert response["Location"] == "/orgs/org-lab/" and flashes(web, response) == ["Removed user-bob from org-lab"]
    actions.set_org_member(org, bob.user, OrgMember.ADMIN)
    response = web.post("/orgs/org-lab/members/remove/", {"user": "user-alice"})
    assert response["Location"] == "/orgs/"
    assert web.get("/orgs/org-lab/").status_code == 404


def test_the_org_page_lists_the_projects_shared_with_it(web, alice, bob, container):
    org = actions.create_org(alice.user, "lab")
    actions.set_org_member(org, bob.user, OrgMember.MEMBER)
    actions.invite(container, "org-lab", "UPLOAD")
    bob.client.force_login(bob.user)
    html = bob.client.get("/orgs/org-lab/").content.decode()
    assert "alice&#x27;s project" in html and "level-upload" in html
    assert 'id="add-member"' not in html and "members/remove/" not in html
    # ...and bob reaches the project through the org.
    assert bob.client.get(f"/projects/{container.pk}/").status_code == 200
