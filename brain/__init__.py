"""The brain: rebuilds a session from its log and drives it.

`wake(session_id)` (`brain.wake`) claims a session, folds its log and drives it until it
waits; `python -m brain` (`brain.service`) pulls sessions from the work queue, sweeps for
expired leases and due timers, and answers audits and sandbox checks. The pure parts are
exported here: the reducer (`fold`), the state it folds into, and the next step (`decide`).
"""

from brain.decide import Action, decide
from brain.fold import FoldError, fold, initial_state, replay
from brain.state import (
    STATE_VERSION,
    SessionState,
    decode_state,
    encode_state,
    encode_state_parts,
)

__all__ = [
    "Action",
    "STATE_VERSION",
    "FoldError",
    "SessionState",
    "decide",
    "decode_state",
    "encode_state",
    "encode_state_parts",
    "fold",
    "initial_state",
    "replay",
]
