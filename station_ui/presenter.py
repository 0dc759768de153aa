"""What the window shows for a scan answer: Tk-free, so every state is unit-tested without a display.

The big answer panel is a `Verdict`: a tone (ttkbootstrap bootstyle: success / danger / warning / info), a
headline, a detail line and which beep to sound. The refusal headline is the spec's message for the error code
(mes_contracts.errors, in the window's language) and the detail its `required_action` (recomputed from the route
for English, since the centre answers the gateway in Korean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mes_contracts.errors import ErrorCode, error_message, required_action
from mes_contracts.route import find_step, previous_step
from station_ui.scan import Scan, ScanKind
from station_ui.texts import t

SUCCESS, DANGER, WARNING, INFO = "success", "danger", "warning", "info"


@dataclass(frozen=True, slots=True)
class Verdict:
    tone: str
    headline: str
    detail: str
    beep: str | None  # "ok" | "error" | None


def process_label(process_id: str, lang: str) -> str:
    step = find_step(process_id)
    return f"{process_id} {step.name(lang)}" if step else process_id


def scan_verdict(scan: Scan, worker: str | None, lang: str) -> Verdict | None:
    """The answer to a scan that is not sent anywhere (a badge, an unknown code, a LOT without a worker);
    None when the scan is a start to send."""
    if scan.kind is ScanKind.WORKER:
        return Verdict(INFO, t("worker_set", lang, worker=scan.value), t("worker_set_hint", lang), None)
    if scan.kind is ScanKind.UNKNOWN:
        return Verdict(WARNING, t("unknown_scan", lang), t("unknown_scan_hint", lang, value=scan.value[:60]), "error")
    if worker is None:
        return Verdict(WARNING, t("need_worker", lang), t("need_worker_hint", lang, lot=scan.lot_number), "error")
    return None


def _known_code(code: object) -> ErrorCode | None:
    try:
        return ErrorCode(str(code))
    except ValueError:
        return None


def _required_action(data: dict[str, Any], process_id: str, lang: str) -> str | None:
    if lang == "en":
        previous = previous_step(process_id)
        if previous is not None:
            return required_action(previous.name("en"), "en")
    action = data.get("required_action")
    return str(action) if action else None


def start_verdict(
    http_status: int | None, body: dict[str, Any] | None, process_id: str, lang: str, gateway_url: str = ""
) -> Verdict:
    """The answer of POST /start (None status: the gateway did not answer at all)."""
    if http_status is None or body is None:
        return Verdict(
            DANGER, t("gateway_unreachable", lang), t("gateway_unreachable_hint", lang, url=gateway_url), "error"
        )
    data = body.get("data") if isinstance(body.get("data"), dict) else None
    data = data or {}
    if http_status == 200 and body.get("status") == "success":
        wo = data.get("work_order_id", "-")
        detail = t("work_order", lang, wo=wo, lot=data.get("lot_number", "-"), process=process_label(process_id, lang))
        sync = data.get("firmware_sync")
        if isinstance(sync, dict) and sync.get("status") == "ERROR":
            return Verdict(WARNING, t("started", lang), f"{detail}\n{sync.get('message') or ''}", "error")
        return Verdict(SUCCESS, t("started", lang), detail, "ok")
    code = _known_code(body.get("error_code"))
    headline = error_message(code, lang) if code is not None else str(body.get("message") or http_status)
    if code is ErrorCode.PREVIOUS_PROCESS_NOT_COMPLETED:
        detail = _required_action(data, process_id, lang) or ""
    elif code in (ErrorCode.SERVICE_UNAVAILABLE, ErrorCode.GATEWAY_TIMEOUT):
        detail = t("retry_later", lang)
    elif code is ErrorCode.DUPLICATE_START and data.get("work_order_id"):
        detail = t(
            "work_order",
            lang,
            wo=data["work_order_id"],
            lot=data.get("lot_number", "-"),
            process=process_label(process_id, lang),
        )
    else:
        detail = str(data.get("required_action") or t("call_manager", lang))
    if code is not None and code is not ErrorCode.PREVIOUS_PROCESS_NOT_COMPLETED:
        detail = f"{detail}\n[{code.value}]"
    return Verdict(DANGER, headline, detail, "error")
