"""The local stack against another AWS endpoint (as with LocalStack), with DynamoDB kept on the embedded emulator."""

from __future__ import annotations

import boto3
from moto.server import ThreadedMotoServer

from docpipe_local.client import DocpipeClient
from docpipe_local.stack import CREDENTIALS, LocalStack

ROOT_SAMPLE = __import__("pathlib").Path(__file__).resolve().parents[2] / "samples" / "hello.txt"


def test_an_external_endpoint_serves_s3_and_sqs_while_dynamodb_stays_embedded(tmp_path) -> None:
    external = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    external.start()
    host, port = external.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        with LocalStack(
            endpoint=url, embedded_services=("dynamodb",), state_dir=tmp_path, tokens={"t": "zoe"}
        ) as stack:
            client = DocpipeClient(stack.api_url, "t")
            created = client.upload_file(ROOT_SAMPLE)
            job = client.wait(created["jobId"], timeout=60)

            assert job["state"] == "ready"
            assert created["upload"]["url"].startswith(url)  # the browser posts to the external S3
            kwargs = {
                "region_name": "us-east-1",
                "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            }
            external_tables = boto3.client("dynamodb", endpoint_url=url, **kwargs).list_tables()["TableNames"]
            embedded_tables = stack.client("dynamodb").list_tables()["TableNames"]
            assert external_tables == []
            assert stack.template is not None
            assert len(embedded_tables) == len(stack.template.of_type("AWS::DynamoDB::Table"))  # every one embedded
    finally:
        external.stop()
