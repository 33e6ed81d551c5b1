"""/applet/new as `dx build` sends it, spec validation, describe and get."""

import pytest

BASH = {"interpreter": "bash", "code": "main() { echo hi; }", "distribution": "Ubuntu", "release": "24.04"}


def applet_body(project, **overrides):
    body = {
        "project": project,
        "name": "hello",
        "folder": "/",
        "dxapi": "1.0.0",
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
        (
            {"inputSpec": [{"name": "x", "class": "int", "default": "five"}]},
            '("x") default: expected a value of class int',
        ),
        (
            {"inputSpec": [{"name": "x", "class": "string", "choices": ["a"], "default": "b"}]},
            "is not one of the choices",
        ),
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


def test_code_sent_with_crlf_or_lone_cr_line_endings_is_stored_with_lf(alice, project):
    code = "main() {\r\n    echo one\r    echo two\n}\r\n"
    applet = alice.ok("/applet/new", applet_body(project, runSpec=dict(BASH, code=code)))["id"]
    expected = "main() {\n    echo one\n    echo two\n}\n"
    assert alice.ok(f"/{applet}/describe", {"project": project})["runSpec"]["code"] == expected
    assert alice.ok(f"/{applet}/get")["runSpec"]["code"] == expected


@pytest.mark.live
def test_a_bash_applet_sent_with_crlf_line_endings_runs_to_done(live, dx_as):
    # As a browser or a Windows editor writes it: every line ends in CRLF.
    code = (
        'main() {\r\n    greeting="hello $who"\r\n    echo "$greeting"\r\n'
        '    dx-jobutil-add-output greeting "$greeting"\r\n}\r\n'
    )
    dx = dx_as("alice")
    token = live.user("alice")
    project = live.api("/project/new", {"name": "line endings"}, token=token)["id"]
    applet = live.api(
        "/applet/new",
        {
            "project": project,
            "name": "crlf",
            "inputSpec": [{"name": "who", "class": "string"}],
            "outputSpec": [{"name": "greeting", "class": "string"}],
            "runSpec": {"interpreter": "bash", "code": code},
        },
        token=token,
    )["id"]
    job_id = live.api(f"/{applet}/run", {"project": project, "input": {"who": "crlf"}}, token=token)["id"]
    log = dx("watch", job_id, check=False).stdout
    job = live.api(f"/{job_id}/describe", token=token)
    assert job["state"] == "done", (job["state"], job.get("failureMessage"), log[-600:])
    assert job["output"] == {"greeting": "hello crlf"} and "hello crlf" in log
    assert "\r" not in live.api(f"/{applet}/describe", token=token)["runSpec"]["code"]
