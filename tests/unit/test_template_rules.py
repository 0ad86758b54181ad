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
    assert set(consumers) == {
        "IngestFunction",
        "ScanFunction",
        "PresetsFunction",
        "ExtractFunction",
        "OcrFunction",
        "CompleteFunction",
    }
    for name, spec in consumers.items():
        assert spec.reserved_concurrency is not None, name
        assert spec.reserved_concurrency >= sum(s.max_concurrency for s in spec.sqs_sources), name
        for source in spec.sqs_sources:  # each lane alone within the function's reservation
            assert source.max_concurrency <= spec.reserved_concurrency, (name, source.name)


def test_the_notifier_reads_each_stream_shard_in_parallel_batches_within_its_reservation() -> None:
    template = Template.load(ROOT / "template.yaml", parameters={"UseReservedConcurrency": "true"})
    notifier = template.functions()["NotifierFunction"]
    factors = {source.name: source.parallelization for source in notifier.stream_sources}
    assert factors == {"JobsStream": 3, "FilesStream": 3}
    # two shards of each stream at once, each at its factor, within the function's reservation
    assert notifier.reserved_concurrency is not None and notifier.reserved_concurrency >= 2 * sum(factors.values())


def test_every_lane_of_ingest_and_the_tasks_has_its_own_queue_weighted_high_first(template: Template) -> None:
    for logical in ("IngestFunction", "ScanFunction", "PresetsFunction", "ExtractFunction", "OcrFunction"):
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
        "byOpenHash": [("openHash", "HASH")],
        "byUploadDeadline": [("awaiting", "HASH"), ("uploadDeadline", "RANGE")],
        "byOwnerOpen": [("openOwner", "HASH"), ("createdAt", "RANGE")],
        "byState": [("state", "HASH"), ("updatedAt", "RANGE")],
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
    "ScanFunction": "scan",
    "PresetsFunction": "presets",
    "ExtractFunction": "extract",
    "OcrFunction": "ocr",
    "ApiFunction": "api",
    "PushFunction": "push",
    "NotifierFunction": "notifier",
    "CompleteFunction": "complete",
}
WORKERS = ("ScanFunction", "PresetsFunction", "ExtractFunction", "OcrFunction")


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
    # the notifier's on-failure queue takes stream records, not a work queue's messages; + 1: CompleteQueue
    assert len(work_queues(template)) == 16 and len(dead_letter_queues(template) - {"NotifierDLQ"}) == 16


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
    # + 1: the notifier's DLQ; + 2: any infected file, scan failures; 16: the lanes' queues and CompleteQueue
    assert len(found) == 2 * 16 + 16 + 1 + 2 + len(WORKERS) + len(SERVICES)
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


# ------------------------------------------------------------------ least privilege, access logs, origins (issue 15)

FUNCTIONS = (
    "IngestFunction",
    "ScanFunction",
    "SweeperFunction",
    "PresetsFunction",
    "ExtractFunction",
    "OcrFunction",
    "ApiFunction",
    "PushFunction",
    "NotifierFunction",
    "CompleteFunction",
)
# The WebSocket API's management endpoint (PostToConnection) on its one stage, as grants() names it.
CONNECTIONS = "PushApi/push/POST/@connections/*"
# Actions that take no resource-level permissions: the only ones a statement may grant on Resource "*".
RESOURCELESS = {
    "cloudwatch:GetMetricData",  # GET /queues: the age of each queue's oldest message; a lane's throughput
    "textract:DetectDocumentText",
    "textract:StartDocumentTextDetection",
    "textract:GetDocumentTextDetection",
}
LANES = ("High", "Normal", "Low")


def statements(template: Template, function: str) -> list[dict]:
    """Every statement of a function's Policies, resolved as CloudFormation would (conditions chosen)."""
    found = []
    for policy in template.resolve(template.resources[function]["Properties"].get("Policies", [])):
        assert isinstance(policy, dict) and set(policy) == {"Statement"}, (function, policy)
        found += policy["Statement"]
    return found


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def grants(template: Template, function: str) -> dict[str, set[str]]:
    """{resource: actions} of a function, resources named by logical id: ``JobsTable``,
    ``JobsTable/index/byOpenHash``, ``StoreBucket/files/*``, ``OcrLowQueue``; ``*`` for no resource."""
    arns = {
        template.get_att(logical, "Arn"): logical
        for logical in template.of_type("AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::SQS::Queue")
    }

    push_api = f"arn:aws:execute-api:{template.region}:{template.account_id}:{template.ref('PushApi')}/"

    def name(resource: str) -> str:
        if resource == "*":
            return resource
        if resource.startswith(push_api):
            return "PushApi/" + resource.removeprefix(push_api)
        (arn,) = [arn for arn in arns if resource == arn or resource.startswith(f"{arn}/")]
        return arns[arn] + resource.removeprefix(arn)

    out: dict[str, set[str]] = {}
    for statement in statements(template, function):
        assert statement["Effect"] == "Allow", (function, statement)
        for resource in as_list(statement["Resource"]):
            out.setdefault(name(resource), set()).update(as_list(statement["Action"]))
    return out


def queues(*concerns: str, dlq: bool = False) -> list[str]:
    return [f"{c}{lane}{kind}" for c in concerns for lane in LANES for kind in ("Queue", "DLQ")[: 2 if dlq else 1]]


def each(resources: list[str], *actions: str) -> dict[str, set[str]]:
    return {resource: set(actions) for resource in resources}


def merged(*grant_maps: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for grant_map in grant_maps:
        for resource, actions in grant_map.items():
            out.setdefault(resource, set()).update(actions)
    return out


STORED = ("files", "derived", "text")  # docpipe.storage.stored_prefixes: what a purge deletes
WORKER_TABLES = {
    "FilesTable": {"dynamodb:GetItem", "dynamodb:UpdateItem"},
    "JobsTable": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"},  # a settle's open jobs
    "JobsTable/index/byOpenHash": {"dynamodb:Query"},  # settle the open jobs of a hash
    "UsageTable": {"dynamodb:UpdateItem"},  # a job that ends gives its open place back
}
# What each function's code calls (handlers, services, and the layer code they use), on what.
LEAST_PRIVILEGE: dict[str, dict[str, set[str]]] = {
    "IngestFunction": {
        "UploadsBucket": {"s3:ListBucket"},
        "UploadsBucket/uploads/*": {"s3:GetObject", "s3:DeleteObject"},
        "StoreBucket": {"s3:ListBucket"},
        "StoreBucket/files/*": {"s3:PutObject", "s3:DeleteObject"},
        "StoreBucket/derived/*": {"s3:DeleteObject"},
        "StoreBucket/text/*": {"s3:DeleteObject"},
        "JobsTable": {"dynamodb:GetItem", "dynamodb:UpdateItem"},  # only the API creates jobs
        "FilesTable": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
        "UsageTable": {"dynamodb:UpdateItem"},
        **each(queues("Scan", "Presets", "Extract", "Ocr"), "sqs:SendMessage"),
        **each(queues("Ingest"), "sqs:ChangeMessageVisibility"),
    },
    "ScanFunction": {
        "StoreBucket": {"s3:ListBucket"},
        "StoreBucket/files/*": {"s3:GetObject", "s3:DeleteObject"},  # scanned; infected ones moved away
        "StoreBucket/quarantine/*": {"s3:PutObject", "s3:DeleteObject"},
        "StoreBucket/derived/*": {"s3:DeleteObject"},  # what a rescan finds made from infected bytes
        "StoreBucket/text/*": {"s3:DeleteObject"},
        "UploadsBucket": {"s3:ListBucket"},
        # a raw upload, deleted once GuardDuty's verdict on it is applied; written back for a retried scan
        "UploadsBucket/uploads/*": {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
        **WORKER_TABLES,
        "FilesTable": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},  # + infected SHA-256s
        **each(queues("Presets", "Extract", "Ocr"), "sqs:SendMessage"),  # the rest of a clean file's plan
        **each(queues("Scan"), "sqs:ChangeMessageVisibility"),
    },
    "SweeperFunction": {
        "JobsTable": {"dynamodb:GetItem", "dynamodb:UpdateItem"},
        "JobsTable/index/byUploadDeadline": {"dynamodb:Query"},
        "UsageTable": {"dynamodb:UpdateItem"},
        "UploadsBucket": {"s3:ListBucket"},
        "UploadsBucket/uploads/*": {"s3:GetObject"},
    },
    "PresetsFunction": {
        "StoreBucket": {"s3:ListBucket"},
        "StoreBucket/files/*": {"s3:GetObject"},
        "StoreBucket/derived/*": {"s3:PutObject"},
        **WORKER_TABLES,
        **each(queues("Presets"), "sqs:ChangeMessageVisibility"),
    },
    "ExtractFunction": {
        "StoreBucket": {"s3:ListBucket"},
        "StoreBucket/files/*": {"s3:GetObject"},
        "StoreBucket/text/*": {"s3:GetObject", "s3:PutObject"},
        **WORKER_TABLES,
        **each(queues("Extract"), "sqs:SendMessage", "sqs:ChangeMessageVisibility"),
        **each(queues("Ocr"), "sqs:SendMessage"),
    },
    "OcrFunction": {
        "StoreBucket": {"s3:ListBucket"},
        "StoreBucket/files/*": {"s3:GetObject"},
        "StoreBucket/text/*": {"s3:GetObject", "s3:PutObject"},
        **WORKER_TABLES,
        "UsageTable": {"dynamodb:GetItem", "dynamodb:UpdateItem"},  # and Textract's shared tokens and rate
        **each(queues("Ocr"), "sqs:ChangeMessageVisibility"),
        "*": RESOURCELESS - {"cloudwatch:GetMetricData"},  # Textract, the default OcrEngine
    },
    "ApiFunction": {
        "UploadsBucket": {"s3:ListBucket"},
        # the presigned POST and part URLs; a multipart upload's parts listed and aborted
        "UploadsBucket/uploads/*": {"s3:PutObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"},
        "StoreBucket": {"s3:ListBucket"},
        **each([f"StoreBucket/{prefix}/*" for prefix in STORED], "s3:GetObject", "s3:DeleteObject"),
        "JobsTable": {
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:DescribeTable",
        },
        **each(
            [f"JobsTable/index/{i}" for i in ("byOwner", "byOwnerHash", "byOwnerOpen", "byState")], "dynamodb:Query"
        ),
        "FilesTable": {
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",  # the file records of a page of jobs
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:DescribeTable",
        },
        "UsageTable": {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
        **merged(
            # presets, retries, redrives; GET /queues; a large multipart upload's completion
            each([*queues("Ingest", "Scan", "Presets", "Extract", "Ocr"), "CompleteQueue"], "sqs:SendMessage"),
            each(queues("Ingest", "Scan", "Presets", "Extract", "Ocr", dlq=True), "sqs:GetQueueAttributes"),
            each(  # POST /admin/dlq/redrive: SQS's move task, or receive, send and delete where it is missing
                [q for q in queues("Ingest", "Scan", "Presets", "Extract", "Ocr", dlq=True) if q.endswith("DLQ")],
                "sqs:StartMessageMoveTask",
                "sqs:ListMessageMoveTasks",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
            ),
        ),
        "*": {"cloudwatch:GetMetricData"},
    },
    "CompleteFunction": {  # joins a large multipart upload's parts; a failure ends the job and drops them
        "UploadsBucket": {"s3:ListBucket"},
        "UploadsBucket/uploads/*": {
            "s3:PutObject",  # CompleteMultipartUpload
            "s3:GetObject",  # HeadObject: completed by an earlier attempt
            "s3:ListMultipartUploadParts",
            "s3:AbortMultipartUpload",
        },
        "JobsTable": {"dynamodb:GetItem", "dynamodb:UpdateItem"},
        "UsageTable": {"dynamodb:UpdateItem"},
    },
    "PushFunction": {  # $connect records a connection (after counting the user's), $disconnect deletes it
        "ConnectionsTable": {"dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem"},
        "ConnectionsTable/index/byConnection": {"dynamodb:Query"},
    },
    "NotifierFunction": {  # reads jobs and files as GET /jobs/{id} does, never writes them; posts to connections
        "JobsTable": {"dynamodb:GetItem"},
        "FilesTable": {"dynamodb:GetItem"},
        **each([f"JobsTable/index/{i}" for i in ("byOpenHash", "byOwnerOpen")], "dynamodb:Query"),
        "ConnectionsTable": {"dynamodb:Query", "dynamodb:DeleteItem"},
        CONNECTIONS: {"execute-api:ManageConnections"},
        "*": {"cloudwatch:GetMetricData"},
    },
}


def test_every_function_is_granted_exactly_what_its_code_calls(template: Template) -> None:
    assert set(template.of_type("AWS::Serverless::Function")) == set(FUNCTIONS) == set(LEAST_PRIVILEGE)
    for function in FUNCTIONS:
        assert grants(template, function) == LEAST_PRIVILEGE[function], function


def test_textract_is_granted_only_when_it_is_the_ocr_engine() -> None:
    tesseract = Template.load(ROOT / "template.yaml", parameters={"OcrEngine": "tesseract"})
    assert "*" not in grants(tesseract, "OcrFunction")


def test_no_function_uses_a_crud_or_full_access_policy(template: Template) -> None:
    text = (ROOT / "template.yaml").read_text()
    assert not re.search(r"\w+(CrudPolicy|FullAccess)\b", text)
    for function in FUNCTIONS:
        props = template.resources[function]["Properties"]
        assert "Role" not in props and "ManagedPolicyArns" not in json.dumps(props), function
        for policy in template.resolve(props.get("Policies", [])):  # statements only, no SAM policy templates
            assert set(policy) == {"Statement"}, (function, policy)


def test_only_actions_without_resource_level_permissions_are_granted_on_every_resource(template: Template) -> None:
    for function in FUNCTIONS:
        for statement in statements(template, function):
            if "*" in as_list(statement["Resource"]):
                assert set(as_list(statement["Action"])) <= RESOURCELESS, (function, statement)


def test_no_arn_is_a_wildcard_over_names(template: Template) -> None:
    assert "${AWS::StackName}-*" not in (ROOT / "template.yaml").read_text()
    for function in FUNCTIONS:
        for statement in statements(template, function):
            for resource in as_list(statement["Resource"]):
                if resource == "*":
                    continue
                arn, _, path = resource.partition("/")
                assert "*" not in arn, (function, resource)
                if arn.startswith("arn:aws:execute-api:"):  # connections of the push API's stage, only
                    assert path == CONNECTIONS.removeprefix("PushApi/"), (function, resource)
                elif path.endswith("*"):  # S3 objects under one prefix of one bucket
                    assert arn.startswith("arn:aws:s3:::") and re.fullmatch(r"[a-z]+/\*", path), (function, resource)


def test_the_granted_prefixes_are_where_the_code_keeps_objects() -> None:
    from docpipe import storage, text_results

    digest = "a" * 64
    written = {
        storage.original_key(digest),
        storage.derived_key(digest, "thumbnail", "webp"),
        storage.text_key(digest),
        text_results.piece_key(digest, "ocr", 1),
        text_results.partial_key(digest),
    }
    assert {key.split("/")[0] for key in written} == set(STORED)
    assert {prefix.split("/")[0] for prefix in storage.stored_prefixes(digest)} == set(STORED)
    assert storage.upload_key("high", "u", "j", "a.pdf").startswith("uploads/")


def test_every_index_the_code_queries_is_declared_and_granted(template: Template) -> None:
    code = "\n".join(p.read_text() for p in (ROOT / "layers/docpipe/docpipe").rglob("*.py"))
    queried = set(re.findall(r"IndexName[\"']?\s*[:=]\s*[\"'](\w+)[\"']", code))
    declared = {
        i["IndexName"]
        for table in template.of_type("AWS::DynamoDB::Table").values()
        for i in table["Properties"].get("GlobalSecondaryIndexes", [])
    }
    granted = {r.split("/")[-1] for f in FUNCTIONS for r in grants(template, f) if "/index/" in r}
    assert queried and queried <= declared
    assert queried <= granted <= declared


def test_every_queue_is_encrypted_at_rest(template: Template) -> None:
    # checkov's CKV_AWS_27 counts only KMS keys (skipped in .checkov.yaml): this holds SSE-SQS instead.
    for logical, queue in template.of_type("AWS::SQS::Queue").items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, logical


def test_the_http_api_logs_every_request_as_json_to_a_log_group_with_retention(template: Template) -> None:
    settings = template.resources["HttpApi"]["Properties"]["AccessLogSettings"]
    (group, attribute) = settings["DestinationArn"]["Fn::GetAtt"]
    log_group = template.resources[group]
    assert (log_group["Type"], attribute) == ("AWS::Logs::LogGroup", "Arn")
    assert int(template.resolve(log_group["Properties"]["RetentionInDays"])) == 30
    fields = json.loads(template.resolve(settings["Format"]))
    assert fields == {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
        "integrationError": "$context.integrationErrorMessage",
        "sub": "$context.authorizer.claims.sub",  # the JWT authorizer's caller
    }


@pytest.mark.parametrize("stage", ["dev", "staging", "prod"])
def test_a_deployment_cannot_keep_the_local_origins(stage: str) -> None:
    parameters = Template.load(ROOT / "template.yaml").doc["Parameters"]
    assert "Default" not in parameters["Stage"]  # a deployment says what it is
    assert stage in parameters["Stage"]["AllowedValues"]
    refused = Template.load(ROOT / "template.yaml", parameters={"Stage": stage})
    mixed = Template.load(
        ROOT / "template.yaml", parameters={"Stage": stage, "AllowedOrigins": "http://localhost:8780"}
    )
    named = Template.load(
        ROOT / "template.yaml",
        parameters={"Stage": stage, "AllowedOrigins": "https://docs.example.com,http://localhost:8780"},
    )
    assert refused.rule_failures() and mixed.rule_failures()
    assert named.rule_failures() == []


def test_the_local_stack_keeps_its_default_origins() -> None:
    local = Template.load(ROOT / "template.yaml", parameters={"Stage": "local"})
    assert local.rule_failures() == []
    assert local.resolve({"Ref": "AllowedOrigins"}) == ["http://localhost:8780", "http://127.0.0.1:8780"]
