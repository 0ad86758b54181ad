"""The local stack's template reader: intrinsic functions, parameters, conditions and SAM function specs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from docpipe.config import LIMIT_VARIABLES
from docpipe_local.template import HttpRoute, SqsSource, Template, TemplateError
from tests.conftest import ROOT

GLOBAL_VARIABLES = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "UPLOADS_BUCKET",
    "STORE_BUCKET",
    "JOBS_TABLE",
    "FILES_TABLE",
    "USAGE_TABLE",
    "MAX_UPLOAD_BYTES",
    "JOB_TTL_DAYS",
    "DEDUPE_SCOPE",
    "SCAN_QUEUE_HIGH",
    "SCAN_QUEUE_NORMAL",
    "SCAN_QUEUE_LOW",
    "SCAN_ENGINE",
    "RESCAN_AFTER_DAYS",
    "PRESETS_QUEUE_HIGH",
    "PRESETS_QUEUE_NORMAL",
    "PRESETS_QUEUE_LOW",
    "EXTRACT_QUEUE_HIGH",
    "EXTRACT_QUEUE_NORMAL",
    "EXTRACT_QUEUE_LOW",
    "OCR_QUEUE_HIGH",
    "OCR_QUEUE_NORMAL",
    "OCR_QUEUE_LOW",
}

# A small template for the resolver's edge cases: one of each resource kind the local stack names.
SMALL = """
Parameters:
  Name: {Type: String, Default: plain}
  Size: {Type: Number, Default: 5}
  Origins: {Type: CommaDelimitedList, Default: "a, b ,c"}
  Required: {Type: String}
  Mode: {Type: String, Default: dev}
Conditions:
  IsProd: !Equals [!Ref Mode, prod]
  IsDev: !Not [!Condition IsProd]
  ProdAndDev: !And [!Condition IsProd, !Condition IsDev]
  ProdOrDev: !Or [!Condition IsProd, !Condition IsDev]
Resources:
  Bucket: {Type: AWS::S3::Bucket}
  NamedBucket:
    Type: AWS::S3::Bucket
    Properties: {BucketName: !Sub "${Name}-bucket"}
  Queue: {Type: AWS::SQS::Queue}
  Table: {Type: AWS::DynamoDB::Table}
  Topic: {Type: AWS::SNS::Topic}
"""


def small(tmp_path: Path, text: str = SMALL, **kwargs) -> Template:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(text))
    return Template.load(path, **kwargs)


# ------------------------------------------------------------------ Ref: parameters and pseudo parameters


def test_ref_to_a_parameter_gives_its_default_as_a_string(template: Template) -> None:
    assert template.resolve({"Ref": "LogLevel"}) == "INFO"
    assert template.resolve({"Ref": "ApiConcurrency"}) == "50"  # Number parameters are strings, as in CFN


def test_parameter_overrides_replace_the_defaults() -> None:
    template = Template.load(ROOT / "template.yaml", parameters={"LogLevel": "DEBUG", "JobTtlDays": "3"})
    env = template.function("ApiFunction").environment(template)
    assert (env["POWERTOOLS_LOG_LEVEL"], env["JOB_TTL_DAYS"]) == ("DEBUG", "3")


def test_a_comma_delimited_list_parameter_is_a_stripped_list(template: Template, tmp_path: Path) -> None:
    assert template.resolve({"Ref": "AllowedOrigins"}) == ["http://localhost:8780", "http://127.0.0.1:8780"]
    assert small(tmp_path).resolve({"Ref": "Origins"}) == ["a", "b", "c"]
    assert small(tmp_path, parameters={"Origins": "x,y"}).resolve({"Ref": "Origins"}) == ["x", "y"]


def test_a_parameter_without_default_must_be_passed(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="--parameter Required=VALUE"):
        small(tmp_path).resolve({"Ref": "Required"})
    assert small(tmp_path, parameters={"Required": "given"}).resolve({"Ref": "Required"}) == "given"


def test_ref_to_an_unknown_name_is_an_error(template: Template) -> None:
    with pytest.raises(TemplateError, match="NoSuchThing"):
        template.resolve({"Ref": "NoSuchThing"})


def test_pseudo_parameters_describe_the_local_stack(template: Template) -> None:
    refs = {
        name: template.resolve({"Ref": f"AWS::{name}"})
        for name in ("StackName", "Region", "AccountId", "Partition", "URLSuffix", "StackId")
    }
    assert refs == {
        "StackName": "docpipe-local",
        "Region": "us-east-1",
        "AccountId": "123456789012",
        "Partition": "aws",
        "URLSuffix": "amazonaws.com",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/docpipe-local/local",
    }


def test_pseudo_parameters_follow_the_stack_identity() -> None:
    template = Template.load(ROOT / "template.yaml", stack_name="other", region="eu-west-1", account_id="999")
    assert template.physical_name("UploadsBucket") == "other-uploads-999-eu-west-1"
    assert (
        template.resolve({"Fn::GetAtt": ["IngestHighQueue", "Arn"]})
        == "arn:aws:sqs:eu-west-1:999:other-IngestHighQueue"
    )


# ------------------------------------------------------------------ names and attributes of resources


def test_resources_get_physical_names_from_the_stack_or_their_own_name_property(tmp_path: Path) -> None:
    template = small(tmp_path, stack_name="MyStack")
    assert template.physical_name("Bucket") == "mystack-bucket"  # bucket names are lower case
    assert template.physical_name("NamedBucket") == "plain-bucket"
    assert template.physical_name("Queue") == "MyStack-Queue"


def test_ref_and_getatt_give_each_kind_its_cloudformation_value(tmp_path: Path) -> None:
    template = small(tmp_path)
    assert template.resolve({"Ref": "Queue"}) == "https://sqs.us-east-1.amazonaws.com/123456789012/docpipe-local-Queue"
    assert template.resolve({"Ref": "Table"}) == "docpipe-local-Table"
    assert template.resolve({"Fn::GetAtt": ["Queue", "QueueName"]}) == "docpipe-local-Queue"
    assert template.resolve({"Fn::GetAtt": ["Bucket", "Arn"]}) == "arn:aws:s3:::docpipe-local-bucket"
    assert (
        template.resolve({"Fn::GetAtt": "Table.Arn"})
        == "arn:aws:dynamodb:us-east-1:123456789012:table/docpipe-local-Table"
    )


def test_an_attribute_unknown_before_provisioning_is_an_error(tmp_path: Path) -> None:
    template = small(tmp_path)
    with pytest.raises(TemplateError, match=r"Topic\.TopicName"):
        template.resolve({"Fn::GetAtt": ["Topic", "TopicName"]})
    with pytest.raises(TemplateError, match="GetAtt of unknown resource"):
        template.resolve({"Fn::GetAtt": ["Nowhere", "Arn"]})


def test_provisioned_attributes_win_over_the_defaults(tmp_path: Path) -> None:
    template = small(tmp_path)
    template.attributes["Queue"] = {"Ref": "http://localhost:4566/queue/q", "Arn": "arn:local:q"}
    assert template.resolve({"Ref": "Queue"}) == "http://localhost:4566/queue/q"
    assert template.resolve({"Fn::Sub": "${Queue.Arn}"}) == "arn:local:q"
    assert template.resolve({"Fn::GetAtt": ["Queue", "QueueName"]}) == "docpipe-local-Queue"  # not provisioned


# ------------------------------------------------------------------ Fn::Sub


def test_sub_replaces_pseudo_parameters(template: Template) -> None:
    props = template.resources["UploadsBucket"]["Properties"]
    assert template.resolve(props["BucketName"]) == "docpipe-local-uploads-123456789012-us-east-1"


def test_sub_replaces_a_resource_attribute(template: Template) -> None:
    (statement,) = template.resources["UploadsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert template.resolve(statement["Resource"]) == [
        "arn:aws:s3:::docpipe-local-uploads-123456789012-us-east-1",
        "arn:aws:s3:::docpipe-local-uploads-123456789012-us-east-1/*",
    ]


def test_sub_replaces_a_parameter_and_a_resource_ref(template: Template) -> None:
    assert template.resolve({"Fn::Sub": "${LogLevel}/${JobsTable}"}) == "INFO/docpipe-local-JobsTable"


def test_sub_keeps_a_bang_escaped_name_literally(template: Template) -> None:
    assert template.resolve({"Fn::Sub": "${!Literal}-${AWS::Region}-${!Queue.Arn}"}) == (
        "${Literal}-us-east-1-${Queue.Arn}"
    )


def test_sub_with_a_variable_map_prefers_its_variables(template: Template) -> None:
    value = {"Fn::Sub": ["${Region}:${Table}", {"Region": "here", "Table": {"Ref": "FilesTable"}}]}
    assert template.resolve(value) == "here:docpipe-local-FilesTable"


def test_the_short_form_tags_parse_to_the_long_form(tmp_path: Path) -> None:
    template = small(
        tmp_path,
        SMALL
        + """
  Uses:
    Type: AWS::SQS::QueuePolicy
    Properties:
      Short: !GetAtt Queue.Arn
      Sub: !Sub ["${X}", {X: !Ref Name}]
      Join: !Join ["-", [!Ref Name, !Ref Size]]
""",
    )
    props = template.resources["Uses"]["Properties"]
    assert props["Short"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert template.resolve(props) == {
        "Short": "arn:aws:sqs:us-east-1:123456789012:docpipe-local-Queue",
        "Sub": "plain",
        "Join": "plain-5",
    }


# ------------------------------------------------------------------ other functions


def test_join_select_and_split(tmp_path: Path) -> None:
    template = small(tmp_path)
    assert template.resolve({"Fn::Join": [",", {"Ref": "Origins"}]}) == "a,b,c"
    assert template.resolve({"Fn::Select": [1, {"Ref": "Origins"}]}) == "b"
    assert template.resolve({"Fn::Select": ["0", {"Fn::Split": [":", "x:y:z"]}]}) == "x"


def test_conditions_combine_with_not_and_or(tmp_path: Path) -> None:
    dev, prod = small(tmp_path), small(tmp_path, parameters={"Mode": "prod"})
    assert [dev.condition(c) for c in ("IsProd", "IsDev", "ProdAndDev", "ProdOrDev")] == [False, True, False, True]
    assert [prod.condition(c) for c in ("IsProd", "IsDev", "ProdAndDev", "ProdOrDev")] == [True, False, False, True]


def test_if_picks_the_branch_of_its_condition(tmp_path: Path) -> None:
    value = {"Fn::If": ["IsProd", {"Ref": "Size"}, "none"]}
    assert small(tmp_path).resolve(value) == "none"
    assert small(tmp_path, parameters={"Mode": "prod"}).resolve(value) == "5"


def test_an_unsupported_function_is_an_error(template: Template) -> None:
    with pytest.raises(TemplateError, match="Fn::FindInMap is not supported"):
        template.resolve({"Fn::FindInMap": ["Map", "a", "b"]})


# ------------------------------------------------------------------ AWS::NoValue


def test_novalue_drops_a_property(template: Template) -> None:
    value = {"Keep": 1, "Drop": {"Ref": "AWS::NoValue"}}
    assert template.resolve(value) == {"Keep": 1}


def test_novalue_drops_a_list_entry(template: Template) -> None:
    value = ["a", {"Fn::If": ["ReserveConcurrency", "b", {"Ref": "AWS::NoValue"}]}, "c"]
    assert template.resolve(value) == ["a", "c"]


def test_an_if_to_novalue_drops_the_property_only_when_its_condition_is_false() -> None:
    value = {"Reserved": {"Fn::If": ["ReserveConcurrency", {"Ref": "ApiConcurrency"}, {"Ref": "AWS::NoValue"}]}}
    off = Template.load(ROOT / "template.yaml")
    on = Template.load(ROOT / "template.yaml", parameters={"UseReservedConcurrency": "true"})
    assert off.resolve(value) == {}
    assert on.resolve(value) == {"Reserved": "50"}


# ------------------------------------------------------------------ reserved concurrency (Fn::If on a condition)


def test_ingest_has_no_reserved_concurrency_by_default(template: Template) -> None:
    assert template.function("IngestFunction").reserved_concurrency is None


def test_ingest_reserves_the_sum_of_its_lanes_when_asked() -> None:
    template = Template.load(ROOT / "template.yaml", parameters={"UseReservedConcurrency": "true"})
    spec = template.function("IngestFunction")
    assert spec.reserved_concurrency == sum(source.max_concurrency for source in spec.sqs_sources) == 11


def test_reserved_api_concurrency_follows_its_parameter() -> None:
    template = Template.load(
        ROOT / "template.yaml", parameters={"UseReservedConcurrency": "true", "ApiConcurrency": "25"}
    )
    assert template.function("ApiFunction").reserved_concurrency == 25


def test_functions_without_the_property_never_reserve() -> None:
    template = Template.load(ROOT / "template.yaml", parameters={"UseReservedConcurrency": "true"})
    assert template.function("SweeperFunction").reserved_concurrency is None


# ------------------------------------------------------------------ Globals


def test_api_function_merges_its_own_variables_with_the_globals(template: Template) -> None:
    env = template.function("ApiFunction").environment(template)
    limits = set(LIMIT_VARIABLES.values())
    ingest = {"INGEST_QUEUE_HIGH", "INGEST_QUEUE_NORMAL", "INGEST_QUEUE_LOW"}
    own = {
        "MULTIPART_THRESHOLD_BYTES",
        "MULTIPART_COMPLETE_INLINE_BYTES",  # larger multipart uploads are completed by CompleteFunction
        "COMPLETE_QUEUE",
        "UPLOAD_URL_TTL_SECONDS",
        "UPLOAD_GRACE_SECONDS",
        "DOWNLOAD_URL_TTL_SECONDS",
        "ADMIN_GROUP",
        "ADMIN_GROUP_CLAIM",
        "MONITORED_FUNCTIONS",  # GET /admin/metrics
        "PUSH_URL",  # GET /config
    }
    assert set(env) == GLOBAL_VARIABLES | own | ingest | limits
    assert env["UPLOAD_URL_TTL_SECONDS"] == "900"
    assert env["INGEST_QUEUE_LOW"] == "https://sqs.us-east-1.amazonaws.com/123456789012/docpipe-local-IngestLowQueue"
    assert env["STORE_BUCKET"] == "docpipe-local-store-123456789012-us-east-1"
    assert env["JOBS_TABLE"] == "docpipe-local-JobsTable"
    assert env["PRESETS_QUEUE_LOW"] == "https://sqs.us-east-1.amazonaws.com/123456789012/docpipe-local-PresetsLowQueue"


def test_a_function_whose_own_variables_override_globals_adds_no_names(template: Template) -> None:
    env = template.function("IngestFunction").environment(template)
    assert set(env) == GLOBAL_VARIABLES
    assert env["POWERTOOLS_SERVICE_NAME"] == "ingest"  # its own, over the Globals' "docpipe"


def test_environment_values_are_strings(template: Template) -> None:
    env = template.function("PresetsFunction").environment(template)
    assert env["MAX_IMAGE_PIXELS"] == "100000000"
    assert all(isinstance(v, str) for v in env.values())


def test_a_functions_own_variable_overrides_a_global_of_the_same_name(tmp_path: Path) -> None:
    template = small(
        tmp_path,
        """
        Globals:
          Function:
            Handler: app.handler
            Environment: {Variables: {A: global, B: global}}
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Environment: {Variables: {B: own, C: !Ref AWS::NoValue}}
        """,
    )
    assert template.function("Fn").environment(template) == {"A": "global", "B": "own"}


def test_globals_give_timeout_and_memory_unless_the_function_sets_them(template: Template) -> None:
    api, ingest = template.function("ApiFunction"), template.function("IngestFunction")
    assert (api.timeout, api.memory_mb) == (10, 256)
    assert (ingest.timeout, ingest.memory_mb) == (300, 512)  # a 5 GiB upload is hashed and copied in one run
    assert api.layers == ingest.layers == [ROOT / "layers/docpipe/"]
    assert (api.code_uri, api.handler) == (ROOT / "functions/api/", "api.handler.lambda_handler")


def test_every_function_has_the_shared_layer_built_for_its_architecture(template: Template) -> None:
    # the layer is named per function (SAM appends a function's layers to Globals'), and the presets
    # function runs on x86_64 (its SIMD resizer's wheels) with the layer's x86_64 build
    default = template.doc["Globals"]["Function"]["Architectures"]
    for logical in template.functions():
        props = template.resources[logical]["Properties"]
        arch = props.get("Architectures", default)
        layers = [template._chosen(ref)["Ref"] for ref in template._chosen(props["Layers"])]
        shared = [name for name in layers if name.startswith("DocpipeLayer")]
        assert len(shared) == 1, logical
        assert template.resources[shared[0]]["Metadata"]["BuildArchitecture"] == arch[0], logical
        assert template.function(logical).layers[0] == ROOT / "layers/docpipe/"
    assert template.resources["PresetsFunction"]["Properties"]["Architectures"] == ["x86_64"]


def test_functions_are_named_after_the_stack(template: Template) -> None:
    assert template.function("IngestFunction").name == "docpipe-local-IngestFunction"
    assert set(template.functions()) == {
        "IngestFunction",
        "ScanFunction",
        "PresetsFunction",
        "ExtractFunction",
        "OcrFunction",
        "ApiFunction",
        "SweeperFunction",
        "PushFunction",
        "NotifierFunction",
        "CompleteFunction",
    }


def test_the_notifier_reads_both_tables_streams_at_once_in_parallel_batches_bisecting_failures(
    template: Template,
) -> None:
    from docpipe_local.template import StreamSource

    sources = template.function("NotifierFunction").stream_sources
    assert [(s.name, s.table) for s in sources] == [("JobsStream", "JobsTable"), ("FilesStream", "FilesTable")]
    assert all(
        s == StreamSource(s.name, s.table, 100, "LATEST", True, 3, True, template.get_att("NotifierDLQ", "Arn"), 3)
        for s in sources
    )
    assert (
        template.resources["NotifierFunction"]["Properties"]["Events"]["JobsStream"]["Properties"][
            "MaximumBatchingWindowInSeconds"
        ]
        == 0
    )  # pushed at once: under a second from write to client


def test_the_websocket_api_routes_every_route_to_the_push_function_and_answers_the_default_one(
    template: Template,
) -> None:
    from docpipe_local.websocket import WebSocketApi

    api = WebSocketApi.of(template)

    assert api is not None and api.stage == "push"
    assert api.routes == dict.fromkeys(("$connect", "$disconnect", "$default"), "PushFunction")
    assert api.answering == {"$default"}
    env = template.function("NotifierFunction").environment(template)
    assert env["PUSH_URL"] == "wss://docpipe-local-PushApi.execute-api.us-east-1.amazonaws.com/push"


# ------------------------------------------------------------------ events


def test_ingest_reads_one_queue_per_lane_reporting_failures(template: Template) -> None:
    assert template.function("IngestFunction").sqs_sources == [
        SqsSource(name="High", queue="IngestHighQueue", batch_size=10, max_concurrency=6, report_failures=True),
        SqsSource(name="Normal", queue="IngestNormalQueue", batch_size=10, max_concurrency=3, report_failures=True),
        SqsSource(name="Low", queue="IngestLowQueue", batch_size=1, max_concurrency=2, report_failures=True),
    ]


def test_the_sweeper_runs_on_a_schedule(template: Template) -> None:
    (schedule,) = template.function("SweeperFunction").schedules
    assert (schedule.expression, schedule.every_seconds) == ("rate(5 minutes)", 300)


def test_the_api_has_an_open_health_route_and_an_authorized_proxy(template: Template) -> None:
    assert template.function("ApiFunction").http_routes == [
        HttpRoute("GET", "/health", authorized=False),
        HttpRoute("ANY", "/{proxy+}", authorized=True),
    ]


def test_sqs_source_defaults_without_scaling_or_response_types(tmp_path: Path) -> None:
    template = small(
        tmp_path,
        """
        Resources:
          Q: {Type: AWS::SQS::Queue}
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: app.handler
              Events:
                E: {Type: SQS, Properties: {Queue: !GetAtt Q.Arn}}
                Paused: {Type: SQS, Properties: {Queue: !GetAtt Q.Arn, Enabled: false, BatchSize: 3}}
        """,
    )
    assert template.function("Fn").sqs_sources == [
        SqsSource("E", "Q", batch_size=10, max_concurrency=1000, report_failures=False, enabled=True),
        SqsSource("Paused", "Q", batch_size=3, max_concurrency=1000, report_failures=False, enabled=False),
    ]


def test_an_sqs_queue_given_other_than_by_getatt_is_refused(tmp_path: Path) -> None:
    template = small(
        tmp_path,
        """
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: app.handler
              Events:
                E: {Type: SQS, Properties: {Queue: "arn:aws:sqs:us-east-1:1:elsewhere"}}
        """,
    )
    with pytest.raises(TemplateError, match="Queue as !GetAtt"):
        template.function("Fn")


# ------------------------------------------------------------------ known divergences from CloudFormation


BOOLEANS = """
Parameters:
  Unquoted: {Type: String, Default: false}
  Toggle: {Type: String, Default: "false"}
Conditions:
  ToggleIsTrue: !Equals [!Ref Toggle, true]
Resources:
  Q: {Type: AWS::SQS::Queue}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Events:
        E: {Type: SQS, Properties: {Queue: !GetAtt Q.Arn, Enabled: !Ref Toggle}}
"""


def test_an_unquoted_boolean_default_reads_as_cloudformation_writes_it(tmp_path: Path) -> None:
    assert small(tmp_path, BOOLEANS).resolve({"Ref": "Unquoted"}) == "false"


def test_equals_against_an_unquoted_true(tmp_path: Path) -> None:
    assert small(tmp_path, BOOLEANS, parameters={"Toggle": "true"}).condition("ToggleIsTrue") is True


def test_an_event_source_disabled_through_a_parameter_is_disabled(tmp_path: Path) -> None:
    (source,) = small(tmp_path, BOOLEANS).function("Fn").sqs_sources
    assert source.enabled is False


@pytest.mark.parametrize(("engine", "layers"), [("textract", 1), ("tesseract", 2)])
def test_the_tesseract_layer_joins_the_ocr_function_only_for_tesseract(engine: str, layers: int) -> None:
    template = Template.load(ROOT / "template.yaml", parameters={"OcrEngine": engine})
    spec = template.function("OcrFunction")
    assert len(spec.layers) == layers
    assert template.condition("UseTesseract") is (engine == "tesseract")
    if engine == "tesseract":
        assert spec.layers[-1] == ROOT / "layers" / "tesseract"
        assert "tesserocr==" in (spec.layers[-1] / "requirements.txt").read_text()
