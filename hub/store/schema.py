"""Schema migrations (``sqlite_utils.migrations.Migrations``), applied in order, each in
its own transaction together with its record in ``_sqlite_migrations``.

Add a new function at the end to change the schema; never edit one that has shipped.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = ["OPEN_STATES_SQL", "OPEN_STATE_NAMES", "migrations"]

migrations = Migrations("cityops-hub")

# Must match hub.cases.states.OPEN_STATES (a test checks); the partial indices use it verbatim.
OPEN_STATE_NAMES = ("new", "accepted", "dispatched", "in_progress", "escalated", "resolved",
                    "reopened")
OPEN_STATES_SQL = "(" + ",".join(f"'{s}'" for s in OPEN_STATE_NAMES) + ")"


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        f"""
        -- One row per protocol message: identity (agent_id, seq), event_id checked on replay.
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            agent_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            event_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            observed_at TEXT NOT NULL,
            received_at TEXT NOT NULL,
            body TEXT NOT NULL
        );
        CREATE UNIQUE INDEX messages_agent_seq ON messages(agent_id, seq);
        CREATE INDEX messages_received ON messages(received_at);

        -- One row per event lifecycle (agent_id, event_id): its latest state.
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            agent_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            case_id INTEGER,
            kind TEXT NOT NULL,
            category TEXT NOT NULL,
            subcategory TEXT NOT NULL,
            source TEXT NOT NULL,
            lat REAL NOT NULL,
            lon REAL NOT NULL,
            grid_id TEXT,
            confidence REAL NOT NULL,
            first_seq INTEGER NOT NULL,
            last_seq INTEGER NOT NULL,
            messages INTEGER NOT NULL DEFAULT 1,
            started_at TEXT NOT NULL,
            observed_at TEXT NOT NULL,
            ended_at TEXT,
            snapshot_sha256 TEXT,
            bbox TEXT,
            reading TEXT,
            attributes TEXT
        );
        CREATE UNIQUE INDEX events_lifecycle ON events(agent_id, event_id);
        CREATE INDEX events_case ON events(case_id);

        CREATE TABLE cases (
            id INTEGER PRIMARY KEY,
            state TEXT NOT NULL,
            category TEXT NOT NULL,
            subcategory TEXT NOT NULL,
            group_key TEXT NOT NULL,
            lat REAL NOT NULL,
            lon REAL NOT NULL,
            grid_id TEXT,
            town TEXT,
            district TEXT,
            place TEXT,
            department TEXT,
            handler TEXT,
            queue TEXT,
            queue_reason TEXT,
            origin_agent TEXT NOT NULL,
            origin_source TEXT NOT NULL,
            origin_event TEXT NOT NULL,
            close_mode TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            accepted_at TEXT,
            rejected_at TEXT,
            dispatched_at TEXT,
            started_at TEXT,
            resolved_at TEXT,
            closed_at TEXT,
            closed_by TEXT,
            resolution TEXT,
            first_event_at TEXT NOT NULL,
            last_event_at TEXT NOT NULL,
            event_count INTEGER NOT NULL DEFAULT 0,
            active_sources INTEGER NOT NULL DEFAULT 0,
            cleared_at TEXT,
            deadline_min INTEGER,
            deadline_at TEXT,
            warn_at TEXT,
            warned_at TEXT,
            escalation_level INTEGER NOT NULL DEFAULT 0,
            escalated_at TEXT,
            sla_due_at TEXT,
            reopen_count INTEGER NOT NULL DEFAULT 0,
            merged_into INTEGER,
            screen_reasons TEXT,
            review_reason TEXT,
            before_sha256 TEXT,
            before_bbox TEXT,
            after_sha256 TEXT,
            verify_pending INTEGER NOT NULL DEFAULT 0,
            satisfaction INTEGER
        );
        -- One open case per grouping key, guaranteed by the database.
        CREATE UNIQUE INDEX cases_open_key ON cases(group_key) WHERE state IN {OPEN_STATES_SQL};
        CREATE INDEX cases_open_place ON cases(subcategory, lat) WHERE state IN {OPEN_STATES_SQL};
        CREATE INDEX cases_closed ON cases(subcategory, closed_at) WHERE state = 'closed';
        CREATE INDEX cases_state ON cases(state, id);
        CREATE INDEX cases_sla_due ON cases(sla_due_at) WHERE sla_due_at IS NOT NULL;
        CREATE INDEX cases_cleared ON cases(cleared_at) WHERE cleared_at IS NOT NULL;
        CREATE INDEX cases_verify ON cases(after_sha256) WHERE verify_pending = 1;
        CREATE INDEX cases_origin ON cases(origin_agent, origin_source, subcategory, created_at);
        CREATE INDEX cases_accepted ON cases(accepted_at);
        CREATE INDEX cases_grid ON cases(grid_id, id);

        -- Append-only audit trail of every state change and action on a case.
        CREATE TABLE case_audit (
            id INTEGER PRIMARY KEY,
            case_id INTEGER NOT NULL,
            at TEXT NOT NULL,
            action TEXT NOT NULL,
            from_state TEXT,
            to_state TEXT,
            actor TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            data TEXT
        );
        CREATE INDEX case_audit_case ON case_audit(case_id, id);
        CREATE TRIGGER case_audit_no_update BEFORE UPDATE ON case_audit
            BEGIN SELECT RAISE(ABORT, 'case_audit is append-only'); END;
        CREATE TRIGGER case_audit_no_delete BEFORE DELETE ON case_audit
            BEGIN SELECT RAISE(ABORT, 'case_audit is append-only'); END;

        -- Messages for people (department, command level): delivery channels read these.
        CREATE TABLE notifications (
            id INTEGER PRIMARY KEY,
            case_id INTEGER NOT NULL,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            message TEXT NOT NULL,
            delivered_at TEXT
        );
        CREATE INDEX notifications_undelivered ON notifications(id) WHERE delivered_at IS NULL;

        CREATE TABLE verifications (
            id INTEGER PRIMARY KEY,
            case_id INTEGER NOT NULL,
            at TEXT NOT NULL,
            before_sha256 TEXT,
            after_sha256 TEXT NOT NULL,
            outcome TEXT NOT NULL,
            confidence REAL NOT NULL,
            verifier TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX verifications_case ON verifications(case_id);

        CREATE TABLE snapshots (
            id INTEGER PRIMARY KEY,
            agent_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            taken_at TEXT,
            received_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX snapshots_once ON snapshots(agent_id, event_id, sha256);
        CREATE INDEX snapshots_sha ON snapshots(sha256);
        CREATE INDEX snapshots_received ON snapshots(received_at);

        CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL UNIQUE,
            topic TEXT NOT NULL,
            agent_id TEXT,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            payload TEXT NOT NULL,
            payload_bytes INTEGER NOT NULL,
            count INTEGER NOT NULL DEFAULT 1,
            first_at TEXT NOT NULL,
            last_at TEXT NOT NULL
        );
        CREATE INDEX dead_letters_last ON dead_letters(last_at);

        CREATE TABLE agents (
            agent_id TEXT PRIMARY KEY,
            state TEXT NOT NULL DEFAULT 'unknown',
            boot_id TEXT,
            version TEXT,
            config_version INTEGER,
            config_error TEXT,
            capabilities TEXT,
            status_at TEXT,
            status_reason TEXT,
            last_seen TEXT,
            uptime_s REAL,
            outbox_depth INTEGER,
            outbox_oldest_age_s REAL,
            outbox_dropped INTEGER,
            devices TEXT,
            cameras TEXT,
            rss_mb REAL,
            cpu_percent REAL,
            telemetry_at TEXT,
            seq_upto INTEGER NOT NULL DEFAULT 0,
            seq_ranges TEXT NOT NULL DEFAULT '[]',
            seq_highest INTEGER NOT NULL DEFAULT 0,
            seq_gaps INTEGER NOT NULL DEFAULT 0,
            grid_id TEXT,
            enrolled_at TEXT,
            hostname TEXT
        );
        CREATE INDEX agents_last_seen ON agents(last_seen);

        CREATE TABLE enrollment_tokens (
            token_sha256 TEXT PRIMARY KEY,
            agent_id TEXT NOT NULL,
            grid_id TEXT,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            used_at TEXT,
            used_by TEXT
        );
        """
    )


@migrations()
def m002_accounts_and_web(db: Database) -> None:
    """Web accounts, login sessions, API tokens; indices for the status page's reads."""
    db.executescript(
        f"""
        CREATE TABLE users (
            username TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            department TEXT,
            display_name TEXT NOT NULL DEFAULT '',
            password_hash TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            password_changed_at TEXT,
            last_login_at TEXT
        );

        -- A login session: only the sha256 of the cookie value is stored.
        CREATE TABLE sessions (
            id_sha256 TEXT PRIMARY KEY,
            username TEXT NOT NULL,
            csrf TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            remote TEXT,
            user_agent TEXT
        );
        CREATE INDEX sessions_user ON sessions(username);
        CREATE INDEX sessions_expires ON sessions(expires_at);

        -- API tokens for departments' systems, Open311 partners, monitoring: sha256 only.
        CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY,
            token_sha256 TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            department TEXT,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            revoked_at TEXT,
            last_used_at TEXT
        );

        -- The overview's aggregations read only open cases.
        CREATE INDEX cases_open_overview ON cases(grid_id, category, escalation_level)
            WHERE state IN {OPEN_STATES_SQL};
        CREATE INDEX cases_open_deadline ON cases(deadline_at) WHERE state IN {OPEN_STATES_SQL};
        CREATE INDEX cases_department ON cases(department, state, id);
        CREATE INDEX agents_state ON agents(state, last_seen);
        """
    )


@migrations()
def m003_external_reports(db: Database) -> None:
    """Reports that came over HTTP with a key of their own: linked incidents (key:
    source system + external id, so a re-post is idempotent) and residents' committees'
    one-key reports (key: the form's one-time key; ``partner`` is the reporter)."""
    db.executescript(
        """
        CREATE TABLE external_reports (
            id INTEGER PRIMARY KEY,
            channel TEXT NOT NULL,
            partner TEXT NOT NULL,
            external_id TEXT NOT NULL,
            body_sha256 TEXT NOT NULL,
            event_id TEXT NOT NULL,
            case_id INTEGER NOT NULL,
            actor TEXT NOT NULL,
            received_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX external_reports_key ON external_reports(channel, partner, external_id);
        CREATE INDEX external_reports_by ON external_reports(channel, actor, id);
        """
    )


@migrations()
def m004_plans_and_vitals(db: Database) -> None:
    db.executescript(
        """
        -- Every saved version of every plan (never updated, never deleted).
        CREATE TABLE plan_versions (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            text TEXT NOT NULL,
            saved_at TEXT NOT NULL,
            saved_by TEXT NOT NULL,
            comment TEXT NOT NULL DEFAULT ''
        );
        CREATE UNIQUE INDEX plan_versions_name ON plan_versions(name, version);

        -- One row per activation; open while deactivated_at is NULL (one open per plan).
        CREATE TABLE plan_activations (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            activated_at TEXT NOT NULL,
            activated_by TEXT NOT NULL,
            reason TEXT NOT NULL,
            deactivated_at TEXT,
            deactivated_by TEXT,
            deactivate_reason TEXT
        );
        CREATE UNIQUE INDEX plan_activations_open ON plan_activations(name) WHERE deactivated_at IS NULL;

        -- Desired configs pushed to agents by plans, and what each agent reported back.
        CREATE TABLE plan_pushes (
            id INTEGER PRIMARY KEY,
            activation_id INTEGER NOT NULL REFERENCES plan_activations(id),
            agent_id TEXT NOT NULL,
            purpose TEXT NOT NULL,              -- apply | restore
            version INTEGER NOT NULL,
            config TEXT NOT NULL,
            previous_version INTEGER,
            previous_config TEXT,
            pushed_at TEXT NOT NULL,
            acked_at TEXT,
            error TEXT
        );
        CREATE INDEX plan_pushes_activation ON plan_pushes(activation_id, agent_id);
        CREATE INDEX plan_pushes_pending ON plan_pushes(agent_id) WHERE acked_at IS NULL AND error IS NULL;

        -- The desired config the hub last published per agent (retained on the broker).
        CREATE TABLE agent_desired (
            agent_id TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            config TEXT NOT NULL,
            issued_at TEXT NOT NULL,
            reason TEXT NOT NULL
        );

        CREATE TABLE plan_audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            plan TEXT NOT NULL,
            action TEXT NOT NULL,
            actor TEXT NOT NULL,
            detail TEXT NOT NULL,
            data TEXT
        );
        CREATE INDEX plan_audit_plan ON plan_audit(plan, id);

        CREATE TABLE plan_notices (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            plan TEXT NOT NULL,
            department TEXT NOT NULL,
            message TEXT NOT NULL
        );
        CREATE INDEX plan_notices_department ON plan_notices(department, id);

        -- Vital signs: the current level per indicator, and samples for the charts.
        CREATE TABLE vital_levels (
            indicator TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            source TEXT NOT NULL,
            grid_id TEXT NOT NULL,
            level INTEGER NOT NULL,
            value REAL,
            unit TEXT NOT NULL,
            place TEXT NOT NULL,
            at TEXT,
            changed_at TEXT,
            event_id TEXT                       -- the warning's event while above normal
        );
        CREATE TABLE vital_samples (
            indicator TEXT NOT NULL,
            at TEXT NOT NULL,
            value REAL NOT NULL,
            level INTEGER NOT NULL
        );
        CREATE INDEX vital_samples_indicator ON vital_samples(indicator, at);
        CREATE INDEX vital_samples_at ON vital_samples(at);
        """
    )


@migrations()
def m005_notification_deliveries(db: Database) -> None:
    """The notification outbox (hub/notify/): one row per (event, channel, contact), written
    in the transaction of the change that causes it; the delivery task sends and settles it.
    ``idempotency_key`` is unique, so one contact never gets one event twice."""
    db.executescript(
        """
        CREATE TABLE notification_deliveries (
            id INTEGER PRIMARY KEY,
            notification_id INTEGER,            -- notifications.id (case notifications)
            plan_notice_id INTEGER,             -- plan_notices.id (plan notices)
            case_id INTEGER,
            kind TEXT NOT NULL,
            channel TEXT NOT NULL,
            target TEXT NOT NULL,               -- the contact's address (or endpoint name)
            idempotency_key TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL DEFAULT 'queued',  -- queued | sending | sent | failed | dead
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            last_error TEXT,
            sent_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            subject TEXT NOT NULL,
            text TEXT NOT NULL,
            fields TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX notification_deliveries_due ON notification_deliveries(next_attempt_at)
            WHERE state IN ('queued', 'failed');
        CREATE INDEX notification_deliveries_sending ON notification_deliveries(id)
            WHERE state = 'sending';
        CREATE INDEX notification_deliveries_case ON notification_deliveries(case_id, id);
        CREATE INDEX notification_deliveries_notification ON notification_deliveries(notification_id);
        CREATE INDEX notification_deliveries_state ON notification_deliveries(state);
        """
    )


@migrations()
def m006_supervision(db: Database) -> None:
    """Command levels and scopes of accounts (hub/auth/scope.py) and supervision orders
    (督办, hub/cases/supervision.py): a higher level's order on a case, addressed to a town,
    a district or a department, with its own deadline and reminders."""
    db.executescript(
        """
        ALTER TABLE users ADD COLUMN level TEXT;
        ALTER TABLE users ADD COLUMN scope TEXT;
        ALTER TABLE api_tokens ADD COLUMN level TEXT;
        ALTER TABLE api_tokens ADD COLUMN scope TEXT;

        CREATE TABLE supervision_orders (
            id INTEGER PRIMARY KEY,
            case_id INTEGER NOT NULL,
            state TEXT NOT NULL,                -- issued | acknowledged | answered
            target_kind TEXT NOT NULL,          -- town | district | department
            target TEXT NOT NULL,               -- town or district name, department code
            note TEXT NOT NULL,
            issued_by TEXT NOT NULL,
            issuer_level TEXT NOT NULL,         -- district | city
            issued_at TEXT NOT NULL,
            deadline_at TEXT NOT NULL,
            remind_at TEXT NOT NULL,            -- "the deadline approaches" reminder
            due_at TEXT,                        -- the next reminder; NULL: none left
            reminded_at TEXT,
            overdue_reminded_at TEXT,
            acknowledged_at TEXT,
            acknowledged_by TEXT,
            answered_at TEXT,
            answered_by TEXT,
            answer TEXT
        );
        CREATE INDEX supervision_orders_case ON supervision_orders(case_id, id);
        CREATE INDEX supervision_orders_due ON supervision_orders(due_at) WHERE due_at IS NOT NULL;
        CREATE INDEX supervision_orders_target ON supervision_orders(target_kind, target, state, id);
        """
    )


@migrations()
def m007_reporter_contacts_and_surveys(db: Database) -> None:
    """Reporters answered (hub/engine/reporters.py): the contact a reporter gave with a
    report (kept only while the hub can reach it, purged by ``retention``), and the
    single-use satisfaction surveys sent when their case closes (the token stored as its
    SHA-256 only)."""
    db.executescript(
        """
        CREATE TABLE reporter_contacts (
            id INTEGER PRIMARY KEY,
            case_id INTEGER NOT NULL,           -- the case the report lives in now (follows merges)
            request_id INTEGER NOT NULL,        -- the case the report opened or joined (the id they were told)
            channel TEXT NOT NULL,              -- open311 | reporter
            event_id TEXT NOT NULL,             -- the report's event
            name TEXT,                          -- a first name, for the greeting
            email TEXT,
            phone TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX reporter_contacts_case ON reporter_contacts(case_id);

        CREATE TABLE satisfaction_surveys (
            id INTEGER PRIMARY KEY,
            case_id INTEGER NOT NULL,
            contact_id INTEGER NOT NULL,
            cycle INTEGER NOT NULL,             -- the case's reopen_count when it closed
            token_sha256 TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            answered_at TEXT,
            answer TEXT,                        -- satisfied | not_satisfied | not_fixed
            comment TEXT
        );
        CREATE UNIQUE INDEX satisfaction_surveys_once ON satisfaction_surveys(case_id, contact_id, cycle);
        CREATE INDEX satisfaction_surveys_contact ON satisfaction_surveys(contact_id);
        """
    )


@migrations()
def m008_care_alarms(db: Database) -> None:
    """Elderly-care alarms (hub/care.py, hub/engine/care.py): one row per alarm lifecycle
    with the tiers the hub told, the acknowledgement on the hub, the agent's confirmation
    and the end; the counts the scorecard reads (tier notifications, escalations after
    the acknowledgement)."""
    db.executescript(
        """
        CREATE TABLE care_alarms (
            id INTEGER PRIMARY KEY,
            agent_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            source TEXT NOT NULL,
            subcategory TEXT NOT NULL,
            case_id INTEGER,
            opened_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            tier INTEGER NOT NULL DEFAULT 0,         -- the highest tier the agent reached
            tiers_seen TEXT NOT NULL DEFAULT '[]',   -- tiers handled (JSON list)
            tier_notifications INTEGER NOT NULL DEFAULT 0,
            escalations_after_ack INTEGER NOT NULL DEFAULT 0,
            acknowledged_at TEXT,
            acknowledged_by TEXT,
            confirmed_at TEXT,                       -- the agent said it took the acknowledgement
            ended_at TEXT,
            end_reason TEXT,
            UNIQUE (agent_id, event_id)
        );
        CREATE INDEX care_alarms_case ON care_alarms(case_id);
        CREATE INDEX care_alarms_acknowledged_open ON care_alarms(agent_id)
            WHERE acknowledged_at IS NOT NULL AND ended_at IS NULL;
        """
    )


@migrations()
def m009_event_clips(db: Database) -> None:
    """Event clips (hub/clips.py): one row per clip an agent sent for an event, its chunks
    held in ``clip_chunks`` until the clip is complete; the MP4 itself is a file named by
    its sha256 under ``clips_dir``."""
    db.executescript(
        """
        CREATE TABLE clips (
            id INTEGER PRIMARY KEY,
            agent_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            clip_sha256 TEXT NOT NULL,
            chunk_count INTEGER NOT NULL,
            clip_bytes INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            fps REAL NOT NULL,
            frames INTEGER NOT NULL,
            duration_s REAL NOT NULL,
            started_at TEXT,
            event_offset_s REAL NOT NULL DEFAULT 0,
            state TEXT NOT NULL CHECK (state IN ('partial', 'stored', 'failed')),
            error TEXT,                              -- why a failed clip failed
            chunks_received INTEGER NOT NULL DEFAULT 0,
            seqs TEXT NOT NULL DEFAULT '[]',         -- the agent's seqs of the chunks kept (JSON)
            first_at TEXT NOT NULL,                  -- its first chunk arrived
            completed_at TEXT,
            UNIQUE (agent_id, event_id, clip_sha256)
        );
        CREATE INDEX clips_event ON clips(agent_id, event_id);
        CREATE INDEX clips_first ON clips(first_at);
        CREATE INDEX clips_sha ON clips(clip_sha256);
        CREATE TABLE clip_chunks (
            clip_id INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (clip_id, idx)
        );
        """
    )


@migrations()
def m010_model_releases(db: Database) -> None:
    """Model releases and staged rollouts (hub/releases/): the packages the hub offers,
    each rollout with its stage history, every agent in a rollout's scope with the release
    it had desired before (for the rollback), and each agent's desired release and latest
    report (``agent_releases``; ``published_at`` null: the retained message is still to go)."""
    db.executescript(
        """
        CREATE TABLE releases (
            release_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL DEFAULT 'model',
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            chunk_bytes INTEGER NOT NULL,
            chunks INTEGER NOT NULL,
            file TEXT NOT NULL,                      -- the package, under releases.dir
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            notes TEXT NOT NULL DEFAULT '',
            gate TEXT,                               -- a retrain gate's figures (JSON), or null
            UNIQUE (name, version)
        );
        CREATE TABLE rollouts (
            id INTEGER PRIMARY KEY,
            rollout_id TEXT NOT NULL UNIQUE,
            release_id TEXT NOT NULL,
            scope TEXT NOT NULL,                     -- 'all' or the agents named (JSON list)
            canary TEXT NOT NULL,                    -- canary agent ids (JSON list)
            canary_minutes REAL NOT NULL,
            stage TEXT NOT NULL CHECK (stage IN ('canary', 'all', 'done', 'rolled_back')),
            started_at TEXT NOT NULL,
            started_by TEXT NOT NULL,
            stage_at TEXT NOT NULL,
            reason TEXT,                             -- of the latest transition
            history TEXT NOT NULL DEFAULT '[]',      -- [{stage, at, reason}] (JSON)
            false_alarms_before INTEGER,
            false_alarms_after INTEGER
        );
        CREATE INDEX rollouts_stage ON rollouts(stage);
        CREATE TABLE rollout_agents (
            rollout_id TEXT NOT NULL,
            agent_id TEXT NOT NULL,
            canary INTEGER NOT NULL DEFAULT 0,
            previous_release TEXT,                   -- desired before the rollout (null: config's model)
            previous_rollout TEXT,
            PRIMARY KEY (rollout_id, agent_id)
        );
        CREATE TABLE agent_releases (
            agent_id TEXT PRIMARY KEY,
            desired_release TEXT,                    -- null: the model the agent's config names
            rollout_id TEXT,                         -- the rollout that set it
            desired_at TEXT NOT NULL,
            published_at TEXT,                       -- null: to publish (retained) on its release topic
            state TEXT,                              -- its latest report
            report_release TEXT,
            chunks_done INTEGER NOT NULL DEFAULT 0,
            chunks INTEGER NOT NULL DEFAULT 0,
            active TEXT,
            reason TEXT,
            reported_at TEXT,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX agent_releases_unpublished ON agent_releases(agent_id) WHERE published_at IS NULL;
        CREATE INDEX agent_releases_rollout ON agent_releases(rollout_id);
        """
    )


@migrations()
def m011_dataset_examples(db: Database) -> None:
    """Verdicts become labels (hub/dataset/): one row per verdict on a snapshot, an
    operator's or a ``false_alarm`` closure's, with the camera and the model that saw it;
    the image is a copy in the dataset's own folder (``dataset.dir``), pruned with its row
    after ``dataset.retention_days``."""
    db.executescript(
        """
        CREATE TABLE dataset_examples (
            id INTEGER PRIMARY KEY,
            case_id INTEGER NOT NULL,
            agent_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            camera TEXT NOT NULL,                    -- the event's source
            model TEXT,                              -- the event's attributes.model, if any
            detected TEXT,                           -- the class the detector reported
            image_sha256 TEXT NOT NULL,              -- the copy under dataset.dir
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            verdict TEXT NOT NULL CHECK (verdict IN ('true_alarm', 'false_alarm', 'wrong_class')),
            label TEXT,                              -- the class it is; NULL for a false alarm
            bbox TEXT,                               -- JSON [x1, y1, x2, y2], normalised
            source TEXT NOT NULL CHECK (source IN ('operator', 'closure')),
            by_account TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX dataset_examples_case ON dataset_examples(case_id, id);
        CREATE INDEX dataset_examples_at ON dataset_examples(at);
        CREATE INDEX dataset_examples_image ON dataset_examples(image_sha256);
        CREATE INDEX dataset_examples_camera ON dataset_examples(camera, at);
        -- a closure adds its negative once per event and image, however often it closes
        CREATE UNIQUE INDEX dataset_examples_closure_once
            ON dataset_examples(agent_id, event_id, image_sha256) WHERE source = 'closure';
        """
    )
