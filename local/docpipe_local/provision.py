"""Create the buckets, queues and tables a template declares, against any AWS-compatible endpoint.

Used by the local stack (moto's server or LocalStack) and by the unit tests under ``mock_aws``, so
tests and the laptop always run on the template's own definitions. Creating something that exists
already is not an error: provisioning twice against the same LocalStack is fine.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from docpipe_local.template import Template

_QUEUE_ATTRIBUTES = (
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "MaximumMessageSize",
)


def provision(template: Template, clients: dict[str, Any]) -> None:
    """Create every queue, table and bucket of ``template``; records their attributes on it."""
    s3, sqs, dynamodb = clients["s3"], clients["sqs"], clients["dynamodb"]
    for logical, resource in template.of_type("AWS::SQS::Queue").items():
        _queue(template, sqs, logical, resource.get("Properties", {}))
    for logical, resource in template.of_type("AWS::SQS::Queue").items():
        redrive = resource.get("Properties", {}).get("RedrivePolicy")
        if redrive:
            policy = template.resolve(redrive)
            sqs.set_queue_attributes(
                QueueUrl=template.attributes[logical]["Ref"],
                Attributes={"RedrivePolicy": json.dumps({k: str(v) for k, v in policy.items()})},
            )
    for logical, resource in template.of_type("AWS::DynamoDB::Table").items():
        _table(template, dynamodb, logical, resource.get("Properties", {}))
    for logical, resource in template.of_type("AWS::S3::Bucket").items():
        _bucket(template, s3, logical, resource.get("Properties", {}))


def _queue(template: Template, sqs: Any, logical: str, props: dict[str, Any]) -> None:
    name = template.physical_name(logical)
    attributes = {k: str(template.resolve(props[k])) for k in _QUEUE_ATTRIBUTES if k in props}
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    template.attributes[logical] = {"Ref": url, "QueueUrl": url, "Arn": arn, "QueueName": name}


def _table(template: Template, dynamodb: Any, logical: str, props: dict[str, Any]) -> None:
    name = template.physical_name(logical)
    props = template.resolve(props)
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = [
            {k: v for k, v in gsi.items() if k in ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")}
            for gsi in props["GlobalSecondaryIndexes"]
        ]
    if props.get("StreamSpecification"):  # the notifier reads it (docpipe_local.streams)
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    if kwargs["BillingMode"] == "PROVISIONED":
        kwargs["ProvisionedThroughput"] = props["ProvisionedThroughput"]
    try:
        dynamodb.create_table(**kwargs)
        dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        ttl = props.get("TimeToLiveSpecification")
        if ttl and str(ttl.get("Enabled")).lower() == "true":
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
            )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
    table = dynamodb.describe_table(TableName=name)["Table"]
    template.attributes[logical] = {"Ref": name, "Arn": table["TableArn"]}
    if table.get("LatestStreamArn"):
        template.attributes[logical]["StreamArn"] = table["LatestStreamArn"]


def _bucket(template: Template, s3: Any, logical: str, props: dict[str, Any]) -> None:
    name = template.physical_name(logical)
    template.attributes[logical] = {"Ref": name, "Arn": f"arn:aws:s3:::{name}"}
    props = template.resolve(props)
    try:
        if template.region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": template.region})
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    if "CorsConfiguration" in props:
        s3.put_bucket_cors(
            Bucket=name,
            CORSConfiguration={"CORSRules": [_cors_rule(r) for r in props["CorsConfiguration"]["CorsRules"]]},
        )
    if "LifecycleConfiguration" in props:
        s3.put_bucket_lifecycle_configuration(
            Bucket=name,
            LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in props["LifecycleConfiguration"]["Rules"]]},
        )
    if "BucketEncryption" in props:
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {"ApplyServerSideEncryptionByDefault": r["ServerSideEncryptionByDefault"]}
                    for r in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                ]
            },
        )
    if "PublicAccessBlockConfiguration" in props:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
    queues = props.get("NotificationConfiguration", {}).get("QueueConfigurations", [])
    if queues:
        s3.put_bucket_notification_configuration(
            Bucket=name,
            NotificationConfiguration={"QueueConfigurations": [_queue_notification(q) for q in queues]},
        )


def _cors_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's CorsRule spelling to the S3 API's."""
    renamed = {"Id": "ID", "ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds"}
    return {renamed.get(k, k): (int(v) if k == "MaxAge" else v) for k, v in rule.items()}


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ID": rule.get("Id", "rule"),
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        }
    return out


def _queue_notification(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"QueueArn": config["Queue"], "Events": [config["Event"]]}
    rules = config.get("Filter", {}).get("S3Key", {}).get("Rules")
    if rules:
        out["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
    return out
