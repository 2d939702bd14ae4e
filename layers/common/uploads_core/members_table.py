"""Data access for the members table (DynamoDB through pynamodb): who may touch which dataset.

One item per (dataset, member) with the member's role, and one per dataset (sub `#dataset`) that
says the dataset exists and counts its owners. Every change of owners is a transaction with that
count, conditional on it, so concurrent changes can never leave a dataset without an owner.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from uploads_core import dynamodb
from uploads_core.models import DatasetAccess, Member, Role, format_utc, utc_now

_DATASET = "#dataset"  # the sub of a dataset's own item (subs never start with "#")
_Meta = dynamodb.meta(lambda s: s.members_table)


class MemberIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "member-index"
        projection = AllProjection()

    sub = UnicodeAttribute(hash_key=True)
    dataset_id = NumberAttribute(range_key=True)


class MemberRecord(Model):
    Meta = _Meta

    dataset_id = NumberAttribute(hash_key=True)
    sub = UnicodeAttribute(range_key=True)
    role = UnicodeAttribute(null=True)  # a member's
    owners = NumberAttribute(null=True)  # the dataset item's
    created_at = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)

    member_index = MemberIndex()


dynamodb.with_timeouts(_Meta)


class LastOwnerError(Exception):
    """The change would leave the dataset without an owner."""


class ChangedMeanwhile(Exception):
    """Another change of this membership won the race; reading again and retrying may succeed."""


def get_role(dataset_id: int, sub: str) -> Role | None:
    """The member's role, or None (not a member, or no such dataset): one consistent GetItem."""
    try:
        record = MemberRecord.get(dataset_id, sub, consistent_read=True)
    except MemberRecord.DoesNotExist:
        return None
    return Role(record.role) if record.role else None


def create_dataset(dataset_id: int, owner: str) -> bool:
    """Creates the dataset with `owner` as its only owner; False when it already exists."""
    now = format_utc(utc_now())
    try:
        with TransactWrite(connection=dynamodb.connection()) as transaction:
            dataset = MemberRecord(dataset_id, _DATASET, owners=1, created_at=now, updated_at=now)
            transaction.save(dataset, condition=MemberRecord.sub.does_not_exist())
            member = MemberRecord(dataset_id, owner, role=Role.OWNER, created_at=now, updated_at=now)
            transaction.save(member)
    except TransactWriteError as exc:
        if _cancelled(exc):
            return False
        raise
    return True


def datasets_of(sub: str) -> Iterator[DatasetAccess]:
    for record in MemberRecord.member_index.query(sub):
        yield DatasetAccess(dataset_id=record.dataset_id, role=Role(record.role))


def members_of(dataset_id: int) -> list[Member]:
    records = MemberRecord.query(dataset_id, consistent_read=True)
    return [Member(sub=r.sub, role=Role(r.role)) for r in records if r.sub != _DATASET]


def set_role(dataset_id: int, sub: str, role: Role, current: Role | None) -> None:
    """Gives `sub` this role in the dataset, conditional on its `current` one (None: not a member).

    Raises LastOwnerError if that would remove the last owner, ChangedMeanwhile if `current` is stale.
    """
    if role == current:
        return
    now = format_utc(utc_now())
    with _changing(current) as transaction:
        if current is None:
            added = MemberRecord(dataset_id, sub, role=role, created_at=now, updated_at=now)
            transaction.save(added, condition=MemberRecord.sub.does_not_exist())
        else:
            actions = [MemberRecord.role.set(role), MemberRecord.updated_at.set(now)]
            condition = MemberRecord.role == str(current)
            transaction.update(MemberRecord(dataset_id, sub), actions, condition=condition)
        _count_owners(transaction, dataset_id, current, role, now)


def remove(dataset_id: int, sub: str, current: Role) -> None:
    """Removes the member, conditional on its `current` role; same errors as `set_role`."""
    now = format_utc(utc_now())
    with _changing(current) as transaction:
        transaction.delete(MemberRecord(dataset_id, sub), condition=MemberRecord.role == str(current))
        _count_owners(transaction, dataset_id, current, None, now)


def _count_owners(transaction: TransactWrite, dataset_id: int, old: Role | None, new: Role | None, now: str):
    dataset = MemberRecord(dataset_id, _DATASET)
    change = (new == Role.OWNER) - (old == Role.OWNER)
    if change > 0:
        transaction.update(dataset, [MemberRecord.owners.add(1), MemberRecord.updated_at.set(now)])
    elif change < 0:
        actions = [MemberRecord.owners.add(-1), MemberRecord.updated_at.set(now)]
        transaction.update(dataset, actions, condition=MemberRecord.owners > 1)
    else:  # the dataset must still exist
        transaction.condition_check(MemberRecord, dataset_id, _DATASET, MemberRecord.sub.exists())


@contextmanager
def _changing(current: Role | None) -> Iterator[TransactWrite]:
    """A transaction whose cancellation says why: the last owner would go, or a race was lost."""
    try:
        with TransactWrite(connection=dynamodb.connection()) as transaction:
            yield transaction
    except TransactWriteError as exc:
        if not _cancelled(exc):
            raise
        reasons = [r.code if r else None for r in exc.cancellation_reasons or []]
        # The dataset item's condition comes last: owners > 1 (or only that it exists).
        if current == Role.OWNER and reasons[-1:] == ["ConditionalCheckFailed"]:
            raise LastOwnerError() from None
        raise ChangedMeanwhile() from None


def _cancelled(exc: TransactWriteError) -> bool:
    return exc.cause_response_code == "TransactionCanceledException"
