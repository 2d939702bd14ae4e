"""Powertools logger, metrics and tracer shared by a function's modules.

Each function sets POWERTOOLS_SERVICE_NAME (and the template sets the metrics namespace), so
these module-level instances are that function's; Powertools shares their state across modules.
"""

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

# Most API calls count nothing; the cold-start metric still goes out.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger()
metrics = Metrics()
tracer = Tracer()


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
