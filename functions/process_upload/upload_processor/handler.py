"""Lambda entry point of ProcessUploadFunction (S3 ObjectCreated:* on the datasets/ prefix)."""

from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from upload_processor import logic
from upload_processor.models import UploadedObject

logger = Logger()


class RecordsFailed(Exception):
    """Raised after the whole batch ran, so Lambda retries the event (verdicts are idempotent)."""


@logger.inject_lambda_context
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict:
    outcomes, failed = [], []
    records = list(event.records)
    for record in records:
        s3_object = record.s3.get_object
        # Keys arrive URL-encoded, `+` for a space.
        key = unquote_plus(s3_object.key)
        if not record.event_name.startswith("ObjectCreated:"):
            continue
        obj = UploadedObject(key=key, size=s3_object.size, etag=s3_object.etag, sequencer=s3_object.sequencer)
        try:
            outcome = logic.process_object(obj)
        except Exception:
            # One bad record must not stop the others; the batch is retried as a whole at the end.
            logger.exception("Processing failed", extra={"s3_key": key})
            failed.append(key)
            continue
        logger.info("Processed", extra=outcome.model_dump(mode="json", exclude_none=True))
        outcomes.append(outcome)
    if failed:
        raise RecordsFailed(f"{len(failed)} of {len(records)} records failed: {failed[:5]}")
    return {"processed": [o.model_dump(mode="json", exclude_none=True) for o in outcomes]}
