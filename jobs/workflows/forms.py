"""Page forms of the workflow builder and the workflow launch form: each turns its fields into the body
of the API call it stands for (jobs.workflows.editing, analyses); the checks stay there."""

from django import forms

from ..forms import LaunchForm, input_error, parse_input

TEXT = {"autocomplete": "off"}


class NewWorkflowForm(forms.Form):
    name = forms.CharField(label="Name", max_length=255, widget=forms.TextInput(attrs=TEXT))
    title = forms.CharField(label="Title", required=False, max_length=255)
    folder = forms.CharField(label="Folder", initial="/", help_text="Where the workflow is kept")
    output_folder = forms.CharField(label="Output folder", required=False, help_text="Where its analyses put outputs")

    def body(self, project_id):
        data = self.cleaned_data
        body = {"project": project_id, "name": data["name"], "folder": data["folder"] or "/", "parents": True}
        if data["title"]:
            body["title"] = data["title"]
        if data["output_folder"]:
            body["outputFolder"] = data["output_folder"]
        return body


class EditForm(forms.Form):
    """Every builder form carries the editVersion the page showed: an edit made meanwhile elsewhere
    (another tab, `dx`) makes this one stale, and it is refused instead of undoing that edit."""

    edit_version = forms.IntegerField(widget=forms.HiddenInput)


class AddStageForm(EditForm):
    applet = forms.ChoiceField(label="Applet")
    name = forms.CharField(label="Stage name", required=False, help_text="Shown on the graph; no '.'")
    folder = forms.CharField(
        label="Output folder", required=False, help_text="Relative to the analysis folder, or /absolute"
    )

    def __init__(self, applets, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["applet"].choices = [(p.obj_id, f"{p.name} ({p.obj_id})") for p in applets]

    def body(self):
        data = self.cleaned_data
        body = {"executable": data["applet"], "editVersion": data["edit_version"]}
        for key in ("name", "folder"):
            if data[key]:
                body[key] = data[key]
        return body


class StageForm(EditForm):
    stage = forms.CharField(widget=forms.HiddenInput)


class RenameStageForm(StageForm):
    name = forms.CharField(label="Stage name", required=False)
    folder = forms.CharField(label="Output folder", required=False)

    def body(self):
        data = self.cleaned_data
        change = {"name": data["name"] or None, "folder": data["folder"] or None}
        return {"editVersion": data["edit_version"], "stages": {data["stage"]: change}}


class BindForm(StageForm):
    """Bind one input of a stage to a value (or a file), or to an earlier stage's output."""

    KINDS = [("value", "a value or file"), ("output", "an earlier stage's output"), ("unbind", "nothing (unbind)")]
    field = forms.CharField(label="Input")
    kind = forms.ChoiceField(label="Bind to", choices=KINDS, initial="value")
    value = forms.CharField(
        label="Value", required=False, strip=False, help_text="A file ID for files; one value per line for arrays"
    )
    output = forms.CharField(label="Output", required=False, help_text="<stage ID>.<output field>")

    def __init__(self, input_specs, *args, **kwargs):
        """`input_specs`: {stage ID: {input name: its inputSpec entry}} of the workflow."""
        super().__init__(*args, **kwargs)
        self.input_specs = input_specs

    def clean(self):
        data = super().clean()
        spec = self.input_specs.get(data.get("stage"), {}).get(data.get("field"))
        if spec is None:
            self.add_error("field", "Pick an input of this stage")
            return data
        if data.get("kind") == "value":
            text = data.get("value") or ""
            if not text.strip():
                self.add_error("value", "Write a value (or choose to unbind the input)")
            else:
                try:
                    data["bound"] = parse_input(spec, text)
                except (ValueError, TypeError) as err:
                    self.add_error("value", input_error(spec, err))
        elif data.get("kind") == "output":
            source, dot, output = (data.get("output") or "").partition(".")
            if not dot:
                self.add_error("output", "Pick an output of an earlier stage")
            else:
                data["bound"] = {"$dnanexus_link": {"stage": source, "outputField": output}}
        else:
            data["bound"] = None
        return data

    def body(self):
        data = self.cleaned_data
        change = {"input": {data["field"]: data["bound"]}}
        return {"editVersion": data["edit_version"], "stages": {data["stage"]: change}}


class MoveStageForm(StageForm):
    new_index = forms.IntegerField(min_value=0)

    def body(self):
        data = self.cleaned_data
        return {"editVersion": data["edit_version"], "stage": data["stage"], "newIndex": data["new_index"]}


class RemoveStageForm(StageForm):
    def body(self):
        return {"editVersion": self.cleaned_data["edit_version"], "stage": self.cleaned_data["stage"]}


class WorkflowLaunchForm(LaunchForm):
    """A run of a workflow: a field per input no stage binds, grouped by stage, and the run's options.
    An instance type left blank keeps each stage's own."""

    ERROR_FIELDS = {"systemRequirements": "instance_type", "folder": "folder"}

    def __init__(self, input_spec, *args, **kwargs):
        super().__init__(input_spec, *args, **kwargs)
        self.fields["instance_type"].choices = [("", "Each stage's own"), *self.fields["instance_type"].choices]
        self.fields["instance_type"].initial = ""
        self.fields["instance_type"].required = False
        self.fields["name"].label = "Analysis name"
        del self.fields["timeout"]

    def clean(self):
        self.cleaned_data.setdefault("timeout", "")
        return super().clean()

    def groups(self, stages):
        """[(stage, [its input fields])], in stage order, the stages that have a field here."""
        fields = self.input_fields()
        return [
            (stage, found)
            for stage in stages
            if (found := [f for f in fields if f.field.spec["name"].startswith(stage["id"] + ".")])
        ]

    def body(self, project_id, workflow_id):
        body = super().body(project_id, workflow_id)
        if not self.cleaned_data["instance_type"]:
            body.pop("systemRequirements")
        return body
