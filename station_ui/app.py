"""The station window: scan field with the big answer on top, then the panels; Tk in the main thread only.

Every gateway call goes through `GatewayClient` (one worker thread); `_drain` empties its result queue every
POLL_QUEUE_MS with `after()`, and the summary is asked for every `poll_ms`. The scan field keeps the focus
(`_keep_focus`), so a keyboard-wedge scanner's characters and Enter always land there.
"""

from __future__ import annotations

import logging
import queue
import tkinter as tk
import tkinter.font as tkfont
from datetime import datetime
from tkinter import ttk
from typing import Any

import ttkbootstrap as tb

from station_ui.config import StationConfig
from station_ui.dialogs import ReprintDialog
from station_ui.gateway_client import GatewayClient, Job, Result
from station_ui.panels import (
    AnswerPanel,
    BannerPanel,
    ErrorsPanel,
    FilesPanel,
    LinesPanel,
    SerialsPanel,
    StatusPanel,
    fonts_for,
    selected_key,
)
from station_ui.presenter import DANGER, INFO, SUCCESS, Verdict, process_label, scan_verdict, start_verdict
from station_ui.scan import ScanKind, classify
from station_ui.status_presenter import FIRMWARE_PROCESS, SERIAL_PROCESS, ScreenModel, present
from station_ui.texts import t
from station_ui.theme import pick_family, pick_sizes, pick_theme

logger = logging.getLogger(__name__)

POLL_QUEUE_MS = 50


class StationWindow:
    def __init__(self, config: StationConfig, client: GatewayClient | None = None) -> None:
        self.config = config
        self.lang = config.lang
        self.dark = config.theme == "dark"
        self.worker: str | None = config.worker
        self.root = tb.Window()
        self.root.title(f"MES {config.station}")
        self.sizes = pick_sizes(config.screen, self.root.winfo_screenwidth())
        self.family = pick_family(set(tkfont.families(self.root)))
        self.fonts = fonts_for(self.family, self.sizes)
        self._apply_theme()
        self.root.geometry(self.sizes.geometry)
        if config.fullscreen:
            self.root.attributes("-fullscreen", True)
        self.client = client or GatewayClient(config.gateway_url)
        self.summary: dict[str, Any] | None = None
        self.model: ScreenModel | None = None
        self.verdict = Verdict("idle", "", "", None)
        self.beeps: list[str] = []  # what was sounded, newest last (the tests read it)
        self.answers: int = 0  # start answers shown so far (the tests wait on it)
        self.summaries: int = 0
        self._last_start: tuple[Result, Verdict] | None = None
        self.reprints = 0  # reprint answers shown so far, and the last one's HTTP status (the tests read them)
        self.last_reprint_status: int | None = None
        self._build()
        self._closed = False
        self._timers: dict[str, str] = {}  # after() ids of the three loops, cancelled on close
        self.root.protocol("WM_DELETE_WINDOW", self.close)

    # -- layout -----------------------------------------------------------------------------------------------

    def _build(self) -> None:
        root, fonts = self.root, self.fonts
        top = ttk.Frame(root, padding=(12, 8))
        top.pack(fill="x")
        self.title = ttk.Label(top, font=fonts["title"])
        self.title.pack(side="left")
        self.lang_button = ttk.Button(top, command=self.toggle_lang, takefocus=False, padding=self.sizes.button_pad)
        self.lang_button.pack(side="right", padx=4)
        self.theme_button = ttk.Button(top, command=self.toggle_theme, takefocus=False, padding=self.sizes.button_pad)
        self.theme_button.pack(side="right", padx=4)
        self.worker_label = ttk.Label(top, font=fonts["bold"])
        self.worker_label.pack(side="right", padx=16)
        self.banner = BannerPanel(root, fonts)
        self.banner_anchor = ttk.Frame(root)
        self.banner_anchor.pack(fill="x")
        scan_row = ttk.Frame(root, padding=(12, 4))
        scan_row.pack(fill="x")
        self.prompt = ttk.Label(scan_row, font=fonts["body"])
        self.prompt.pack(anchor="w")
        self.entry = tk.Entry(scan_row, font=fonts["entry"], relief="solid", borderwidth=2)
        self.entry.pack(fill="x", ipady=6)
        self.entry.bind("<Return>", self._on_scan)
        self.entry.bind("<KP_Enter>", self._on_scan)
        self.answer = AnswerPanel(root, fonts, wrap=int(self.sizes.geometry.split("x")[0]) - 80)
        self.answer.pack(fill="x", padx=12, pady=6)
        body = ttk.Frame(root)
        body.pack(fill="both", expand=True, padx=8)
        left, right = ttk.Frame(body), ttk.Frame(body)
        body.columnconfigure((0, 1), weight=1, uniform="half")  # two equal halves whatever the texts' lengths
        body.rowconfigure(0, weight=1)
        left.grid(row=0, column=0, sticky="nsew")
        right.grid(row=0, column=1, sticky="nsew")
        self.status_panel = StatusPanel(left, fonts)
        self.status_panel.pack(fill="x")
        self.files = FilesPanel(left, fonts, self.sizes.rows)
        self.files.pack(fill="x")
        self.alerts = LinesPanel(left, fonts)
        self.alerts.pack(fill="both", expand=True)
        self.firmware = LinesPanel(right, fonts)
        self.serials = SerialsPanel(right, fonts, self.sizes.rows, self.reprint_selected, t("reprint", self.lang))
        if self.config.process_id == FIRMWARE_PROCESS:
            self.firmware.pack(fill="x")
        if self.config.process_id == SERIAL_PROCESS:
            self.serials.pack(fill="both", expand=True)
        self.errors = ErrorsPanel(right, fonts, self.sizes.rows, self.retry_selected, t("retry", self.lang))
        self.errors.pack(fill="both", expand=True)
        self._texts()
        self._show(self._idle())

    def _idle(self) -> Verdict:
        """What the answer panel says before the first scan: what to scan next."""
        key = "worker_set_hint" if self.worker else "no_worker"
        return Verdict("idle", t(key, self.lang), t("scan_prompt", self.lang), None)

    def _place_banner(self, visible: bool) -> None:
        if visible:
            self.banner.pack(fill="x", after=self.banner_anchor)
        else:
            self.banner.pack_forget()

    def _apply_theme(self) -> None:
        style = self.root.style
        style.theme_use(pick_theme(self.dark, list(style.theme_names())))
        for name in ("TLabel", "TButton", "Treeview", "Heading", "TCombobox", "TEntry"):
            style.configure(name, font=self.fonts["body"])
        style.configure("TButton", font=self.fonts["button"])
        style.configure("Treeview", rowheight=int(self.sizes.body * 2.2))
        style.configure("Treeview.Heading", font=self.fonts["bold"])
        self.root.option_add("*Font", self.fonts["body"])

    def _texts(self) -> None:
        lang, config = self.lang, self.config
        self.title.configure(
            text=t("title", lang, station=config.station, process=process_label(config.process_id, lang))
        )
        self.lang_button.configure(text=t("lang", lang))
        self.theme_button.configure(text=t("theme", lang))
        self.prompt.configure(text=t("scan_prompt", lang))
        self.worker_label.configure(text=f"{t('worker', lang)}: {self.worker}" if self.worker else t("no_worker", lang))
        self.errors.retry.configure(text=t("retry", lang))
        self.serials.reprint.configure(text=t("reprint", lang))

    # -- run --------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and the polls (the caller runs `mainloop`, or a test pumps `update`)."""
        self.client.start()
        self.entry.focus_force()
        self._poll_summary()
        self._drain()
        self._keep_focus()

    def run(self) -> None:
        self.start()
        self.root.mainloop()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for timer in self._timers.values():
            self.root.after_cancel(timer)
        self.client.stop()
        self.root.destroy()

    def _poll_summary(self) -> None:
        if self._closed:
            return
        self.client.submit(Job("summary", "/window/summary"))
        self._timers["summary"] = self.root.after(self.config.poll_ms, self._poll_summary)

    def _keep_focus(self) -> None:
        if self._closed:
            return
        focused = self.root.focus_get()
        if (focused is None or focused.winfo_toplevel() is self.root) and focused is not self.entry:
            self.entry.focus_set()
        self._timers["focus"] = self.root.after(250, self._keep_focus)

    def _drain(self) -> None:
        if self._closed:
            return
        try:
            while True:
                self._handle(self.client.results.get_nowait())
        except queue.Empty:
            pass
        self._timers["drain"] = self.root.after(POLL_QUEUE_MS, self._drain)

    # -- scans ------------------------------------------------------------------------------------------------

    def _on_scan(self, _event: object = None) -> str:
        text = self.entry.get()
        self.entry.delete(0, "end")
        if text.strip():
            self.scan(text)
        return "break"

    def scan(self, text: str) -> None:
        scan = classify(text)
        verdict = scan_verdict(scan, self.worker, self.lang)
        if scan.kind is ScanKind.WORKER:
            self.worker = scan.value
            self._texts()
        if verdict is not None:
            self._show(verdict)
            return
        lot = scan.lot_number or scan.value
        body = {
            "lot_number": lot,
            "process_id": self.config.process_id,
            "process_name": process_label(self.config.process_id, "ko").split(" ", 1)[-1],
            "worker_id": self.worker,
            "start_time": datetime.now().astimezone().replace(microsecond=0).isoformat(),
        }
        detail = t("serial_of", self.lang, serial=scan.value, lot=lot) if scan.kind is ScanKind.SERIAL else ""
        self._show(Verdict(INFO, t("sending", self.lang, lot=lot), detail, None))
        self.client.submit(Job("start", "/start", body, {"lot": lot}))

    def _show(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.answer.show(verdict)
        if verdict.beep is not None:
            self.beep(verdict.beep)

    def beep(self, kind: str) -> None:
        """One bell for a start, three for a refusal: tell them apart without looking."""
        self.beeps.append(kind)
        self.root.bell()
        if kind == "error":
            self.root.after(180, self.root.bell)
            self.root.after(360, self.root.bell)

    # -- answers ----------------------------------------------------------------------------------------------

    def _handle(self, result: Result) -> None:
        kind = result.job.kind
        if kind == "summary":
            self.summaries += 1
            self.summary = result.body if result.status == 200 else None
            self.refresh()
        elif kind == "start":
            self.answers += 1
            verdict = self._start_verdict(result)
            self._last_start = (result, verdict)
            body = result.body or {}
            if body.get("error_code") == "WORKER_NOT_FOUND":
                self.worker = None
                self._texts()
            self._show(verdict)
            self.client.submit(Job("summary", "/window/summary"))
        elif kind == "retry":
            self._after_retry(result)
        elif kind == "reprint":
            self._after_reprint(result)

    def _start_verdict(self, result: Result) -> Verdict:
        return start_verdict(result.status, result.body, self.config.process_id, self.lang, self.client.base_url)

    def refresh(self) -> None:
        model = present(self.summary, self.config.process_id, self.lang)
        self.model = model
        self.banner.show(model.banner, self._place_banner)
        self.status_panel.show(model, t("current", self.lang))
        headings = {k: t(f"{k}_col", self.lang) for k in ("file", "time", "code")}
        headings.update(age=t("time_col", self.lang), message=t("error_log", self.lang))
        self.files.show(model, headings)
        self.errors.show(model, headings)
        self.firmware.show(t("firmware", self.lang), model.firmware)
        self.serials.show(model, (t("serial_col", self.lang), t("state_col", self.lang), t("printer_col", self.lang)))
        self.alerts.show(model.alerts_title, model.alerts)

    # -- operator actions -------------------------------------------------------------------------------------

    def retry_selected(self) -> None:
        name = selected_key(self.errors.errors)
        if name is None:
            self._show(Verdict("warning", t("retry_pick", self.lang), "", "error"))
            return
        self.client.submit(Job("retry", "/window/retry", {"name": name, "worker_id": self.worker}, {"name": name}))

    def _after_retry(self, result: Result) -> None:
        name = result.job.context.get("name", "")
        if result.status == 200:
            self._show(Verdict(SUCCESS, t("retried", self.lang, name=name), "", "ok"))
        else:
            detail = ((result.body or {}).get("data") or {}).get("detail") or result.error or ""
            self._show(Verdict(DANGER, t("retry_failed", self.lang, detail=detail), name, "error"))
        self.client.submit(Job("summary", "/window/summary"))

    def reprint_selected(self) -> None:
        serial = selected_key(self.serials.tree)
        if serial is None:
            self._show(Verdict("warning", t("reprint_pick", self.lang), "", "error"))
            return
        if self.model is not None and not self.model.reprint_available:
            self._show(Verdict("warning", t("reprint_unavailable", self.lang), "", "error"))
            return
        ReprintDialog(self.root, self.fonts, self.lang, serial, self.worker, self._send_reprint)

    def _send_reprint(self, body: dict[str, Any]) -> None:
        path = "/window/reprint?lang=en" if self.lang == "en" else "/window/reprint"
        self.client.submit(Job("reprint", path, body, {"serial": body["serial_number"]}))

    def _after_reprint(self, result: Result) -> None:
        self.reprints += 1
        self.last_reprint_status = result.status
        serial = result.job.context.get("serial", "")
        if result.status == 200:
            self._show(Verdict(SUCCESS, t("reprinted", self.lang, serial=serial), "", "ok"))
        else:
            message = (result.body or {}).get("message") or result.error or ""
            self._show(Verdict(DANGER, t("reprint_failed", self.lang, message=message), serial, "error"))

    def toggle_lang(self) -> None:
        self.lang = "en" if self.lang == "ko" else "ko"
        self._texts()
        self.refresh()
        if self.verdict.tone == "idle":
            self.answer.show(self._idle())
        elif self._last_start is not None and self.verdict is self._last_start[1]:
            self._last_start = (self._last_start[0], self._start_verdict(self._last_start[0]))
            self.verdict = self._last_start[1]
            self.answer.show(self.verdict)  # the same answer in the other language, without a second beep

    def toggle_theme(self) -> None:
        self.dark = not self.dark
        self._apply_theme()
        # ttkbootstrap recolours plain Tk widgets on a theme change: the answer and the banner keep their meaning.
        self.root.update_idletasks()
        self.answer.show(self.verdict)
        self.refresh()
