"""The bash variables of a job's input, as `eval "$(dx-print-bash-vars)"` would define them.

Written by the runner, which has the job, its input and its applet at hand, instead of a Python
start-up, `import dxpy` and an API call per file inside every bash job. dx-print-bash-vars
(dxpy 0.417.1) reads $HOME/job_input.json and,
in input order, exports for each input that holds no file link its value, and then for each
input holding file links (alone, or in an array) four bash arrays: the links, `<name>_name`
(the files' names as the job's token describes them, "/" as "%2F"), `<name>_prefix` (the name
less the part matched by the input spec's `*` patterns, else less its extension, ".gz" and
one more) and `<name>_path` ($HOME/in/<name>/[<index>/]<file name>). Values are shell-quoted:
strings as they are, links as {"$dnanexus_link": "<id>"}, anything else as JSON. A variable
already in the environment (or defined before it) is not exported: a warning goes to stderr.
Whatever it would have to judge itself (a link of another class, an object the token cannot
see, a name that is no shell identifier...), and where it would fail, is left to it: no file.
"""

import fnmatch
import json
import logging
import os
import re
import shlex
import textwrap

from dxweb.errors import DXError
from jobs.models import Job
from projects.models import ApiToken, Level
from projects.permissions import Principal, access_object, holds

log = logging.getLogger(__name__)

HOME = "/home/dnanexus"

BASH_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The object links dxpy makes a handler for without an error (re.match: dxpy's own `$`), by class.
LINKED_OBJECT = re.compile(r"^(file|record|applet|workflow|database)-[0-9a-zA-Z]{24}$")
LINK_PROJECT = re.compile(r"^(project|container)-[0-9a-zA-Z]{24}$")
APPLET_ID = re.compile(r"^applet-[0-9a-zA-Z]{24}$")
# The variables the wrapper's bash exports besides the job's environment, which dx-print-bash-vars
# would see in os.environ.
SHELL_EXPORTS = ("PWD", "OLDPWD", "SHLVL", "_")
LONG_VARIABLE = 16 * 1024  # dx-print-bash-vars warns (on stdout, through echo) from this length on
WARNING_WIDTH = 78  # dxpy's fill() width when stdout is no terminal


class LeftToTheJob(Exception):
    """An input dx-print-bash-vars has to make the variables of itself (or fail on, as it would)."""


def bash_vars(job, token, env_names):
    """Return (the text dx-print-bash-vars would print for the job, its warnings), or None.

    None when the job should run dx-print-bash-vars itself (see above). `token` is the job's raw
    token: objects are looked up as the job would see them; `env_names` the names in its environment.
    """
    try:
        return _bash_vars(job, token, env_names)
    except LeftToTheJob as why:
        log.info("%s: dx-print-bash-vars makes the bash variables in the job (%s)", job.id, why)
    except Exception:  # noqa: BLE001 - the job can still make them itself
        log.exception("%s: could not make the bash variables; dx-print-bash-vars will in the job", job.id)
    return None


def _bash_vars(job, token, env_names):
    job_input = job.input
    if not isinstance(job_input, dict):
        raise LeftToTheJob("the input is not a JSON object")
    files, plain = {}, {}
    for key, value in job_input.items():
        if not BASH_NAME.fullmatch(key):
            raise LeftToTheJob(f"the input name {key!r} is no shell variable name")
        if isinstance(value, list):
            digits = len(str(len(value) - 1))
            found = [(_file_link(key, item), str(i).zfill(digits)) for i, item in enumerate(value)]
        else:
            found = [(_file_link(key, value), None)]
        found = [(link, subdir) for link, subdir in found if link is not None]
        if found:
            files[key] = found
        else:
            plain[key] = value
    principal = _job_principal(job, token)
    looked_up = {}
    for key, found in files.items():
        entries = []
        for (file_id, hint), subdir in found:
            hint = hint if hint is not None else job.workspace_id  # dxpy's default project: the workspace
            if (file_id, hint) not in looked_up:
                looked_up[file_id, hint] = _file_name(principal, file_id, hint)
            entries.append((file_id, looked_up[file_id, hint], subdir))
        files[key] = entries
    # dx-print-bash-vars reads the input spec's patterns after the input, whether files need them or not.
    patterns = _input_patterns(principal, job)

    variables, warnings = {}, []
    taken = set(env_names) | set(SHELL_EXPORTS)

    def define(name, value):
        if name in taken or name in variables:
            warnings.append(
                textwrap.fill(
                    f"Creating environment variable ({name}) would cause a name collision",
                    width=WARNING_WIDTH,
                    break_on_hyphens=False,
                )
            )
        else:
            variables[name] = value

    for key, value in plain.items():
        define(key, _bash_value(value))
    for key, entries in files.items():
        define(key, _bash_array([{"$dnanexus_link": file_id} for file_id, _, _ in entries]))
        define(f"{key}_name", _bash_array([name for _, name, _ in entries]))
        define(f"{key}_prefix", _bash_array([_prefix(name, patterns.get(key)) for _, name, _ in entries]))
        define(f"{key}_path", _bash_array([_input_path(key, subdir, name) for _, name, subdir in entries]))
    lines = []
    for name, value in variables.items():
        if len(value) >= LONG_VARIABLE:
            lines.append(f'echo "warning: variable {name} is long ({len(value)} bytes)"\n')
        lines.append(f"export {name}={value}\n")
    text = "".join(lines)
    if "\0" in text:
        raise LeftToTheJob("a value holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise LeftToTheJob("a value is no valid Unicode") from None
    return text, warnings


def _job_principal(job, token):
    """The job's token as the API would see it: its scopes only."""
    if Job.token.is_cached(job) and job.token is not None:  # the claim's own, as it made it
        row = (job.token.scopes, job.token.pk)
    else:
        row = ApiToken.objects.filter(digest=ApiToken.digest_of(token)).values_list("scopes", "pk").first()
    if row is None or row[0] is None or not job.launched_by.is_active:
        raise LeftToTheJob("the job's token is not usable")
    scopes = {cid: Level(level) for cid, level in row[0].items()}
    return Principal(user=job.launched_by, scopes=scopes, token_id=row[1], job_id=job.id)


def _visible(principal, object_id, hint):
    """The placement the job's token would describe `object_id` through (the `project` hint first)."""
    try:
        return access_object(principal, object_id, Level.VIEW, project=hint)
    except DXError as err:
        raise LeftToTheJob(f"{object_id} cannot be described with the job's token: {err}") from None


def _file_link(key, value):
    """(file id, project hint or None) of a link to a file, None for any other value."""
    if not (isinstance(value, dict) and "$dnanexus_link" in value):
        return None
    link = value["$dnanexus_link"]
    if isinstance(link, str):
        object_id, hint = link, None
    elif isinstance(link, dict) and ("id" in link or "job" in link):
        if "id" not in link:
            raise LeftToTheJob(f"{key} holds a job-based object reference")
        object_id, hint = link["id"], link.get("project")
        if hint is not None and not (isinstance(hint, str) and LINK_PROJECT.match(hint)):
            raise LeftToTheJob(f"{key} links to a malformed project ID")
    else:
        return None  # no link to dxpy: a value like any other
    match = LINKED_OBJECT.match(object_id) if isinstance(object_id, str) else None
    if match is None:
        raise LeftToTheJob(f"{key} holds a link dxpy makes no data object handler for")
    return (object_id, hint) if match.group(1) == "file" else None


def _file_name(principal, file_id, hint):
    """The file's name as the job would describe it (through `hint`), made a file name as dxpy does."""
    placement = _visible(principal, file_id, hint)
    spec = placement.obj.spec if isinstance(placement.obj.spec, dict) else {}
    name = spec.get("name", placement.name)  # describe's name (an object's spec overrides its fields)
    if not isinstance(name, str) or name in (".", ".."):
        raise LeftToTheJob(f"{file_id}'s name {name!r} cannot be a file name")
    return name.replace("/", "%2F")


def _input_patterns(principal, job):
    """{input name: its legal `patterns` (with a "*")}, from the applet as the job's token describes it."""
    if not holds(principal, job.project_id, Level.VIEW):
        raise LeftToTheJob("the job's token cannot describe the job")
    if job.function != "main":
        return {}  # subjobs: dx-print-bash-vars ignores the input spec
    if not isinstance(job.executable, str) or not APPLET_ID.match(job.executable):
        raise LeftToTheJob(f"the executable {job.executable!r} is not an applet")
    if job.workspace_id in (principal.scopes or {}) and isinstance(job.spec, dict):
        # The applet as the token describes it through the workspace, where its launch placed it:
        # the job's frozen copy of its spec, read without a query.
        spec = job.spec
    else:
        placement = _visible(principal, job.executable, job.workspace_id)
        spec = placement.obj.spec if isinstance(placement.obj.spec, dict) else {}
    input_spec = spec.get("inputSpec")
    if input_spec is None:
        return {}
    if not isinstance(input_spec, list):
        raise LeftToTheJob("the applet's inputSpec is not a list")
    patterns = {}
    for entry in input_spec:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise LeftToTheJob("an inputSpec entry is not a JSON object with a name")
        if "patterns" in entry:
            given = entry["patterns"]
            if isinstance(given, str):
                given = list(given)  # dxpy iterates over whatever it is given
            if not isinstance(given, list) or not all(isinstance(p, str) for p in given):
                raise LeftToTheJob("an inputSpec entry's patterns are not strings")
            patterns[entry["name"]] = [p for p in given if "*" in p]
    return patterns


def _prefix(name, patterns):
    """The file name less what the shortest match of a `*` pattern leaves, else less its extension."""
    best = None
    for pattern in patterns or ():
        if fnmatch.fnmatch(name, pattern):
            tail = pattern.rpartition("*")[2]
            candidate = name[: -len(tail)]  # dxpy's slice: an empty tail leaves nothing
            if best is None or len(candidate) < len(best):
                best = candidate
    if best is not None:
        return best
    stem, ext = os.path.splitext(name)
    if ext == ".gz":
        stem = os.path.splitext(stem)[0]
    return stem


def _input_path(key, subdir, name):
    """Where dx-download-all-inputs puts the file: $HOME/in/<input>/[<index>/]<name>."""
    return os.path.join(HOME, "in", key, subdir, name) if subdir is not None else os.path.join(HOME, "in", key, name)


def _bash_word(value):
    if isinstance(value, str):
        return shlex.quote(value)
    return shlex.quote(json.dumps(value))


def _bash_value(value):
    return _bash_array(value) if isinstance(value, list) else _bash_word(value)


def _bash_array(values):
    return "( {} )".format(" ".join(_bash_word(v) for v in values))


def write_bash_vars(job, token, env, meta):
    """Write the job's bash variables to meta/bash-vars.sh if bash_vars() makes them.

    Return (its path or None, the lines dx-print-bash-vars would have written to stderr).
    """
    made = bash_vars(job, token, env.keys())
    if made is None:
        return None, []
    text, warnings = made
    path = meta / "bash-vars.sh"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o444)
    return path, [line for warning in warnings for line in warning.splitlines()]
