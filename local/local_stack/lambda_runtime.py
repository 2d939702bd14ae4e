"""Run the template's functions the way Lambda does: each function in worker processes of its own.

A worker is a spawned process (``ProcessPoolExecutor``) whose environment and sys.path are the
function's before its handler is imported (``worker.start``), and which stays warm between events.
It runs one event at a time; a function has at most as many workers as its ReservedConcurrentExecutions
(capped at ``LOCAL_MAX_CONCURRENCY``, 4 by default), created on demand. A further invocation waits for
a free worker, where Lambda would throttle it and retry. Different functions run concurrently.

An invocation longer than the function's Timeout fails as in Lambda ("Task timed out after ...") and
its worker is killed. That is why each worker is an executor of its own: a pool breaks as a whole when
one of its processes dies, which would fail the function's other invocations too.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_stack import worker
from local_stack.template import (
    NO_VALUE,
    PSEUDO_DEFAULTS,
    REPO_ROOT,
    FunctionInfo,
    LocalNames,
    function_environment,
    functions,
)
from local_stack.worker import LambdaContext

__all__ = ["FunctionError", "LambdaContext", "LambdaRuntime"]

# A fresh interpreter, not a fork of the stack's (its threads, locks and imported modules). A script that
# uses the runtime needs the `if __name__ == "__main__":` guard: spawn imports the main module again.
_SPAWN = multiprocessing.get_context("spawn")


class FunctionError(Exception):
    """A failed invocation as Lambda reports it; ``payload`` has errorType, errorMessage, stackTrace.

    Raised as a subclass named after errorType (``ValueError``, ``Sandbox.Timedout``...): the function's
    own exception object stays in its worker.
    """

    def __init__(self, payload: Mapping[str, Any]) -> None:
        super().__init__(payload["errorMessage"])
        self.payload = dict(payload)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> FunctionError:
        error = type(str(payload["errorType"]), (cls,), {"__module__": "builtins"})(payload)
        if payload.get("stackTrace"):  # shown under the stack's own traceback in logs
            error.add_note("In the function:\n" + "".join(payload["stackTrace"]).rstrip())
        return error


def _kill(executor: ProcessPoolExecutor) -> None:
    # As Lambda ends an environment: no code of the worker runs any more (a graceful exit would take
    # its interpreter's teardown, ~0.5 s). Python 3.14 has executor.kill_workers(); before it, the
    # executor's process table.
    for process in list((executor._processes or {}).values()):
        process.kill()
    executor.shutdown(cancel_futures=True)


class _Workers:
    """One function's workers: up to ``size`` one-process executors, reused while warm."""

    def __init__(self, size: int, initargs: tuple[Any, ...]) -> None:
        self.size = size
        self._initargs = initargs
        self._idle: list[ProcessPoolExecutor] = []
        self._all: set[ProcessPoolExecutor] = set()
        self._changed = threading.Condition()
        self._closed = False

    def take(self) -> ProcessPoolExecutor:
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._idle or len(self._all) < self.size)
            if self._closed:
                raise RuntimeError("the local stack is stopping")
            if self._idle:
                return self._idle.pop()
            executor = ProcessPoolExecutor(
                1, mp_context=_SPAWN, initializer=worker.start, initargs=self._initargs
            )
            self._all.add(executor)
        try:
            executor.submit(os.getpid).result()  # the cold start, which Lambda does not count in Timeout
        except BaseException:
            self.discard(executor)
            raise
        return executor

    def give_back(self, executor: ProcessPoolExecutor) -> None:
        with self._changed:
            if not self._closed:  # else close() has ended it
                self._idle.append(executor)
                self._changed.notify()

    def discard(self, executor: ProcessPoolExecutor) -> None:
        with self._changed:
            if executor not in self._all:
                return  # close() ended it (one thread only may shut an executor down)
            self._all.remove(executor)
            self._changed.notify()
        _kill(executor)

    def close(self) -> None:
        """Kills every worker, idle or busy (their invocations fail); no more invocations."""
        with self._changed:
            self._closed = True
            executors, self._idle, self._all = self._all, [], set()
            self._changed.notify_all()
        for executor in executors:
            _kill(executor)


def _max_concurrency() -> int:
    return int(os.environ.get("LOCAL_MAX_CONCURRENCY", "4"))


@dataclass
class LambdaRuntime:
    """Invokes functions of ``template`` in their own worker processes; ``close()`` ends them."""

    template: Mapping[str, Any]
    aws_endpoint: str | None = None  # e.g. "http://127.0.0.1:4566"; None leaves AWS_ENDPOINT_URL alone
    stack_name: str = PSEUDO_DEFAULTS["stack_name"]
    region: str = PSEUDO_DEFAULTS["region"]
    account_id: str = PSEUDO_DEFAULTS["account_id"]
    parameters: Mapping[str, Any] = field(default_factory=dict)  # template parameter overrides
    base_dir: Path = REPO_ROOT  # CodeUri/ContentUri are relative to the template's directory
    max_concurrency: int = field(default_factory=_max_concurrency)  # per function
    stdout_to_stderr: bool = False  # the functions' stdout goes to stderr (`invoke` prints its result)
    _workers: dict[str, _Workers] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _container_id: str = field(default_factory=lambda: uuid.uuid4().hex, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)

    @property
    def names(self) -> dict[str, Any]:
        return {
            "stack_name": self.stack_name,
            "region": self.region,
            "account_id": self.account_id,
            "parameters": self.parameters,
        }

    def function(self, logical_id: str) -> FunctionInfo:
        try:
            return functions(self.template)[logical_id]
        except KeyError:
            raise KeyError(f"no function {logical_id} in the template") from None

    def function_name(self, logical_id: str) -> str:
        return LocalNames(self.template, **self.names).physical_name(logical_id)

    def function_arn(self, logical_id: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name(logical_id)}"

    def concurrency(self, logical_id: str) -> int:
        """How many invocations of the function may run at once."""
        reserved = LocalNames(self.template, **self.names).resolve(
            self.function(logical_id).properties.get("ReservedConcurrentExecutions")
        )
        if reserved is None or reserved is NO_VALUE:
            return self.max_concurrency
        # 0 would throttle every invocation in AWS; locally the function still runs, one at a time.
        return max(1, min(int(reserved), self.max_concurrency))

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

    def _workers_of(self, logical_id: str) -> _Workers:
        with self._lock:
            if self._closed:
                raise RuntimeError("the local stack is stopping")
            if logical_id not in self._workers:
                info = self.function(logical_id)
                # Layer content sits at the layer directory's root locally (no python/ subfolder).
                paths = [str((self.base_dir / d).resolve()) for d in (info.code_uri, *info.layers)]
                initargs = (self.environment(logical_id), paths, info.handler, self.stdout_to_stderr)
                self._workers[logical_id] = _Workers(self.concurrency(logical_id), initargs)
            return self._workers[logical_id]

    def invoke(self, logical_id: str, event: Any, request_id: str | None = None) -> Any:
        """Call the function with ``event`` and return its (JSON) result; failures raise FunctionError.

        ``request_id`` keeps one id across the retries of an asynchronous invocation, as Lambda does.
        """
        workers = self._workers_of(logical_id)
        executor = workers.take()
        context = self.context(logical_id, request_id)
        timeout = self.function(logical_id).timeout
        try:
            error, result = executor.submit(worker.invoke, event, context).result(timeout=timeout)
        except BaseException as failure:
            workers.discard(executor)  # Lambda ends the environment; the next event starts a new one
            if isinstance(failure, TimeoutError):
                message = f"Task timed out after {timeout:.2f} seconds"
                raise FunctionError.from_payload(_payload("Sandbox.Timedout", message, context)) from None
            if isinstance(failure, BrokenProcessPool):
                message = "Runtime exited without providing a reason"
                raise FunctionError.from_payload(_payload("Runtime.ExitError", message, context)) from None
            raise
        workers.give_back(executor)
        if error is not None:
            raise FunctionError.from_payload(error)
        return json.loads(result)

    def close(self) -> None:
        """End every worker process (a running invocation fails)."""
        with self._lock:
            self._closed = True
            workers = list(self._workers.values())
        for function_workers in workers:
            function_workers.close()


def _payload(error_type: str, message: str, context: LambdaContext) -> dict[str, Any]:
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": context.aws_request_id,
        "stackTrace": [],
    }
