"""/applet/new as `dx build` sends it, spec validation, describe and get."""
import pytest

BASH = {"interpreter": "bash", "code": "main() { echo hi; }", "distribution": "Ubuntu", "release": "24.04"}


def applet_body(project, **overrides):
    body = {
        "project": project, "name": "hello", "folder": "/", "dxapi": "1.0.0",
        "inputSpec": [
            {"name": "who", "class": "string", "default": "world", "choices": ["world", "moon"]},
            {"name": "reads", "class": "array:file", "optional": True, "patterns": ["*.fastq.gz"]},
            {"name": "n", "class": "int", "optional": True},
        ],
        "outputSpec": [{"name": "greeting", "class": "string"}],
        "runSpec": dict(BASH, timeoutPolicy={"*": {"hours": 2}}),
        "access": {"network": ["*"]},
    }
    body.update(overrides)
    return body


def test_an_applet_is_created_closed_and_described_with_its_specs(alice, project):
    applet = alice.ok("/applet/new", applet_body(project))["id"]
    described = alice.ok(f"/{applet}/describe", {"project": project})
    assert described["class"] == "applet" and described["state"] == "closed"
    assert described["inputSpec"][0]["name"] == "who" and described["runSpec"]["interpreter"] == "bash"
    got = alice.ok(f"/{applet}/get")
    assert set(got) >= {"runSpec", "inputSpec", "outputSpec", "dxapi", "access"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"inputSpec": [{"name": "1bad", "class": "int"}]}, "inputSpec[0]"),
        ({"inputSpec": [{"name": "x", "class": "integer"}]}, '("x"): "class" must be one of'),
        ({"inputSpec": [{"name": "x", "class": "int", "default": "five"}]}, '("x") default: expected a value of class int'),
        ({"inputSpec": [{"name": "x", "class": "string", "choices": ["a"], "default": "b"}]}, "is not one of the choices"),
        ({"inputSpec": [{"name": "x", "class": "int", "optional": "yes"}]}, '"optional" must be a boolean'),
        ({"inputSpec": [{"name": "x", "class": "int", "patterns": ["*.txt"]}]}, '"patterns" apply only to'),
        ({"inputSpec": [{"name": "x", "class": "int"}, {"name": "x", "class": "int"}]}, "used twice"),
        ({"outputSpec": [{"name": "y", "class": "file", "default": "z"}]}, 'outputs take no "default"'),
        ({"runSpec": dict(BASH, interpreter="perl")}, "runSpec.interpreter"),
        ({"runSpec": {"interpreter": "bash"}}, "runSpec.code"),
        ({"runSpec": dict(BASH, timeoutPolicy={"*": {"weeks": 1}})}, "runSpec.timeoutPolicy.*"),
        ({"runSpec": dict(BASH, bundledDepends=[{"name": "r.tar.gz", "id": "nope"}])}, "runSpec.bundledDepends[0]"),
        ({"inputSpec": "x"}, "inputSpec must be an array"),
    ],
)
def test_a_spec_error_is_invalid_input_naming_the_field(alice, project, change, message):
    status, data = alice.call("/applet/new", applet_body(project, **change))
    assert status == 422 and data["error"]["type"] == "InvalidInput"
    assert message in data["error"]["message"]


def test_a_view_member_cannot_create_applets_and_an_outsider_sees_nothing(alice, bob, charlie, project):
    alice.ok(f"/{project}/invite", {"invitee": "user-bob", "level": "VIEW"})
    status, data = bob.call("/applet/new", applet_body(project))
    assert status == 403 and data["error"]["type"] == "PermissionDenied"
    applet = alice.ok("/applet/new", applet_body(project))["id"]
    assert bob.call(f"/{applet}/get")[0] == 200
    assert charlie.call(f"/{applet}/get")[0] == 404
    assert charlie.call(f"/{applet}/describe")[0] == 404
