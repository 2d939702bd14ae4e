"""Settings from environment variables, parsed once and only when first needed.

A plain pydantic model fed with os.environ, not pydantic-settings: importing that costs every cold
start ~50 ms, for features (dotenv files, secrets, JSON values, a CLI) that no setting here uses."""

import os
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    # Environment values are strings: lax mode turns "32" into 32, as pydantic-settings did.
    model_config = ConfigDict(extra="ignore")

    images_table: str = Field(min_length=3)
    images_bucket: str = Field(min_length=3)
    # Who may touch a dataset: "jwt" checks members' roles (the caller's `sub` from API Gateway's JWT
    # authorizer), "open" lets anyone do anything. Failing closed: jwt unless said otherwise.
    auth_mode: Literal["jwt", "open"] = "jwt"
    members_table: str = ""
    # Which image holds which bytes in a dataset (content-addressed uploads).
    hashes_table: str = ""
    # Keys the HMAC of list cursors; the template passes the stack id.
    cursor_secret: str = Field(default="", repr=False)
    aws_region: str | None = None
    aws_default_region: str | None = None
    # Standard SDK override (moto, LocalStack, VPC endpoints): S3 must then be path-style.
    aws_endpoint_url: str | None = None
    # How many HeadObject calls (and conditional writes) confirm-upload runs at once.
    head_concurrency: int = Field(default=32, ge=1, le=256)
    # How long confirm-upload waits for the S3 trigger's verdicts on objects already present.
    confirm_wait_seconds: float = Field(default=10, ge=0, le=10)
    # AWS calls: each function's template entry sets values that fit its own Timeout (an endpoint
    # that never answers must fail the call, not hang it past the function's deadline).
    aws_connect_timeout: float = Field(default=2, gt=0)
    aws_read_timeout: float = Field(default=5, gt=0)
    aws_max_attempts: int = Field(default=3, ge=1, le=10)
    # Largest upload (the template's MaxUploadBytes): prepare-upload signs no larger Content-Length, GET
    # /limits publishes it. At most 20 MiB: `make bench` shows the trigger's memory and time there.
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1, le=20 * 1024 * 1024)
    # S3 trigger: images with more pixels are rejected (decompression bombs).
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    # S3 trigger: how long to wait for a just-written record to reach the s3-key index
    # before calling an object an orphan.
    orphan_recheck_seconds: float = Field(default=1.0, ge=0)
    # Cleanup job: `uploading` records whose upload URL expired this long ago are removed.
    stale_after_hours: float = Field(default=24, gt=0)

    @property
    def region(self) -> str:
        return self.aws_region or self.aws_default_region or "us-east-1"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    # Names are case-insensitive, as pydantic-settings' case_sensitive=False had them.
    return Settings.model_validate({name.lower(): value for name, value in os.environ.items()})
