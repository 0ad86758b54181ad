"""Invariants of template.yaml that DESIGN.md requires, read through the local stack's own template reader."""

from __future__ import annotations

import pytest

from docpipe_local.template import Template
from tests.conftest import ROOT


def sources(template: Template):
    for spec in template.functions().values():
        for source in spec.sqs_sources:
            yield spec, source


def test_every_event_source_queue_has_a_dlq_after_three_receives(template: Template) -> None:
    queues = template.of_type("AWS::SQS::Queue")
    for _, source in sources(template):
        redrive = template.resolve(queues[source.queue]["Properties"]["RedrivePolicy"])
        assert int(redrive["maxReceiveCount"]) == 3, source.queue
        arns = {template.get_att(q, "Arn"): q for q in queues}
        assert redrive["deadLetterTargetArn"] in arns, source.queue
        assert arns[redrive["deadLetterTargetArn"]] != source.queue


def test_visibility_timeout_is_at_least_six_times_the_consumers_timeout(template: Template) -> None:
    queues = template.of_type("AWS::SQS::Queue")
    for spec, source in sources(template):
        visibility = int(template.resolve(queues[source.queue]["Properties"]["VisibilityTimeout"]))
        assert visibility >= 6 * spec.timeout, source.queue


def test_every_source_reports_partial_batch_failures(template: Template) -> None:
    assert all(source.report_failures for _, source in sources(template))


@pytest.mark.parametrize("ingest_concurrency", ["2", "10", "40"])
def test_reserved_concurrency_covers_the_sources_when_it_is_on(ingest_concurrency: str) -> None:
    parameters = {"UseReservedConcurrency": "true", "IngestConcurrency": ingest_concurrency}
    template = Template.load(ROOT / "template.yaml", parameters=parameters)
    consumers = {spec.logical: spec for spec, _ in sources(template)}
    assert set(consumers) == {"IngestFunction", "PresetsFunction", "ExtractFunction", "OcrFunction"}
    for name, spec in consumers.items():
        assert spec.reserved_concurrency is not None, name
        assert spec.reserved_concurrency >= sum(s.max_concurrency for s in spec.sqs_sources), name


def test_no_function_reserves_concurrency_when_it_is_off(template: Template) -> None:
    assert all(spec.reserved_concurrency is None for spec in template.functions().values())


def test_the_high_lane_gets_the_largest_share(template: Template) -> None:
    presets = {s.name: s.max_concurrency for s in template.function("PresetsFunction").sqs_sources}
    assert presets["High"] > presets["Normal"] > presets["Low"] >= 2


def test_uploads_notify_the_ingest_queue_and_stale_uploads_expire(template: Template) -> None:
    props = template.resources["UploadsBucket"]["Properties"]
    (notification,) = props["NotificationConfiguration"]["QueueConfigurations"]
    assert notification["Event"] == "s3:ObjectCreated:*"
    assert notification["Queue"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "uploads/"}]
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert rule["Prefix"] == "uploads/"


def test_derived_files_expire_after_seven_days(template: Template) -> None:
    (rule,) = template.resources["StoreBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert (rule["Prefix"], rule["ExpirationInDays"]) == ("derived/", 7)


def test_jobs_table_indexes_and_ttl(template: Template) -> None:
    props = template.resources["JobsTable"]["Properties"]
    indexes = {
        i["IndexName"]: [(k["AttributeName"], k["KeyType"]) for k in i["KeySchema"]]
        for i in props["GlobalSecondaryIndexes"]
    }
    assert indexes == {
        "byOwner": [("owner", "HASH"), ("createdAt", "RANGE")],
        "byOwnerHash": [("ownerHash", "HASH")],
        "byHash": [("hash", "HASH")],
    }
    declared = {a["AttributeName"] for a in props["AttributeDefinitions"]}
    assert {name for keys in indexes.values() for name, _ in keys} <= declared
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}


def test_functions_see_their_resources_by_name(template: Template) -> None:
    env = template.function("ApiFunction").environment(template)
    assert env["UPLOADS_BUCKET"] == "docpipe-local-uploads-123456789012-us-east-1"
    assert env["UPLOAD_URL_TTL_SECONDS"] == "900"  # the function's own, merged with Globals
    assert env["PRESETS_QUEUE_HIGH"].endswith("/docpipe-local-PresetsHighQueue")
