"""Fixture events name buckets of some stack, account and region; replay renames them to the running stack's."""

from __future__ import annotations

import json
from pathlib import Path

from docpipe_local.replay import for_stack, s3_objects
from docpipe_local.template import Template

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted((ROOT / "events").glob("*Function/*.json"))


def load(name: str) -> dict:
    return json.loads((ROOT / "events" / name).read_text())


def stack(name: str = "docpipe-prod", account: str = "000000000000", region: str = "eu-west-1") -> Template:
    return Template.load(ROOT / "template.yaml", stack_name=name, account_id=account, region=region)


def test_an_upload_event_names_the_uploads_bucket_of_the_running_stack() -> None:
    event = for_stack(load("IngestFunction/upload-text.json"), stack())

    body = json.loads(event["Records"][0]["body"])
    assert body["Records"][0]["s3"]["bucket"] == {
        "name": "docpipe-prod-uploads-000000000000-eu-west-1",
        "ownerIdentity": {"principalId": "EXAMPLE"},
        "arn": "arn:aws:s3:::docpipe-prod-uploads-000000000000-eu-west-1",
    }
    assert [key for _, key in s3_objects(event)] == [
        key for _, key in s3_objects(load("IngestFunction/upload-text.json"))
    ]


def test_s3s_test_event_names_the_running_stacks_bucket() -> None:
    event = for_stack(load("IngestFunction/s3-test-event.json"), stack(account="111122223333"))

    assert json.loads(event["Records"][0]["body"])["Bucket"] == "docpipe-prod-uploads-111122223333-eu-west-1"


def test_every_record_of_a_batch_is_renamed() -> None:
    event = for_stack(load("IngestFunction/duplicate-delivery.json"), stack())

    assert {bucket for bucket, _ in s3_objects(event)} == {"docpipe-prod-uploads-000000000000-eu-west-1"}


def test_a_bucket_that_is_none_of_the_templates_is_kept() -> None:
    event = load("IngestFunction/upload-text.json")
    body = json.loads(event["Records"][0]["body"])
    body["Records"][0]["s3"]["bucket"]["name"] = "someone-elses-bucket"
    event["Records"][0]["body"] = json.dumps(body)

    assert [bucket for bucket, _ in s3_objects(for_stack(event, stack()))] == ["someone-elses-bucket"]


def test_the_fixtures_as_written_are_the_embedded_stacks_own() -> None:
    for fixture in FIXTURES:
        event = json.loads(fixture.read_text())
        assert for_stack(event, stack("docpipe-local", "123456789012", "us-east-1")) == event, fixture.name
