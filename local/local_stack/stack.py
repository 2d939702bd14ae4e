"""The whole local stack: moto for AWS behind the front that checks presigned S3 requests, the template's
resources, its functions in their workers, its HTTP API, and its S3 and schedule triggers."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.serving import BaseWSGIServer, make_server

from local_stack.api_gateway import HttpApi, static_site
from local_stack.auth import LocalIssuer, auth_parameters, issuer_url
from local_stack.lambda_runtime import LambdaRuntime
from local_stack.s3_front import S3Front
from local_stack.template import REPO_ROOT, Names, create_resources, load_template, unsupported
from local_stack.triggers import (
    AsyncInvoker,
    S3Events,
    route_s3_events,
    run_schedule,
    schedule_period,
    schedules,
)

# Marks the stack's own AWS calls (OnFailure destinations): Lambda's service makes them in AWS, so moto's
# request recorder, which tests use to count the application's calls, leaves them out.
INTERNAL_USER_AGENT = "local-stack-internal"


@functools.cache  # moto is patched once per process
def _keep_internal_calls_out_of_moto_recordings() -> None:
    from moto.moto_api import recorder

    record = recorder._record_request

    def record_unless_internal(request: Any, body: bytes | None = None) -> None:
        if INTERNAL_USER_AGENT not in request.headers.get("User-Agent", ""):
            record(request, body)

    recorder._record_request = record_unless_internal  # type: ignore[method-assign]


@functools.cache
def make_dynamodb_writes_atomic() -> None:
    """DynamoDB checks a write's condition and applies it atomically; moto, serving requests in threads,
    checks then writes, and answers from the live item. Concurrent functions (the API and the S3 trigger)
    need AWS's rule: each write request is handled whole, its answer included, under one lock."""
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.RLock()

    def atomic(method: Any) -> Any:
        def locked(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return locked

    for name in ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"):
        setattr(DynamoHandler, name, atomic(getattr(DynamoHandler, name)))


@functools.cache
def keep_no_dead_objects() -> None:
    """moto keeps every model object it ever made in class-wide lists, for its dashboard: deleted S3
    versions, and the deep copy of every version in the bucket (with its ACL) that each
    ListObjectVersions makes. A stack serving confirm-upload's listings grew by the bucket's size per
    call (240 small images: 128 to 728 MB). The backends hold what exists; the lists no longer do
    (`/moto-api/data.json` then lists no objects)."""
    from moto.core.common_models import BaseModel

    BaseModel.__new__ = staticmethod(lambda cls, *args, **kwargs: object.__new__(cls))  # type: ignore[assignment]


@functools.cache
def list_versions_without_copying_bytes() -> None:
    """moto's ListObjectVersions deep-copies every version in the bucket, bytes included, to mark the
    latest ones: a bucket of 2,000 photos is gigabytes copied per call (confirm-upload lists a dataset,
    DELETE and cleanup an image's versions). A listed copy now shares the version's bytes, and never
    closes them."""
    from moto.s3.models import FakeKey

    class Listed(FakeKey):
        def __del__(self) -> None:  # FakeKey's closes its byte buffer: here, the listed version's
            pass

    def listed(self: FakeKey, memo: dict) -> FakeKey:
        clone = object.__new__(Listed)
        clone.__dict__.update(self.__dict__)
        return clone

    FakeKey.__deepcopy__ = listed  # type: ignore[attr-defined]


def aws_client(service: str, endpoint: str, user_agent_extra: str = "") -> Any:
    fake = "testing"  # the local stack's fake credentials
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        config=Config(region_name="us-east-1", user_agent_extra=user_agent_extra),
        aws_access_key_id=fake,
        aws_secret_access_key=fake,
    )


class LocalStack:
    """Start with ``start()``, stop with ``stop()``; ``invoke()`` runs a function against it.

    ``retry_delay``: seconds between Lambda's retries of a failed asynchronous invocation (minutes in AWS);
    ``schedule_period``: when given, the period of every schedule in seconds; ``auth``: the template's
    AuthMode, "open", or "jwt" with the local OIDC issuer at {api_url}/_local/oidc as JwtIssuer.
    """

    def __init__(
        self,
        template: Mapping[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        api_port: int = 3000,
        aws_port: int = 4566,
        stack_name: str = "local",
        base_dir: Path = REPO_ROOT,
        retry_delay: float = 1.0,
        schedule_period: float | None = None,
        auth: str = "open",
    ) -> None:
        self.template = template if template is not None else load_template()
        self.host, self.base_dir, self.auth = host, base_dir, auth
        self.retry_delay, self.schedule_period = retry_delay, schedule_period
        self.stack_name = stack_name
        self.ports = {"api": api_port, "aws": aws_port}  # the real ones once started, when 0 was asked
        self.resources: dict[str, str] = {}
        self.triggers: list[str] = []  # what triggers what, for the banner
        self.issuer: LocalIssuer | None = None
        self.runtime: LambdaRuntime | None = None
        self.api: HttpApi | None = None
        self._servers: list[BaseWSGIServer] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._s3_events: S3Events | None = None

    def url(self, server: str) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host  # where to call a listener
        return f"http://{host}:{self.ports[server]}"

    @property
    def aws_endpoint(self) -> str:
        return self.url("aws")

    @property
    def api_url(self) -> str:
        return self.url("api")

    def client(self, service: str, *, internal: bool = False) -> Any:
        """A boto3 client of the local AWS endpoint; ``internal``: the stack's own plumbing (not recorded)."""
        return aws_client(service, self.aws_endpoint, INTERNAL_USER_AGENT if internal else "")

    def _thread(self, name: str, target: Any, *args: Any, **kwargs: Any) -> None:
        self._threads.append(
            threading.Thread(target=target, args=args, kwargs=kwargs, name=name, daemon=True)
        )
        self._threads[-1].start()

    def _serve(self, name: str, app: Any, **kwargs: Any) -> None:
        server = make_server(self.host, self.ports[name], app, threaded=True, **kwargs)
        self.ports[name] = server.server_port
        self._servers.append(server)
        self._thread(f"{name}-server", server.serve_forever, poll_interval=0.05)  # a short poll: a quick stop

    def start(self) -> LocalStack:
        if problems := unsupported(self.template):
            raise ValueError("\n".join(problems))
        _keep_internal_calls_out_of_moto_recordings()
        route_s3_events()
        make_dynamodb_writes_atomic()
        keep_no_dead_objects()
        list_versions_without_copying_bytes()
        self._serve(
            "aws",
            S3Front(DomainDispatcherApplication(create_backend_app)),
            request_handler=MotoRequestHandler,
        )
        # The API's port before anything else: the issuer's URL is a parameter all the rest resolves with.
        self._serve("api", lambda environ, start: (self.api or ServiceUnavailable())(environ, start))
        names = Names(
            self.template, stack_name=self.stack_name, parameters=auth_parameters(self.auth, self.api_url)
        )
        self.issuer = LocalIssuer(issuer_url(self.api_url)) if self.auth == "jwt" else None
        clients = (self.client("dynamodb"), self.client("s3"), self.client("sqs"))
        self.resources = create_resources(names, *clients)
        self.runtime = LambdaRuntime(names, aws_endpoint=self.aws_endpoint, base_dir=self.base_dir)
        site = static_site(self.issuer.url if self.issuer else None)
        self.api = HttpApi.from_template(names, self.runtime.invoke, first=self.issuer, fallback=site)
        # The triggers: S3 events and schedules, invoking asynchronously.
        invoker = AsyncInvoker(
            self.runtime, self.client("sqs", internal=True), self.retry_delay, self._stopping
        )
        self._s3_events = S3Events(names, self.client("s3", internal=True), invoker)
        self.triggers = list(self._s3_events.described)
        for function_id, rule_arn, expression in schedules(names):
            if (period := schedule_period(expression)) is None:
                self.triggers.append(f"{expression} -> {function_id} (not run locally)")
                continue
            note = f" (every {self.schedule_period:g}s locally)" if self.schedule_period else ""
            self.triggers.append(f"{expression} -> {function_id}{note}")
            args = (function_id, rule_arn, self.schedule_period or period, invoker, self._stopping)
            self._thread(f"schedule-{function_id}", run_schedule, *args)
        return self

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Run a function of the template in its worker, against the local AWS endpoint."""
        return self.runtime.invoke(logical_id, event)  # type: ignore[union-attr]

    def stop(self) -> None:
        # Triggers first, then the workers: no thread is left waiting for a running invocation.
        self._stopping.set()
        if self._s3_events:
            self._s3_events.close()
        if self.runtime:
            self.runtime.close()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        deadline = time.monotonic() + 5
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._servers, self._threads, self._s3_events = [], [], None
