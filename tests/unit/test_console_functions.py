"""The console's Functions table lists what the API's ``MONITORED_FUNCTIONS`` names (``Settings.functions``):
every function of the template must be among them, so a new function shows up there with its throughput
and failure rate."""

from __future__ import annotations

from docpipe.config import Settings
from docpipe_local.template import Template


def test_the_api_monitors_every_function_of_the_template(template: Template) -> None:
    # given the API's environment as the template sets it (Lambda adds the function's own name)
    api = template.functions()["ApiFunction"]
    env = {**api.environment(template), "AWS_LAMBDA_FUNCTION_NAME": template.physical_name("ApiFunction")}

    # when the API reads which functions to report
    monitored = Settings.from_env(env).functions

    # then each function of the template is there once, under its concern's name
    names = {template.physical_name(logical) for logical in template.functions()}
    assert sorted(monitored.values()) == sorted(names)
    assert {"ingest", "scan", "presets", "extract", "ocr", "sweeper", "complete", "notifier", "push", "api"} == set(
        monitored
    )
