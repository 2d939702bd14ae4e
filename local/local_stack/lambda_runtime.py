"""Run the template's functions as Lambda does: each function in worker processes of its own.

A worker is a spawned process with the function's environment and sys.path set before its handler is
imported (``worker.start``), warm between events, one event at a time. A function has at most its
ReservedConcurrentExecutions workers (capped by ``LOCAL_MAX_CONCURRENCY``, 4 by default), made on demand;
a further invocation waits for a free one (Lambda would throttle it and retry). An invocation longer than
the function's Timeout fails ("Task timed out") and its worker is killed: hence one executor per worker,
as a pool breaks as a whole when one of its processes dies.
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
from pathlib import Path
from typing import Any

from local_stack import worker
from local_stack.template import NO_VALUE, REPO_ROOT, Names, functions

# A fresh interpreter, not a fork of the stack's threads and locks (a script using the runtime needs the
# `if __name__ == "__main__":` guard: spawn imports the main module again).
_SPAWN = multiprocessing.get_context("spawn")


class FunctionError(Exception):
    """A failed invocation, raised as a subclass named after Lambda's errorType (``ValueError``,
    ``Sandbox.Timedout``...): the function's own exception stays in its worker. ``payload``: Lambda's
    errorType, errorMessage and stackTrace."""

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
    # As Lambda ends an environment: at once (a graceful exit would run the interpreter's teardown).
    for process in list((executor._processes or {}).values()):
        process.kill()
    executor.shutdown(cancel_futures=True)


class _Workers:
    """One function's workers: up to ``size`` one-process executors, kept warm between invocations."""

    def __init__(self, size: int, initargs: tuple[Any, ...]) -> None:
        self._slots = threading.Semaphore(size)  # a further invocation waits for a free worker
        self._lock = threading.Lock()
        self._initargs, self._idle, self._all, self._closed = initargs, [], set(), False

    def take(self) -> ProcessPoolExecutor:
        self._slots.acquire()
        with self._lock:
            if self._closed:
                self._slots.release()  # the next waiter fails too
                raise RuntimeError("the local stack is stopping")
            if self._idle:
                return self._idle.pop()
            executor = ProcessPoolExecutor(1, _SPAWN, initializer=worker.start, initargs=self._initargs)
            self._all.add(executor)
        try:
            executor.submit(os.getpid).result()  # the cold start, which Lambda does not count in Timeout
        except BaseException:
            self.end(executor)
            raise
        return executor

    def give_back(self, executor: ProcessPoolExecutor) -> None:
        with self._lock:
            if not self._closed:  # else close() has ended it
                self._idle.append(executor)
        self._slots.release()

    def end(self, executor: ProcessPoolExecutor) -> None:
        with self._lock:
            ours = executor in self._all  # else close() is ending it: one thread only shuts it down
            self._all.discard(executor)
        if ours:
            _kill(executor)
        self._slots.release()

    def close(self) -> None:
        """Kill every worker, idle or busy: their invocations fail and free their slots."""
        with self._lock:
            self._closed, executors, self._all = True, self._all, set()
        for executor in executors:
            _kill(executor)


class LambdaRuntime:
    """Invokes the functions of the template ``names`` resolves in their workers; ``close()`` ends them.

    ``aws_endpoint``: the functions' AWS_ENDPOINT_URL; ``stdout_to_stderr``: what the functions print goes
    to stderr (`invoke`).
    """

    def __init__(
        self,
        names: Names,
        *,
        aws_endpoint: str | None = None,
        base_dir: Path = REPO_ROOT,  # CodeUri and ContentUri are relative to the template's directory
        max_concurrency: int | None = None,  # per function
        stdout_to_stderr: bool = False,
    ) -> None:
        self.names, self.functions = names, functions(names.template)
        self.aws_endpoint, self.base_dir, self.stdout_to_stderr = aws_endpoint, base_dir, stdout_to_stderr
        self.max_concurrency = max_concurrency or int(os.environ.get("LOCAL_MAX_CONCURRENCY", "4"))
        self._workers: dict[str, _Workers] = {}
        self._lock = threading.Lock()
        self._log_stream = f"local/[$LATEST]{uuid.uuid4().hex}"
        self._closed = False

    def concurrency(self, logical_id: str) -> int:
        """How many invocations of the function may run at once."""
        reserved = self.names.resolve(
            self.functions[logical_id].properties.get("ReservedConcurrentExecutions")
        )
        if reserved is None or reserved is NO_VALUE:
            return self.max_concurrency
        return max(1, min(int(reserved), self.max_concurrency))  # 0 would throttle everything in AWS

    def environment(self, logical_id: str) -> dict[str, str]:
        """What os.environ holds while the function runs."""
        info, region = self.functions[logical_id], self.names.region
        env = self.names.environment(logical_id) | {  # set by Lambda itself
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_LAMBDA_FUNCTION_NAME": logical_id,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(info.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{logical_id}",
            "AWS_LAMBDA_LOG_STREAM_NAME": self._log_stream,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{info.runtime}",
            "LAMBDA_TASK_ROOT": str(self.base_dir / info.code_uri),
            "_HANDLER": info.handler,
            "TZ": ":UTC",
            # Fake credentials: real ones must never be used here.
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            # What `sam local` sets; Powertools then turns X-Ray tracing off (no daemon here).
            "AWS_SAM_LOCAL": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        if "AWS_READ_TIMEOUT" in env:
            # The template's read timeout is for DynamoDB and S3; moto shares this machine's cores and
            # scans a whole partition per Query, so it can be slower. The function's Timeout still holds.
            env["AWS_READ_TIMEOUT"] = str(max(float(env["AWS_READ_TIMEOUT"]), 20))
        return env | ({"AWS_ENDPOINT_URL": self.aws_endpoint} if self.aws_endpoint else {})

    def _workers_of(self, logical_id: str) -> _Workers:
        with self._lock:
            if self._closed:
                raise RuntimeError("the local stack is stopping")
            if logical_id not in self._workers:
                info = self.functions[logical_id]
                # A layer's content sits at its directory's root locally (no python/ folder).
                paths = [str((self.base_dir / d).resolve()) for d in (info.code_uri, *info.layers.values())]
                initargs = (self.environment(logical_id), paths, info.handler, self.stdout_to_stderr)
                self._workers[logical_id] = _Workers(self.concurrency(logical_id), initargs)
            return self._workers[logical_id]

    def invoke(self, logical_id: str, event: Any, request_id: str | None = None) -> Any:
        """The function's (JSON) result for ``event``, or FunctionError. ``request_id``: one id across the
        retries of an asynchronous invocation, as in Lambda."""
        info, workers = self.functions[logical_id], self._workers_of(logical_id)
        executor = workers.take()
        context = worker.LambdaContext(
            function_name=logical_id,
            function_version="$LATEST",
            invoked_function_arn=self.names.arn(logical_id),
            memory_limit_in_mb=info.memory_size,
            aws_request_id=request_id or str(uuid.uuid4()),
            log_group_name=f"/aws/lambda/{logical_id}",
            log_stream_name=self._log_stream,
            deadline_ms=int(time.time() * 1000) + info.timeout * 1000,
        )
        try:
            error, result = executor.submit(worker.invoke, event, context).result(timeout=info.timeout)
        except (TimeoutError, BrokenProcessPool) as failure:
            workers.end(executor)  # as Lambda ends the environment: the next event gets a new one
            error = {
                "errorType": "Runtime.ExitError",
                "errorMessage": "Runtime exited without providing a reason",
            }
            if isinstance(failure, TimeoutError):
                error = {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"Task timed out after {info.timeout:.2f} seconds",
                }
            raise FunctionError.from_payload(
                error | {"requestId": context.aws_request_id, "stackTrace": []}
            ) from None
        except BaseException:
            workers.end(executor)
            raise
        workers.give_back(executor)
        if error is not None:
            raise FunctionError.from_payload(error)
        return json.loads(result)

    def close(self) -> None:
        """End every worker process (a running invocation fails)."""
        with self._lock:
            self._closed, workers = True, list(self._workers.values())
        for function_workers in workers:
            function_workers.close()
