"""Sessions on disk: metadata, transcript, state checkpoints, locks, listing, migrations.

Nothing here imports torch at module level (`weprompt list-sessions` stays fast).
"""

from weprompt_cli.store.model import (
    SESSION_SCHEMA,
    STOP_REASONS,
    TRANSCRIPT_SCHEMA,
    ModelRef,
    ParentRef,
    SessionMeta,
    StopReason,
    Turn,
    parse_time,
    utc_now,
)
from weprompt_cli.store.names import new_session_id, validate_name
from weprompt_cli.store.retention import DEFAULT_BUDGET_BYTES, plan_eviction
from weprompt_cli.store.states import StateUnavailable, as_state_dict, as_state_list
from weprompt_cli.store.store import OpenSession, SessionStore
from weprompt_cli.store.transcript import Problem

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "SESSION_SCHEMA",
    "STOP_REASONS",
    "TRANSCRIPT_SCHEMA",
    "ModelRef",
    "OpenSession",
    "ParentRef",
    "Problem",
    "SessionMeta",
    "SessionStore",
    "StateUnavailable",
    "StopReason",
    "Turn",
    "as_state_dict",
    "as_state_list",
    "new_session_id",
    "parse_time",
    "plan_eviction",
    "utc_now",
    "validate_name",
]
