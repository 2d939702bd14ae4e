"""Lambda entry point of CleanupFunction (EventBridge schedule)."""

from datetime import datetime, timedelta

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from upload_cleanup import logic
from uploads_core.settings import get_settings
from uploads_core.telemetry import count, logger, metrics, traced


# Powertools' data class, not its parser's EventBridgeModel: only `time` is read, and the parser costs
# the cold start its import (~15 ms of CPU more) and the model's validator, built on the first event.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict:
    # The event's time is "now": a replayed event removes exactly what it would have then.
    now = datetime.fromisoformat(event.time)
    stale_after = timedelta(hours=get_settings().stale_after_hours)
    report = logic.remove_stale_uploads(now, stale_after)
    count("ImagesCleaned", report.removed)
    logger.info("Stale uploads removed", extra=report.model_dump(mode="json"))
    return report.model_dump(mode="json")
