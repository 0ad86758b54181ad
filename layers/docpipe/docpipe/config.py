"""Typed settings, built once per cold start from the environment. The only module that reads ``os.environ``.

Variable names are set in ``template.yaml``; a missing one fails at cold start with a clear message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

LANES = ("high", "normal", "low")
# Per-user limits (docpipe.quotas.LIMIT_NAMES) and the variables that carry the stack's defaults; 0 is unlimited.
LIMIT_VARIABLES = {
    "UploadsPerMinute": "UPLOADS_PER_MINUTE",
    "UploadBytesPerDay": "UPLOAD_BYTES_PER_DAY",
    "StoredBytesPerUser": "STORED_BYTES_PER_USER",
    "OpenJobsPerUser": "OPEN_JOBS_PER_USER",
    "HighLaneBytesPerMinute": "HIGH_LANE_BYTES_PER_MINUTE",
    "RetriesPerJob": "RETRIES_PER_JOB",
}
TASKS = ("scan", "presets", "extract", "ocr")  # the stages whose lanes are configured as {TASK}_QUEUE_{LANE}

MIB = 1024 * 1024


class ConfigError(RuntimeError):
    pass


def _require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"environment variable {name} is not set (see template.yaml)")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from exc


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name) or choices[0]
    if raw not in choices:
        raise ConfigError(f"environment variable {name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _functions(env: Mapping[str, str]) -> dict[str, str]:
    pairs = [pair.partition("=") for pair in (env.get("MONITORED_FUNCTIONS") or "").split(",") if "=" in pair]
    functions = {concern.strip(): name.strip() for concern, _, name in pairs if concern.strip() and name.strip()}
    if env.get("AWS_LAMBDA_FUNCTION_NAME"):
        functions.setdefault("api", env["AWS_LAMBDA_FUNCTION_NAME"])
    return functions


@dataclass(frozen=True)
class Settings:
    uploads_bucket: str
    store_bucket: str
    jobs_table: str
    files_table: str
    max_upload_bytes: int = 100 * MIB
    # Files above it are sent in parts by docpipe's own clients (POST /uploads/multipart); see api.multipart.
    multipart_threshold_bytes: int = 64 * MIB
    # A multipart upload of at most this many bytes is completed inside the API's request; a larger one by
    # CompleteFunction, from ``complete_queue`` (docpipe.completion).
    multipart_complete_inline_bytes: int = 256 * MIB
    complete_queue: str | None = None
    upload_url_ttl_seconds: int = 900
    # A job still ``uploading`` this long after its upload URL expired, with no object under its key, is
    # ended as ``upload.expired`` by the sweeper (an upload that started just before the expiry may still
    # be arriving, and its S3 event may wait in a busy ingest queue).
    upload_grace_seconds: int = 900
    download_url_ttl_seconds: int = 300
    job_ttl_days: int = 30
    hash_chunk_bytes: int = 4 * MIB
    max_image_pixels: int = 100_000_000
    max_text_chars: int = 5_000_000  # text stored per document; more is cut and marked truncated
    extract_range_pages: int = 200  # PDFs with more pages are extracted in ranges of this many pages
    ocr_pages_per_task: int = 8  # scanned pages OCR'd per invocation (Tesseract: about 2 s a page)
    # lane -> queue URL of each processing task
    task_queues: dict[str, dict[str, str]] = field(default_factory=dict)
    # lane -> queue URL of the ingest queues (GET /queues)
    ingest_queues: dict[str, str] = field(default_factory=dict)
    usage_table: str | None = None
    limits: dict[str, int] = field(default_factory=dict)  # by LIMIT_VARIABLES' names; absent is unlimited
    # ``global``: the same bytes are stored and processed once for everyone; ``owner``: once per owner.
    dedupe_scope: str = "global"
    admin_group: str = "docpipe-admins"  # members are operators (GET /queues shows every lane's totals)
    admin_group_claim: str = "cognito:groups"  # the JWT claim that lists the caller's groups
    # The malware scan (docpipe.scanning): ``guardduty``, ``clamav`` or ``none`` (ScanEngine).
    scan_engine: str = "guardduty"
    clamd_address: str | None = None  # clamd's socket (a path, or tcp://host:port); else clamscan runs
    clamav_database: str | None = None  # clamscan's -d (a directory or a file); else its own default
    rescan_after_days: int = 30  # a clean verdict older than this is redone on the next upload
    allow_macros: bool = False  # Office files with VBA macros pass the scan (else file.macro)
    refuse_pdf_active_content: bool = False  # PDFs with JavaScript or launch actions fail (else flagged)
    # concern -> physical name of each function whose AWS/Lambda metrics the console shows (GET /admin/metrics):
    # MONITORED_FUNCTIONS ("ingest=name,presets=name"), and the function itself as ``api``
    functions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            uploads_bucket=_require(env, "UPLOADS_BUCKET"),
            store_bucket=_require(env, "STORE_BUCKET"),
            jobs_table=_require(env, "JOBS_TABLE"),
            files_table=_require(env, "FILES_TABLE"),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", 100 * MIB),
            multipart_threshold_bytes=_int(env, "MULTIPART_THRESHOLD_BYTES", 64 * MIB),
            multipart_complete_inline_bytes=_int(env, "MULTIPART_COMPLETE_INLINE_BYTES", 256 * MIB),
            complete_queue=env.get("COMPLETE_QUEUE") or None,
            upload_url_ttl_seconds=_int(env, "UPLOAD_URL_TTL_SECONDS", 900),
            upload_grace_seconds=_int(env, "UPLOAD_GRACE_SECONDS", 900),
            download_url_ttl_seconds=_int(env, "DOWNLOAD_URL_TTL_SECONDS", 300),
            job_ttl_days=_int(env, "JOB_TTL_DAYS", 30),
            hash_chunk_bytes=_int(env, "HASH_CHUNK_BYTES", 4 * MIB),
            max_image_pixels=_int(env, "MAX_IMAGE_PIXELS", 100_000_000),
            max_text_chars=_int(env, "MAX_TEXT_CHARS", 5_000_000),
            extract_range_pages=max(1, _int(env, "EXTRACT_RANGE_PAGES", 200)),
            ocr_pages_per_task=max(1, _int(env, "OCR_PAGES_PER_TASK", 8)),
            ingest_queues={
                lane: env[f"INGEST_QUEUE_{lane.upper()}"] for lane in LANES if env.get(f"INGEST_QUEUE_{lane.upper()}")
            },
            usage_table=env.get("USAGE_TABLE") or None,
            dedupe_scope=_choice(env, "DEDUPE_SCOPE", ("global", "owner")),
            admin_group=env.get("ADMIN_GROUP") or "docpipe-admins",
            admin_group_claim=env.get("ADMIN_GROUP_CLAIM") or "cognito:groups",
            scan_engine=_choice(env, "SCAN_ENGINE", ("guardduty", "clamav", "none")),
            clamd_address=env.get("CLAMD_ADDRESS") or None,
            clamav_database=env.get("CLAMAV_DATABASE") or None,
            rescan_after_days=max(0, _int(env, "RESCAN_AFTER_DAYS", 30)),
            allow_macros=env.get("ALLOW_MACROS", "").lower() == "true",
            refuse_pdf_active_content=env.get("REFUSE_PDF_ACTIVE_CONTENT", "").lower() == "true",
            functions=_functions(env),
            limits={name: _int(env, variable, 0) for name, variable in LIMIT_VARIABLES.items() if env.get(variable)},
            task_queues={
                task: {lane: env[f"{task.upper()}_QUEUE_{lane.upper()}"] for lane in LANES}
                for task in TASKS
                if all(env.get(f"{task.upper()}_QUEUE_{lane.upper()}") for lane in LANES)
            },
        )


@dataclass(frozen=True)
class PushSettings:
    """The push channel (the WebSocket API, README "Live progress"): its URL for clients (``GET /config``;
    the notifier posts to the same host and stage over HTTPS), the connections table, the JWT issuer and
    audience ``$connect`` checks, and each user's bound on open connections. ``required`` names the
    variables a function cannot start without."""

    url: str | None = None
    connections_table: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    max_connections_per_user: int = 10
    # API Gateway closes a WebSocket connection after 2 hours: a connection record outlives it a little.
    connection_ttl_seconds: int = 2 * 3600 + 600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, required: tuple[str, ...] = ()) -> PushSettings:
        env = os.environ if env is None else env
        for name in required:
            _require(env, name)
        return cls(
            url=env.get("PUSH_URL") or None,
            connections_table=env.get("CONNECTIONS_TABLE") or None,
            jwt_issuer=env.get("JWT_ISSUER") or None,
            jwt_audience=env.get("JWT_AUDIENCE") or None,
            max_connections_per_user=max(1, _int(env, "MAX_CONNECTIONS_PER_USER", 10)),
            connection_ttl_seconds=max(60, _int(env, "CONNECTION_TTL_SECONDS", 2 * 3600 + 600)),
        )
