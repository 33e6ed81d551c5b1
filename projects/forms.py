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
