"""The unmodified dx CLI (dxpy 0.417.1) against the real server: the platform core's acceptance."""

import hashlib
import json
import os

import pytest

pytestmark = pytest.mark.live


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def alice_dx(dx_as):
    return dx_as("alice")


@pytest.fixture
def selected(alice_dx):
    """A fresh project alice created and selected with `dx new project` and `dx select`."""
    name = f"proj-{os.urandom(4).hex()}"
    project = alice_dx("new", "project", name, "--brief").stdout.strip()
    assert project.startswith("project-")
    assert f"Selected project {name}" in alice_dx("select", name).stdout
    return project


def test_whoami_prints_the_handle(alice_dx):
    assert alice_dx("whoami").stdout.strip() == "alice"
    assert alice_dx("whoami", "--id").stdout.strip() == "user-alice"


def test_mkdir_upload_ls_describe_download_cat_round_trip(alice_dx, selected, tmp_path):
    dx = alice_dx
    dx("mkdir", "-p", "/data/raw/2026")
    empty, small, big = tmp_path / "empty.txt", tmp_path / "small.txt", tmp_path / "big.bin"
    empty.write_bytes(b"")
    small.write_text("hello, dxweb\n")
    big.write_bytes(os.urandom(40 * 1024 * 1024))  # three 16 MiB parts on the wire
    ids = dx("upload", str(empty), str(small), "--wait", "--brief").stdout.split()
    big_id = dx("upload", str(big), "--path", "/data/raw/", "--wait", "--brief").stdout.strip()
    assert len(ids) == 2 and all(i.startswith("file-") for i in ids) and big_id.startswith("file-")

    listing = dx("ls").stdout.split()
    assert {"data/", "empty.txt", "small.txt"} <= set(listing)
    assert "big.bin" in dx("ls", "/data/raw").stdout and "2026/" in dx("ls", "/data/raw").stdout

    described = json.loads(dx("describe", "/data/raw/big.bin", "--json").stdout)
    assert described["id"] == big_id and described["state"] == "closed"
    assert described["size"] == 40 * 1024 * 1024 and described["folder"] == "/data/raw"
    assert "closed" in dx("describe", "small.txt").stdout

    dx("download", "/data/raw/big.bin", "-o", str(tmp_path / "big.out"))
    assert sha256(tmp_path / "big.out") == sha256(big)
    dx("download", "empty.txt", "-o", str(tmp_path / "empty.out"))
    assert (tmp_path / "empty.out").read_bytes() == b""
    assert dx("cat", "small.txt").stdout == "hello, dxweb\n"


def test_cat_of_a_multi_part_file_is_byte_exact(alice_dx, selected, tmp_path):
    payload = os.urandom(20 * 1024 * 1024 + 17)
    source = tmp_path / "two-parts.bin"
    source.write_bytes(payload)
    alice_dx("upload", str(source), "--wait", "--brief")
    out = alice_dx("cat", "two-parts.bin", text=False).stdout
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_mv_rm_and_rm_r(alice_dx, selected, tmp_path):
    dx = alice_dx
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    dx("mkdir", "-p", "/keep", "/gone/deeper")
    dx("upload", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--wait", "--brief")
    dx("upload", str(tmp_path / "b.txt"), "--path", "/gone/deeper/", "--wait", "--brief")

    dx("mv", "a.txt", "/keep/")
    assert "a.txt" in dx("ls", "/keep").stdout
    assert "a.txt" not in dx("ls", "/").stdout
    dx("mv", "/keep/a.txt", "/keep/renamed.txt")
    assert "renamed.txt" in dx("ls", "/keep").stdout
    dx("mv", "/keep", "/gone")
    assert "keep/" in dx("ls", "/gone").stdout

    dx("rm", "b.txt")
    assert "b.txt" not in dx("ls", "/").stdout
    dx("rm", "-r", "/gone")
    assert "gone/" not in dx("ls", "/").stdout
    assert dx("ls", "/gone", check=False).returncode != 0


def test_tag_and_set_properties(alice_dx, selected, tmp_path):
    dx = alice_dx
    (tmp_path / "t.txt").write_text("t")
    dx("upload", str(tmp_path / "t.txt"), "--wait", "--brief")
    dx("tag", "t.txt", "reviewed", "batch-7")
    dx("set_properties", "t.txt", "sample=NA12878", "lane=3")
    described = json.loads(dx("describe", "t.txt", "--json").stdout)
    assert described["tags"] == ["reviewed", "batch-7"]
    assert described["properties"] == {"sample": "NA12878", "lane": "3"}
    dx("untag", "t.txt", "batch-7")
    dx("unset_properties", "t.txt", "lane")
    described = json.loads(dx("describe", "t.txt", "--json").stdout)
    assert described["tags"] == ["reviewed"] and described["properties"] == {"sample": "NA12878"}


def test_invite_and_uninvite_control_what_bob_sees(alice_dx, dx_as, selected, tmp_path):
    bob = dx_as("bob")
    (tmp_path / "shared.txt").write_text("for bob\n")
    alice_dx("upload", str(tmp_path / "shared.txt"), "--wait", "--brief")

    refused = bob("ls", f"{selected}:/", check=False)
    assert refused.returncode != 0 and "could not be found" in refused.stderr

    assert "ACCEPTED" in alice_dx("invite", "user-bob", selected, "VIEW").stdout
    assert "shared.txt" in bob("ls", f"{selected}:/").stdout
    assert bob("cat", f"{selected}:/shared.txt").stdout == "for bob\n"

    too_low = bob("rm", f"{selected}:/shared.txt", check=False)
    assert too_low.returncode != 0 and "CONTRIBUTE permission is required" in too_low.stdout + too_low.stderr
    upload = bob("upload", str(tmp_path / "shared.txt"), "--path", f"{selected}:/", check=False)
    assert upload.returncode != 0 and "UPLOAD permission is required" in upload.stderr

    alice_dx("uninvite", "user-bob", selected)
    gone = bob("ls", f"{selected}:/", check=False)
    assert gone.returncode != 0 and "could not be found" in gone.stderr


def test_bad_input_comes_back_as_a_clear_error(alice_dx, selected):
    long_name = "x" * 300
    result = alice_dx("mkdir", f"/{long_name}", check=False)
    assert result.returncode != 0 and "at most 255 characters" in result.stdout + result.stderr
    result = alice_dx("invite", "user-nobody", selected, "VIEW", check=False)
    assert result.returncode != 0 and 'Expected key "invitee" of input' in result.stderr
    result = alice_dx("describe", "file-000000000000000000000000", check=False)
    assert result.returncode != 0
