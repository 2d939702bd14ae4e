"""Run the template's functions in this process, the way Lambda would run them.

Every function shares this interpreter (one sys.path, one sys.modules), so two functions
must not ship different modules under the same name. Invocations are serialised: Lambda
runs one event at a time per container, and os.environ is process-wide.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_stack.template import (
    PSEUDO_DEFAULTS,
    REPO_ROOT,
    FunctionInfo,
    LocalNames,
    function_environment,
    functions,
)

Handler = Callable[[Any, Any], Any]


@dataclass
class LambdaContext:
    """The attributes of the Python runtime's context object that handlers actually use."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


@dataclass
class LambdaRuntime:
    """Invokes functions of ``template`` in-process; handlers stay imported (a warm container)."""

    template: Mapping[str, Any]
    aws_endpoint: str | None = None  # e.g. "http://127.0.0.1:4566"; None leaves AWS_ENDPOINT_URL alone
    stack_name: str = PSEUDO_DEFAULTS["stack_name"]
    region: str = PSEUDO_DEFAULTS["region"]
    account_id: str = PSEUDO_DEFAULTS["account_id"]
    base_dir: Path = REPO_ROOT  # CodeUri/ContentUri are relative to the template's directory
    _handlers: dict[str, Handler] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _container_id: str = field(default_factory=lambda: uuid.uuid4().hex, init=False, repr=False)

    @property
    def names(self) -> dict[str, str]:
        return {"stack_name": self.stack_name, "region": self.region, "account_id": self.account_id}

    def function(self, logical_id: str) -> FunctionInfo:
        try:
            return functions(self.template)[logical_id]
        except KeyError:
            raise KeyError(f"no function {logical_id} in the template") from None

    def function_name(self, logical_id: str) -> str:
        return LocalNames(self.template, **self.names).physical_name(logical_id)

    def function_arn(self, logical_id: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name(logical_id)}"

    def environment(self, logical_id: str) -> dict[str, str]:
        """What os.environ holds while the function runs."""
        info = self.function(logical_id)
        name = self.function_name(logical_id)
        env = function_environment(self.template, logical_id, **self.names)
        # Set by Lambda itself; a function cannot override these.
        env.update(
            {
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(info.memory_size),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{self._container_id}",
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{info.runtime}",
                "LAMBDA_TASK_ROOT": str(self.base_dir / info.code_uri),
                "_HANDLER": info.handler,
                "TZ": ":UTC",
                # Fake credentials: moto accepts anything, and real ones must never be used here.
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                # What `sam local` sets; Powertools then disables X-Ray tracing (no daemon here).
                "AWS_SAM_LOCAL": "true",
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
        )
        if self.aws_endpoint:
            env["AWS_ENDPOINT_URL"] = self.aws_endpoint
        return env

    def handler(self, logical_id: str) -> Handler:
        """Import the function's handler once (cold start) with its environment in place."""
        with self._lock:
            if logical_id not in self._handlers:
                info = self.function(logical_id)
                # Layer content sits at the layer directory's root locally (no python/ subfolder).
                for directory in reversed((info.code_uri, *info.layers)):
                    path = str((self.base_dir / directory).resolve())
                    if path not in sys.path:
                        sys.path.insert(0, path)
                module_name, _, attribute = info.handler.replace("/", ".").rpartition(".")
                with self._environment(logical_id):
                    module = importlib.import_module(module_name)
                self._handlers[logical_id] = getattr(module, attribute)
            return self._handlers[logical_id]

    def context(self, logical_id: str, request_id: str | None = None) -> LambdaContext:
        info = self.function(logical_id)
        name = self.function_name(logical_id)
        return LambdaContext(
            function_name=name,
            function_version="$LATEST",
            invoked_function_arn=self.function_arn(logical_id),
            memory_limit_in_mb=info.memory_size,
            aws_request_id=request_id or str(uuid.uuid4()),
            log_group_name=f"/aws/lambda/{name}",
            log_stream_name=f"local/[$LATEST]{self._container_id}",
            deadline_ms=int(time.time() * 1000) + info.timeout * 1000,
        )

    def invoke(self, logical_id: str, event: Any, request_id: str | None = None) -> Any:
        """Call the function with ``event``; its exceptions propagate to the caller.

        ``request_id`` keeps one id across the retries of an asynchronous invocation, as Lambda does.
        """
        with self._lock:
            handler = self.handler(logical_id)
            context = self.context(logical_id, request_id)
            started = time.monotonic()
            with self._environment(logical_id):
                result = handler(event, context)
            elapsed = time.monotonic() - started
            timeout = self.function(logical_id).timeout
            if elapsed > timeout:
                # Lambda would have killed it; say so rather than silently succeed.
                print(
                    f"WARNING {logical_id} took {elapsed:.1f}s, over its {timeout}s Timeout",
                    file=sys.stderr,
                    flush=True,
                )
            return result

    @contextmanager
    def _environment(self, logical_id: str) -> Iterator[None]:
        # Restored afterwards so that tests and other functions do not inherit it; key by key,
        # because other threads (the servers) read os.environ meanwhile.
        env = self.environment(logical_id)
        saved = {key: os.environ.get(key) for key in (*env, "AWS_PROFILE")}
        os.environ.pop("AWS_PROFILE", None)  # a profile missing locally would break boto3
        os.environ.update(env)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
