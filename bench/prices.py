"""AWS prices the cost benches use: USD, us-east-1, read from each service's pricing page on the date
below (after free tiers; the first pricing tier where a service has tiers)."""

from __future__ import annotations

PRICES_DATE = "2025-01 (DynamoDB on-demand after its 2024-11 price cut)"
REGION = "us-east-1"
PRICES = {
    "lambda_gb_s_arm64": 0.0000133334,  # aws.amazon.com/lambda/pricing (first 6 billion GB-s a month)
    "lambda_gb_s_x86_64": 0.0000166667,
    "lambda_request": 0.20 / 1e6,
    "sqs_request": 0.40 / 1e6,  # aws.amazon.com/sqs/pricing (standard queues; 64 KB chunks)
    "s3_put": 0.005 / 1000,  # aws.amazon.com/s3/pricing: PUT, COPY, POST, LIST
    "s3_get": 0.0004 / 1000,  # GET, HEAD (DELETE is free)
    "s3_gb_month": 0.023,  # S3 Standard, first 50 TB
    "ddb_write": 0.625 / 1e6,  # aws.amazon.com/dynamodb/pricing/on-demand: per write request unit
    "ddb_read": 0.125 / 1e6,  # per read request unit
    "textract_page": 1.50 / 1000,  # aws.amazon.com/textract/pricing: DetectDocumentText, first 1 M pages a month
    "logs_gb": 0.50,  # aws.amazon.com/cloudwatch/pricing: log ingestion (EMF metrics ride in the logs)
    "metric_month": 0.30,  # a custom metric series a month (first 10,000)
    "cloudwatch_request": 0.01 / 1000,  # GetMetricData, PutMetricData, ... per 1,000 requests
    "api_request": 1.00 / 1e6,  # aws.amazon.com/api-gateway/pricing: HTTP API, first 300 M a month
}
