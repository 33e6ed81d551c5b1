"""Page forms put an action's error next to the field it names (DXError.field), never by reading its message."""

import pytest

from dxweb.errors import InvalidInput
from dxweb.validation import get
from jobs.forms import AppletForm, LaunchForm, parse_properties, parse_tags
from jobs.specs import check_applet_specs, check_input
from projects.actions import clean_folder, clean_name

INPUT_SPEC = [{"name": "n", "class": "int"}, {"name": "reads", "class": "file"}]


def raised(check, *args):
    with pytest.raises(InvalidInput) as caught:
        check(*args)
    return caught.value


def launch_form():
    form = LaunchForm(INPUT_SPEC, {"folder": "/", "instance_type": "mem1_ssd1_x2", "priority": "normal"})
    assert form.is_valid(), form.errors
    return form


def test_the_checks_name_the_field_of_their_error():
    assert raised(check_input, INPUT_SPEC, {"n": "three"}).field == "input.n"
    assert raised(check_input, INPUT_SPEC, {"n": 3}).field == "input.reads"  # required
    assert raised(check_input, INPUT_SPEC, {"m": 3}).field == "input"  # unknown
    body = {"inputSpec": [{"name": "1x", "class": "int"}], "runSpec": {"interpreter": "bash", "code": ""}}
    assert raised(check_applet_specs, body).field == "inputSpec"
    body = {"outputSpec": [{"name": "x", "class": "int", "default": 1}], "runSpec": {"interpreter": "bash", "code": ""}}
    assert raised(check_applet_specs, body).field == "outputSpec"
    body = {"runSpec": {"interpreter": "bash", "code": "", "timeoutPolicy": {"*": {"hours": -1}}}}
    assert raised(check_applet_specs, body).field == "runSpec.timeoutPolicy"
    assert raised(check_applet_specs, {"runSpec": {"interpreter": "cobol", "code": ""}}).field == "runSpec.interpreter"
    assert raised(get, {"name": 3}, "name", str).field == "name"
    assert raised(clean_name, "a/b").field == "name"
    assert raised(clean_folder, "relative").field == "folder"


def test_a_run_error_goes_next_to_the_input_or_option_it_names():
    form = launch_form()
    form.add_action_error(InvalidInput("input \"n\": expected a value of class int, got 'x'", field="input.n"))
    form.add_action_error(InvalidInput("Unknown instance type 'big'", field="systemRequirements"))
    form.add_action_error(InvalidInput('"folder" must be an absolute path starting with "/"', field="folder"))
    form.add_action_error(InvalidInput("timeoutPolicy.main must be longer than zero", field="timeoutPolicy"))
    assert set(form.errors) == {"in_n", "instance_type", "folder", "timeout"}


def test_a_message_that_looks_like_a_field_does_not_choose_one():
    form = launch_form()
    # Worded like an input's error, but naming none: the top of the form.
    form.add_action_error(InvalidInput('input "n" of another job, in folder /x, timeout'))
    form.add_action_error(InvalidInput('"tags" must be an array of at most 100 strings', field="tags"))
    assert list(form.errors) == ["__all__"] and len(form.non_field_errors()) == 2


def test_an_applet_error_goes_next_to_the_spec_field_it_names():
    form = AppletForm({"name": "a", "interpreter": "bash", "code": "x"})
    assert form.is_valid(), form.errors
    for field in ("inputSpec", "outputSpec", "runSpec.code", "runSpec.interpreter", "runSpec.timeoutPolicy", "name"):
        form.add_action_error(InvalidInput(f"bad {field}", field=field))
    form.add_action_error(InvalidInput('"name" looks like a name error but names no field'))
    assert form.errors["input_spec"] == ["bad inputSpec"] and form.errors["timeout"] == ["bad runSpec.timeoutPolicy"]
    assert set(form.errors) == {"input_spec", "output_spec", "code", "interpreter", "timeout", "name", "__all__"}


def test_tags_and_properties_are_parsed_one_way():
    assert parse_tags(" a, b ,,c ") == ["a", "b", "c"] and parse_tags(None) == []
    assert parse_properties("k = v\n\nx=1=2\nbad\n=v") == (
        {"k": "v", "x": "1=2"},
        ["Write each property as key=value: 'bad'", "Write each property as key=value: '=v'"],
    )
