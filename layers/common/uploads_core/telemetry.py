"""Powertools logger, metrics and tracer shared by a function's modules.

Each function sets POWERTOOLS_SERVICE_NAME (and the template sets the metrics namespace), so
these module-level instances are that function's; Powertools shares their state across modules.
"""

import functools
import os
import warnings

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

# Most API calls count nothing; the cold-start metric still goes out.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger()
metrics = Metrics()


def _tracing_wanted() -> bool:
    # Powertools' own rule: only inside Lambda (not `sam local`), unless switched off.
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() in ("1", "true", "yes", "on")
    return bool(os.environ.get("LAMBDA_TASK_ROOT")) and not os.environ.get("AWS_SAM_LOCAL") and not disabled


def traced(handler):
    """Powertools Tracer around a Lambda handler (X-Ray subsegments for it and every AWS call).

    The Tracer, and the X-Ray SDK it imports (about 110 ms), are created on the first call and
    only where tracing can happen: importing a handler stays cheap, and tests and the local
    stack never load the SDK. In Lambda the first invocation pays for it.
    """
    wrapped = None

    @functools.wraps(handler)
    def run(event, context):
        nonlocal wrapped
        if wrapped is None:
            if _tracing_wanted():
                from aws_lambda_powertools import Tracer

                # botocore only: every AWS call goes through it, pynamodb's too. Patching all that
                # the SDK supports imports a dozen patchers, and pynamodb's traced each DynamoDB call
                # a second time.
                wrapped = Tracer(patch_modules=("botocore",)).capture_lambda_handler(handler)
            else:
                wrapped = handler
        return wrapped(event, context)

    return run


def count(name: str, value: int = 1, **dimensions: str) -> None:
    """A count metric; with dimensions it goes out on its own so they do not tag other metrics."""
    if not value:
        return
    if not dimensions:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        return
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=metrics.namespace) as metric:
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=dim)
