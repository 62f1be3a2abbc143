"""The brain: rebuilds a session from its log and drives it.

So far, the pure parts: the reducer (`brain.fold`), the state it folds into (`brain.state`),
the next step (`brain.decide`) and the conversation a model is sent (`brain.context`); `wake`,
the work queue and the model providers arrive with the rest of the brain issue.
"""

from brain.decide import Action, decide
from brain.fold import FoldError, fold, initial_state, replay
from brain.state import STATE_VERSION, SessionState, decode_state, encode_state

__all__ = [
    "Action",
    "STATE_VERSION",
    "FoldError",
    "SessionState",
    "decide",
    "decode_state",
    "encode_state",
    "fold",
    "initial_state",
    "replay",
]
