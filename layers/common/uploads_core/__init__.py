"""Shared code of the image-upload functions: settings, models and data access."""
