"""The web UI's fixed labels: English source strings for machine values (case states,
roles, levels ...) and the scripts' messages, marked with :func:`N_` for extraction and
translated where they are shown (``_(STATE_LABELS[s])`` in a template)."""

from __future__ import annotations

from ..cases.sla import LEVELS

__all__ = ["AGENT_STATES", "AUDIT_ACTIONS", "INDICATOR_KINDS", "JS_MESSAGES", "LEVEL_LABELS", "LEVEL_NAMES",
           "N_", "ORDER_STATES", "PLAN_KINDS", "RESOLUTIONS", "ROLE_LABELS", "STATE_LABELS",
           "SURVEY_ANSWERS", "TEMPLATE_TABLES", "VERDICTS", "VITAL_LEVELS"]


def N_(message: str) -> str:
    """Marks a string for extraction (``pybabel extract -k N_``); it is translated where shown."""
    return message


STATE_LABELS = {
    "new": N_("New"), "accepted": N_("Accepted"), "rejected": N_("Rejected"),
    "dispatched": N_("Dispatched"), "in_progress": N_("In progress"),
    "escalated": N_("Escalated"), "resolved": N_("Resolved"),
    "closed": N_("Closed"), "reopened": N_("Reopened"), "merged": N_("Merged"),
}
LEVEL_LABELS = [N_("Grid / department"), N_("Town"), N_("District"), N_("City")]
assert len(LEVEL_LABELS) == len(LEVELS) + 1
ROLE_LABELS = {"operator": N_("operator"), "dispatcher": N_("dispatcher"),
               "handler": N_("handler"), "admin": N_("admin"), "reporter": N_("reporter"),
               "open311": N_("Open311 partner"), "monitor": N_("monitor"),
               "linkage": N_("linkage")}
AGENT_STATES = {"online": N_("online"), "offline": N_("offline"), "stale": N_("stale"),
                "never": N_("never seen")}
VERDICTS = {"fixed": N_("fixed"), "not_fixed": N_("not fixed"), "uncertain": N_("uncertain")}
VITAL_LEVELS = {"normal": N_("normal"), "blue": N_("blue"), "yellow": N_("yellow"),
                "orange": N_("orange"), "red": N_("red")}
INDICATOR_KINDS = {"water_level": N_("water level"), "water_rise": N_("water rise"),
                   "rainfall": N_("rainfall"), "people": N_("people"),
                   "case_pressure": N_("case pressure"), "devices_offline": N_("devices offline")}
PLAN_KINDS = {"rainstorm": N_("rainstorm"), "typhoon": N_("typhoon"),
              "holiday_crowd": N_("holiday crowd"), "major_event": N_("major event"),
              "hazchem": N_("hazardous chemicals"), "heatwave": N_("heatwave"), "other": N_("other")}
ORDER_STATES = {"issued": N_("issued"), "acknowledged": N_("acknowledged"),
                "answered": N_("answered")}
LEVEL_NAMES = {"town": N_("town"), "district": N_("district"), "city": N_("city")}
RESOLUTIONS = {"fixed": N_("fixed"), "false_alarm": N_("false alarm")}
# The audit trail's actions that are not a state (a state shows its STATE_LABELS entry).
AUDIT_ACTIONS = {
    "opened": N_("opened"), "report": N_("report"), "note": N_("note"),
    "absorbed": N_("event joined the case"), "after_photo": N_("after-photo"),
    "care_acknowledged": N_("care alarm acknowledged"), "held": N_("held for an operator"),
    "needs_review": N_("needs an operator's review"), "not_fixed": N_("not fixed"),
    "overturned": N_("rejection overturned"), "queued": N_("to the operator queue"),
    "redispatched": N_("dispatched again"), "returned": N_("returned"),
    "sent_back": N_("sent back"), "satisfaction": N_("satisfaction"),
    "source_cleared": N_("source cleared"), "survey_not_sent": N_("survey not sent"),
    "supervision_issued": N_("supervision order issued"),
    "supervision_acknowledged": N_("supervision order acknowledged"),
    "supervision_answered": N_("supervision order answered"),
    "verification": N_("verification"), "verification_stale": N_("verification out of date"),
    "warning": N_("warning"),
}
# The scripts' messages (static/*.js read them from the page: <script id="i18n-messages">,
# translated for the request); %(name)s placeholders are filled in by the script.
JS_MESSAGES = {
    "live": N_("live"), "reconnecting": N_("reconnecting…"),
    "map_no_library": N_("The map library did not load (/static/vendor/leaflet/leaflet.js); "
                         "reload the page."),
    "map_load_failed": N_("Could not load the map's markers (%(error)s); reload the page."),
    "map_level_0": N_("grid level"), "map_level_1": N_("town level"),
    "map_level_2": N_("district level"), "map_level_3": N_("city level"),
    "map_overdue": N_("overdue"), "map_camera": N_("Camera %(name)s"),
    "map_sensor": N_("Sensor %(name)s"), "map_at_grid_centre": N_("placed at its grid's centre"),
    "map_summary": N_("%(cases)s open cases · %(cameras)s cameras · %(sensors)s sensors"),
    "map_truncated": N_(" (the newest %(n)s of %(total)s open cases drawn)"),
    "map_unplaced": N_(" · %(n)s devices without a known place"),
    "dev_up": N_("up"), "dev_down": N_("down"), "dev_unknown": N_("unknown"),
    "dev_offline": N_("offline"),
    "report_point": N_("Point chosen: %(lat)s, %(lon)s"),
    "report_point_grid": N_(" (grid %(grid)s)"),
    "report_point_outside": N_(" (outside every grid: tap inside one)"),
    "report_photo_ready": N_("Photo ready (%(n)s KiB)."),
    "report_shrinking": N_("Shrinking the photo…"),
    "report_not_photo": N_("This file is not a photo the page can read; choose a JPEG."),
    "report_sending": N_("Sending…"),
    **{f"state_{k}": v for k, v in STATE_LABELS.items()},
}
SURVEY_ANSWERS = {"satisfied": N_("satisfied"), "not_satisfied": N_("not satisfied"),
                  "not_fixed": N_("not fixed")}

# the tables the templates use by name
TEMPLATE_TABLES = {
    "STATE_LABELS": STATE_LABELS, "LEVEL_LABELS": LEVEL_LABELS, "ROLE_LABELS": ROLE_LABELS,
    "AGENT_STATES": AGENT_STATES, "VERDICTS": VERDICTS, "VITAL_LEVELS": VITAL_LEVELS,
    "INDICATOR_KINDS": INDICATOR_KINDS, "PLAN_KINDS": PLAN_KINDS, "ORDER_STATES": ORDER_STATES,
    "SURVEY_ANSWERS": SURVEY_ANSWERS, "LEVEL_NAMES": LEVEL_NAMES, "RESOLUTIONS": RESOLUTIONS,
    "AUDIT_ACTIONS": AUDIT_ACTIONS,
}
