"""The hub's configuration file (``cityops-hub serve --config hub.yaml``).

A strict model (unknown keys are errors with file:line:col and a hint), relative paths
resolved against the config file's folder, secrets from the environment:

``CITYOPS_HUB_BROKER_USERNAME`` / ``CITYOPS_HUB_BROKER_PASSWORD``
    the hub's broker credentials for an external broker (they win over the file).

:func:`load_setup` reads the config and everything it names (grids, routing table,
service area) and cross-checks them; the result is what :class:`hub.app.Hub` runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from protocol.base import StrictModel
from protocol.config import Document, parse_yaml, validate_document
from protocol.errors import ConfigError, ConfigProblem
from protocol.ids import Id
from protocol.limits import MAX_LIVE_SECONDS
from protocol.taxonomy import Taxonomy, taxonomy

from .care import CareRegistry, load_care
from .dataset.config import DatasetConfig
from .gazetteer import Gazetteer, load_gazetteer
from .geo import GridIndex, load_grids, read_config_text
from .linkage import LinkageConfig, check_linkage_config
from .notify.settings import NotifyConfig
from .plans.checks import load_plans_dir
from .plans.model import Plan
from .routing import RoutingTable, TimeZoneName, load_routing
from .rules import CaseRule, ScreeningConfig, resolve_rules
from .verify.decide import Thresholds as VerificationThresholds
from .vitals.config import VitalsConfig, load_vitals

__all__ = ["ENV_OVERRIDES", "HubConfig", "Setup", "load_config", "load_setup"]

ENV_OVERRIDES = {
    "CITYOPS_HUB_BROKER_USERNAME": ("broker", "username"),
    "CITYOPS_HUB_BROKER_PASSWORD": ("broker", "password"),
    "CITYOPS_HUB_DATABASE": ("database",),
    "CITYOPS_HUB_WEB_HOST": ("web", "host"),
    "CITYOPS_HUB_WEB_PORT": ("web", "port"),
    "CITYOPS_HUB_WEB_PUBLIC_URL": ("web", "public_url"),
    "CITYOPS_HUB_WEB_TLS_CERT": ("web", "tls", "cert_file"),
    "CITYOPS_HUB_WEB_TLS_KEY": ("web", "tls", "key_file"),
}


class BrokerTls(StrictModel):
    ca_file: Path | None = Field(None, description="CA that signed the broker's certificate")
    cert_file: Path | None = Field(None, description="client certificate, if the broker wants one")
    key_file: Path | None = None


class ManagedTls(StrictModel):
    """A TLS listener on the hub's own Mosquitto, for agents. The hub makes a private CA and
    a server certificate in ``dir`` (kept across restarts) unless you put your own
    ``ca.crt``/``server.crt``/``server.key`` there; enrolled agents receive the CA."""

    port: int = Field(8883, ge=0, le=65535, description="0: a free port")
    dir: Path = Field(Path("var/tls"), description="ca.crt, ca.key, server.crt, server.key")
    names: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1"], min_length=1,
        description="DNS names and IP addresses agents use to reach the broker",
    )


class BrokerConfig(StrictModel):
    managed: bool = Field(True, description="true: the hub starts its own Mosquitto")
    data_dir: Path = Field(Path("var/broker"), description="mosquitto.conf, passwd, acl, persistence")
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=0, le=65535, description="0: a free port (managed only)")
    hub_host: str = Field("127.0.0.1", description="the hub's own listener, where only the hub "
                          "user can log in (its link and receivers connect there)")
    hub_port: int | None = Field(
        None, ge=0, le=65535,
        description="the hub's own listener's port. Managed: none or 0 = a free port. External: "
        "the hub-only listener `broker write-config` writes (e.g. 1884); none: the hub shares "
        "the agents' listener, which start-up warns about")
    username: Id = "hub"
    password: str | None = Field(None, description="external broker: use the environment instead")
    tls: BrokerTls | None = None
    managed_tls: ManagedTls | None = Field(
        None, description="managed broker: also listen with TLS for agents (the hub itself "
        "stays on the loopback listener)")
    public_host: str | None = Field(None, description="broker address given to enrolled agents")
    public_port: int | None = Field(None, ge=1, le=65535)
    reload_command: list[str] | None = Field(
        None, description="external broker: argv that reloads it after enrollment"
    )
    keepalive_s: int = Field(30, ge=5, le=3600)

    @model_validator(mode="after")
    def _external_needs_credentials(self) -> BrokerConfig:
        if not self.managed and not self.password:
            raise ValueError(
                "an external broker needs the hub's password: set CITYOPS_HUB_BROKER_PASSWORD"
            )
        if not self.managed and self.port == 0:
            raise ValueError("an external broker needs its port")
        if not self.managed and self.hub_port == 0:
            raise ValueError("an external broker's hub listener needs its port (broker.hub_port, "
                             "e.g. 1884)")
        if self.hub_port and (self.hub_host, self.hub_port) == (self.host, self.port):
            raise ValueError("broker.hub_host:hub_port must differ from broker.host:port: the "
                             "hub's own listener is the one agents cannot log in on")
        if self.managed_tls and not self.managed:
            raise ValueError("managed_tls is for the hub's own broker; for an external broker "
                             "configure TLS there and set broker.tls")
        return self


class WebTls(StrictModel):
    """HTTPS for the web (``hub/tls.py`` makes a private CA and certificate if you need one)."""

    cert_file: Path = Field(description="PEM certificate chain")
    key_file: Path = Field(description="PEM private key")


class LoginLimits(StrictModel):
    per_account: int = Field(5, ge=1, le=1000, description="failed sign-ins per account per window")
    per_address: int = Field(20, ge=1, le=100_000, description="failed sign-ins per client address per window")
    window_min: float = Field(15, gt=0, le=1440)


# The seed district's eight AI categories: what residents and partners may see and report.
OPEN311_DEFAULT_CATEGORIES = ["hazchem", "flood", "construction", "roads", "water", "garbage",
                              "community_safety", "governance"]


class Open311Config(StrictModel):
    enabled: bool = True
    categories: list[str] = Field(
        default_factory=lambda: list(OPEN311_DEFAULT_CATEGORIES),
        description="categories offered as Open311 services and shown in GET requests; "
                    "never elderly care, linkage or devices (privacy)")
    jurisdiction_id: str | None = Field(None, description="accepted when a client sends one")
    max_days: int = Field(90, ge=1, le=3650, description="widest start_date..end_date window")
    posts_per_min: int = Field(30, ge=1, le=10_000, description="POSTs per api_key per minute "
                               "(a token bucket of this size); more get 429 with Retry-After")
    contact: str = Field("", max_length=500, description="discovery: who to ask about the API")
    key_service: str = Field("", max_length=500, description="discovery: how to get an api_key")


class MapTiles(StrictModel):
    """A raster tile server for the map page's base map (presets in docs/web.md)."""

    url: str = Field(max_length=500, pattern=r"^https?://[^\s\"'<>]+$",
                     description="tile URL template with {z}, {x}, {y} (and {s} for subdomains)")
    overlay_url: str | None = Field(None, max_length=500, pattern=r"^https?://[^\s\"'<>]+$",
                                    description="a second tile layer drawn over the first "
                                    "(Tianditu's labels)")
    subdomains: str = Field("abc", max_length=16, pattern=r"^[A-Za-z0-9]*$",
                            description="the characters {s} takes in turn")
    attribution: str = Field("", max_length=500, description="shown in the map's corner")
    crs: Literal["wgs84", "gcj02"] = Field(
        "wgs84", description="the tiles' datum: gcj02 for AMap and other Chinese GCJ-02 maps "
        "(markers and grids are shifted to it)")
    max_zoom: int = Field(18, ge=1, le=22)

    @model_validator(mode="after")
    def _placeholders(self) -> MapTiles:
        for name in ("url", "overlay_url"):
            value = getattr(self, name)
            if value is not None and not all(k in value for k in ("{z}", "{x}", "{y}")):
                raise ValueError(f"{name} needs {{z}}, {{x}} and {{y}} placeholders (got {value[:80]!r})")
            if value is not None and "{s}" in value and not self.subdomains:
                raise ValueError(f"{name} has {{s}}: give subdomains")
        return self


class MapConfig(StrictModel):
    tiles: MapTiles | None = Field(None, description="the base map; none: grid polygons on a "
                                   "blank base (offline)")
    max_cases: int = Field(20_000, ge=1, le=200_000, description="open cases drawn at most "
                           "(the newest; the page says when more are open)")


class LiveViewConfig(StrictModel):
    """Live view of a camera on the operator's request (``/live/<agent>/<camera>``)."""

    view_s: float = Field(60, ge=1, le=3600, description="how long one opening of a live view "
                          "runs before it stops on its own (the page offers to watch again)")
    max_view_s: float = Field(600, ge=1, le=86400, description="the longest a page may ask for "
                              "(?seconds=); the video wall's tiles ask for this")
    request_s: float = Field(30, ge=2, le=MAX_LIVE_SECONDS, description="the longest one request "
                             "to an agent runs; refreshed while somebody watches, so a hub that "
                             "goes away leaves no camera streaming longer than this")
    refresh_s: float = Field(5, gt=0, le=60, description="refresh the request this long before "
                             "the agent's window ends (at most half of request_s)")

    @model_validator(mode="after")
    def _order(self) -> LiveViewConfig:
        if self.view_s > self.max_view_s:
            raise ValueError(f"view_s ({self.view_s:g}) is longer than max_view_s "
                             f"({self.max_view_s:g}): raise max_view_s or lower view_s")
        return self


class WebConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0: a free port")
    tls: WebTls | None = Field(None, description="serve HTTPS; cookies are then Secure")
    public_url: str | None = Field(None, description="base URL people reach the hub at "
                                   "(absolute links such as Open311 media_url)")
    session_ttl_h: float = Field(12, gt=0, le=24 * 30, description="a sign-in lasts at most this long")
    session_idle_min: float = Field(240, gt=0, description="a session unused this long ends")
    login_limits: LoginLimits = Field(default_factory=LoginLimits)
    metrics_public: bool = Field(False, description="serve /metrics without a token")
    access_log: bool = Field(True, description="one structured log line per request")
    live_interval_s: float = Field(2, ge=0.2, le=60, description="how often the live page refreshes")
    near_deadline_min: float = Field(60, gt=0, description="'near deadline' on the overview")
    open311: Open311Config = Field(default_factory=Open311Config)
    survey_valid_days: float = Field(
        14, gt=0, le=365, description="a reporter's satisfaction survey link works this long "
                                       "after the case closes (single use)")
    linkage: LinkageConfig = Field(default_factory=LinkageConfig,
                                   description="linked incidents from emergency systems")
    map: MapConfig = Field(default_factory=MapConfig, description="the map page (/map)")
    live_view: LiveViewConfig = Field(default_factory=LiveViewConfig,
                                      description="live view of cameras and the video wall")


class IngestConfig(StrictModel):
    receivers: int = Field(
        1, ge=0, le=16,
        description="receiver processes on a shared subscription; 0: a thread in the hub process",
    )
    shared_group: Id = Field("hub", description="MQTT shared subscription group ($share/...)")
    batch_max: int = Field(2000, ge=1, le=50_000, description="events per transaction at most")
    batch_wait_ms: float = Field(0, ge=0, le=1000, description="with fewer than 100 events waiting, wait this long for more before a batch")
    max_buffered: int = Field(100_000, ge=100, description="received, not yet stored (backpressure)")
    client_id: Id = Field("cityops-hub", description="prefix of the hub's MQTT client ids")
    decode_in_receivers: Literal["batches", "all", "none"] = Field(
        "all", description="what receiver processes validate themselves before handing over")
    gc_threshold: int = Field(
        50_000, ge=700,
        description="Python's gen-0 GC threshold in the hub process: decoding allocates many "
                    "short-lived objects, and the default (700) spends a third of ingest in GC")


class SlaConfig(StrictModel):
    tick_s: float = Field(5, gt=0, description="how often deadlines and closures are checked")
    warn_fraction: float = Field(0.2, ge=0, lt=1, description="warn this share of the deadline before it")
    escalation_step_min: float = Field(60, gt=0, description="time between escalation levels")


class ClosureConfig(StrictModel):
    recurrence_window_h: float = Field(72, ge=0, description="a closed case that recurs within it reopens")

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "verify_min_confidence" in data:
            raise ValueError("closure.verify_min_confidence moved: write it as "
                             "verification.min_confidence")
        return data


class VerificationConfig(StrictModel):
    """How after-photos are compared with before-photos (automatic closure)."""

    kind: Literal["photo", "none"] = Field(
        "photo", description="photo: ORB + RANSAC alignment, SSIM/difference and the detector; "
                             "none: every after-photo goes to an operator")
    min_confidence: float = Field(0.8, ge=0, le=1, description="a verdict below it goes to an operator")
    detector: bool = Field(True, description="re-run the detector on the region (when the model loads)")
    model: Path | None = Field(None, description="TFLite detector; none: the bundled one")
    labels: Path | None = Field(None, description="its labels file; none: the bundled one")
    margin: float = Field(0.6, gt=0, le=3, description="context around the region, × its size, each side")
    thresholds: VerificationThresholds = Field(default_factory=VerificationThresholds)

    @model_validator(mode="after")
    def _model_with_labels(self) -> VerificationConfig:
        if (self.model is None) != (self.labels is None):
            raise ValueError("set both model and labels (or neither, for the bundled detector)")
        return self


class RetentionConfig(StrictModel):
    messages_days: float = Field(90, gt=0, description="raw event messages")
    snapshots_days: float = Field(180, gt=0, description="snapshots not needed by an open case")
    clips_days: float = Field(30, gt=0, description="event clips (their MP4 files too), but those "
                              "of a case still open")
    clips_incomplete_min: float = Field(
        60, gt=0, description="a clip still missing chunks this long after its first arrived is "
                              "marked failed, naming the missing chunks, and its chunks deleted")
    dead_letters_days: float = Field(30, gt=0)
    reporter_contacts_days: float = Field(
        180, gt=0, description="a reporter's email and phone (and the survey links and the "
                               "addresses in their updates), counted from the case's last change "
                               "once it is no longer open")
    sweep_every_min: float = Field(60, gt=0)


class AgentsConfig(StrictModel):
    stale_after_s: float = Field(180, gt=0, description="online but silent this long: shown as stale")


class ReleasesConfig(StrictModel):
    """Model releases and staged rollouts (docs/hub.md, Model releases)."""

    dir: Path = Field(Path("var/releases"), description="the release packages (zip files)")
    max_chunks_per_s: float = Field(400, gt=0, le=100_000, description="release chunks published "
                                    "a second at most, over all agents (so a rollout cannot starve "
                                    "the acks of ingest)")
    tick_s: float = Field(5, gt=0, le=600, description="how often rollouts are checked and desired "
                          "releases published")
    canary_minutes: float = Field(30, gt=0, le=7 * 24 * 60, description="the canary window when a "
                                  "rollout names none")
    offline_grace_s: float = Field(300, ge=0, le=86400, description="a canary agent offline longer "
                                   "than this (from the rollout's start) rolls the rollout back")
    false_alarm_factor: float = Field(2.0, ge=1, le=100, description="the canary rolls back when its "
                                      "false alarms exceed max(factor x before, before + margin)")
    false_alarm_margin: int = Field(3, ge=0, le=100_000, description="see false_alarm_factor")
    max_failed_share: float = Field(0.1, ge=0, le=1, description="after promotion, a larger share of "
                                    "agents reporting failed rolls back")


class EnrollmentConfig(StrictModel):
    default_ttl_s: int = Field(3600, gt=0, le=30 * 86400)


class HubConfig(StrictModel):
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    database: Path = Path("var/hub.sqlite")
    database_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="FULL: a commit survives power loss; NORMAL (WAL): survives a crash "
                            "of the hub process, not of the machine")
    snapshots_dir: Path = Path("var/snapshots")
    clips_dir: Path | None = Field(None, description="event clips (MP4), named by their sha256; "
                                   "none: a clips folder beside snapshots_dir")
    web: WebConfig = Field(default_factory=WebConfig)
    grids: Path = Field(description="GeoJSON FeatureCollection of the grids")
    routing: Path | None = Field(None, description="routing table YAML; none: taxonomy defaults")
    service_area: Path | None = Field(None, description="GeoJSON; none: the union of the grids")
    gazetteer: Path | None = Field(None, description="road and community names → grid and point, "
                                   "for reports that give only an address; none: such reports "
                                   "wait for an operator to place them")
    timezone: TimeZoneName = Field("Asia/Shanghai", description="months for scores")
    screening: ScreeningConfig = Field(default_factory=ScreeningConfig)
    sla: SlaConfig = Field(default_factory=SlaConfig)
    closure: ClosureConfig = Field(default_factory=ClosureConfig)
    verification: VerificationConfig = Field(default_factory=VerificationConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    agents: AgentsConfig = Field(default_factory=AgentsConfig)
    enrollment: EnrollmentConfig = Field(default_factory=EnrollmentConfig)
    releases: ReleasesConfig = Field(default_factory=ReleasesConfig)
    vitals: Path | None = Field(None, description="vital-signs file (docs/plans.md); none: no "
                                "vital signs are graded")
    plans: Path | None = Field(None, description="folder of response-plan YAML files, loaded into "
                               "the store at start (a changed file becomes a new version)")
    care: Path | None = Field(None, description="elderly-care registry YAML: who each tier "
                              "of a resident's alarm tells (docs/hub.md, Elderly care); none: "
                              "care alarms are tracked and acknowledged, nobody is told")
    notify: NotifyConfig | None = Field(None, description="notification delivery channels "
                                        "(docs/hub.md, Notifications); none: notifications are "
                                        "recorded on the case, not sent")

    def resolve_paths(self, base: Path) -> HubConfig:
        """Make relative paths relative to ``base`` (the config file's folder)."""

        def fix(p: Path | None) -> Path | None:
            return p if p is None or p.is_absolute() else (base / p)

        self.database = fix(self.database)
        self.snapshots_dir = fix(self.snapshots_dir)
        self.clips_dir = fix(self.clips_dir)
        self.dataset.dir = fix(self.dataset.dir)
        self.grids = fix(self.grids)
        self.routing = fix(self.routing)
        self.service_area = fix(self.service_area)
        self.gazetteer = fix(self.gazetteer)
        self.vitals = fix(self.vitals)
        self.plans = fix(self.plans)
        self.care = fix(self.care)
        self.releases.dir = fix(self.releases.dir)
        self.broker.data_dir = fix(self.broker.data_dir)
        self.verification.model = fix(self.verification.model)
        self.verification.labels = fix(self.verification.labels)
        if self.notify is not None:
            self.notify.resolve_paths(fix)
        if self.broker.managed_tls:
            self.broker.managed_tls.dir = fix(self.broker.managed_tls.dir)
        if self.web.tls:
            self.web.tls.cert_file = fix(self.web.tls.cert_file)
            self.web.tls.key_file = fix(self.web.tls.key_file)
        if self.broker.tls:
            t = self.broker.tls
            t.ca_file, t.cert_file, t.key_file = fix(t.ca_file), fix(t.cert_file), fix(t.key_file)
        return self


def _apply_env(data: dict[str, Any], env: dict[str, str]) -> None:
    for var, path in ENV_OVERRIDES.items():
        if env.get(var):
            node = data
            for key in path[:-1]:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    return
            node[path[-1]] = env[var]


def load_config(path: str | Path, env: dict[str, str] | None = None) -> tuple[HubConfig, Document]:
    path = Path(path)
    doc = parse_yaml(read_config_text(path, "hub config"), str(path))
    if isinstance(doc.data, dict):
        _apply_env(doc.data, dict(os.environ) if env is None else env)
    config = validate_document(HubConfig, doc)
    return config.resolve_paths(path.parent.resolve()), doc


@dataclass
class Setup:
    """A validated config with everything it names loaded and cross-checked."""

    config: HubConfig
    taxonomy: Taxonomy
    rules: dict[str, CaseRule]
    grids: GridIndex
    routing: RoutingTable
    service_area: GridIndex | None  # None: the grids are the service area
    vitals: VitalsConfig = field(default_factory=VitalsConfig)
    plans: dict[str, tuple[Plan, str]] = field(default_factory=dict)  # from the plans folder
    gazetteer: Gazetteer = field(default_factory=lambda: Gazetteer([]))  # empty: none configured
    care: CareRegistry = field(default_factory=CareRegistry)  # empty: none configured

    @property
    def departments(self) -> set[str]:
        return set(self.taxonomy.departments) | set(self.routing.departments)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.config.timezone)

    def in_service_area(self, lat: float, lon: float) -> bool:
        area = self.service_area or self.grids
        return area.locate(lat, lon) is not None


def _check_screening(config: HubConfig, doc: Document | None, tax: Taxonomy, grids: GridIndex,
                     routing: RoutingTable) -> None:
    def problem(path: tuple, message: str) -> ConfigProblem:
        if doc is not None:
            return doc.problem(path, message)
        return ConfigProblem("<config>", None, None, ".".join(map(str, path)), message)

    codes = {c.code for c in tax.categories} | {s.code for s in tax.subcategories()}
    departments = set(tax.departments) | set(routing.departments)
    problems = []
    for code, rule in config.screening.rules.items():
        if code not in codes:
            problems.append(problem(("screening", "rules", code),
                                    f"unknown category {code!r}; see protocol/taxonomy.yaml"))
        if rule.department and rule.department not in departments:
            problems.append(problem(("screening", "rules", code, "department"),
                                    f"unknown department {rule.department!r}"))
    cats = {c.code for c in tax.categories}
    for i, code in enumerate(config.web.open311.categories):
        if code not in cats:
            problems.append(problem(("web", "open311", "categories", i),
                                    f"unknown category {code!r}; see protocol/taxonomy.yaml"))
    for path, message in check_linkage_config(config.web.linkage, tax):
        problems.append(problem(("web", "linkage", *path), message))
    for i, window in enumerate(config.screening.maintenance):
        for k, g in enumerate(window.grids):
            if g not in grids:
                problems.append(problem(("screening", "maintenance", i, "grids", k),
                                        f"unknown grid {g!r}; it is not in the grids file"))
        for k, code in enumerate(window.categories):
            if code not in codes:
                problems.append(problem(("screening", "maintenance", i, "categories", k),
                                        f"unknown category {code!r}"))
    if problems:
        raise ConfigError(problems)


def build_setup(config: HubConfig, doc: Document | None = None) -> Setup:
    tax = taxonomy()
    grids = load_grids(config.grids)
    endpoints = config.notify.endpoints() if config.notify is not None else None
    routing = load_routing(config.routing, tax, grids, endpoints) if config.routing else RoutingTable()
    area = load_grids(config.service_area) if config.service_area else None
    _check_screening(config, doc, tax, grids, routing)
    vitals = load_vitals(config.vitals, grids) if config.vitals else VitalsConfig()
    departments = set(tax.departments) | set(routing.departments)
    plans = load_plans_dir(config.plans, tax, grids, departments) if config.plans else {}
    gazetteer = load_gazetteer(config.gazetteer, grids) if config.gazetteer else Gazetteer([])
    care = load_care(config.care, endpoints) if config.care else CareRegistry()
    return Setup(config, tax, resolve_rules(tax, config.screening), grids, routing, area,
                 vitals, plans, gazetteer, care)


def load_setup(path: str | Path, env: dict[str, str] | None = None) -> Setup:
    config, doc = load_config(path, env)
    return build_setup(config, doc)
