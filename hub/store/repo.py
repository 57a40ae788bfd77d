"""The repository interface: everything the engine and the web read or write.

The engine, the web and the scores talk to a :class:`Repository`, never to SQL, so the
SQLite store (:class:`hub.store.sqlite.SqliteRepository`) can be replaced by PostgreSQL
without touching them. Rules of use:

* All writes happen inside ``with repo.transaction():`` on the one writer
  (:class:`hub.writer.Writer`); a transaction is atomic and durable on exit.
* Reads may run on any number of other instances (``read_only=True``).
* Times are timezone-aware UTC ``datetime`` objects in and out.
* Rows are plain dataclasses; ``CaseRow`` mirrors the ``cases`` table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "AgentRow",
    "ApiTokenRow",
    "AuditRow",
    "CaseFilter",
    "CandidateRow",
    "CaseRow",
    "DeadLetterRow",
    "ExternalReportRow",
    "InsertOutcome",
    "LifecycleRow",
    "LifecycleUpdate",
    "Repository",
    "SessionRow",
    "SnapshotRow",
    "ReporterContactRow",
    "SupervisionRow",
    "SurveyRow",
    "TokenRow",
    "UserRow",
]


@dataclass
class CaseRow:
    id: int
    state: str
    category: str
    subcategory: str
    group_key: str
    lat: float
    lon: float
    grid_id: str | None
    town: str | None
    district: str | None
    place: str | None
    department: str | None
    handler: str | None
    queue: str | None
    queue_reason: str | None
    origin_agent: str
    origin_source: str
    origin_event: str
    close_mode: str
    created_at: datetime
    updated_at: datetime
    accepted_at: datetime | None
    rejected_at: datetime | None
    dispatched_at: datetime | None
    started_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None
    resolution: str | None
    first_event_at: datetime
    last_event_at: datetime
    event_count: int
    active_sources: int
    cleared_at: datetime | None
    deadline_min: int | None
    deadline_at: datetime | None
    warn_at: datetime | None
    warned_at: datetime | None
    escalation_level: int
    escalated_at: datetime | None
    sla_due_at: datetime | None
    reopen_count: int
    merged_into: int | None
    screen_reasons: list[list[str]]
    review_reason: str | None
    before_sha256: str | None
    before_bbox: list[float] | None
    after_sha256: str | None
    verify_pending: bool
    satisfaction: int | None


@dataclass
class LifecycleRow:
    """One event lifecycle (agent_id, event_id) with its latest state.

    Read back, times are datetimes and JSON columns Python values. The ingest path may
    insert times as the store's ISO 8601 UTC text and reading/attributes as JSON text,
    just as they come in the decoded record (converting them back and forth costs more
    than the insert itself)."""

    id: int
    agent_id: str
    event_id: str
    case_id: int | None
    kind: str
    category: str
    subcategory: str
    source: str
    lat: float
    lon: float
    grid_id: str | None
    confidence: float
    first_seq: int
    last_seq: int
    messages: int
    started_at: datetime | str
    observed_at: datetime | str
    ended_at: datetime | None
    snapshot_sha256: str | None
    bbox: list[float] | None = None
    reading: dict[str, Any] | str | None = None
    attributes: dict[str, Any] | str | None = None


@dataclass
class LifecycleUpdate:
    """``messages`` more messages of lifecycle ``id``; ``latest`` fields are set only when
    one of them is newer than what is stored (``seq`` greater than ``last_seq``), and the
    start (``first_seq``, ``started_at``) only when one is older than the stored
    ``first_seq`` (a ``new`` redelivered after its ``end``: order follows seq)."""

    id: int
    messages: int
    ended_at: datetime | None = None
    first_seq: int | None = None  # the lowest seq of these messages
    started_at: datetime | str | None = None  # that message's start
    seq: int | None = None  # None: no newer message
    kind: str = ""
    observed_at: datetime | str | None = None  # a string: ISO UTC in the store's format
    confidence: float = 0.0
    snapshot_sha256: str | None = None
    bbox: list[float] | None = None
    reading: dict[str, Any] | None = None


@dataclass
class CandidateRow:
    """The few columns merging needs."""

    id: int
    state: str
    group_key: str
    lat: float
    lon: float
    last_event_at: datetime
    closed_at: datetime | None
    before_sha256: str | None


@dataclass
class AuditRow:
    id: int
    case_id: int
    at: datetime
    action: str
    from_state: str | None
    to_state: str | None
    actor: str
    detail: str
    data: dict[str, Any] | None


@dataclass
class AgentRow:
    agent_id: str
    state: str
    boot_id: str | None = None
    version: str | None = None
    config_version: int | None = None
    config_error: str | None = None
    capabilities: list[str] = field(default_factory=list)
    status_at: datetime | None = None
    status_reason: str | None = None
    last_seen: datetime | None = None
    uptime_s: float | None = None
    outbox_depth: int | None = None
    outbox_oldest_age_s: float | None = None
    outbox_dropped: int | None = None
    devices: dict[str, str] = field(default_factory=dict)
    cameras: dict[str, Any] = field(default_factory=dict)
    rss_mb: float | None = None
    cpu_percent: float | None = None
    telemetry_at: datetime | None = None
    seq_upto: int = 0
    seq_ranges: list[list[int]] = field(default_factory=list)
    seq_highest: int = 0
    seq_gaps: int = 0
    grid_id: str | None = None
    enrolled_at: datetime | None = None
    hostname: str | None = None


@dataclass
class SnapshotRow:
    id: int
    agent_id: str
    event_id: str
    seq: int
    sha256: str
    bytes: int
    width: int
    height: int
    taken_at: datetime | None
    received_at: datetime


@dataclass
class DeadLetterRow:
    id: int
    topic: str
    agent_id: str | None
    reason: str
    detail: str
    payload: str
    payload_bytes: int
    count: int
    first_at: datetime
    last_at: datetime


@dataclass
class TokenRow:
    agent_id: str
    grid_id: str | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    used_by: str | None


@dataclass
class UserRow:
    username: str
    role: str
    department: str | None
    display_name: str
    password_hash: str
    disabled: bool
    created_at: datetime
    password_changed_at: datetime | None = None
    last_login_at: datetime | None = None
    level: str | None = None  # command level: town | district | city (hub.auth.scope)
    scope: list[str] | None = None  # grid ids, towns or districts


@dataclass
class SessionRow:
    """A login session; ``id_sha256`` is the sha256 of the cookie value (never stored)."""

    id_sha256: str
    username: str
    csrf: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    remote: str | None = None
    user_agent: str | None = None


@dataclass
class ApiTokenRow:
    id: int
    token_sha256: str
    name: str
    role: str
    department: str | None
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    level: str | None = None
    scope: list[str] | None = None


@dataclass
class ExternalReportRow:
    """A report that came over HTTP with its own key (linked incident, one-key report)."""

    id: int
    channel: str  # "linkage" | "reporter"
    partner: str  # linkage: the source system; reporter: the user
    external_id: str  # linkage: the partner's incident id; reporter: the form's one-time key
    body_sha256: str
    event_id: str
    case_id: int
    actor: str  # who sent it, as the audit trail names them
    received_at: datetime


@dataclass
class SupervisionRow:
    """A supervision order (督办) on a case (hub/cases/supervision.py)."""

    id: int
    case_id: int
    state: str  # issued | acknowledged | answered
    target_kind: str  # town | district | department
    target: str  # the town or district name, or the department code
    note: str
    issued_by: str
    issuer_level: str  # district | city
    issued_at: datetime
    deadline_at: datetime
    remind_at: datetime
    due_at: datetime | None = None  # the next reminder (NULL: none left)
    reminded_at: datetime | None = None
    overdue_reminded_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    answered_at: datetime | None = None
    answered_by: str | None = None
    answer: str | None = None


@dataclass
class CaseFilter:
    """What the case list, the handler API and Open311 filter by (all optional, ANDed)."""

    states: Sequence[str] | None = None
    grid_id: str | None = None
    category: str | None = None  # a category or subcategory code
    categories: Sequence[str] | None = None  # category codes (Open311's public set)
    subcategories: Sequence[str] | None = None
    department: str | None = None
    queue: str | None = None
    level: int | None = None  # escalation level
    overdue_at: datetime | None = None  # open, unresolved, deadline before this time
    needs_review: bool = False  # resolved and waiting for an operator's verdict
    origin_agent: str | None = None
    ids: Sequence[int] | None = None
    created_from: datetime | None = None
    created_until: datetime | None = None
    text: str | None = None  # search: case id, place, subcategory, origin agent/source
    grid_ids: Sequence[str] | None = None  # a scoped account's grids (hub.auth.scope)
    min_level: int | None = None  # escalated at least this far (a level's queue)


@dataclass(frozen=True)
class InsertOutcome:
    """What storing one message did: ``stored`` (new), ``duplicate`` (the same message
    again) or ``conflict`` (same agent and seq, different content; ``existing_body``)."""

    status: str
    existing_event_id: str | None = None
    existing_body: str | None = None


class Repository(Protocol):
    # -- transactions ----------------------------------------------------------------
    def transaction(self) -> AbstractContextManager[None]: ...
    def close(self) -> None: ...

    # -- messages and lifecycles ----------------------------------------------------------
    def insert_message(self, agent_id: str, seq: int, event_id: str, kind: str,
                       observed_at: datetime, received_at: datetime, body: str) -> InsertOutcome: ...
    def insert_messages(self, rows: Sequence[tuple[str, int, str, str, datetime | str, datetime, str]]) -> None:
        """Store messages known to be new: (agent_id, seq, event_id, kind, observed_at,
        received_at, body). A row that exists already is an error (the batch rolls back)."""
        ...
    def get_lifecycle(self, agent_id: str, event_id: str) -> LifecycleRow | None: ...
    def lifecycle_state(self, agent_id: str, event_id: str) -> tuple[int, int | None, int, bool] | None:
        """(id, case_id, last_seq, ended) of a lifecycle: the ingest hot path's lookup."""
        ...
    def insert_lifecycle(self, row: LifecycleRow) -> int: ...
    def update_lifecycle(self, lifecycle_id: int, **fields: Any) -> None: ...
    def note_lifecycle_messages(self, updates: Sequence[LifecycleUpdate]) -> None:
        """Fold more messages into known lifecycles (one update per lifecycle per batch)."""
        ...
    def lifecycles_for_case(self, case_id: int) -> list[LifecycleRow]: ...
    def move_lifecycles(self, from_case: int, to_case: int) -> int: ...

    # -- cases ------------------------------------------------------------------------------
    def insert_case(self, fields: dict[str, Any]) -> int:
        """Raises :class:`GroupKeyTaken` when an open case already holds the group key."""
        ...
    def get_case(self, case_id: int) -> CaseRow | None: ...
    def update_case(self, case_id: int, **fields: Any) -> None: ...
    def add_case_activity(self, case_id: int, last_event_at: datetime | str, events: int,
                          active_delta: int, ended: bool, at: datetime) -> tuple[int, datetime | None]:
        """Fold a batch's events into a case: last event, count, active sources; the case is
        cleared (``cleared_at``) when no source is active after an end, and un-cleared when
        one is. Returns (active_sources, cleared_at) after."""
        ...
    def merge_candidates(self, subcategory: str, group_key: str,
                         box: tuple[float, float, float, float] | None,
                         closed_since: datetime | None) -> list[CandidateRow]:
        """Open cases holding ``group_key`` or (with a box) of ``subcategory`` inside it,
        and cases of either kind closed since ``closed_since``."""
        ...
    def count_false_alarms(self, agent_id: str, source: str, subcategory: str,
                           since: datetime) -> int: ...
    def cases_sla_due(self, now: datetime, limit: int = 500) -> list[CaseRow]: ...
    def cases_cleared(self, before: datetime, limit: int = 500) -> list[CaseRow]: ...
    def cases_awaiting_verification(self, after_sha256: str | None = None) -> list[CaseRow]: ...
    def append_audit(self, case_id: int, at: datetime, action: str, from_state: str | None,
                     to_state: str | None, actor: str, detail: str = "",
                     data: dict[str, Any] | None = None) -> None: ...
    def append_audits(self, rows: Sequence[tuple[int, datetime, str, str | None, str | None,
                                                  str, str, dict[str, Any] | None]]) -> None:
        """Several :meth:`append_audit` rows (same arguments, in order) in one statement."""
        ...
    def audit_for_case(self, case_id: int) -> list[AuditRow]: ...
    def add_notification(self, case_id: int, at: datetime, kind: str, target: str,
                         message: str) -> int: ...
    def add_verification(self, case_id: int, at: datetime, before_sha256: str | None,
                         after_sha256: str, outcome: str, confidence: float, verifier: str,
                         detail: str) -> None: ...
    def notifications_for_case(self, case_id: int) -> list[dict[str, Any]]: ...
    def verifications_for_case(self, case_id: int) -> list[dict[str, Any]]: ...

    # -- agents -----------------------------------------------------------------------------
    def get_agent(self, agent_id: str) -> AgentRow | None: ...
    def upsert_agent(self, agent_id: str, **fields: Any) -> None: ...
    def note_agents_seen(self, agent_ids: Sequence[str],
                         seq_states: Sequence[tuple[str, int, list[list[int]], int, int]],
                         at: datetime) -> None:
        """Agents heard from in a batch: ``last_seen``; with their sequence state
        ``(agent_id, upto, ranges, highest, gaps)`` for those that sent events."""
        ...

    # -- snapshots and dead letters ----------------------------------------------------------
    def add_snapshot(self, agent_id: str, event_id: str, seq: int, sha256: str, size: int,
                     width: int, height: int, taken_at: datetime | None,
                     received_at: datetime) -> bool: ...
    def has_snapshot(self, sha256: str) -> bool: ...
    def snapshots_for_case(self, case_id: int) -> list[SnapshotRow]: ...
    def add_dead_letter(self, fingerprint: str, topic: str, agent_id: str | None, reason: str,
                        detail: str, payload: str, payload_bytes: int, at: datetime) -> None: ...

    # -- enrollment ------------------------------------------------------------------------
    def add_token(self, token_sha256: str, agent_id: str, grid_id: str | None,
                  created_at: datetime, expires_at: datetime) -> None: ...
    def get_token(self, token_sha256: str) -> TokenRow | None: ...
    def use_token(self, token_sha256: str, at: datetime, used_by: str) -> None: ...
    def release_token(self, token_sha256: str) -> None: ...

    # -- retention ---------------------------------------------------------------------------
    def purge_messages(self, before: datetime, limit: int) -> int: ...
    def purge_dead_letters(self, before: datetime, limit: int) -> int: ...
    def purge_snapshots(self, before: datetime, limit: int) -> list[str]:
        """Delete old snapshot rows not needed by an open case; return sha256s no row uses."""
        ...

    # -- reads for the web, the API and the scores ---------------------------------------------
    def list_agents(self, limit: int = 1000, offset: int = 0) -> list[AgentRow]: ...
    def list_cases(self, *, states: Sequence[str] | None = None, grid_id: str | None = None,
                   category: str | None = None, queue: str | None = None,
                   limit: int = 100, offset: int = 0) -> list[CaseRow]: ...
    def list_dead_letters(self, limit: int = 100, offset: int = 0) -> list[DeadLetterRow]: ...
    def cases_accepted_between(self, start: datetime, end: datetime) -> Iterator[CaseRow]: ...
    def counts(self) -> dict[str, int]: ...
    def search_cases(self, f: CaseFilter, *, limit: int = 100, offset: int = 0,
                     with_total: bool = True) -> tuple[list[CaseRow], int | None]:
        """Cases matching ``f``, newest first, and (``with_total``) how many match."""
        ...
    def case_overview(self, now: datetime, near_until: datetime, lists: int = 12,
                      grid_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """Open cases by state, category, command level and grid; overdue and
        near-deadline counts and the most urgent of each (``lists`` rows); only the cases
        in ``grid_ids`` when given (a scoped account)."""
        ...
    def agent_overview(self, stale_before: datetime, lists: int = 12) -> dict[str, Any]:
        """Agents online/offline/stale, outbox depth, devices down; the agents that need
        looking at (offline, stale, deep outbox, a device down)."""
        ...
    def search_agents(self, *, state: str | None = None, text: str | None = None,
                      stale_before: datetime | None = None, limit: int = 100,
                      offset: int = 0) -> tuple[list[AgentRow], int]: ...
    def list_enrollment_tokens(self, limit: int = 100) -> list[TokenRow]: ...
    def messages_stored_by_agent(self, agent_ids: Sequence[str]) -> dict[str, int]:
        """Event messages the hub holds from each of these agents (0 for none)."""
        ...
    def counts_dead_letters(self) -> dict[str, Any]:
        """{rows, total (with repeats), last_at}."""
        ...
    def change_marker(self) -> int:
        """A number that changes whenever another connection commits."""
        ...
    def next_message_seq(self, agent_id: str) -> int:
        """The seq after the highest stored for this agent (for reports the hub makes)."""
        ...
    def is_report_media(self, sha256: str, origin_agent: str) -> bool:
        """True when the snapshot is the before-photo of a case reported by ``origin_agent``."""
        ...

    # -- reports with a key of their own (linked incidents, one-key reports) ---------------
    def get_external_report(self, channel: str, partner: str,
                            external_id: str) -> ExternalReportRow | None: ...
    def add_external_report(self, channel: str, partner: str, external_id: str,
                            body_sha256: str, event_id: str, case_id: int, actor: str,
                            at: datetime) -> int: ...
    def external_reports_by(self, channel: str, actor: str, limit: int = 50,
                            offset: int = 0) -> list[ExternalReportRow]: ...
    def get_external_report_by_id(self, report_id: int) -> ExternalReportRow | None: ...

    # -- accounts, sessions and API tokens ----------------------------------------------------
    def add_user(self, row: UserRow) -> None: ...
    def get_user(self, username: str) -> UserRow | None: ...
    def list_users(self) -> list[UserRow]: ...
    def update_user(self, username: str, **fields: Any) -> None: ...
    def add_session(self, row: SessionRow) -> None: ...
    def get_session(self, id_sha256: str) -> SessionRow | None: ...
    def touch_session(self, id_sha256: str, at: datetime) -> None: ...
    def delete_session(self, id_sha256: str) -> None: ...
    def delete_sessions_for_user(self, username: str) -> int: ...
    def purge_sessions(self, before: datetime) -> int: ...
    def add_api_token(self, token_sha256: str, name: str, role: str, department: str | None,
                      created_at: datetime, created_by: str, *, level: str | None = None,
                      scope: Sequence[str] = ()) -> int: ...
    def get_api_token(self, token_sha256: str) -> ApiTokenRow | None: ...
    def list_api_tokens(self) -> list[ApiTokenRow]: ...
    def revoke_api_token(self, token_id: int, at: datetime) -> bool: ...
    def touch_api_token(self, token_id: int, at: datetime) -> None: ...

    # -- response plans and vital signs (rows as plain dicts; see hub/store/sqlite_plans.py) ----
    def save_plan_version(self, name: str, text: str, at: datetime, by: str, comment: str = "") -> int: ...
    def plan_versions(self, name: str) -> list[dict[str, Any]]: ...
    def plan_text(self, name: str, version: int | None = None) -> dict[str, Any] | None: ...
    def latest_plans(self) -> list[dict[str, Any]]: ...
    def open_activation(self, name: str) -> dict[str, Any] | None: ...
    def open_activations(self) -> list[dict[str, Any]]: ...
    def activations(self, name: str | None = None, limit: int = 50) -> list[dict[str, Any]]: ...
    def add_activation(self, name: str, version: int, at: datetime, by: str, reason: str) -> int: ...
    def close_activation(self, activation_id: int, at: datetime, by: str, reason: str) -> None: ...
    def agent_desired(self, agent_id: str) -> dict[str, Any] | None: ...
    def set_agent_desired(self, agent_id: str, version: int, config: dict[str, Any], at: datetime,
                          reason: str) -> None: ...
    def add_push(self, activation_id: int, agent_id: str, purpose: str, version: int,
                 config: dict[str, Any], previous_version: int | None,
                 previous_config: dict[str, Any] | None, at: datetime) -> None: ...
    def pushes(self, activation_id: int) -> list[dict[str, Any]]: ...
    def pending_pushes(self) -> list[dict[str, Any]]: ...
    def settle_push(self, push_id: int, at: datetime, error: str | None) -> None: ...
    def add_plan_audit(self, at: datetime, plan: str, action: str, actor: str, detail: str,
                       data: dict[str, Any] | None = None) -> None: ...
    def plan_audit(self, plan: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...
    def add_plan_notice(self, at: datetime, plan: str, department: str, message: str) -> int: ...
    def plan_notices(self, department: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...
    def upsert_vital_levels(self, rows: Sequence[tuple]) -> None: ...
    def vital_levels(self) -> list[dict[str, Any]]: ...
    def add_vital_samples(self, rows: Sequence[tuple[str, str, float, int]]) -> None: ...
    def vital_samples(self, since: datetime, indicator: str | None = None) -> list[dict[str, Any]]: ...
    def purge_vital_samples(self, before: datetime) -> int: ...
    def open_case_counts(self) -> list[tuple[str | None, str, int]]: ...

    # -- supervision orders (hub/store/sqlite_supervision.py) -----------------------------------
    def add_supervision_order(self, fields: dict[str, Any]) -> int: ...
    def get_supervision_order(self, order_id: int) -> SupervisionRow | None: ...
    def update_supervision_order(self, order_id: int, **fields: Any) -> None: ...
    def supervision_for_case(self, case_id: int) -> list[SupervisionRow]: ...
    def supervision_due(self, now: datetime, limit: int = 500) -> list[SupervisionRow]:
        """Orders with a reminder due at ``now`` (by the ``due_at`` index)."""
        ...
    def supervision_queue(self, *, target_kind: str | None = None, targets: Sequence[str] | None = None,
                          grid_ids: Sequence[str] | None = None, open_only: bool = True,
                          limit: int = 100) -> list[SupervisionRow]:
        """Orders addressed to a kind of target (and these targets), on cases in these
        grids; unanswered only unless ``open_only`` is false; newest first."""
        ...

    # -- elderly-care alarms (hub/engine/care.py; see hub/store/sqlite_care.py) ---------------
    def care_alarm_rows(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict]: ...
    def write_care_alarms(self, inserts: Sequence[dict], updates: Sequence[dict]) -> None: ...
    def update_care_alarm(self, alarm_id: int, **fields: Any) -> None: ...
    def care_alarms_for_case(self, case_id: int) -> list[Any]: ...

    # -- event clips (hub/clips.py; see hub/store/sqlite_clips.py) ---------------------------
    def clip_row(self, agent_id: str, event_id: str, clip_sha256: str) -> Any: ...
    def get_clip(self, clip_id: int) -> Any: ...
    def add_clip(self, agent_id: str, event_id: str, clip_sha256: str, *, chunk_count: int,
                 clip_bytes: int, width: int, height: int, fps: float, frames: int,
                 duration_s: float, started_at: datetime | None, event_offset_s: float,
                 at: datetime) -> int: ...
    def add_clip_chunk(self, clip_id: int, index: int, seq: int, data: bytes) -> int: ...
    def clip_chunks(self, clip_id: int) -> dict[int, bytes]: ...
    def finish_clip(self, clip_id: int, *, state: str, error: str | None, at: datetime) -> None: ...
    def clips_for_case(self, case_id: int) -> list[Any]: ...
    def stale_partial_clips(self, before: datetime, limit: int) -> list[Any]: ...
    def purge_clips(self, before: datetime, limit: int) -> tuple[int, list[str]]: ...
    def count_clips(self, state: str | None = None, *, agent_id: str | None = None) -> int: ...
    def care_acknowledged_open(self, agent_id: str) -> list[Any]: ...
    def care_agents_unconfirmed(self) -> list[str]: ...
    def care_counts(self) -> dict[str, int]: ...

    # -- the labelled-examples dataset (hub/dataset/; see hub/store/sqlite_dataset.py) ------------
    def add_example(self, example: Any) -> int: ...
    def examples_for_case(self, case_id: int) -> list[Any]: ...
    def list_examples(self, *, since: datetime | None = None, camera: str | None = None,
                      after_id: int = 0, limit: int = 1000) -> list[Any]: ...
    def example_counts(self) -> list[tuple[str, str, str | None, str, str, int]]: ...
    def purge_examples(self, before: datetime, limit: int) -> tuple[int, list[str]]: ...

    # -- the notification outbox (hub/notify/; see hub/store/sqlite_notify.py) -----------------
    def enqueue_deliveries(self, rows: Sequence[tuple]) -> int: ...
    def claim_deliveries(self, now: datetime, limit: int) -> list[Any]: ...
    def next_delivery_due(self) -> datetime | None: ...
    def settle_delivery(self, delivery_id: int, state: str, now: datetime,
                        next_attempt_at: datetime | None, last_error: str | None,
                        sent_at: datetime | None) -> bool: ...
    def requeue_sending(self, now: datetime) -> int: ...
    def release_deliveries(self, ids: Sequence[int], now: datetime) -> int: ...
    def requeue_delivery(self, delivery_id: int, now: datetime) -> bool: ...
    def get_delivery(self, delivery_id: int) -> Any: ...
    def deliveries_for_case(self, case_id: int) -> list[Any]: ...
    def list_deliveries(self, *, state: str | None = None, channel: str | None = None,
                        plan_notice_id: int | None = None, after_id: int = 0,
                        limit: int = 100) -> list[Any]: ...
    def delivery_counts(self) -> dict[tuple[str, str], int]: ...
    def existing_delivery_keys(self, keys: Sequence[str]) -> set[str]: ...

    # -- reporters answered (hub/store/sqlite_reporters.py) -------------------------------------
    def add_reporter_contact(self, *, case_id: int, request_id: int, channel: str, event_id: str,
                             name: str | None, email: str | None, phone: str | None,
                             at: datetime) -> int: ...
    def reporter_contacts_for_case(self, case_id: int) -> list[ReporterContactRow]: ...
    def move_reporter_contacts(self, from_case: int, to_case: int) -> int: ...
    def add_survey(self, *, case_id: int, contact_id: int, cycle: int, token_sha256: str,
                   at: datetime, expires_at: datetime) -> int | None:
        """None when this contact already has a survey for this closure."""
        ...
    def get_survey(self, token_sha256: str) -> SurveyRow | None: ...
    def answer_survey(self, survey_id: int, at: datetime, answer: str, comment: str | None) -> bool:
        """True when this call answered it (False: answered before)."""
        ...
    def surveys_for_case(self, case_id: int) -> list[SurveyRow]: ...
    def purge_reporter_contacts(self, before: datetime, now: datetime, limit: int) -> int:
        """Contacts of cases no longer open and unchanged since ``before``: their surveys
        go, and their deliveries keep only a masked address."""
        ...


@dataclass
class ReporterContactRow:
    """A reporter's contact, kept with the report (``reporter_contacts``)."""

    id: int
    case_id: int  # the case the report lives in now
    request_id: int  # the case id the reporter was told
    channel: str  # open311 | reporter
    event_id: str
    name: str | None
    email: str | None
    phone: str | None
    created_at: datetime


@dataclass
class SurveyRow:
    """A satisfaction survey sent to a reporter when their case closed."""

    id: int
    case_id: int
    contact_id: int
    cycle: int  # the case's reopen_count at that closure
    token_sha256: str
    created_at: datetime
    expires_at: datetime
    answered_at: datetime | None
    answer: str | None
    comment: str | None


class GroupKeyTaken(Exception):
    """An open case already holds this grouping key (the unique partial index said no)."""

    def __init__(self, group_key: str) -> None:
        self.group_key = group_key
        super().__init__(group_key)
