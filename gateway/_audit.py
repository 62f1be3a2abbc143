"""A session's audit: its hash chain re-walked, and the state a brain folds at any seq."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
import nats.errors
from fastapi import APIRouter, Query, Response
from nats.aio.client import Client as NATS

from gateway._access import QueryFirst, Session
from gateway._errors import ApiProblem, json_response
from gateway._openapi import responds_with
from gateway._services import Services
from schemas import AUDIT_SUBJECT, MAX_SEQ, AuditReply, AuditRequest, AuditView, ChainCheck

_ENCODER: Final = msgspec.json.Encoder()
_AUDIT_REPLY: Final = msgspec.json.Decoder(AuditReply)

# How long an audit waits for a brain to fold the log.
AUDIT_TIMEOUT_S: Final = 30.0

router = APIRouter(route_class=QueryFirst)


@router.get(
    "/v1/sessions/{session_id}/audit",
    openapi_extra=responds_with(200, AuditView, conflict="`seq` is past the log's head"),
    response_class=Response,
)
async def audit(
    session: Session,
    services: Services,
    seq: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
) -> Response:
    """Re-walk the log's hash chain (any edited, deleted or reordered event is named by
    its seq) and show the state a brain folds from events 1..`seq` (default: the head),
    checking that the newest snapshot plus its tail folds to the same."""
    if seq is not None and seq > session.head_seq:
        raise ApiProblem(409, f"seq {seq} is past the log's head ({session.head_seq})")
    at_seq = seq or session.head_seq
    verification = await services.store.verify(session.session_id)
    chain = ChainCheck(
        **{name: getattr(verification, name) for name in ChainCheck.__struct_fields__}
    )
    folded = await _fold_by_a_brain(
        services.nc, AuditRequest(session_id=session.session_id, at_seq=at_seq)
    )
    return json_response(
        AuditView(
            session_id=session.session_id,
            chain=chain,
            at_seq=at_seq,
            state=folded.state,
            state_error=folded.error,
            snapshot_seq=folded.snapshot_seq,
            snapshot_matches=folded.snapshot_matches,
        )
    )


async def _fold_by_a_brain(nc: NATS, request: AuditRequest) -> AuditReply:
    """The fold is the brain's (the gateway never imports it): any brain answers."""
    try:
        reply = await nc.request(AUDIT_SUBJECT, _ENCODER.encode(request), timeout=AUDIT_TIMEOUT_S)
    except nats.errors.NoRespondersError:
        return AuditReply(error="no brain is running to fold the log")
    except (nats.errors.Error, TimeoutError) as exc:
        return AuditReply(error=f"no brain answered: {exc!r}")
    try:
        return _AUDIT_REPLY.decode(reply.data)
    except msgspec.DecodeError as exc:
        return AuditReply(error=f"a brain answered with a malformed reply: {exc}")
