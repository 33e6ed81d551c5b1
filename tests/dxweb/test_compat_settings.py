"""The region settings as the environment gives them: DXWEB_REGION is always among DXWEB_REGIONS."""

import json
import subprocess
import sys

import pytest

from .test_deploy_settings import ROOT, environment

SHOW = (
    "from django.conf import settings; import json; print(json.dumps([settings.DXWEB_REGION, settings.DXWEB_REGIONS]))"
)


def regions(tmp_path, **overrides):
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {SHOW}"],
        cwd=ROOT,
        env=environment(tmp_path, **overrides),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({}, ["aws:us-east-1", ["aws:us-east-1"]]),
        ({"DXWEB_REGION": "local"}, ["local", ["local"]]),
        ({"DXWEB_REGIONS": "aws:us-east-1,azure:westus"}, ["aws:us-east-1", ["aws:us-east-1", "azure:westus"]]),
        (
            {"DXWEB_REGION": "azure:westus", "DXWEB_REGIONS": "aws:us-east-1"},
            ["azure:westus", ["azure:westus", "aws:us-east-1"]],
        ),
    ],
)
def test_region_settings_from_the_environment(tmp_path, overrides, expected):
    assert regions(tmp_path, **overrides) == expected
