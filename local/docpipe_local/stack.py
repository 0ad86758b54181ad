"""The embedded local stack: an AWS emulator, the template's resources, its functions, and the HTTP gateway.

``LocalStack(...).start()`` — or ``with LocalStack() as stack:`` — brings up, in a few seconds:

1. moto's server in a child process on loopback (and a second one for DynamoDB, so the emulator has
   two cores' worth of interpreter), unless ``endpoint`` names another emulator
   (LocalStack, or anything that speaks the AWS APIs). ``embedded_services`` sends just those
   services to an embedded moto next to that endpoint (LocalStack's S3 and SQS with moto's
   DynamoDB, say), through boto3's ``AWS_ENDPOINT_URL_<SERVICE>`` variables. Each service left at the
   endpoint must answer one call within seconds, else :class:`EndpointUnavailable` says which did not;
2. the buckets (CORS, lifecycle, S3→SQS notifications), queues (redrive) and tables of ``template.yaml``.
   On the ``local`` Stage the buckets' CORS origins are the gateway's own (``http://localhost:PORT``
   and ``http://127.0.0.1:PORT``), whatever its port, unless ``AllowedOrigins`` is passed;
3. a warm worker pool per function, pollers per SQS event source, and a fair dispatcher per polled
   queue (quiet tenants' messages before a noisy tenant's backlog, as on an SQS fair queue);
4. the gateway serving the HTTP API function and Lambda's Invoke API.

``tokens`` maps development tokens to users; ``admins`` names the users whose tokens carry the
template's admin group claim; ``invoke_token`` (``stack.invoke_token``, a fresh one by default) is the
stack's own token, the only one Lambda's Invoke API takes.

Every AWS call is signed with the access key ``test`` and the secret ``test``: moto takes any, and
LocalStack checks S3 signatures against ``test`` for an access key it does not know.

State lives in the emulator's memory: stopping the stack forgets it.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from docpipe_local import clamav, cpu_share, heavy_group, push_local
from docpipe_local.cors import Cors
from docpipe_local.endpoints import EndpointUnavailable, unavailable
from docpipe_local.fairness import QUIET_SEATS, FairDispatcher, SharedUsage
from docpipe_local.function_metrics import FunctionMetricsPublisher
from docpipe_local.gateway import Gateway
from docpipe_local.localstack import is_localstack
from docpipe_local.moto_server import CREDENTIALS, MotoServer
from docpipe_local.pollers import SqsPoller
from docpipe_local.provision import provision
from docpipe_local.queue_metrics import QueueAgePublisher, QueueAges
from docpipe_local.runtime import FunctionRuntime
from docpipe_local.streams import LambdaShapedRecords
from docpipe_local.template import Template

log = logging.getLogger("docpipe.local")
DEFAULT_API_PORT = 8780
# The services the stack and its functions call; each is checked at an external endpoint before use.
SERVICES = ("s3", "sqs", "dynamodb", "sts", "cloudwatch")


def project_root() -> Path:
    """The folder with ``template.yaml``: the working directory or a parent, else this checkout's."""
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "template.yaml").is_file():
            return folder
    return Path(__file__).resolve().parents[2]


# CPU priority (nice) of the workers that serve each lane's event source (by the source's name). On
# AWS each invocation has compute of its own; on a laptop's few cores, a low lane's OCR would slow a
# high lane's chat photo, so lower lanes run at lower priority. Sources with other names run at 0.
LANE_NICE = {"high": 0, "normal": 5, "low": 10}
# Added to that for the invocations of a heavy tenant (more than 1.5 times an equal share of the last
# minute's processing time over every fair queue: the fair queue's noisy neighbour, seen from the laptop):
# its burst yields the CPU to other tenants' work, which AWS would run on compute of its own (see
# docpipe_local.fairness.SharedUsage.heavy); with DOCPIPE_HEAVY_GROUP=1, where the stack may make one,
# also in an idle-class CPU group (docpipe_local.heavy_group; off by default, see the README's runs).
HEAVY_NICE = 10
# The emulator stands for AWS's services, which have capacity of their own, and every function's AWS
# call waits on it. Run at the workers' priority, it served a busy tenant's low-priority workers'
# requests in turn with a quiet tenant's, so nice stopped at the emulator's door: under the tenants
# bench, a quiet tenant's DynamoDB GetItem took p50 20-36 ms (about 2 ms of the emulator's CPU). The
# embedded emulator's processes run EMULATOR_AHEAD levels of CPU priority above the stack where the
# process may raise a priority (root, or CAP_SYS_NICE); where it may not, or the emulator is another
# (an endpoint), every worker runs WORKERS_BEHIND levels below the stack instead, which puts the
# emulator ahead all the same. Ten levels (a CPU weight about 9 times a worker's) were not enough: with
# twenty workers runnable in a 500-upload tenants run the DynamoDB emulator got 0.57 of a core, the
# workers waited on its answers (a 0.2 s scan took 2-3 s in all), and the lanes fell behind; at twenty
# levels (about 87 times) it takes what it needs, as AWS's services have capacity of their own.
EMULATOR_AHEAD = 20
WORKERS_BEHIND = 5

# Worker processes of the local HTTP API function (unless the template reserves its concurrency).
HTTP_WORKERS = 8

# Template parameters the local stack sets unless told otherwise: OCR with Tesseract from pip, since
# Textract needs an AWS account (moto's answers are empty).
# The local stack is the `local` Stage (whose origins may stay the local page's), with Tesseract for OCR.
LOCAL_PARAMETERS = {"OcrEngine": "tesseract", "Stage": "local"}


def worker_nice(emulators: list[MotoServer], endpoint: str | None) -> int:
    """How many levels of CPU priority every worker runs below the stack: none when every AWS call goes
    to the embedded emulator and it runs ahead of the stack, else :data:`WORKERS_BEHIND`."""
    if emulators and endpoint is None and all(m.ahead > 0 for m in emulators):
        return 0
    return WORKERS_BEHIND


def page_origins(port: int) -> list[str]:
    """The origins of the upload page the gateway serves on ``port``."""
    return [f"http://localhost:{port}", f"http://127.0.0.1:{port}"]


def admin_claim(template: Template) -> tuple[str, str] | None:
    """``(claim, group)`` that makes a caller an operator: the template's ``AdminGroupClaim`` and
    ``AdminGroup`` as resolved for this stack (None when the template has no such parameters)."""
    declared = template.doc.get("Parameters", {})
    if "AdminGroupClaim" not in declared or "AdminGroup" not in declared:
        return None
    return str(template.parameter("AdminGroupClaim")), str(template.parameter("AdminGroup"))


class LocalStack:
    def __init__(
        self,
        template_path: str | Path | None = None,
        *,
        endpoint: str | None = None,
        embedded_services: tuple[str, ...] = (),
        api_port: int = 0,
        state_dir: str | Path = ".docpipe",
        tokens: dict[str, str] | None = None,
        admins: set[str] | frozenset[str] | None = None,
        invoke_token: str | None = None,
        parameters: dict[str, str] | None = None,
        region: str = "us-east-1",
        stack_name: str = "docpipe-local",
        overrides: dict[str, dict[str, Any]] | None = None,
        schedule_every: dict[str, float] | None = None,
    ) -> None:
        """``overrides`` sets resource properties for this run, by logical id, over the template's:
        ``{"OcrHighQueue": {"VisibilityTimeout": 10}}`` lets a test that kills a worker see its message
        come back in seconds rather than minutes. Nothing else changes the template."""
        self.template_path = Path(template_path) if template_path else project_root() / "template.yaml"
        self.endpoint_arg = endpoint
        self.embedded_services = embedded_services
        self.api_port = api_port
        self.state_dir = Path(state_dir)
        self.tokens = tokens if tokens is not None else {f"dev-{secrets.token_urlsafe(16)}": "dev"}
        self.admins = frozenset(admins or ())
        self.invoke_token = invoke_token or f"stack-{secrets.token_urlsafe(16)}"
        self.parameters = {**LOCAL_PARAMETERS, **(parameters or {})}
        self.region = region
        self.stack_name = stack_name
        self.moto: MotoServer | None = None
        self.moto_dynamodb: MotoServer | None = None
        self.workers_nice = 0  # levels of CPU priority every worker runs below the stack (worker_nice)
        self.heavy_group: heavy_group.HeavyGroup | None = None  # heavy tenants' workers' CPU group, if any
        self.runtimes: dict[str, FunctionRuntime] = {}
        self.pollers: list[SqsPoller] = []
        self.stream_pollers: list[threading.Thread] = []  # the notifier's stream event sources (push_local)
        self.issuer: Any = None  # the stack's JWT issuer (docpipe_local.tokens.LocalIssuer)
        self._jwts: dict[str, str] = {}
        self.dispatchers: dict[str, FairDispatcher] = {}  # by queue URL
        self.tenant_usage = SharedUsage()  # each tenant's processing time over every fair queue
        self.gateway: Gateway | None = None
        self._stop = threading.Event()
        self.template: Template | None = None
        self.endpoints: dict[str, str] = {}
        self.overrides = overrides or {}
        # Seconds between runs of a scheduled function, by logical id, over its template's rate(...):
        # a test of the sweeper need not wait five minutes.
        self.schedule_every = schedule_every or {}
        self.queue_ages = QueueAges()
        self.clamd: clamav.Clamd | None = None  # the stack's own warm clamd (ScanEngine clamav)
        self.clamd_behind: clamav.Clamd | None = None  # and the one for workers far behind it (clamav.BEHIND)
        self.clamav_database: Path | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return self.endpoints["default"]

    @property
    def api_url(self) -> str:
        assert self.gateway is not None, "the stack is not started"
        return self.gateway.url

    @property
    def token(self) -> str:
        return next(iter(self.tokens))

    def token_for(self, user: str) -> str:
        """A token for ``user`` that the HTTP routes and the WebSocket API both take: a JWT the stack's issuer
        signed (with the admin group claim for an admin), else ``user``'s development token."""
        if self.issuer is None or self.template is None:
            return next(t for t, u in self.tokens.items() if u == user)
        if user not in self._jwts:
            claim = admin_claim(self.template) if user in self.admins else None
            self._jwts[user] = self.issuer.mint(user, claim)
        return self._jwts[user]

    def client(self, service: str, attempts: int | None = None) -> Any:
        """A client of the stack's ``service``; ``attempts`` bounds botocore's retries (its default: 3)."""
        return boto3.client(
            service,
            config=Config(  # one client serves every poller thread
                max_pool_connections=64, retries={"max_attempts": attempts} if attempts else None
            ),
            endpoint_url=self.endpoints.get(service, self.endpoint),
            region_name=self.region,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=CREDENTIALS["AWS_SESSION_TOKEN"],
        )

    def start(self) -> LocalStack:
        """Bring everything up; on any failure, stop what had started and raise."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> LocalStack:
        started = time.time()
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        if self.endpoint_arg is None or self.embedded_services:
            self.moto = MotoServer(self.state_dir / "logs" / "emulator.log", EMULATOR_AHEAD)
        if self.endpoint_arg is None:
            # DynamoDB in an emulator process of its own: moto serves every request under one interpreter
            # lock, so under load one process is one core for every AWS call. S3 and SQS stay together
            # (S3's event notifications go to SQS inside the emulator).
            self.moto_dynamodb = MotoServer(self.state_dir / "logs" / "emulator-dynamodb.log", EMULATOR_AHEAD)
            self.moto_dynamodb.wait_ready()
        else:  # while moto starts: every service left at the endpoint must answer, or we stop here
            self._check_endpoint(self.endpoint_arg)
        if self.moto:
            self.moto.wait_ready()
        self.workers_nice = worker_nice([m for m in (self.moto, self.moto_dynamodb) if m], self.endpoint_arg)
        # heavy tenants' invocations in a CPU group of their own, only when asked (DOCPIPE_HEAVY_GROUP=1): in
        # five tenants runs it let A's backlog run away twice (README); never beside cpu_share's limits
        asked = os.environ.get("DOCPIPE_HEAVY_GROUP", "").strip().lower() in ("1", "true", "on", "yes")
        self.heavy_group = heavy_group.create() if asked and not cpu_share.enabled() else None
        self.endpoints = {"default": self.endpoint_arg or self.moto.url}  # type: ignore[union-attr]
        for service in self.embedded_services:
            self.endpoints[service] = self.moto.url  # type: ignore[union-attr]
        if self.moto_dynamodb:
            self.endpoints["dynamodb"] = self.moto_dynamodb.url
        if "dynamodb" in self.endpoints:  # a table's stream is served by the emulator that holds the table
            self.endpoints["dynamodbstreams"] = self.endpoints["dynamodb"]
        account = self.client("sts").get_caller_identity()["Account"]
        self.template = Template.load(
            self.template_path,
            stack_name=self.stack_name,
            region=self.region,
            account_id=account,
            parameters=dict(self.parameters),
        )
        claim = admin_claim(self.template)
        if self.admins and claim is None:
            raise ValueError("admins need the template's AdminGroup and AdminGroupClaim parameters")
        # The gateway first, for its port: it is the local page's origin, which the buckets' CORS rules name.
        storage = urlsplit(self.endpoints.get("s3", self.endpoint))
        self.gateway = Gateway(
            None,
            self.runtimes,  # filled in below, before the gateway serves
            self.tokens,
            port=self.api_port,
            invoke_token=self.invoke_token,
            admins=self.admins,
            admin_claim=claim,
            page_sources=[f"{storage.scheme}://{storage.netloc}"],
        )
        declared = self.template.doc.get("Parameters") or {}
        if (
            {"AllowedOrigins", "Stage"} <= set(declared)
            and "AllowedOrigins" not in self.parameters
            and self.template.parameter("Stage") == "local"
        ):
            self.template.parameters["AllowedOrigins"] = ",".join(page_origins(self.gateway.port))
        self.gateway.cors = Cors.from_template(self.template)  # the API's CORS, for pages of other origins
        self.issuer = push_local.prepare(self.template, self.gateway, self.parameters)
        if "ScanEngine" in declared:
            self._start_scanner()
        refused = self.template.rule_failures()  # what CloudFormation would refuse before creating anything
        if refused:
            raise ValueError("the template's rules refuse these parameters: " + "; ".join(refused))
        for logical, properties in self.overrides.items():
            if logical not in self.template.doc.get("Resources", {}):
                raise ValueError(f"override for {logical!r}: the template has no such resource")
            self.template.doc["Resources"][logical].setdefault("Properties", {}).update(properties)
        provision(self.template, {s: self.client(s) for s in ("s3", "sqs", "dynamodb")})
        push_api = push_local.describe_api(self.template, self.gateway)
        self._start_functions()
        self.stream_pollers += push_local.start(
            self.template,
            self.gateway,
            push_api,
            self.runtimes,
            {
                "dynamodbstreams": LambdaShapedRecords(self.client("dynamodbstreams"), CREDENTIALS),
                "sqs": self.client("sqs"),
            },
            self.region,
            self._stop,
        )
        self._start_schedules()
        self.gateway.serve_api(self._api_runtime())
        self.gateway.start()
        log.info("local stack up in %.1f s: api %s, emulator %s", time.time() - started, self.api_url, self.endpoint)
        return self

    def _start_scanner(self) -> None:
        """``ScanEngine``: clamav where it is installed, else none (with a warning); a clamd of the stack's own."""
        assert self.template is not None
        if "ScanEngine" not in self.parameters:
            self.template.parameters["ScanEngine"] = clamav.default_engine()
        elif self.parameters["ScanEngine"] == "none":
            clamav.log.warning("ScanEngine is none: uploads are processed and served without a malware scan")
        if self.template.parameter("ScanEngine") != "clamav":
            return
        self.clamav_database = clamav.database()
        if "ClamdAddress" not in self.parameters and shutil.which("clamd"):
            self.clamd, self.clamd_behind = clamav.start_clamds(self.state_dir, self.clamav_database)
            self.template.parameters["ClamdAddress"] = str(self.clamd.socket)

    def _check_endpoint(self, endpoint: str) -> None:
        """Each service the stack would use at ``endpoint`` answers one call, or :class:`EndpointUnavailable`."""
        services = [s for s in SERVICES if s not in self.embedded_services]
        reasons = unavailable(endpoint, services, CREDENTIALS, self.region)
        if reasons:
            raise EndpointUnavailable("LocalStack" if is_localstack(endpoint) else f"the endpoint {endpoint}", reasons)

    def _runtime_env(self, spec: Any) -> dict[str, str]:
        assert self.template is not None
        env = spec.environment(self.template)
        env.update(CREDENTIALS)
        env.update(
            AWS_REGION=self.region,
            AWS_DEFAULT_REGION=self.region,
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_LAMBDA_FUNCTION_NAME=spec.name,
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(spec.memory_mb),
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
            # What `sam local` sets: Powertools' Tracer stays off without an X-Ray daemon.
            AWS_SAM_LOCAL="true",
            # The SDK's application id, in every request's User-Agent: the emulator counts requests by function.
            AWS_SDK_UA_APP_ID=spec.logical,
        )
        for service, url in self.endpoints.items():
            if service != "default":
                env[f"AWS_ENDPOINT_URL_{service.upper()}"] = url
        if self.clamav_database is not None:  # clamscan's database, when no clamd runs
            env["CLAMAV_DATABASE"] = str(self.clamav_database)
        return env

    def _start_functions(self) -> None:
        assert self.template is not None
        sqs = self.client("sqs")
        # The dispatchers' receiver loops retry on their own (a second later); with botocore's retries on top,
        # each one went on backing off for seconds after the emulator stopped, and every stop waited for them.
        receiver = self.client("sqs", attempts=1)
        for logical, spec in self.template.functions().items():
            # Workers: the function's reserved concurrency, else its event sources' maxima; the HTTP API,
            # which Lambda scales with its requests, gets HTTP_WORKERS (a burst of one user's requests
            # must not queue everyone else's behind four workers); a scheduled function one.
            by_sources = sum(min(s.max_concurrency, 10) for s in spec.sqs_sources)
            default = by_sources or (HTTP_WORKERS if spec.http_routes else push_local.concurrency(spec) or 1)
            concurrency = spec.reserved_concurrency or default
            env = self._runtime_env(spec)
            runtime = FunctionRuntime(
                spec,
                env,
                self.state_dir / "logs",
                self.template.get_att(logical, "Arn"),
                concurrency,
                self.workers_nice,
                self.heavy_group,
                clamav.behind(self.clamd_behind, env),
                spare=bool(spec.http_routes),  # a user's request never waits for a cold start (FunctionRuntime)
            )
            runtime.warm()
            self.runtimes[logical] = runtime
            for source in spec.sqs_sources:
                if not source.enabled:
                    continue
                queue = self.template.attributes[source.queue]
                dispatcher = self.dispatchers.get(queue["QueueUrl"])
                if dispatcher is None:
                    dispatcher = FairDispatcher(
                        receiver, queue["QueueUrl"], self._stop, self.queue_ages, shared=self.tenant_usage
                    )
                    dispatcher.start()
                    self.dispatchers[queue["QueueUrl"]] = dispatcher
                # each lane's pollers, and its quiet seats (FairDispatcher.heavy_started)
                seats = min(source.max_concurrency, concurrency)
                for index in range(seats + QUIET_SEATS):
                    poller = SqsPoller(
                        runtime,
                        sqs,
                        source,
                        queue["QueueUrl"],
                        queue["Arn"],
                        self.region,
                        self._stop,
                        index,
                        self.queue_ages,
                        LANE_NICE.get(source.name.lower(), 0),
                        dispatcher,
                        HEAVY_NICE,
                        quiet_seat=index >= seats,
                    )
                    poller.start()
                    self.pollers.append(poller)
        queues = {
            self.template.attributes[logical]["QueueName"]: self.template.attributes[logical]["QueueUrl"]
            for logical in self.template.of_type("AWS::SQS::Queue")
        }
        QueueAgePublisher(sqs, self.client("cloudwatch"), queues, self.queue_ages, self._stop).start()
        # AWS/Lambda Invocations, Errors and Duration per function, as Lambda publishes them (GET /admin/metrics)
        runtimes = {runtime.spec.name: runtime for runtime in self.runtimes.values()}
        FunctionMetricsPublisher(self.client("cloudwatch"), runtimes, self._stop).start()

    def _start_schedules(self) -> None:
        """EventBridge schedules: each scheduled function is invoked every period, as its rule would."""
        assert self.template is not None
        for logical, runtime in self.runtimes.items():
            for schedule in runtime.spec.schedules:
                every = self.schedule_every.get(logical, schedule.every_seconds)
                thread = threading.Thread(
                    target=self._run_schedule,
                    args=(runtime, schedule.name, every),
                    name=f"{logical}-{schedule.name}",
                    daemon=True,
                )
                thread.start()

    def _run_schedule(self, runtime: FunctionRuntime, rule: str, every: float) -> None:
        account = self.template.account_id if self.template else ""
        while not self._stop.wait(every):
            event = {
                "version": "0",
                "id": secrets.token_hex(16),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": account,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "region": self.region,
                "resources": [f"arn:aws:events:{self.region}:{account}:rule/{rule}"],
                "detail": {},
            }
            invocation = runtime.invoke(event)
            if not invocation.ok and not self._stop.is_set():
                log.warning("%s (schedule %s) failed: %s", runtime.spec.logical, rule, invocation.error)

    def _api_runtime(self) -> FunctionRuntime | None:
        return next((r for r in self.runtimes.values() if r.spec.http_routes), None)

    def stop(self) -> None:
        self._stop.set()
        if self.gateway:
            self.gateway.stop()
        for dispatcher in self.dispatchers.values():  # while the emulator can still take their messages back
            dispatcher.stop()
        if self.moto:  # first, so that pollers blocked in a long poll return at once
            self.moto.stop()
        if self.moto_dynamodb:
            self.moto_dynamodb.stop()
        for runtime in self.runtimes.values():
            runtime.stop()
        if self.heavy_group:
            self.heavy_group.close()
        for clamd in (self.clamd, self.clamd_behind):
            if clamd:
                clamd.stop()
        for thread in [*self.pollers, *self.dispatchers.values(), *self.stream_pollers]:
            thread.join(timeout=5)

    def wait(self) -> None:
        """Block until :meth:`stop` is called (from a signal handler, say)."""
        while not self._stop.wait(0.5):
            pass
