"""Who may touch a dataset: the caller's role in it, one GetItem, checked before anything is read or changed.

API Gateway's JWT authorizer (AuthMode=jwt) has verified the token; the function only learns the
caller's `sub` from its claims. Not being a member answers exactly as a missing dataset does (404),
so sequential ids reveal nothing; a member whose role is not enough gets a 403 naming the role needed.
"""

from pydantic import BaseModel

from uploads_core import members_table
from uploads_core.errors import ConflictError, DatasetNotFoundError, ForbiddenError, UnauthenticatedError
from uploads_core.models import Role
from uploads_core.settings import get_settings


class Caller(BaseModel):
    """Who calls: their token's `sub` with AuthMode=jwt; None with AuthMode=open (nobody is checked)."""

    sub: str | None


def caller_from(claims: dict) -> Caller:
    if get_settings().auth_mode == "open":
        return Caller(sub=None)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        # With AuthMode=jwt every data route is behind the authorizer: fail closed if one is not.
        raise UnauthenticatedError()
    return Caller(sub=sub)


def require(caller: Caller, dataset_id: int, role: Role) -> Role | None:
    """The caller's role in the dataset (None with AuthMode=open), if it is at least `role`."""
    if caller.sub is None:
        return None
    have = members_table.get_role(dataset_id, caller.sub)
    if have is None:
        raise DatasetNotFoundError(dataset_id)
    if have.rank < role.rank:
        raise ForbiddenError(f"This needs the {role} role in dataset {dataset_id}; you are a {have}")
    return have


def require_jwt_mode() -> None:
    if get_settings().auth_mode == "open":
        raise ConflictError(
            "Datasets have no members with AuthMode=open (anyone may use any dataset): "
            "members and roles need AuthMode=jwt"
        )
