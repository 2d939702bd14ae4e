"""Lambda entry point of CleanupFunction (EventBridge schedule)."""

from datetime import timedelta

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from upload_cleanup import logic
from uploads_core.settings import get_settings
from uploads_core.telemetry import count, logger, metrics, traced


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
@event_parser(model=EventBridgeModel)
def lambda_handler(event: EventBridgeModel, context: LambdaContext) -> dict:
    # The event's time is "now": a replayed event removes exactly what it would have then.
    stale_after = timedelta(hours=get_settings().stale_after_hours)
    report = logic.remove_stale_uploads(event.time, stale_after)
    count("ImagesCleaned", report.removed)
    logger.info("Stale uploads removed", extra=report.model_dump(mode="json"))
    return report.model_dump(mode="json")
