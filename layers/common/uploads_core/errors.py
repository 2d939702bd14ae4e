"""Domain errors raised by the logic layer; handlers map them to HTTP statuses."""


class ImageNotFoundError(Exception):
    def __init__(self, image_id: int) -> None:
        super().__init__(f"Image {image_id} not found")
        self.image_id = image_id


class ConflictError(Exception):
    """The request is valid but the image's current state does not allow it."""


class InvalidCursorError(ValueError):
    """A list cursor that this service did not issue for this listing."""
