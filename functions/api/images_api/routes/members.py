"""Routes of datasets and their members (AuthMode=jwt): /datasets, /datasets/{id}, /datasets/{id}/members."""

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from images_api import membership
from images_api.routes.params import DatasetId, MemberSub, caller, responses
from uploads_core.models import DatasetAccess, Member, MemberRemoved, RoleGrant
from uploads_core.telemetry import logger

router = APIGatewayHttpRouter()


@router.get("/datasets", summary="The caller's datasets and roles", responses=responses(409))
def list_datasets() -> list[DatasetAccess]:
    return membership.datasets_of(caller(router))


@router.put(
    "/datasets/<dataset_id>",
    summary="Create a dataset, the caller its owner (201; 200 if they own it already)",
    responses={**responses(409), 201: {"description": "Created"}},
)
def create_dataset(dataset_id: DatasetId) -> Response[DatasetAccess]:
    logger.append_keys(dataset_id=dataset_id)
    access, created = membership.create_dataset(caller(router), dataset_id)
    if created:
        logger.info("Dataset created")
    return Response(
        status_code=201 if created else 200,
        content_type=content_types.APPLICATION_JSON,
        body=access.model_dump(mode="json"),
    )


@router.get(
    "/datasets/<dataset_id>/members",
    summary="A dataset's members (owner)",
    responses=responses(403, 404, 409),
)
def list_members(dataset_id: DatasetId) -> list[Member]:
    logger.append_keys(dataset_id=dataset_id)
    return membership.members(caller(router), dataset_id)


@router.put(
    "/datasets/<dataset_id>/members/<sub>",
    summary="Give a member a role (owner)",
    responses=responses(400, 403, 404, 409),
)
def put_member(dataset_id: DatasetId, sub: MemberSub, body: RoleGrant) -> Member:
    logger.append_keys(dataset_id=dataset_id)
    member = membership.grant(caller(router), dataset_id, sub, body.role)
    logger.info("Member role set", extra={"member": sub, "role": body.role})
    return member


@router.delete(
    "/datasets/<dataset_id>/members/<sub>",
    summary="Remove a member (owner; not the last owner)",
    responses=responses(403, 404, 409),
)
def delete_member(dataset_id: DatasetId, sub: MemberSub) -> MemberRemoved:
    logger.append_keys(dataset_id=dataset_id)
    removed = membership.revoke(caller(router), dataset_id, sub)
    logger.info("Member removed", extra={"member": sub})
    return removed
