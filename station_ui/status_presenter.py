"""What the panels show, from one `GET /window/summary` answer (or None: the gateway did not answer). Tk-free.

Banner priority: gateway not answering > broker or centre down (the spec's "서버 연결 끊김 — 완공 파일은 보관 후
자동 전송됩니다", with which of the two on a second line) > outbox full. The PROC-004 firmware panel and the PROC-007
serial panel are filled only at a station of that process.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from station_ui.presenter import DANGER, INFO, SUCCESS, WARNING, process_label
from station_ui.texts import has, t

FIRMWARE_PROCESS = "PROC-004"
SERIAL_PROCESS = "PROC-007"


@dataclass(frozen=True, slots=True)
class Banner:
    tone: str
    text: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Line:
    tone: str
    text: str


@dataclass(frozen=True, slots=True)
class ScreenModel:
    connection: Line
    banner: Banner | None
    current: str
    today: str
    outbox: Line
    pending_title: str
    pending: list[tuple[str, str]]  # name, age
    completed_title: str
    completed: list[tuple[str, str]]  # name, time
    error_title: str
    errors: list[tuple[str, str, str]]  # name, code, message
    error_logs: dict[str, str]
    firmware: list[Line] = field(default_factory=list)
    serials_title: str = ""
    serials: list[tuple[str, str, str]] = field(default_factory=list)  # serial, state, printer
    alerts_title: str = ""
    alerts: list[Line] = field(default_factory=list)
    reprint_available: bool = False


def age_text(seconds: float | None, lang: str) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return t("seconds", lang, n=int(seconds))
    if seconds < 90 * 60:
        return t("minutes", lang, n=int(seconds // 60))
    return t("hours", lang, n=round(seconds / 3600, 1))


def _clock(iso: str | None) -> str:
    return iso[11:19] if iso and len(iso) >= 19 else (iso or "-")


def banner_of(summary: dict[str, Any] | None, lang: str) -> Banner | None:
    if summary is None:
        return Banner(DANGER, t("gateway_down_banner", lang))
    status = summary.get("status") or {}
    if not status.get("connected"):
        return Banner(DANGER, t("offline_banner", lang))
    if status.get("server_online") is False:
        return Banner(DANGER, t("offline_banner", lang), t("centre_down_banner", lang))
    if (status.get("outbox") or {}).get("full"):
        return Banner(DANGER, t("outbox_full_banner", lang))
    return None


def _firmware_lines(firmware: dict[str, Any], lang: str) -> list[Line]:
    status = firmware.get("status")
    if not status and not firmware.get("meta"):
        return [Line(INFO, t("firmware_none", lang))]
    key = f"FW_{status}"
    shown = t(key, lang) if has(key) else str(status or "-")
    retries = firmware.get("retries")
    tone = {"READY": SUCCESS, "DOWNLOADING": INFO, "ERROR": DANGER}.get(str(status), WARNING)
    lines = [
        Line(
            tone,
            t(
                "firmware_line",
                lang,
                version=firmware.get("version") or "-",
                status=shown,
                retries=retries if retries is not None else "-",
            ),
        )
    ]
    if firmware.get("gave_up"):
        lines.append(Line(DANGER, t("firmware_gave_up", lang)))
    elif status == "ERROR" and firmware.get("message"):
        lines.append(Line(DANGER, str(firmware["message"])))
    return lines


def _alert_lines(alerts: list[dict[str, Any]], lang: str) -> list[Line]:
    lines = []
    for alert in alerts:
        if alert.get("source") == "printer":
            state = str(alert.get("printer_state"))
            key = f"PRINTER_{state}"
            text = t(
                "alert_printer",
                lang,
                printer=alert.get("printer_id"),
                state=t(key, lang) if has(key) else state,
                waiting=alert.get("waiting", 0),
            )
            lines.append(Line(WARNING, text))
            continue
        tone = DANGER if alert.get("kind") in ("nelson", "cpk_low") else WARNING
        lines.append(Line(tone, _centre_alert(alert, lang)))
    return lines


def _centre_alert(alert: dict[str, Any], lang: str) -> str:
    """An SPC alert (mes_contracts.alerts.AlertMessage): time, rule or Cpk, where, and the centre's own text."""
    kind = alert.get("kind")
    if kind == "nelson":
        title = t("alert_nelson", lang, rule=alert.get("rule") or "?")
    elif kind == "cpk_low":
        title = t("alert_cpk", lang, cpk=alert.get("cpk") or 0.0, threshold=alert.get("threshold") or 0.0)
    else:
        title = str(alert.get("title") or kind or "alert")
    message = alert.get("message_en" if lang == "en" else "message_ko") or alert.get("message") or ""
    where = " · ".join(str(alert[k]) for k in ("process_id", "characteristic", "lot_number") if alert.get(k))
    at = _clock(alert.get("raised_at") or alert.get("received_at"))
    return f"{at} {title}: {message} ({where})" if where else f"{at} {title}: {message}"


def _serial_rows(labels: list[dict[str, Any]], lang: str) -> list[tuple[str, str, str]]:
    rows = []
    for label in labels:
        if label.get("label_type") != "SERIAL":
            continue
        key = f"LABEL_{label.get('state')}"
        state = t(key, lang) if has(key) else str(label.get("state"))
        waiting = label.get("waiting_state")
        if waiting:
            state = f"{state} ({t(f'PRINTER_{waiting}', lang) if has(f'PRINTER_{waiting}') else waiting})"
        if label.get("reprint"):
            state = f"{state} ↺"
        rows.append((str(label.get("label_key")), state, str(label.get("printer_id"))))
    return rows


def present(summary: dict[str, Any] | None, process_id: str, lang: str) -> ScreenModel:
    banner = banner_of(summary, lang)
    summary = summary or {}
    status = summary.get("status") or {}
    activity = summary.get("activity") or {}
    files = summary.get("files") or {}
    outbox = status.get("outbox") or {}
    connected = bool(status.get("connected")) and status.get("server_online") is not False
    connection = (
        Line(SUCCESS, t("online", lang)) if connected and summary else Line(DANGER, banner.text if banner else "-")
    )
    current = activity.get("current") or {}
    current_text = t("none", lang)
    if current.get("lot_number"):
        parts = (
            current["lot_number"],
            process_label(str(current.get("process_id")), lang),
            current.get("work_order_id") or "-",
            current.get("worker_id") or "-",
        )
        current_text = " · ".join(str(p) for p in parts)
    depth = outbox.get("depth")
    outbox_text = t("outbox", lang, depth=depth if depth is not None else "-")
    if outbox.get("oldest_pending_age_s") is not None:
        outbox_text += " · " + t("outbox_oldest", lang, age=age_text(outbox["oldest_pending_age_s"], lang))
    if outbox.get("full"):
        outbox_text += " · " + t("outbox_full", lang)
    outbox_tone = DANGER if outbox.get("full") else (WARNING if depth else SUCCESS)
    errors = files.get("error") or []
    model = ScreenModel(
        connection=connection,
        banner=banner,
        current=current_text,
        today=t(
            "today",
            lang,
            starts=activity.get("starts_today", 0),
            completions=files.get("completed_today", 0),
            refusals=activity.get("refusals_today", 0),
        ),
        outbox=Line(outbox_tone, outbox_text),
        pending_title=t("pending", lang, count=files.get("pending_count", 0)),
        pending=[(f["name"], age_text(f.get("age_s"), lang)) for f in files.get("pending") or []],
        completed_title=t("completed", lang, count=files.get("completed_today", 0)),
        completed=[(f["name"], _clock(f.get("modified"))) for f in files.get("completed") or []],
        error_title=t("error", lang, count=files.get("error_count", 0)),
        errors=[(f["name"], f.get("error_code") or "-", f.get("message") or "-") for f in errors],
        error_logs={f["name"]: f.get("log") or "" for f in errors},
        reprint_available=bool(summary.get("reprint_available")),
    )
    alerts = _alert_lines(summary.get("alerts") or [], lang)
    model_extra: dict[str, Any] = {"alerts_title": t("alerts", lang, count=len(alerts)), "alerts": alerts}
    if process_id == FIRMWARE_PROCESS:
        model_extra["firmware"] = _firmware_lines(summary.get("firmware") or {}, lang)
    if process_id == SERIAL_PROCESS:
        serials = _serial_rows(summary.get("labels") or [], lang)
        model_extra.update(serials_title=t("serials", lang, count=len(serials)), serials=serials)
    return replace(model, **model_extra)
