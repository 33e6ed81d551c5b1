"""Page forms of apps: the launch form (the applets' LaunchForm plus the project to run in) and the
developers' forms (publish, developers, authorized users). Each turns its fields into the body of the
call it stands for (jobs.apps.actions); the checks stay there."""

import re

from django import forms

from dxweb.errors import InvalidInput
from projects.actions import resolve_grantee

from ..forms import LaunchForm

NOT_LAUNCHABLE = "You cannot launch jobs in that project: pick one where you hold CONTRIBUTE"


class AppLaunchForm(LaunchForm):
    """A run of one app version: a field per inputSpec entry, the project to run in (one the user may
    launch jobs in), then the options of /app-x/run."""

    project = forms.ChoiceField(label="Project", help_text="Where the job runs and its outputs are placed")

    ERROR_FIELDS = {**LaunchForm.ERROR_FIELDS, "project": "project"}

    def __init__(self, input_spec, projects, *args, **kwargs):
        """`projects`: the projects the user may launch jobs in, the choices of `project`."""
        super().__init__(input_spec, *args, **kwargs)
        field = self.fields["project"]
        field.choices = [(p.pk, p.name) for p in projects]
        field.error_messages = {**field.error_messages, "invalid_choice": NOT_LAUNCHABLE}
        ids = [pk for pk, _ in field.choices]
        if self.project not in ids:
            self.project = ids[0] if ids else None
        field.initial = self.project

    def prefill(self, job):
        """Start from a job's launch (its input, options and project, if the user may still launch there)."""
        super().prefill(job)
        if job.project_id in [pk for pk, _ in self.fields["project"].choices]:
            self.project = self.initial["project"] = job.project_id

    def clean(self):
        # A typed file name or path is looked for in the project chosen (none: IDs only).
        self.project = self.cleaned_data.get("project") or None
        return super().clean()


# Principals as a person writes them: "bob", "user-bob", "org-lab", "PUBLIC" -----------------------

_HANDLE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def parse_principals(text, public=False):
    """The IDs written (comma- or space-separated): a bare handle is a user's (`bob` → `user-bob`, as dx
    writes it), `org-x` an org, and `PUBLIC` everyone where `public`. Raises forms.ValidationError."""
    ids, bad = [], []
    for word in re.split(r"[\s,]+", text or ""):
        if not word:
            continue
        if word.upper() == "PUBLIC":
            if not public:
                raise forms.ValidationError("PUBLIC can run an app, not develop it")
            ids.append("PUBLIC")
            continue
        lowered = word.lower()
        kind, _, handle = lowered.partition("-") if lowered.startswith(("user-", "org-")) else ("user", "", lowered)
        if not _HANDLE.match(handle):
            bad.append(word)
        else:
            ids.append(f"{kind}-{handle}")
    if bad:
        raise forms.ValidationError(f"Not a user or org: {', '.join(bad)}")
    if not ids:
        raise forms.ValidationError("Write at least one user or org")
    return list(dict.fromkeys(ids))


class PrincipalsForm(forms.Form):
    """Add or remove developers (users, orgs) or authorized users (users, orgs, PUBLIC) of an app."""

    ACTIONS = [("add", "Add"), ("remove", "Remove")]

    action = forms.ChoiceField(choices=ACTIONS, initial="add", widget=forms.HiddenInput)
    ids = forms.CharField(
        label="users or orgs",
        max_length=2000,
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "bob, org-lab"}),
    )

    def __init__(self, *args, public=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.public = public
        if public:
            self.fields["ids"].label = "users, orgs or PUBLIC"
            self.fields["ids"].widget.attrs["placeholder"] = "bob, org-lab, PUBLIC"

    def clean_ids(self):
        ids = parse_principals(self.cleaned_data["ids"], public=self.public)
        unknown = [ref for ref in ids if ref != "PUBLIC" and not _exists(ref)]
        if unknown:
            raise forms.ValidationError(f"No such user or org: {', '.join(unknown)}")
        return ids

    def clean(self):
        # The action is a hidden field: a bad one is said at the top of the form, not beside nothing.
        if self.errors.pop("action", None):
            raise forms.ValidationError("Choose whether to add or remove")
        return super().clean()


def _exists(ref):
    try:
        resolve_grantee(ref)
    except InvalidInput:
        return False
    return True


class PublishForm(forms.Form):
    make_default = forms.BooleanField(
        label="Make it the default version", required=False, initial=True, help_text="What app-NAME runs"
    )
