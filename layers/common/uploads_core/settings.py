"""Settings from environment variables, parsed once and only when first needed."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    images_table: str = Field(min_length=3)
    images_bucket: str = Field(min_length=3)
    # Keys the HMAC of list cursors; the template passes the stack id.
    cursor_secret: str = Field(default="", repr=False)
    aws_region: str | None = None
    aws_default_region: str | None = None
    # Standard SDK override (moto, LocalStack, VPC endpoints): S3 must then be path-style.
    aws_endpoint_url: str | None = None
    # How many HeadObject calls confirm-upload runs at once.
    head_concurrency: int = Field(default=32, ge=1, le=256)

    @property
    def region(self) -> str:
        return self.aws_region or self.aws_default_region or "us-east-1"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # values come from the environment
