"""Read ``template.yaml`` the way CloudFormation and SAM would, for the local stack.

Understands the short-form tags, resolves ``Ref``/``Fn::GetAtt``/``Fn::Sub``/``Fn::Join``/``Fn::If``
/``Fn::Select``/``Fn::Split`` against parameters, conditions, pseudo parameters and the physical names
the local stack gives each resource, and merges SAM ``Globals`` into each function. ``Rules`` are read
and can be checked (:meth:`Template.rule_failures`) with the rule functions that compare parameter values
(``Fn::Contains``, ``Fn::EachMemberIn``, ``Fn::EachMemberEquals``). Resource types the local stack does
not run (log groups, alarms, the HTTP API's own settings) are parsed and left alone.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_TAGS = {
    "Ref": "Ref",
    "GetAtt": "Fn::GetAtt",
    "Sub": "Fn::Sub",
    "Join": "Fn::Join",
    "If": "Fn::If",
    "Equals": "Fn::Equals",
    "Not": "Fn::Not",
    "And": "Fn::And",
    "Or": "Fn::Or",
    "Select": "Fn::Select",
    "Split": "Fn::Split",
    "FindInMap": "Fn::FindInMap",
    "Base64": "Fn::Base64",
    "GetAZs": "Fn::GetAZs",
    "ImportValue": "Fn::ImportValue",
    "Condition": "Condition",
    "Cidr": "Fn::Cidr",
    # the functions of a template's Rules
    "Contains": "Fn::Contains",
    "EachMemberEquals": "Fn::EachMemberEquals",
    "EachMemberIn": "Fn::EachMemberIn",
    "RefAll": "Fn::RefAll",
    "ValueOf": "Fn::ValueOf",
    "ValueOfAll": "Fn::ValueOfAll",
}


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader that also knows the CloudFormation tags; libyaml's when PyYAML has it (ten times faster:
    every local stack and many tests read the template)."""


def _tag_constructor(name: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    return construct


for _tag, _name in _TAGS.items():
    _Loader.add_constructor(f"!{_tag}", _tag_constructor(_name))


class NoValue:
    """``AWS::NoValue``: the property is dropped."""


NO_VALUE = NoValue()


def _scalar(value: Any) -> str:
    """A parameter or intrinsic value as CloudFormation sees it: YAML booleans are "true"/"false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _truthy(value: Any) -> bool:
    """A boolean property given as a YAML bool or as the string a parameter resolves to."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


class TemplateError(ValueError):
    pass


@dataclass
class Template:
    """A parsed template plus the local identity of its stack: names, account, region, endpoint."""

    path: Path
    doc: dict[str, Any]
    stack_name: str = "docpipe-local"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    parameters: dict[str, str] = field(default_factory=dict)
    # Filled in by provisioning: attributes of each created resource (``Ref``, ``Arn``, ``QueueUrl``, ...).
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> Template:
        path = Path(path)
        with path.open() as fh:
            doc = yaml.load(fh, Loader=_Loader)  # a SafeLoader that also knows the CloudFormation tags
        return cls(path=path, doc=doc, **kwargs)

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.doc.get("Resources", {}))

    def of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v.get("Type") in types}

    # ------------------------------------------------------------ names
    def physical_name(self, logical: str) -> str:
        resource = self.resources[logical]
        props = resource.get("Properties", {})
        explicit = {
            "AWS::S3::Bucket": "BucketName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::DynamoDB::Table": "TableName",
            "AWS::Serverless::Function": "FunctionName",
        }.get(resource["Type"])
        if explicit and explicit in props:
            return str(self.resolve(props[explicit]))
        name = f"{self.stack_name}-{logical}"
        return name.lower() if resource["Type"] == "AWS::S3::Bucket" else name

    def parameter(self, name: str) -> Any:
        spec = self.doc.get("Parameters", {}).get(name)
        if spec is None:
            raise TemplateError(f"unknown parameter {name}")
        raw = self.parameters.get(name, spec.get("Default"))
        if raw is None:
            raise TemplateError(f"parameter {name} has no default; pass it with --parameter {name}=VALUE")
        if spec.get("Type") == "CommaDelimitedList":
            return [p.strip() for p in str(raw).split(",")] if isinstance(raw, str) else list(raw)
        return _scalar(raw)

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.doc.get("Conditions", {})[name]))

    def rule_failures(self) -> list[str]:
        """The ``AssertDescription`` of each assertion of the template's ``Rules`` that these parameters
        fail, as CloudFormation would refuse them before creating anything; empty when all hold."""
        failures = []
        for name, rule in (self.doc.get("Rules") or {}).items():
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            for assertion in rule.get("Assertions", []):
                if not self.resolve(assertion["Assert"]):
                    failures.append(str(assertion.get("AssertDescription") or f"rule {name} failed"))
        return failures

    # ------------------------------------------------------------ intrinsic functions
    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::StackName": self.stack_name,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.doc.get("Parameters", {}):
            return self.parameter(name)
        if name in self.attributes and "Ref" in self.attributes[name]:
            return self.attributes[name]["Ref"]
        if name in self.resources:
            return self._default_attribute(name, "Ref")
        raise TemplateError(f"Ref to unknown name {name}")

    def get_att(self, logical: str, attribute: str) -> str:
        if logical in self.attributes and attribute in self.attributes[logical]:
            return self.attributes[logical][attribute]
        if logical not in self.resources:
            raise TemplateError(f"GetAtt of unknown resource {logical}")
        return self._default_attribute(logical, attribute)

    def _default_attribute(self, logical: str, attribute: str) -> str:
        kind = self.resources[logical]["Type"]
        name = self.physical_name(logical)
        arns = {
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{self.region}:{self.account_id}:{name}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{self.region}:{self.account_id}:table/{name}",
            "AWS::Serverless::Function": f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}",
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]
        if attribute == "QueueName" and kind == "AWS::SQS::Queue":
            return name
        if attribute == "Ref" and kind in ("AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::Serverless::Function"):
            return name
        if attribute == "Ref" and kind == "AWS::SQS::Queue":  # the URL, in AWS's format, until provisioned
            return f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{name}"
        if kind == "AWS::ApiGatewayV2::Api" and attribute == "ApiEndpoint":  # a WebSocket API's, until served
            return f"wss://{self.ref(logical)}.execute-api.{self.region}.amazonaws.com"
        if kind == "AWS::ApiGatewayV2::Stage" and attribute == "Ref":
            return str(self.resolve(self.resources[logical].get("Properties", {}).get("StageName", logical)))
        if attribute == "Ref":
            return f"{self.stack_name}-{logical}"
        raise TemplateError(f"{logical}.{attribute} is not known before the stack is provisioned")

    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic function in ``value``; ``AWS::NoValue`` entries are dropped."""
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(i) for i in self.resolve(items))
            if key == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                a, b = self.resolve(arg)
                return _scalar(a) == _scalar(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(arg))
            if key == "Fn::Or":
                return any(self.resolve(arg))
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Select":
                index, items = self.resolve(arg)
                return items[int(index)]
            if key == "Fn::Split":
                sep, text = self.resolve(arg)
                return str(text).split(sep)
            if key == "Fn::Contains":
                items, wanted = self.resolve(arg)
                return _scalar(wanted) in [_scalar(i) for i in items]
            if key == "Fn::EachMemberIn":
                items, allowed = self.resolve(arg)
                return all(_scalar(i) in [_scalar(a) for a in allowed] for i in items)
            if key == "Fn::EachMemberEquals":
                items, wanted = self.resolve(arg)
                return all(_scalar(i) == _scalar(wanted) for i in items)
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not supported by the local stack")
        return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not NO_VALUE}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical, attribute = name.split(".", 1)
                return str(self.get_att(logical, attribute))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    # ------------------------------------------------------------ SAM functions
    def functions(self) -> dict[str, FunctionSpec]:
        return {logical: self.function(logical) for logical in self.of_type("AWS::Serverless::Function")}

    def _chosen(self, value: Any) -> Any:
        """A property's value with ``Fn::If`` chosen (and ``AWS::NoValue`` as ``None``), other intrinsics
        left as written: layers are matched by their logical ids."""
        while isinstance(value, dict) and "Fn::If" in value:
            condition, when_true, when_false = value["Fn::If"]
            value = when_true if self.condition(condition) else when_false
        if isinstance(value, dict) and value.get("Ref") == "AWS::NoValue":
            return None
        return value

    def function(self, logical: str) -> FunctionSpec:
        globals_ = copy.deepcopy(self.doc.get("Globals", {}).get("Function", {}))
        props = copy.deepcopy(self.resources[logical].get("Properties", {}))
        env = dict(globals_.get("Environment", {}).get("Variables", {}))
        env.update(props.get("Environment", {}).get("Variables", {}))
        merged = {**globals_, **props}
        # SAM appends list-valued globals (Layers) to the function's own instead of replacing them.
        own_layers = self._chosen(props.get("Layers"))
        merged["Layers"] = [*(self._chosen(globals_.get("Layers")) or []), *(own_layers or [])]
        layers = []
        for layer in merged.get("Layers", []):
            layer_logical = layer.get("Ref") if isinstance(layer, dict) else None
            if layer_logical and layer_logical in self.resources:
                layers.append(self.root / self.resources[layer_logical]["Properties"]["ContentUri"])
        sqs, http, schedules, streams = [], [], [], []
        for event_name, event in (props.get("Events") or {}).items():
            eprops = event.get("Properties", {})
            if event["Type"] == "SQS":
                queue = eprops["Queue"]
                queue_logical = queue["Fn::GetAtt"][0] if isinstance(queue, dict) and "Fn::GetAtt" in queue else None
                if queue_logical is None:
                    raise TemplateError(f"{logical}.{event_name}: the local stack needs Queue as !GetAtt Queue.Arn")
                scaling = self.resolve(eprops.get("ScalingConfig", {}))
                sqs.append(
                    SqsSource(
                        name=event_name,
                        queue=queue_logical,
                        batch_size=int(self.resolve(eprops.get("BatchSize", 10))),
                        max_concurrency=int(scaling.get("MaximumConcurrency", 1000)),
                        report_failures="ReportBatchItemFailures" in eprops.get("FunctionResponseTypes", []),
                        enabled=_truthy(self.resolve(eprops.get("Enabled", True))),
                    )
                )
            elif event["Type"] == "DynamoDB":
                streams.append(self._stream_source(logical, event_name, eprops))
            elif event["Type"] in ("Schedule", "ScheduleV2"):
                expression = str(self.resolve(eprops.get("Schedule") or eprops.get("ScheduleExpression")))
                schedules.append(ScheduleSource(event_name, expression, rate_seconds(expression)))
            elif event["Type"] == "HttpApi":
                auth = eprops.get("Auth", {}).get("Authorizer")
                http.append(
                    HttpRoute(str(eprops.get("Method", "ANY")).upper(), eprops.get("Path", "/{proxy+}"), auth != "NONE")
                )
        reserved = self.resolve(merged.get("ReservedConcurrentExecutions", NO_VALUE))
        return FunctionSpec(
            logical=logical,
            name=self.physical_name(logical),
            handler=merged["Handler"],
            code_uri=self.root / merged["CodeUri"],
            layers=layers,
            env_template=env,
            timeout=int(self.resolve(merged.get("Timeout", 3))),
            memory_mb=int(self.resolve(merged.get("MemorySize", 128))),
            reserved_concurrency=None if reserved is NO_VALUE else int(reserved),
            sqs_sources=sqs,
            http_routes=http,
            schedules=schedules,
            stream_sources=streams,
        )

    def _stream_source(self, logical: str, name: str, eprops: dict[str, Any]) -> StreamSource:
        stream = eprops["Stream"]
        table = stream["Fn::GetAtt"][0] if isinstance(stream, dict) and "Fn::GetAtt" in stream else None
        if table is None:
            raise TemplateError(f"{logical}.{name}: the local stack needs Stream as !GetAtt Table.StreamArn")
        failure = self.resolve(eprops.get("DestinationConfig", {})).get("OnFailure", {}).get("Destination")
        return StreamSource(
            name=name,
            table=table,
            batch_size=int(self.resolve(eprops.get("BatchSize", 100))),
            starting_position=str(self.resolve(eprops.get("StartingPosition", "LATEST"))),
            bisect=_truthy(self.resolve(eprops.get("BisectBatchOnFunctionError", False))),
            max_retries=int(self.resolve(eprops.get("MaximumRetryAttempts", -1))),
            report_failures="ReportBatchItemFailures" in eprops.get("FunctionResponseTypes", []),
            on_failure_arn=str(failure) if failure else None,
            parallelization=int(self.resolve(eprops.get("ParallelizationFactor", 1))),
        )


@dataclass(frozen=True)
class StreamSource:
    """A DynamoDB stream event source mapping (``Type: DynamoDB``)."""

    name: str
    table: str  # the logical id of the table whose stream it reads
    batch_size: int
    starting_position: str
    bisect: bool
    max_retries: int  # -1: until the record expires
    report_failures: bool
    on_failure_arn: str | None
    parallelization: int = 1  # ParallelizationFactor: batches of one shard processed at once


@dataclass(frozen=True)
class SqsSource:
    name: str
    queue: str
    batch_size: int
    max_concurrency: int
    report_failures: bool
    enabled: bool = True


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")


def rate_seconds(expression: str) -> int:
    """The period of an EventBridge ``rate(...)`` expression; the local stack runs no ``cron(...)``."""
    match = _RATE.match(expression.strip())
    if match is None:
        raise TemplateError(f"the local stack runs rate(...) schedules only, not {expression!r}")
    unit = match.group(2).rstrip("s")
    return int(match.group(1)) * {"minute": 60, "hour": 3600, "day": 86400}[unit]


@dataclass(frozen=True)
class ScheduleSource:
    name: str
    expression: str
    every_seconds: int


@dataclass(frozen=True)
class HttpRoute:
    method: str
    path: str
    authorized: bool


@dataclass
class FunctionSpec:
    logical: str
    name: str
    handler: str
    code_uri: Path
    layers: list[Path]
    env_template: dict[str, Any]
    timeout: int
    memory_mb: int
    reserved_concurrency: int | None
    sqs_sources: list[SqsSource]
    http_routes: list[HttpRoute]
    schedules: list[ScheduleSource] = field(default_factory=list)
    stream_sources: list[StreamSource] = field(default_factory=list)

    def environment(self, template: Template) -> dict[str, str]:
        return {k: str(v) for k, v in template.resolve(self.env_template).items()}
