"""Lambda entry point of CleanupFunction (EventBridge schedule)."""

from datetime import timedelta

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from upload_cleanup import logic
from uploads_core.settings import get_settings

logger = Logger()


@logger.inject_lambda_context
@event_parser(model=EventBridgeModel)
def lambda_handler(event: EventBridgeModel, context: LambdaContext) -> dict:
    # The event's time is "now": a replayed event removes exactly what it would have then.
    stale_after = timedelta(hours=get_settings().stale_after_hours)
    report = logic.remove_stale_uploads(event.time, stale_after)
    logger.info("Stale uploads removed", extra=report.model_dump(mode="json"))
    return report.model_dump(mode="json")
