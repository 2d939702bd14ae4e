"""The local stack runs each function in worker processes of its own, concurrently, as Lambda does.

The stub functions meet through files (the test and the workers are different processes): every
wait has a deadline, none hopes for an overlap. The workers' end with the stack is tested in
tests/integration/test_local_stack.py.
"""

import json
import os
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from local_stack.lambda_runtime import FunctionError, LambdaRuntime
from local_stack.template import Names, load_template

STUB = """
    import os
    import time
    from pathlib import Path


    def _wait(condition, what, seconds=10.0):
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not after {seconds}s")
            time.sleep(0.005)


    def wait_for_file(event, context):
        \"\"\"Says it started (its pid in event["started"]), then waits for event["file"].\"\"\"
        args = event.get("queryStringParameters") or event  # also behind the HTTP API
        Path(args["started"] + ".tmp").write_text(str(os.getpid()))
        os.replace(args["started"] + ".tmp", args["started"])  # appears with its content
        _wait(lambda: os.path.exists(args["file"]), args["file"], float(args.get("seconds", 10)))
        return {"pid": os.getpid()}


    def touch(event, context):
        Path(event["file"]).touch()
        return {"pid": os.getpid()}


    def rendezvous(event, context):
        \"\"\"Arrives in event["dir"], then waits until event["count"] invocations have arrived.\"\"\"
        Path(event["dir"], context.aws_request_id).touch()
        _wait(lambda: len(os.listdir(event["dir"])) >= event["count"], "the other invocations")
        return {"pid": os.getpid()}


    def alone(event, context):
        \"\"\"Holds the function's lock until another invocation arrives, or event["seconds"] pass.\"\"\"
        arrival = Path(event["dir"], context.aws_request_id)
        arrival.touch()
        try:
            lock = os.open(event["lock"], os.O_CREAT | os.O_EXCL)  # FileExistsError: not alone
            try:
                deadline = time.monotonic() + event["seconds"]
                while len(os.listdir(event["dir"])) < 2 and time.monotonic() < deadline:
                    time.sleep(0.005)
                return {"pid": os.getpid(), "others": len(os.listdir(event["dir"])) - 1}
            finally:
                os.close(lock)
                os.unlink(event["lock"])
        finally:
            arrival.unlink()


    def environment(event, context):
        names = ("POWERTOOLS_SERVICE_NAME", "ONLY_ONE", "ONLY_TWO", "AWS_LAMBDA_FUNCTION_NAME")
        return {"pid": os.getpid(), **{name: os.environ.get(name) for name in names}}


    def fail(event, context):
        raise ValueError("boom")


    class Odd(Exception):
        def __init__(self, a, b):  # cannot be unpickled from its args, nor pickled with a lock
            super().__init__(f"{a} and {b}")
            self.lock = __import__("threading").Lock()


    def fail_oddly(event, context):
        raise Odd("this", "that")


    def not_json(event, context):
        return {"when": object()}
"""


def stub_template(module: str) -> dict:
    def function(handler: str, timeout: int = 20, **props: object) -> dict:
        properties = {"CodeUri": "fn/", "Handler": f"{module}.{handler}", "Runtime": "python3.13"}
        return {
            "Type": "AWS::Serverless::Function",
            "Properties": {**properties, "Timeout": timeout, **props},
        }

    def env(**variables: str) -> dict:
        return {"Variables": variables}

    return {
        "Parameters": {"SingleConcurrency": {"Type": "Number", "Default": 1}},
        "Conditions": {"Never": {"Fn::Equals": ["a", "b"]}},
        "Resources": {
            "Waiter": function(
                "wait_for_file",
                Events={"Wait": {"Type": "HttpApi", "Properties": {"Method": "GET", "Path": "/"}}},
            ),
            "Toucher": function("touch"),
            "Pair": function("rendezvous", ReservedConcurrentExecutions=2),
            # Resolved like the template's: Fn::If on a condition, a parameter, AWS::NoValue.
            "Single": function(
                "alone",
                ReservedConcurrentExecutions={
                    "Fn::If": ["Never", {"Ref": "AWS::NoValue"}, {"Ref": "SingleConcurrency"}]
                },
            ),
            "Unreserved": function(
                "touch",
                ReservedConcurrentExecutions={"Fn::If": ["Never", 5, {"Ref": "AWS::NoValue"}]},
            ),
            "One": function("environment", Environment=env(POWERTOOLS_SERVICE_NAME="one", ONLY_ONE="1")),
            "Two": function("environment", Environment=env(POWERTOOLS_SERVICE_NAME="two", ONLY_TWO="2")),
            "Failing": function("fail"),
            "FailingOddly": function("fail_oddly"),
            "NotJson": function("not_json"),
            "Slow": function("wait_for_file", timeout=1),
            "Missing": function("handler", Handler="no_such_module.handler"),
        },
    }


@pytest.fixture
def stub(tmp_path):
    module = f"stub_workers_{uuid.uuid4().hex}"
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / f"{module}.py").write_text(textwrap.dedent(STUB))
    template = stub_template(module)
    (tmp_path / "template.yaml").write_text(json.dumps(template))  # JSON is YAML
    return template, tmp_path


@pytest.fixture
def runtime(stub):
    template, base_dir = stub
    runtime = LambdaRuntime(Names(template), base_dir=base_dir)
    yield runtime
    runtime.close()


def in_thread(call, *args):
    """Run ``call(*args)`` in a thread; the returned function joins it and returns or raises its outcome."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = call(*args)
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join(timeout: float = 30) -> object:
        thread.join(timeout)
        assert not thread.is_alive(), f"{call} still running after {timeout}s"
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    return join


def wait_for_file(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} not there after {timeout}s"
        time.sleep(0.01)


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_concurrency_is_the_reserved_concurrency_capped_by_local_max_concurrency(stub, monkeypatch):
    template, base_dir = stub
    assert LambdaRuntime(Names(template), base_dir=base_dir).concurrency("Pair") == 2
    assert LambdaRuntime(Names(template), base_dir=base_dir).concurrency("Single") == 1
    assert LambdaRuntime(Names(template), base_dir=base_dir).concurrency("Unreserved") == 4
    assert LambdaRuntime(Names(template), base_dir=base_dir, max_concurrency=1).concurrency("Pair") == 1
    monkeypatch.setenv("LOCAL_MAX_CONCURRENCY", "7")
    assert LambdaRuntime(Names(template), base_dir=base_dir).concurrency("Unreserved") == 7


def test_the_templates_functions_get_their_reserved_concurrency_capped_at_4():
    runtime = LambdaRuntime(Names(load_template()), max_concurrency=4)
    concurrency = {name: runtime.concurrency(name) for name in ("ApiFunction", "ProcessUploadFunction")}
    assert concurrency == {"ApiFunction": 4, "ProcessUploadFunction": 4}  # unreserved; 20
    assert runtime.concurrency("CleanupFunction") == 1


def test_two_functions_run_at_the_same_time(runtime, tmp_path):
    started, done = tmp_path / "started", tmp_path / "done"
    # Waiter blocks until Toucher has run: with one invocation at a time, it would time out instead.
    waiter = in_thread(runtime.invoke, "Waiter", {"started": str(started), "file": str(done)})
    wait_for_file(started)
    toucher = runtime.invoke("Toucher", {"file": str(done)})
    assert waiter()["pid"] != toucher["pid"]


def test_a_function_runs_as_many_invocations_at_once_as_its_reserved_concurrency(runtime, tmp_path):
    event = {"dir": str(tmp_path / "arrivals"), "count": 2}
    (tmp_path / "arrivals").mkdir()
    first = in_thread(runtime.invoke, "Pair", event)
    second = runtime.invoke("Pair", event)  # returns only once both have arrived
    assert first()["pid"] != second["pid"]  # two warm workers


def test_a_function_with_reserved_concurrency_1_never_overlaps_itself(runtime, tmp_path):
    (tmp_path / "arrivals").mkdir()
    # Each holds the lock until another arrives (or 0.5 s): overlapping, one would see the other and
    # the other would find the lock taken.
    event = {"dir": str(tmp_path / "arrivals"), "lock": str(tmp_path / "lock"), "seconds": 0.5}
    calls = [in_thread(runtime.invoke, "Single", event) for _ in range(3)]
    results = [call() for call in calls]
    assert [result["others"] for result in results] == [0, 0, 0]
    assert len({result["pid"] for result in results}) == 1  # one worker, one event at a time


def test_each_function_sees_its_own_environment_and_no_other(runtime):
    one = runtime.invoke("One", {})
    two = runtime.invoke("Two", {})
    again = runtime.invoke("One", {})
    assert one == again  # the same warm worker, untouched by Two's run
    assert (one["POWERTOOLS_SERVICE_NAME"], one["ONLY_ONE"], one["ONLY_TWO"]) == ("one", "1", None)
    assert (two["POWERTOOLS_SERVICE_NAME"], two["ONLY_ONE"], two["ONLY_TWO"]) == ("two", None, "2")
    assert (one["AWS_LAMBDA_FUNCTION_NAME"], two["AWS_LAMBDA_FUNCTION_NAME"]) == ("One", "Two")
    assert "ONLY_ONE" not in os.environ  # nothing leaks into the stack's process


def test_a_handler_exception_reaches_the_caller_with_its_type_name_message_and_frames(runtime):
    with pytest.raises(FunctionError) as raised:
        runtime.invoke("Failing", {}, request_id="req-1")
    assert (type(raised.value).__name__, str(raised.value)) == ("ValueError", "boom")
    payload = raised.value.payload
    assert (payload["errorType"], payload["errorMessage"], payload["requestId"]) == (
        "ValueError",
        "boom",
        "req-1",
    )
    (frame,) = payload["stackTrace"]  # the function's own frames only
    assert 'raise ValueError("boom")' in frame
    assert 'raise ValueError("boom")' in "".join(raised.value.__notes__)  # shown in the stack's logs
    assert runtime.invoke("Toucher", {"file": os.devnull})  # the runtime goes on


def test_an_exception_that_cannot_be_pickled_still_arrives_as_its_type_and_message(runtime):
    for _ in range(2):  # and the worker survives it
        with pytest.raises(FunctionError) as raised:
            runtime.invoke("FailingOddly", {})
        assert (type(raised.value).__name__, str(raised.value)) == ("Odd", "this and that")


def test_a_handler_that_cannot_be_imported_fails_every_invocation(runtime):
    for _ in range(2):
        with pytest.raises(FunctionError) as raised:
            runtime.invoke("Missing", {})
        assert type(raised.value).__name__ == "ModuleNotFoundError"
        assert str(raised.value) == "No module named 'no_such_module'"


def test_a_result_that_is_not_json_fails_the_invocation(runtime):
    with pytest.raises(FunctionError, match="not JSON serializable") as raised:
        runtime.invoke("NotJson", {})
    assert type(raised.value).__name__ == "TypeError"


def test_an_invocation_over_its_timeout_fails_and_its_worker_is_replaced(runtime, tmp_path):
    started, never = tmp_path / "started", tmp_path / "never"
    began = time.monotonic()
    with pytest.raises(FunctionError, match=r"^Task timed out after 1\.00 seconds") as raised:
        runtime.invoke("Slow", {"started": str(started), "file": str(never), "seconds": 60})
    assert time.monotonic() - began < 10  # the cold start is not counted, the 1 s Timeout is
    assert type(raised.value).__name__ == "Sandbox.Timedout"
    timed_out = int(started.read_text())
    assert not is_running(timed_out)  # killed, as Lambda ends the environment
    never.touch()
    assert runtime.invoke("Slow", {"started": str(started), "file": str(never)})["pid"] != timed_out
