"""samconfig.toml's environments (default, staging, prod) deploy parameters the template has, values it
accepts, and what each deployment must say for itself."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from docpipe.quotas import LIMIT_NAMES
from docpipe_local.template import Template

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "samconfig.toml").read_text())
ENVIRONMENTS = ("default", "staging", "prod")
# What every environment decides for itself rather than inheriting from the template's defaults.
DECIDED = {
    "Stage",
    "AllowedOrigins",
    "JwtIssuer",
    "JwtAudience",
    "UseReservedConcurrency",
    "OcrEngine",
    *LIMIT_NAMES,  # the quotas
}


def deploy(environment: str) -> dict:
    return dict(CONFIG[environment]["deploy"]["parameters"])


def overrides(environment: str) -> dict[str, str]:
    """parameter_overrides as `sam deploy` reads them: a list of NAME=VALUE, or one string of them."""
    raw = deploy(environment)["parameter_overrides"]
    items = raw if isinstance(raw, list) else raw.split()
    return dict(item.split("=", 1) for item in items)


def test_the_environments_are_default_staging_and_prod() -> None:
    assert {name for name, env in CONFIG.items() if isinstance(env, dict) and "deploy" in env} == set(ENVIRONMENTS)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_parameter_override_is_a_parameter_of_the_template(environment: str) -> None:
    declared = set(Template.load(ROOT / "template.yaml").doc["Parameters"])
    assert set(overrides(environment)) <= declared


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_environment_names_its_stack_region_capabilities_and_artifact_bucket(environment: str) -> None:
    settings = deploy(environment)

    assert re.fullmatch(r"docpipe-[a-z]+", settings["stack_name"])
    assert re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]", settings["region"])
    assert settings["capabilities"] == "CAPABILITY_IAM"  # the functions' roles have no names
    assert settings["resolve_s3"] is True


def test_the_environments_are_separate_stacks() -> None:
    assert len({deploy(env)["stack_name"] for env in ENVIRONMENTS}) == len(ENVIRONMENTS)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_environment_decides_its_stage_origins_identity_concurrency_ocr_and_quotas(environment: str) -> None:
    assert set(overrides(environment)) >= DECIDED


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_template_accepts_each_environments_values(environment: str) -> None:
    values = overrides(environment)
    template = Template.load(ROOT / "template.yaml", parameters=values, region=deploy(environment)["region"])

    for name, value in values.items():
        spec = template.doc["Parameters"][name]
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], name
        if spec["Type"] == "Number":
            assert float(value) >= float(spec.get("MinValue", float("-inf"))), name
            assert float(value) <= float(spec.get("MaxValue", float("inf"))), name
    assert values["Stage"] != "local"
    assert template.rule_failures() == []  # no deployment keeps the local page's origins


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_jwt_issuer_is_in_the_stacks_region(environment: str) -> None:
    region = deploy(environment)["region"]
    assert overrides(environment)["JwtIssuer"].startswith(f"https://cognito-idp.{region}.amazonaws.com/{region}_")


def test_production_reserves_concurrency() -> None:
    assert overrides("prod")["UseReservedConcurrency"] == "true"
