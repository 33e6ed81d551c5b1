"""Records with the unmodified `dx` CLI and dxpy (0.417.1) against the real server."""

import json
import subprocess
import textwrap
from types import SimpleNamespace

import pytest

from tests.live import BIN, Dx

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def bench(live_server_proc, tmp_path_factory):
    """alice's project for this module, selected, with one uploaded file to link to."""
    live = live_server_proc
    dx = Dx(live, live.user("alice"), tmp_path_factory.mktemp("records"))
    project = dx("new", "project", "records", "--brief").stdout.strip()
    dx("select", project)
    (dx.workdir / "genome.fa").write_text(">chr1\nACGT\n")
    genome = dx("upload", str(dx.workdir / "genome.fa"), "--wait", "--brief").stdout.strip()
    return SimpleNamespace(dx=dx, project=project, genome=genome)


def describe(dx, path):
    return json.loads(dx("describe", path, "--json").stdout)


def test_dx_record_commands(bench):
    dx, genome = bench.dx, bench.genome
    details = json.dumps({"fasta": {"$dnanexus_link": genome}})
    record = dx(
        "new", "record", "/refs/hg38", "-p", "--type", "Genome", "--details", details, "--property", "b=38", "--brief"
    ).stdout.strip()
    assert record.startswith("record-")
    described = describe(dx, record)
    assert (described["class"], described["folder"], described["name"]) == ("record", "/refs", "hg38")
    assert (described["types"], described["properties"], described["state"]) == (["Genome"], {"b": "38"}, "open")
    assert described["links"] == [genome]
    human = dx("describe", record).stdout
    assert "Genome" in human and "open" in human

    assert json.loads(dx("get_details", record).stdout) == {"fasta": {"$dnanexus_link": genome}}
    dx("set_details", record, json.dumps({"fasta": {"$dnanexus_link": genome}, "build": 38}))
    assert json.loads(dx("get_details", "/refs/hg38").stdout)["build"] == 38
    dx("add_types", record, "Reference", "Indexed")
    dx("remove_types", record, "Indexed")
    assert describe(dx, record)["types"] == ["Genome", "Reference"]

    found = dx("find", "data", "--class", "record", "--type", "Reference", "--brief").stdout.split()
    assert [f.split(":")[-1] for f in found] == [record]
    assert dx("find", "data", "--class", "record", "--type", "Nope", "--brief").stdout.split() == []

    dx("close", record)
    assert describe(dx, record)["state"] == "closed"
    refused = dx("set_details", record, "{}", check=False)
    assert refused.returncode != 0 and "InvalidState" in refused.stderr and "open state" in refused.stderr
    assert dx("add_types", record, "X", check=False).returncode != 0

    closed = dx("new", "record", "sheet", "--close", "--details", "[1, 2]", "--brief").stdout.strip()
    assert describe(dx, closed)["state"] == "closed"
    dx("mkdir", "/moved")
    dx("mv", "sheet", "/moved/")
    assert describe(dx, closed)["folder"] == "/moved"
    other = dx("new", "project", "records copy", "--brief").stdout.strip()
    dx("cp", f"{bench.project}:/moved/sheet", f"{other}:/")
    assert json.loads(dx("get_details", f"{other}:/sheet").stdout) == [1, 2]
    dx("rm", f"{bench.project}:/moved/sheet")
    assert "sheet" not in dx("ls", f"{bench.project}:/moved").stdout
    assert describe(dx, f"{other}:/sheet")["id"] == closed

    copy = dx("new", "record", "copy", "--init", "/refs/hg38", "--tag", "t", "--visibility", "hidden", "--brief")
    described = describe(dx, copy.stdout.strip())
    assert (described["types"], described["tags"], described["hidden"]) == (["Genome", "Reference"], ["t"], True)
    assert described["details"]["build"] == 38 and described["folder"] == "/"
    hidden = dx("find", "data", "--class", "record", "--visibility", "hidden", "--brief").stdout.split()
    assert [f.split(":")[-1] for f in hidden] == [described["id"]]

    bad = dx("new", "record", "bad", "--details", '"text"', check=False)
    assert bad.returncode != 0


def test_dxpy_new_dxrecord_round_trip(bench):
    script = """
        import json, sys, dxpy
        genome = sys.argv[1]
        rec = dxpy.new_dxrecord(name="sheet", types=["SampleSheet"], details={"f": dxpy.dxlink(genome)},
                                tags=["t"], properties={"k": "v"}, folder="/sheets", parents=True)
        rec.add_types(["Extra"])
        rec.set_details({"f": dxpy.dxlink(genome, dxpy.PROJECT_CONTEXT_ID)})
        copy = dxpy.new_dxrecord(init_from=rec, name="copy", close=True)
        rec.close()
        here = dxpy.find_data_objects(classname="record", typename="SampleSheet", project=dxpy.PROJECT_CONTEXT_ID)
        found = [r["id"] for r in here]
        print(json.dumps({"rec": rec.describe(), "copy": copy.describe(), "details": copy.get_details(),
                          "found": found, "closed": rec._get_state()}))
    """
    result = subprocess.run(
        [str(BIN / "python"), "-c", textwrap.dedent(script), bench.genome],
        env={**bench.dx.env, "DX_PROJECT_CONTEXT_ID": bench.project},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    rec, copy = out["rec"], out["copy"]
    assert rec["types"] == ["SampleSheet", "Extra"] and rec["folder"] == "/sheets"
    assert (rec["tags"], rec["properties"]) == (["t"], {"k": "v"})
    assert copy["state"] == "closed" and copy["types"] == ["SampleSheet", "Extra"] and copy["name"] == "copy"
    assert out["details"] == {"f": {"$dnanexus_link": {"project": bench.project, "id": bench.genome}}}
    assert sorted(out["found"]) == sorted([rec["id"], copy["id"]])
    assert out["closed"] == "closed"
