"""Datasets and their members (AuthMode=jwt): creating a dataset, listing one's datasets, sharing."""

from collections.abc import Iterator
from contextlib import contextmanager

from images_api.access import Caller, require, require_jwt_mode
from uploads_core import members_table
from uploads_core.errors import ConflictError, ResourceNotFoundError
from uploads_core.models import DatasetAccess, Member, MemberRemoved, Role


def create_dataset(caller: Caller, dataset_id: int) -> tuple[DatasetAccess, bool]:
    """The caller becomes the owner of a new dataset; (their access, whether it was created now)."""
    require_jwt_mode()
    owner = DatasetAccess(dataset_id=dataset_id, role=Role.OWNER)
    if members_table.create_dataset(dataset_id, caller.sub):
        return owner, True
    if members_table.get_role(dataset_id, caller.sub) == Role.OWNER:
        return owner, False
    # Whether the caller is a member or not, nothing more is said of somebody else's dataset.
    raise ConflictError(f"Dataset {dataset_id} already exists")


def datasets_of(caller: Caller) -> list[DatasetAccess]:
    require_jwt_mode()
    return list(members_table.datasets_of(caller.sub))


def members(caller: Caller, dataset_id: int) -> list[Member]:
    require_jwt_mode()
    require(caller, dataset_id, Role.OWNER)
    return members_table.members_of(dataset_id)


def grant(caller: Caller, dataset_id: int, sub: str, role: Role) -> Member:
    require_jwt_mode()
    require(caller, dataset_id, Role.OWNER)
    with _membership_change(dataset_id):
        members_table.set_role(dataset_id, sub, role, members_table.get_role(dataset_id, sub))
    return Member(sub=sub, role=role)


def revoke(caller: Caller, dataset_id: int, sub: str) -> MemberRemoved:
    require_jwt_mode()
    require(caller, dataset_id, Role.OWNER)
    current = members_table.get_role(dataset_id, sub)
    if current is None:
        raise ResourceNotFoundError(f"No member {sub} in dataset {dataset_id}")
    with _membership_change(dataset_id):
        members_table.remove(dataset_id, sub, current)
    return MemberRemoved(message=f"{sub} is no longer a member of dataset {dataset_id}", sub=sub)


@contextmanager
def _membership_change(dataset_id: int) -> Iterator[None]:
    try:
        yield
    except members_table.LastOwnerError:
        message = f"Dataset {dataset_id} must keep an owner: make another member owner first"
        raise ConflictError(message) from None
    except members_table.ChangedMeanwhile:
        raise ConflictError(f"The members of dataset {dataset_id} changed meanwhile; retry") from None
