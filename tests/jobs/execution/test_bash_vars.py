"""The bash variables of a job's input: made by the runner (bash-vars.sh), as `dx-print-bash-vars` makes them."""

import json
from types import SimpleNamespace

import pytest

from jobs import actions
from jobs.execution import bash_vars
from jobs.models import Job
from projects import actions as project_actions
from projects.models import ApiToken, Container, DataObject, Level

# --- live: the runner's file against the real dx-print-bash-vars, inside a real job --------

# In the job: keep bash-vars.sh, run dx-print-bash-vars as the wrapper would have (without the
# variables the file already exported), and compare what each defines once evaluated by bash.
CODE = r"""
main() {
    vars=/opt/dnanexus/job/bash-vars.sh
    if [ ! -f "$vars" ]; then echo "no $vars" >&2; exit 3; fi
    cp "$vars" got.sh
    ro=writable
    if ! (echo "export injected=1" >> "$vars") 2>/dev/null; then ro=read-only; fi
    names=$(env -i /bin/bash -c ". $vars >/dev/null; compgen -e" | grep -vxE 'PWD|OLDPWD|SHLVL|_' | sort)
    unset_args=()
    for n in $names; do unset_args+=(-u "$n"); done
    env "${unset_args[@]}" dx-print-bash-vars > expected.sh 2> expected.err
    declare -p $names > seen.txt
    printf '. "$1" >/dev/null\nshift\ndeclare -p "$@"\n' > dump.sh
    env -i LANG="$LANG" /bin/bash dump.sh ./expected.sh $names > expected_seen.txt
    echo "$names" > names.txt
    python3 - "$ro" <<'EOF'
import json, sys
out = {key: open(path, encoding="utf-8").read() for key, path in [
    ("got", "got.sh"), ("expected", "expected.sh"), ("expected_err", "expected.err"),
    ("seen", "seen.txt"), ("expected_seen", "expected_seen.txt"), ("names", "names.txt")]}
out["ro"] = sys.argv[1]
json.dump(out, open("job_output.json", "w"))
EOF
}
"""

INPUT_SPEC = [
    {"name": "i", "class": "int"},
    {"name": "x", "class": "float"},
    {"name": "s", "class": "string"},
    {"name": "b", "class": "boolean"},
    {"name": "h", "class": "hash"},
    {"name": "reads", "class": "file", "patterns": ["*.fastq.gz", "*.fq", "r*"]},
    {"name": "odd", "class": "file"},
    {"name": "many", "class": "array:file", "patterns": ["*.bam", "*.tar.gz"]},
    {"name": "words", "class": "array:string"},
    {"name": "ints", "class": "array:int"},
    {"name": "missing_s", "class": "string", "optional": True},
    {"name": "missing_f", "class": "file", "optional": True},
    {"name": "missing_many", "class": "array:file", "optional": True},
    {"name": "with_default", "class": "int", "optional": True, "default": 7},
    {"name": "USER", "class": "string", "optional": True},  # in the job's environment: not exported
    {"name": "reads_name", "class": "string", "optional": True},  # taken before the file's reads_name
]
OUTPUT_SPEC = [
    {"name": n, "class": "string"} for n in ("got", "expected", "expected_err", "seen", "expected_seen", "names", "ro")
]
STRING = "spaces  and 'single' \"double\" $HOME ${x} `date` $(id) \\ back\nnew line\ttab ünïcödé 日本 *?[a] ;|&<>!#~%"
FILE_NAMES = {
    "reads": "reads 1.fastq.gz",
    "odd": 'it\'s a "$weird" `name`; (ü) & *.txt',
    "a": "a.bam",
    "bc": "b c.bam",
    "idx": "genome.tar.gz",
    "plain": "noextension",
    "dots": ".hidden.gz",
    "vcf": "calls.vcf.gz",
}


@pytest.mark.live
def test_the_runners_bash_vars_are_what_dx_print_bash_vars_prints_in_the_job(dx_as, tmp_path):
    dx = dx_as("alice")
    project = dx("new", "project", "bash vars", "--brief").stdout.strip()
    dx("select", project)
    files = {}
    for key, name in FILE_NAMES.items():
        local = tmp_path / "uploads" / key
        local.mkdir(parents=True)
        (local / name).write_text(f"{key}\n")
        files[key] = dx("upload", str(local / name), "--brief", "--wait").stdout.strip()
    app = tmp_path / "bash_vars"
    (app / "src").mkdir(parents=True)
    (app / "src" / "code.sh").write_text(CODE)
    (app / "dxapp.json").write_text(
        json.dumps(
            {
                "name": "bash_vars",
                "title": "bash vars",
                "dxapi": "1.0.0",
                "version": "0.0.1",
                "inputSpec": INPUT_SPEC,
                "outputSpec": OUTPUT_SPEC,
                "runSpec": {
                    "interpreter": "bash",
                    "file": "src/code.sh",
                    "distribution": "Ubuntu",
                    "release": "24.04",
                    "version": "0",
                },
            }
        )
    )
    dx("build", str(app))
    many = ["a", "bc", "idx", "plain", "dots", "vcf", "a", "bc", "idx", "plain", "a"]  # 11: indexes 00..10
    job_input = {
        "i": -42,
        "x": 2.5,
        "s": STRING,
        "b": True,
        "h": {"k": "v w", "n": [1, 2.5, True, None], "u": "é 'q'", "nested": {"deep": ["$x"]}},
        "reads": {"$dnanexus_link": files["reads"]},
        "odd": {"$dnanexus_link": {"project": project, "id": files["odd"]}},
        "many": [{"$dnanexus_link": files[k]} for k in many],
        "words": ["one", "two words", "", "it's", "$(nope)", "日本"],
        "ints": [0, -1, 12345678901],
        "USER": "not the user",
        "reads_name": "a string first",
    }
    watched = dx("run", "bash_vars", "--input-json", json.dumps(job_input), "-y", "--watch")
    job = json.loads(dx("find", "jobs", "--json").stdout)[0]
    described = json.loads(dx("describe", job["id"], "--json").stdout)
    assert described["state"] == "done", (described.get("failureMessage"), watched.stdout, watched.stderr)
    out = described["output"]
    assert out["ro"] == "read-only"
    assert out["got"] == out["expected"]  # byte for byte what dx-print-bash-vars prints
    assert out["seen"] == out["expected_seen"]  # and what bash makes of it, in the job's own environment
    names = set(out["names"].split())
    assert {
        "i",
        "x",
        "s",
        "b",
        "h",
        "words",
        "ints",
        "with_default",
        "reads",
        "reads_prefix",
        "reads_path",
        "odd",
        "odd_name",
        "odd_prefix",
        "odd_path",
        "many",
        "many_name",
        "many_prefix",
        "many_path",
    } <= names
    assert not names & {"missing_s", "missing_f", "missing_f_name", "missing_many", "USER"}
    # A few values, as bash sees them.
    assert 'declare -ax reads_prefix=([0]="")' in out["seen"]  # "r*" matches, with dxpy's empty tail
    assert 'declare -ax reads_path=([0]="/home/dnanexus/in/reads/reads 1.fastq.gz")' in out["seen"]
    assert '[10]="/home/dnanexus/in/many/10/a.bam"' in out["seen"]
    assert '[2]="genome"' in out["seen"] and '[4]=".hidden"' in out["seen"] and '[5]="calls"' in out["seen"]
    assert 'declare -x reads_name="a string first"' in out["seen"]
    assert 'declare -x i="-42"' in out["seen"] and 'declare -x with_default="7"' in out["seen"]
    # dx-print-bash-vars's warnings (stderr) are in the job's log, from the runner.
    warnings = out["expected_err"].splitlines()
    assert warnings == [
        "Creating environment variable (USER) would cause a name collision",
        "Creating environment variable (reads_name) would cause a name collision",
    ]
    for line in warnings:
        assert line in watched.stdout


# --- the cases left to dx-print-bash-vars in the job, and what the job's token may see -----------


def spec_job(job_input, function="main"):
    return SimpleNamespace(
        id="job-x",
        input=job_input,
        function=function,
        workspace_id=None,
        project_id=None,
        executable="applet-" + "a" * 24,
    )


@pytest.mark.parametrize(
    "job_input",
    [
        {"not-a-name": 1},
        {"ref": {"$dnanexus_link": {"job": "job-" + "a" * 24, "field": "out"}}},
        {"app": {"$dnanexus_link": "app-" + "a" * 24}},
        {"bad": [{"$dnanexus_link": "file-short"}]},
        {"bad": {"$dnanexus_link": {"id": "file-" + "a" * 24, "project": 5}}},
    ],
)
def test_inputs_dxpy_itself_must_judge_leave_the_variables_to_the_job(job_input):
    assert bash_vars.bash_vars(spec_job(job_input), "no token needed", []) is None


def test_values_are_quoted_as_dx_print_bash_vars_quotes_them():
    assert bash_vars._bash_value("it's $x") == "'it'\"'\"'s $x'"
    assert bash_vars._bash_value(["a b", 1, {"k": "é"}, None]) == "( 'a b' 1 '{\"k\": \"\\u00e9\"}' null )"
    assert bash_vars._bash_value([]) == "(  )"
    assert bash_vars._bash_value(False) == "false" and bash_vars._bash_value(2.0) == "2.0"


@pytest.mark.parametrize(
    "name, patterns, prefix",
    [
        ("x.bam", ["*.bam"], "x"),
        ("x.bwa-index.tar.gz", ["*.gz", "*.bwa-index.tar.gz"], "x"),
        ("food.sam", ["foo*.sam"], "food"),
        ("x.tar.gz", None, "x"),
        ("x.c", [], "x"),
        (".hidden.gz", None, ".hidden"),
        (".gz", None, ".gz"),
        ("reads", ["r*"], ""),  # dxpy's slice with an empty tail
    ],
)
def test_prefixes_follow_the_input_specs_patterns(name, patterns, prefix):
    assert bash_vars._prefix(name, patterns) == prefix


@pytest.fixture
def launched(alice):
    """A bash applet, a file in alice's project and one in another project of hers, and a job token."""
    project = project_actions.create_container(alice.user, "runs")
    other = project_actions.create_container(alice.user, "elsewhere")
    workspace = project_actions.create_container(None, "workspace", kind=Container.WORKSPACE)
    applet = actions.new_applet(
        alice.user,
        project,
        {
            "name": "a",
            "runSpec": {"interpreter": "bash", "code": "main() { true; }"},
            "inputSpec": [{"name": "f", "class": "file", "patterns": ["*.a.txt"]}],
        },
    )

    def new_file(container, name):
        return project_actions.new_object(alice.user, container, "file", name=name, state=DataObject.CLOSED).obj_id

    mine, theirs = new_file(project, "in project.txt"), new_file(other, "other project.txt")
    from projects.models import Placement

    Placement.objects.create(container=workspace, obj_id=mine, name="in workspace.a.txt")

    def run(job_input, function="main"):
        job = Job.objects.create(
            id="job-" + "j" * 24,
            name="j",
            applet=applet.obj,
            executable=applet.obj_id,
            spec=applet.obj.spec,
            project=project,
            workspace=workspace,
            function=function,
            launched_by=alice.user,
            input=job_input,
        )
        token, raw = ApiToken.issue(alice.user, "job token")
        token.scopes = {workspace.pk: int(Level.CONTRIBUTE), project.pk: int(Level.VIEW)}
        token.save()
        return bash_vars.bash_vars(job, raw, ["HOME"])

    return SimpleNamespace(run=run, mine=mine, theirs=theirs, project=project)


def test_file_names_are_the_ones_the_jobs_token_sees(launched):
    text, warnings = launched.run(
        {
            "f": {"$dnanexus_link": launched.mine},
            "g": [{"$dnanexus_link": {"project": launched.project.pk, "id": launched.mine}}],
        }
    )
    assert warnings == []
    assert text == (
        f'export f=( \'{{"$dnanexus_link": "{launched.mine}"}}\' )\n'
        "export f_name=( 'in workspace.a.txt' )\n"  # through the workspace, dxpy's default project
        "export f_prefix=( 'in workspace' )\n"  # the applet's *.a.txt
        "export f_path=( '/home/dnanexus/in/f/in workspace.a.txt' )\n"
        f'export g=( \'{{"$dnanexus_link": "{launched.mine}"}}\' )\n'
        "export g_name=( 'in project.txt' )\n"  # through the link's project
        "export g_prefix=( 'in project' )\n"  # no patterns for g: its extension goes
        "export g_path=( '/home/dnanexus/in/g/0/in project.txt' )\n"
    )


def test_a_file_the_jobs_token_cannot_see_is_left_to_dx_print_bash_vars(launched):
    assert launched.run({"f": {"$dnanexus_link": launched.theirs}}) is None


def test_a_collision_with_the_environment_is_a_warning_not_a_variable(launched):
    text, warnings = launched.run({"HOME": "x", "PWD": "y", "ok": "z"})
    assert text == "export ok=z\n"
    assert warnings == [
        "Creating environment variable (HOME) would cause a name collision",
        "Creating environment variable (PWD) would cause a name collision",
    ]


def test_a_subjob_ignores_the_input_specs_patterns(launched):
    text, _ = launched.run({"f": {"$dnanexus_link": launched.mine}}, function="other")
    assert "export f_prefix=( 'in workspace.a' )\n" in text  # less its extension only
