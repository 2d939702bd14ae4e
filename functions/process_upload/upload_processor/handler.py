"""Lambda entry point of ProcessUploadFunction (S3 ObjectCreated:* on the datasets/ prefix)."""

from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.typing import LambdaContext

from upload_processor import logic
from upload_processor.models import UploadedObject
from uploads_core.telemetry import count, logger, metrics, traced

_METRICS = {"uploaded": "ImagesUploaded", "rejected": "ImagesRejected", "orphan_deleted": "OrphansDeleted"}


class RecordsFailed(Exception):
    """Raised after the whole batch ran, so Lambda retries the event (verdicts are idempotent)."""


# The S3 event read as the dict it is, not through Powertools' S3Event: importing its data classes
# (every event source's) cost the cold start ~30 ms of CPU, for five fields of each record.
@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    outcomes, failed = [], []
    records = event["Records"]
    for record in records:
        s3_object = record["s3"]["object"]
        # Keys arrive URL-encoded, `+` for a space.
        key = unquote_plus(s3_object["key"])
        if not record["eventName"].startswith("ObjectCreated:"):
            continue
        # S3's request id correlates this record's lines with the PUT that caused it.
        logger.set_correlation_id(record["responseElements"].get("x-amz-request-id"))
        logger.append_keys(s3_key=key, dataset_id=_dataset_id(key), image_id=None)
        try:
            if not s3_object.get("versionId"):
                raise ValueError("the event has no versionId: the images bucket must be versioned")
            obj = UploadedObject(
                key=key,
                size=s3_object["size"],
                etag=s3_object.get("eTag") or "",
                sequencer=s3_object["sequencer"],
                version_id=s3_object["versionId"],
            )
            outcome = logic.process_object(obj)
        except Exception:
            # One bad record must not stop the others; the batch is retried as a whole at the end.
            logger.exception("Processing failed")
            failed.append(key)
            continue
        logger.append_keys(image_id=outcome.image_id)
        logger.info("Processed", extra=outcome.model_dump(mode="json", exclude_none=True, exclude={"key"}))
        _count(outcome)
        outcomes.append(outcome)
    if failed:
        raise RecordsFailed(f"{len(failed)} of {len(records)} records failed: {failed[:5]}")
    return {"processed": [o.model_dump(mode="json", exclude_none=True) for o in outcomes]}


def _dataset_id(key: str) -> int | None:
    parts = key.split("/")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "datasets" and parts[1].isdigit() else None


def _count(outcome) -> None:
    name = _METRICS.get(outcome.result)
    if outcome.error_reason is not None:
        count(name, Reason=outcome.error_reason.code)
    elif name:
        count(name)
