"""Domain errors raised by the logic layer; handlers map them to HTTP statuses."""


class ResourceNotFoundError(Exception):
    """A 404: the message says what was not found."""


class ImageNotFoundError(ResourceNotFoundError):
    def __init__(self, image_id: int) -> None:
        super().__init__(f"Image {image_id} not found")
        self.image_id = image_id


class ConflictError(Exception):
    """The request is valid but the image's current state does not allow it."""


class InvalidCursorError(ValueError):
    """A list cursor that this service did not issue for this listing."""


class DatasetNotFoundError(ResourceNotFoundError):
    """No such dataset, or the caller is not one of its members: the same answer for both."""

    def __init__(self, dataset_id: int) -> None:
        super().__init__(f"Dataset {dataset_id} not found")
        self.dataset_id = dataset_id


class ForbiddenError(Exception):
    """A member whose role does not allow the action; the message names the role needed."""


class UnauthenticatedError(Exception):
    """AuthMode=jwt, yet the request carries no verified token: the route is not behind the authorizer."""
