"""Invariants of template.yaml that DESIGN.md requires, read through the local stack's own template reader."""

from __future__ import annotations

import json
import re

import pytest

from docpipe.worker import MAX_RECEIVES
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
        assert int(redrive["maxReceiveCount"]) == MAX_RECEIVES == 3, source.queue  # the workers count receives too
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


def test_reserved_concurrency_covers_the_sources_when_it_is_on() -> None:
    template = Template.load(ROOT / "template.yaml", parameters={"UseReservedConcurrency": "true"})
    consumers = {spec.logical: spec for spec, _ in sources(template)}
    assert set(consumers) == {"IngestFunction", "PresetsFunction", "ExtractFunction", "OcrFunction"}
    for name, spec in consumers.items():
        assert spec.reserved_concurrency is not None, name
        assert spec.reserved_concurrency >= sum(s.max_concurrency for s in spec.sqs_sources), name
        for source in spec.sqs_sources:  # each lane alone within the function's reservation
            assert source.max_concurrency <= spec.reserved_concurrency, (name, source.name)


def test_every_lane_of_ingest_and_the_tasks_has_its_own_queue_weighted_high_first(template: Template) -> None:
    for logical in ("IngestFunction", "PresetsFunction", "ExtractFunction", "OcrFunction"):
        lanes = {s.name: s.max_concurrency for s in template.function(logical).sqs_sources}
        assert set(lanes) == {"High", "Normal", "Low"}, logical
        assert lanes["High"] >= lanes["Normal"] >= lanes["Low"], logical


def test_quota_parameters_have_a_min_value_and_zero_means_unlimited(template: Template) -> None:
    from docpipe.quotas import LIMIT_NAMES

    parameters = template.doc["Parameters"]
    for name in LIMIT_NAMES:
        assert parameters[name]["Type"] == "Number" and parameters[name]["MinValue"] == 0, name
        assert int(parameters[name]["Default"]) > 0, name
    for name in ("ApiThrottlingBurstLimit", "ApiThrottlingRateLimit", "ApiConcurrency"):
        assert parameters[name]["MinValue"] >= 1, name


def test_the_api_is_throttled_and_sees_every_limit(template: Template) -> None:
    from docpipe.config import LIMIT_VARIABLES

    routes = template.resources["HttpApi"]["Properties"]["DefaultRouteSettings"]
    assert routes == {
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
    }
    env = template.function("ApiFunction").env_template
    assert {env[variable]["Ref"] for variable in LIMIT_VARIABLES.values()} == set(LIMIT_VARIABLES)


def test_no_function_reserves_concurrency_when_it_is_off(template: Template) -> None:
    assert all(spec.reserved_concurrency is None for spec in template.functions().values())


def test_the_high_lane_gets_the_largest_share(template: Template) -> None:
    presets = {s.name: s.max_concurrency for s in template.function("PresetsFunction").sqs_sources}
    assert presets["High"] > presets["Normal"] > presets["Low"] >= 2


def test_each_lanes_uploads_notify_its_ingest_queue_and_stale_uploads_expire(template: Template) -> None:
    props = template.resources["UploadsBucket"]["Properties"]
    routes = {
        n["Filter"]["S3Key"]["Rules"][0]["Value"]: n["Queue"]["Fn::GetAtt"][0]
        for n in props["NotificationConfiguration"]["QueueConfigurations"]
        if n["Event"] == "s3:ObjectCreated:*"
    }
    assert routes == {
        "uploads/high/": "IngestHighQueue",
        "uploads/normal/": "IngestNormalQueue",
        "uploads/low/": "IngestLowQueue",
    }
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
        "byUploadDeadline": [("awaiting", "HASH"), ("uploadDeadline", "RANGE")],
    }
    declared = {a["AttributeName"] for a in props["AttributeDefinitions"]}
    assert {name for keys in indexes.values() for name, _ in keys} <= declared
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}


def test_functions_see_their_resources_by_name(template: Template) -> None:
    env = template.function("ApiFunction").environment(template)
    assert env["UPLOADS_BUCKET"] == "docpipe-local-uploads-123456789012-us-east-1"
    assert env["UPLOAD_URL_TTL_SECONDS"] == "900"  # the function's own, merged with Globals
    assert env["PRESETS_QUEUE_HIGH"].endswith("/docpipe-local-PresetsHighQueue")


# ------------------------------------------------------------------ observability (issue 5)

SERVICES = {
    "IngestFunction": "ingest",
    "PresetsFunction": "presets",
    "ExtractFunction": "extract",
    "OcrFunction": "ocr",
    "ApiFunction": "api",
}
WORKERS = ("PresetsFunction", "ExtractFunction", "OcrFunction")


def work_queues(template: Template) -> set[str]:
    return {q for q, r in template.of_type("AWS::SQS::Queue").items() if "RedrivePolicy" in r["Properties"]}


def dead_letter_queues(template: Template) -> set[str]:
    return set(template.of_type("AWS::SQS::Queue")) - work_queues(template)


def alarms(template: Template) -> dict[str, dict]:
    """Every alarm's properties, resolved as CloudFormation would."""
    return {k: template.resolve(v["Properties"]) for k, v in template.of_type("AWS::CloudWatch::Alarm").items()}


def queue_alarms(template: Template, queue: str, metric: str) -> list[dict]:
    name = template.get_att(queue, "QueueName")
    return [
        a
        for a in alarms(template).values()
        if a.get("Namespace") == "AWS/SQS"
        and a.get("MetricName") == metric
        and a.get("Dimensions") == [{"Name": "QueueName", "Value": name}]
    ]


def metric_stats(alarm: dict) -> dict[str, dict]:
    """A metric-math alarm's inputs by id: {id: Metric}."""
    return {m["Id"]: m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m}


def returned_expression(alarm: dict) -> str:
    (returned,) = [m for m in alarm["Metrics"] if m.get("ReturnData", True)]
    return returned["Expression"]


def rate(expression: str, **values: float) -> float:
    """Evaluate a metric-math rate for given sums (FILL(x, 0) of a present value is the value)."""
    python = re.sub(r"FILL\((\w+), 0\)", r"\1", expression)
    return eval(python, {"IF": lambda condition, then, otherwise: then if condition else otherwise}, dict(values))


def test_each_function_names_its_own_service_in_the_docpipe_namespace(template: Template) -> None:
    for logical, service in SERVICES.items():
        env = template.function(logical).environment(template)
        assert (env["POWERTOOLS_SERVICE_NAME"], env["POWERTOOLS_METRICS_NAMESPACE"]) == (service, "Docpipe"), logical
    assert template.doc["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "docpipe"


def test_the_work_queues_are_the_event_sources(template: Template) -> None:
    assert work_queues(template) == {source.queue for _, source in sources(template)}
    assert len(work_queues(template)) == 12 and len(dead_letter_queues(template)) == 12


def test_every_work_queue_alarms_on_its_depth_over_100(template: Template) -> None:
    for queue in work_queues(template):
        (alarm,) = queue_alarms(template, queue, "ApproximateNumberOfMessagesVisible")
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", "100"), queue


def test_every_work_queue_alarms_on_its_oldest_message_over_30_seconds(template: Template) -> None:
    for queue in work_queues(template):
        (alarm,) = queue_alarms(template, queue, "ApproximateAgeOfOldestMessage")
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", "30"), queue


def test_every_dlq_alarms_as_soon_as_it_holds_a_message(template: Template) -> None:
    for dlq in dead_letter_queues(template):
        (alarm,) = queue_alarms(template, dlq, "ApproximateNumberOfMessagesVisible")
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1), dlq
        assert alarm["EvaluationPeriods"] == 1, dlq


def test_queue_thresholds_follow_their_parameters() -> None:
    template = Template.load(
        ROOT / "template.yaml", parameters={"AlarmQueueDepth": "500", "AlarmOldestMessageSeconds": "120"}
    )
    (depth,) = queue_alarms(template, "OcrLowQueue", "ApproximateNumberOfMessagesVisible")
    (age,) = queue_alarms(template, "OcrLowQueue", "ApproximateAgeOfOldestMessage")
    assert (depth["Threshold"], age["Threshold"]) == ("500", "120")


@pytest.mark.parametrize("worker", WORKERS)
def test_each_worker_alarms_when_over_5_percent_of_its_tasks_fail(template: Template, worker: str) -> None:
    service = template.function(worker).environment(template)["POWERTOOLS_SERVICE_NAME"]
    matching = [
        a
        for a in alarms(template).values()
        if {m["MetricName"] for m in metric_stats(a).values()} == {"TaskFailed", "TaskSucceeded"}
        and all(m["Dimensions"] == [{"Name": "service", "Value": service}] for m in metric_stats(a).values())
    ]
    (alarm,) = matching
    assert {m["Namespace"] for m in metric_stats(alarm).values()} == {"Docpipe"}
    ids = {m["MetricName"]: i for i, m in metric_stats(alarm).items()}
    expression = returned_expression(alarm)
    assert rate(expression, **{ids["TaskFailed"]: 1, ids["TaskSucceeded"]: 19}) == 5.0
    assert rate(expression, **{ids["TaskFailed"]: 10, ids["TaskSucceeded"]: 0}) == 100.0
    # fewer than AlarmFailureMinCount (10) settled tasks: no rate to alarm on
    assert rate(expression, **{ids["TaskFailed"]: 1, ids["TaskSucceeded"]: 1}) == 0
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", "5")
    assert template.doc["Parameters"]["AlarmFailureRatePercent"]["Default"] == 5


@pytest.mark.parametrize("function", SERVICES)
def test_each_function_alarms_when_over_5_percent_of_its_invocations_fail(template: Template, function: str) -> None:
    name = template.function(function).name
    (alarm,) = [
        a
        for a in alarms(template).values()
        if {m["Namespace"] for m in metric_stats(a).values()} == {"AWS/Lambda"}
        and all(m["Dimensions"] == [{"Name": "FunctionName", "Value": name}] for m in metric_stats(a).values())
    ]
    ids = {m["MetricName"]: i for i, m in metric_stats(alarm).items()}
    assert set(ids) == {"Errors", "Invocations"}
    assert rate(returned_expression(alarm), **{ids["Errors"]: 1, ids["Invocations"]: 20}) == 5.0
    assert rate(returned_expression(alarm), **{ids["Errors"]: 3, ids["Invocations"]: 9}) == 0  # under 10
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", "5")


def test_the_failure_rate_alarms_minimum_count_follows_its_parameter() -> None:
    template = Template.load(ROOT / "template.yaml", parameters={"AlarmFailureMinCount": "50"})
    rates = [returned_expression(a) for a in alarms(template).values() if "Expression" in str(a.get("Metrics"))]
    assert len(rates) == len(WORKERS) + len(SERVICES)
    assert all(">= 50," in expression for expression in rates)


def test_alarms_treat_missing_data_as_fine_and_are_named_after_the_stack() -> None:
    found = alarms(Template.load(ROOT / "template.yaml", stack_name="prod-docs"))
    assert len(found) == 2 * 12 + 12 + len(WORKERS) + len(SERVICES)
    assert all(a["TreatMissingData"] == "notBreaching" for a in found.values())
    names = [a["AlarmName"] for a in found.values()]
    assert all(n.startswith("prod-docs-") for n in names) and len(set(names)) == len(names)


def test_alarms_notify_only_when_a_topic_is_given() -> None:
    topic = "arn:aws:sns:us-east-1:123456789012:docpipe-ops"
    silent = alarms(Template.load(ROOT / "template.yaml"))
    loud = alarms(Template.load(ROOT / "template.yaml", parameters={"AlarmTopicArn": topic}))
    assert not any("AlarmActions" in a or "OKActions" in a for a in silent.values())
    assert all(a["AlarmActions"] == a["OKActions"] == [topic] for a in loud.values())


def dashboard_rows(template: Template) -> list[list]:
    """Every metric row of the dashboard, with CloudWatch's "." (same as the row above) filled in."""
    (dashboard,) = template.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.loads(template.resolve(dashboard["Properties"]["DashboardBody"]))
    rows = []
    for widget in body["widgets"]:
        previous: list = []
        for row in widget["properties"]["metrics"]:
            row = [previous[i] if v == "." else v for i, v in enumerate(row)]
            rows.append(row)
            previous = row
    return rows


def test_the_dashboard_shows_depth_and_age_of_every_work_queue_and_every_dlq(template: Template) -> None:
    shown = {(r[1], r[3]) for r in dashboard_rows(template) if r[0] == "AWS/SQS" and r[2] == "QueueName"}
    for queue in work_queues(template):
        name = template.get_att(queue, "QueueName")
        assert {("ApproximateNumberOfMessagesVisible", name), ("ApproximateAgeOfOldestMessage", name)} <= shown
    for dlq in dead_letter_queues(template):
        assert ("ApproximateNumberOfMessagesVisible", template.get_att(dlq, "QueueName")) in shown


def test_the_dashboard_shows_task_outcomes_durations_and_waits_of_every_worker(template: Template) -> None:
    shown = {(r[1], r[3]) for r in dashboard_rows(template) if r[0] == "Docpipe" and r[2] == "service"}
    for worker in WORKERS:
        service = SERVICES[worker]
        for metric in ("TaskSucceeded", "TaskFailed", "TaskRetried", "TaskSkipped", "TaskDuration", "QueueWait"):
            assert (metric, service) in shown, (metric, service)
    assert {("UploadsRequested", "api"), ("UploadsIngested", "ingest"), ("UploadsDeduplicated", "ingest")} <= shown


def test_the_dashboard_shows_errors_throttles_and_concurrency_of_every_function(template: Template) -> None:
    shown = {(r[1], r[3]) for r in dashboard_rows(template) if r[0] == "AWS/Lambda" and r[2] == "FunctionName"}
    for function in SERVICES:
        for metric in ("Errors", "Throttles", "ConcurrentExecutions"):
            assert (metric, template.function(function).name) in shown, (metric, function)


def test_an_output_links_to_the_dashboard(template: Template) -> None:
    url = template.resolve(template.doc["Outputs"]["DashboardUrl"]["Value"])
    (logical,) = template.of_type("AWS::CloudWatch::Dashboard")
    assert url == (
        "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1"
        f"#dashboards/dashboard/{template.resolve({'Ref': logical})}"
    )
