"""Page forms: they collect input and reuse the actions' own checks, so pages and the API agree."""

from django import forms

from dxweb.errors import DXError

from . import actions
from .models import Level, OrgMember

LEVEL_CHOICES = [(level.label, level.label) for level in Level if level != Level.NONE]
ROLE_CHOICES = OrgMember.LEVELS


def checked_by(check, value):
    """Run an action's check on `value`, turning its DXError into a form error."""
    try:
        return check(value)
    except DXError as err:
        raise forms.ValidationError(err.message) from None


def principal_id(value, default_prefix="user-"):
    """Accept `alice`, `user-alice` or `org-lab` and return the full ID."""
    value = value.strip()
    if value.startswith(("user-", "org-")):
        return value
    return default_prefix + value


class ProjectForm(forms.Form):
    name = forms.CharField(label="Name")
    summary = forms.CharField(label="Summary", required=False)

    def clean_name(self):
        return checked_by(actions.clean_name, self.cleaned_data["name"])


class NameForm(forms.Form):
    """A single name: a new folder, a renamed object or folder."""

    name = forms.CharField(label="Name")

    def clean_name(self):
        return checked_by(actions.clean_name, self.cleaned_data["name"])


class InviteForm(forms.Form):
    invitee = forms.CharField(label="User or org", help_text="A handle, user-<handle> or org-<handle>")
    level = forms.ChoiceField(label="Level", choices=LEVEL_CHOICES, initial="VIEW")

    def clean_invitee(self):
        return principal_id(self.cleaned_data["invitee"])


class OrgForm(forms.Form):
    handle = forms.CharField(
        label="Handle", help_text="Lowercase letters, digits, '.' or '_'; the org's ID is org-<handle>"
    )
    name = forms.CharField(label="Display name", required=False)

    def clean_name(self):
        name = self.cleaned_data["name"]
        return checked_by(actions.clean_name, name) if name else name


class OrgMemberForm(forms.Form):
    user = forms.CharField(label="User", help_text="A handle or user-<handle>")
    role = forms.ChoiceField(label="Role", choices=ROLE_CHOICES, initial=OrgMember.MEMBER)

    def clean_user(self):
        user_id = principal_id(self.cleaned_data["user"])
        if not user_id.startswith("user-"):
            raise forms.ValidationError("Only users can be members of an org")
        return user_id


class TokenForm(forms.Form):
    name = forms.CharField(label="Token name", max_length=100, initial="API token")

    def clean_name(self):
        return checked_by(actions.clean_name, self.cleaned_data["name"])


class EmailForm(forms.Form):
    email = forms.CharField(
        label="Email address",
        required=False,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "placeholder": "name@example.org"}),
        help_text="Where job notices are emailed; leave it empty to remove it.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_email(self):
        return checked_by(lambda value: actions.clean_email(self.user, value), self.cleaned_data["email"])


class NotifyForm(forms.Form):
    notify_in_app = forms.BooleanField(label="Show a notice here when a job I launched ends", required=False)
    notify_by_email = forms.BooleanField(label="Email me when a job I launched ends", required=False)


class SshKeyForm(forms.Form):
    # strip=False: the key is kept byte for byte, as `dx ssh` compares it with the local file.
    key = forms.CharField(
        label="SSH public key",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "placeholder": "ssh-ed25519 AAAA… you@laptop"}),
    )


# Data pages ------------------------------------------------------------------------


class TagsForm(forms.Form):
    """An object's tags, written comma-separated; the action's own checks apply to each."""

    tags = forms.CharField(
        label="Tags", required=False, help_text="Comma-separated, e.g. raw, sample_A", widget=forms.TextInput()
    )

    def clean_tags(self):
        tags = list(dict.fromkeys(t.strip() for t in self.cleaned_data["tags"].split(",") if t.strip()))
        return checked_by(actions.clean_tags, tags)


class PropertiesForm(forms.Form):
    """An object's properties, one key=value a line; a key left out is removed."""

    properties = forms.CharField(
        label="Properties",
        required=False,
        strip=False,
        help_text="One key=value a line",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
    )

    def clean_properties(self):
        properties = {}
        for line in self.cleaned_data["properties"].splitlines():
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise forms.ValidationError(f"Write each property as key=value: {line.strip()[:80]!r}")
            properties[key.strip()] = value.strip()
        return checked_by(actions.clean_properties, properties)


def properties_text(properties):
    return "\n".join(f"{key}={value}" for key, value in properties.items())


CLASS_CHOICES = [
    ("", "Any class"),
    ("file", "Files"),
    ("applet", "Applets"),
    ("workflow", "Workflows"),
    ("record", "Records"),
]


class SearchForm(forms.Form):
    """A project's data search (GET): every field optional, matched as /system/findDataObjects matches."""

    name = forms.CharField(
        label="Name", required=False, max_length=255, help_text="* matches any characters, ? one; e.g. *.fastq"
    )
    cls = forms.ChoiceField(label="Class", required=False, choices=CLASS_CHOICES)
    tag = forms.CharField(label="Tag", required=False, max_length=256)
    property = forms.CharField(label="Property", required=False, max_length=8192, help_text="key, or key=value")
    folder = forms.CharField(label="In folder", required=False, help_text="With its subfolders; empty: everywhere")

    def __init__(self, data=None, **kwargs):
        # The query string says `class`, which a form field cannot be called.
        if data is not None and "class" in data:
            data = data.copy()
            data["cls"] = data["class"]
        super().__init__(data, **kwargs)

    def clean_name(self):
        name = self.cleaned_data["name"]
        return checked_by(lambda v: actions._check_text(v, "The name", actions.MAX_NAME), name) if name else name

    def clean_tag(self):
        tag = self.cleaned_data["tag"]
        return checked_by(lambda v: actions.clean_tags([v])[0], tag) if tag else tag

    def clean_property(self):
        text = self.cleaned_data["property"]
        if not text:
            return None
        key, sep, value = text.partition("=")
        if not key.strip():
            raise forms.ValidationError("Write key, or key=value")
        key = checked_by(lambda k: actions._check_text(k, "A property key", actions.MAX_TAG), key.strip())
        if sep:
            checked_by(lambda v: actions._check_text(v, "A property value", 8192), value)
        # A key alone asks for objects that have it (findDataObjects' `{key: true}`).
        return {key: value if sep else True}

    def clean_folder(self):
        folder = self.cleaned_data["folder"]
        return checked_by(actions.clean_folder, folder) if folder else ""

    def body(self, project_id):
        """The /system/findDataObjects input these fields stand for."""
        data = self.cleaned_data
        scope = {"project": project_id}
        if data["folder"]:
            scope["folder"] = data["folder"]
        body = {"scope": scope, "describe": True}
        if data["name"]:
            body["name"] = {"glob": data["name"]}
        if data["cls"]:
            body["class"] = data["cls"]
        if data["tag"]:
            body["tags"] = data["tag"]
        if data["property"]:
            body["properties"] = data["property"]
        return body


class CopyForm(forms.Form):
    """Where a selection is copied: another project the user may upload to, and a folder there."""

    # The permission module decides on the project chosen: the list only offers the likely ones.
    project = forms.CharField(label="Project", widget=forms.Select())
    destination = forms.CharField(label="Folder", initial="/", help_text="e.g. /data/raw")
    parents = forms.BooleanField(label="Create the folder if it is missing", required=False, initial=True)

    def __init__(self, *args, projects=(), **kwargs):
        # Prefixed: on the Files page its fields share the selection's form with Move's.
        super().__init__(*args, prefix="copy", **kwargs)
        self.fields["project"].widget.choices = [(p.pk, f"{p.name} ({p.pk})") for p in projects]

    def clean_destination(self):
        return checked_by(actions.clean_folder, self.cleaned_data["destination"])
