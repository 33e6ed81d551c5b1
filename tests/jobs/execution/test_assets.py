"""runSpec.assetDepends with real jobs: the record names the bundle, the runner unpacks it into the job's
root before the code runs; an asset that cannot be resolved fails the job with a clear reason."""

import json
import subprocess
import textwrap

import pytest

from tests.live import BIN, Dx

pytestmark = pytest.mark.live

SCRIPT = """
    import io, json, tarfile
    import dxpy

    data = b"from the asset"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("opt/hello_asset/hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    bundle = dxpy.upload_string(buf.getvalue(), name="hello_asset.tar.gz", wait_on_close=True)
    record = dxpy.new_dxrecord(name="hello_asset", types=["AssetBundle"], properties={"version": "0.0.1"},
                               details={"archiveFileId": dxpy.dxlink(bundle.get_id())}, close=True)
    empty = dxpy.new_dxrecord(name="no_bundle", details={}, close=True)
    code = 'main() {\\n  dx-jobutil-add-output greeting "$(cat /opt/hello_asset/hello.txt)" --class string\\n}\\n'

    def applet(deps):
        return dxpy.api.applet_new({
            "project": dxpy.PROJECT_CONTEXT_ID, "name": "uses-asset", "dxapi": "1.0.0",
            "inputSpec": [], "outputSpec": [{"name": "greeting", "class": "string"}],
            "runSpec": {"interpreter": "bash", "code": code, "distribution": "Ubuntu", "release": "24.04",
                        "version": "0", "assetDepends": deps},
        })["id"]

    applets = {
        "by_id": [{"id": dxpy.dxlink(record.get_id())}],
        "by_name": [{"name": "hello_asset", "project": dxpy.PROJECT_CONTEXT_ID, "folder": "/", "version": "0.0.1"}],
        "missing": [{"id": {"$dnanexus_link": "record-" + "0" * 24}}],
        "wrong_version": [{"name": "hello_asset", "project": dxpy.PROJECT_CONTEXT_ID, "version": "9"}],
        "no_bundle": [{"id": dxpy.dxlink(empty.get_id())}],
    }
    results = {}
    for key, deps in applets.items():
        job = dxpy.DXApplet(applet(deps)).run({})
        try:
            job.wait_on_done(timeout=240)
        except dxpy.exceptions.DXJobFailureError:
            pass
        d = job.describe()
        results[key] = {k: d.get(k) for k in ("state", "output", "failureReason", "failureMessage")}
    print(json.dumps(results))
"""

DXAPP = {
    "name": "built_with_asset",
    "dxapi": "1.0.0",
    "inputSpec": [],
    "outputSpec": [{"name": "greeting", "class": "string"}],
    "runSpec": {
        "interpreter": "bash",
        "file": "src/code.sh",
        "distribution": "Ubuntu",
        "release": "24.04",
        "version": "0",
        "assetDepends": [{"name": "hello_asset", "project": "PROJECT", "folder": "/", "version": "0.0.1"}],
    },
}
CODE = 'main() {\n  dx-jobutil-add-output greeting "$(cat /opt/hello_asset/hello.txt)" --class string\n}\n'


def test_asset_depends_are_unpacked_before_the_code_runs_and_a_missing_one_fails_the_job(
    live_server_proc, tmp_path_factory
):
    live = live_server_proc
    dx = Dx(live, live.user("alice"), tmp_path_factory.mktemp("assets"))
    project = dx("new", "project", "assets", "--brief").stdout.strip()
    result = subprocess.run(
        [str(BIN / "python"), "-c", textwrap.dedent(SCRIPT)],
        env={**dx.env, "DX_PROJECT_CONTEXT_ID": project},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("by_id", "by_name"):
        assert out[key]["state"] == "done", (key, out[key])
        assert out[key]["output"] == {"greeting": "from the asset"}
    for key, words in (
        ("missing", "could not be found"),
        ("wrong_version", "could not be found"),
        ("no_bundle", "archiveFileId"),
    ):
        assert out[key]["state"] == "failed", (key, out[key])
        assert out[key]["failureReason"] == "ExecutionError"
        assert out[key]["failureMessage"].startswith("assetDepends: ") and words in out[key]["failureMessage"]

    # dx build resolves the asset too (and adds its tarball to bundledDepends): the job sees it once
    source = dx.workdir / "built_with_asset"
    (source / "src").mkdir(parents=True)
    (source / "src" / "code.sh").write_text(CODE)
    spec = json.loads(json.dumps(DXAPP).replace("PROJECT", project))
    (source / "dxapp.json").write_text(json.dumps(spec))
    applet = json.loads(dx("build", str(source), "--destination", f"{project}:/", project=project).stdout)["id"]
    job = dx("run", applet, "-y", "--brief", "--wait", project=project).stdout.strip().splitlines()[-1]
    described = json.loads(dx("describe", job, "--json").stdout)
    assert (described["state"], described["output"]) == ("done", {"greeting": "from the asset"}), described
