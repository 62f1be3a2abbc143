"""The brain: rebuilds a session from its log and drives it.

So far: the pure reducer (`brain.fold`) and the state it folds into (`brain.state`);
`wake`, `decide` and the providers arrive with the brain issue.
"""

from brain.fold import FoldError, fold, initial_state, replay
from brain.state import STATE_VERSION, SessionState, decode_state, encode_state

__all__ = [
    "STATE_VERSION",
    "FoldError",
    "SessionState",
    "decode_state",
    "encode_state",
    "fold",
    "initial_state",
    "replay",
]
