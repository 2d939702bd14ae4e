"""The whole local stack: moto for AWS, the template's resources, functions, HTTP API and triggers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from local_stack.api_gateway import ApiServer, HttpApi
from local_stack.async_invoke import AsyncInvoker
from local_stack.jwt_authorizer import route_authorizers
from local_stack.lambda_runtime import LambdaRuntime
from local_stack.oidc import LocalIssuer, auth_parameters, issuer_url
from local_stack.s3_events import (
    SEQUENCER,
    S3EventPoller,
    S3Subscription,
    connect_s3_notifications,
    s3_subscriptions,
)
from local_stack.schedules import Scheduler, ScheduleSubscription, schedule_subscriptions
from local_stack.static_site import StaticSite
from local_stack.template import (
    DEFAULT_TEMPLATE,
    PSEUDO_DEFAULTS,
    REPO_ROOT,
    cors_configuration,
    create_resources,
    http_routes,
    load_template,
    route_security,
)

# Marks the stack's own AWS calls (queue polling, destinations): Lambda's service makes them in AWS,
# so moto's request recorder, which tests use to count the application's calls, leaves them out.
INTERNAL_USER_AGENT = "local-stack-internal"


def _keep_internal_calls_out_of_moto_recordings() -> None:
    from moto.moto_api import recorder

    if getattr(recorder, "_local_stack_filter", False):
        return
    record = recorder._record_request

    def record_unless_internal(request: Any, body: bytes | None = None) -> None:
        if INTERNAL_USER_AGENT not in request.headers.get("User-Agent", ""):
            record(request, body)

    recorder._record_request = record_unless_internal  # type: ignore[method-assign]
    recorder._local_stack_filter = True  # type: ignore[attr-defined]


def _stamp_s3_events_when_written() -> None:
    """Moto's S3 event records get S3's versionId (versioned buckets) and sequencer.

    Both are given when moto creates the event, as the object is written, so that sequencers follow
    the order of the writes, not the order in which a poller happens to receive the events.
    """
    from moto.s3 import notifications

    if getattr(notifications, "_local_stack_stamp", False):
        return
    make_event = notifications._get_s3_event

    def stamped_event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event = make_event(event_name, bucket, key, notification_id)
        for record in event["Records"]:
            obj = record["s3"]["object"]
            if bucket.is_versioned:
                obj["versionId"] = key.version_id
            obj["sequencer"] = SEQUENCER.next()  # one per process, like moto's state
        return event

    notifications._get_s3_event = stamped_event
    notifications._local_stack_stamp = True  # type: ignore[attr-defined]


def make_dynamodb_writes_atomic() -> None:
    """DynamoDB checks a write's condition and applies it atomically; moto, serving requests in
    threads, checks then writes. Concurrent functions (the API and the S3 trigger) need AWS's rule."""
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend, "_local_stack_atomic", False):
        return
    lock = threading.RLock()

    def atomic(method: Any) -> Any:
        def locked(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return locked

    for name in ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"):
        setattr(DynamoDBBackend, name, atomic(getattr(DynamoDBBackend, name)))
    DynamoDBBackend._local_stack_atomic = True  # type: ignore[attr-defined]


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Return once host:port accepts TCP connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((_client_host(host), port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class LocalStack:
    """Start with ``start()``, stop with ``stop()``; ``invoke()`` runs a function against it.

    Besides the HTTP API, the template's S3 events and rate schedules invoke their functions
    asynchronously: ``retry_delay`` is the wait between Lambda's retries (minutes in AWS) and
    ``schedule_period``, when given, replaces the period of every schedule (seconds).

    ``auth`` is the template's AuthMode: "open", or "jwt" with the local OIDC issuer (``oidc.py``)
    served at ``{api_url}/_local/oidc`` as JwtIssuer and the routes' JWT authorizer checking its tokens.
    """

    def __init__(
        self,
        template: Mapping[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        api_port: int = 3000,
        aws_port: int = 4566,
        stack_name: str = PSEUDO_DEFAULTS["stack_name"],
        region: str = PSEUDO_DEFAULTS["region"],
        account_id: str = PSEUDO_DEFAULTS["account_id"],
        base_dir: Path = REPO_ROOT,
        retry_delay: float = 1.0,
        schedule_period: float | None = None,
        auth: str = "open",
    ) -> None:
        self.template = template if template is not None else load_template(DEFAULT_TEMPLATE)
        self.host = host
        self.auth = auth
        self.names: dict[str, Any] = {"stack_name": stack_name, "region": region, "account_id": account_id}
        self.issuer: LocalIssuer | None = None
        self.base_dir = base_dir
        self._aws_port = aws_port
        self._api_port = api_port
        self.resources: dict[str, str] = {}
        self._moto: ThreadedMotoServer | None = None
        self.runtime: LambdaRuntime | None = None
        self.api_server: ApiServer | None = None
        self.retry_delay = retry_delay
        self.schedule_period = schedule_period
        self.s3_subscriptions: list[S3Subscription] = []
        self.schedules: list[ScheduleSubscription] = []
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pollers: list[S3EventPoller] = []

    @property
    def aws_endpoint(self) -> str:
        return f"http://{_client_host(self.host)}:{self._aws_port}"

    @property
    def api_url(self) -> str:
        return (
            self.api_server.url if self.api_server else f"http://{_client_host(self.host)}:{self._api_port}"
        )

    def client(self, service: str, *, internal: bool = False) -> Any:
        """A boto3 client for the local AWS endpoint (fake credentials, never a real account).

        ``internal``: a call of the stack's own plumbing, left out of moto's request recordings.
        """
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
            region_name=self.names["region"],
        )
        config = Config(user_agent_extra=INTERNAL_USER_AGENT) if internal else None
        return session.client(service, endpoint_url=self.aws_endpoint, config=config)  # type: ignore[call-overload]

    def start(self) -> LocalStack:
        _keep_internal_calls_out_of_moto_recordings()
        _stamp_s3_events_when_written()
        make_dynamodb_writes_atomic()
        self._moto = ThreadedMotoServer(ip_address=self.host, port=self._aws_port, verbose=False)
        self._moto.start()
        self._aws_port = self._moto.get_host_and_port()[1]  # the real one when port 0 was asked
        wait_for_port(self.host, self._aws_port)
        # The API's port first: the issuer's URL is a template parameter everything below resolves with.
        self.api_server = ApiServer(host=self.host, port=self._api_port)
        self._api_port = self.api_server.port
        self.names["parameters"] = auth_parameters(self.auth, self.api_url)
        self.issuer = LocalIssuer(issuer_url(self.api_url)) if self.auth == "jwt" else None
        self.resources = create_resources(
            self.template, self.client("dynamodb"), self.client("s3"), self.client("sqs"), **self.names
        )
        self.runtime = LambdaRuntime(
            self.template, aws_endpoint=self.aws_endpoint, base_dir=self.base_dir, **self.names
        )
        self.api_server.api = HttpApi.from_routes(
            http_routes(self.template),
            self.runtime.invoke,
            cors=cors_configuration(self.template, **self.names),
            account_id=self.names["account_id"],
            # The upload page of web/ at / (dev convenience), and its /config.json: this issuer, if any.
            fallback=StaticSite(issuer=self.issuer.url if self.issuer else None),
            authorizers=route_authorizers(route_security(self.template, **self.names)),
            reserved=self.issuer,
        )
        self.api_server.start()
        wait_for_port(self.host, self._api_port)
        self._start_triggers()
        return self

    def _start_triggers(self) -> None:
        """S3 notifications and schedules, each in its own thread, all invoking asynchronously."""
        assert self.runtime is not None
        self._stopping = threading.Event()
        sqs = self.client("sqs", internal=True)
        invoker = AsyncInvoker(self.runtime, sqs, retry_delay=self.retry_delay, stopping=self._stopping)
        self.s3_subscriptions = s3_subscriptions(self.template, **self.names)
        queues = connect_s3_notifications(
            self.s3_subscriptions, self.client("s3", internal=True), sqs, self.names["stack_name"]
        )
        for function_id, queue_url in queues.items():
            poller = S3EventPoller(function_id, queue_url, sqs, invoker, SEQUENCER, self._stopping)
            self._threads.append(poller.start())
            self._pollers.append(poller)
        self.schedules = schedule_subscriptions(self.template, **self.names)
        for subscription in self.schedules:
            thread = Scheduler(subscription, invoker, self._stopping, self.schedule_period).start()
            if thread:
                self._threads.append(thread)

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Run a function of the template (in its worker), pointed at the local AWS endpoint."""
        if self.runtime is None:
            raise RuntimeError("start() the stack first")
        return self.runtime.invoke(logical_id, event)

    def stop(self) -> None:
        # Triggers first: they call moto. A woken poller returns at once; the functions' workers are
        # ended, so that no thread waits for a running invocation.
        self._stopping.set()
        for poller in self._pollers:
            poller.wake()
        self._pollers = []
        if self.runtime:
            self.runtime.close()
        deadline = time.monotonic() + 5
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads = []
        if self.api_server:
            self.api_server.stop()
            self.api_server = None
        if self._moto:
            self._moto.stop()
            # ThreadedMotoServer.stop() leaves the listening socket open.
            httpd = getattr(self._moto, "_server", None)
            if httpd is not None:
                httpd.server_close()
            self._moto = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
