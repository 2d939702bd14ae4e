"""Lambda entry point of CleanupFunction (EventBridge schedule)."""

from datetime import datetime, timedelta

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from upload_cleanup import logic
from uploads_core.settings import get_settings
from uploads_core.telemetry import count, logger, metrics, traced


# The event read as the dict it is: only `time` is needed. Powertools' parser (EventBridgeModel) cost
# the cold start ~15 ms of CPU to import and its model's validator; its data classes ~30 ms.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # The event's time is "now": a replayed event removes exactly what it would have then.
    now = datetime.fromisoformat(event["time"])
    stale_after = timedelta(hours=get_settings().stale_after_hours)
    report = logic.remove_stale_uploads(now, stale_after)
    count("ImagesCleaned", report.removed)
    logger.info("Stale uploads removed", extra=report.model_dump(mode="json"))
    return report.model_dump(mode="json")
