"""The reprint dialog (FR-SN-003): reason, worker (a badge scan works), and the operator's sign-in.

The centre's reprint route needs an operator's account; the gateway signs in with it for this one request and
keeps nothing. The reason is one of the common ones or free text. The account defaults to the worker id (workers
are operator users); a team leader may sign for the worker with their own account.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import Any

from station_ui.panels import Fonts
from station_ui.texts import REASONS, t


class ReprintDialog(tk.Toplevel):
    def __init__(
        self,
        master: tk.Misc,
        fonts: Fonts,
        lang: str,
        serial: str,
        worker: str | None,
        on_send: Callable[[dict[str, Any]], None],
    ) -> None:
        super().__init__(master)
        self.title(t("reprint_title", lang, serial=serial))
        self.transient(master.winfo_toplevel())
        self._serial, self._on_send = serial, on_send
        frame = ttk.Frame(self, padding=16)
        frame.pack(fill="both", expand=True)
        ttk.Label(frame, text=t("reprint_title", lang, serial=serial), font=fonts["bold"]).pack(anchor="w")
        ttk.Label(frame, text=t("reprint_reason", lang), font=fonts["body"]).pack(anchor="w", pady=(12, 0))
        self.reason = ttk.Combobox(frame, values=[t(r, lang) for r in REASONS], font=fonts["entry"])
        self.reason.pack(fill="x")
        ttk.Label(frame, text=t("reprint_worker", lang), font=fonts["body"]).pack(anchor="w", pady=(12, 0))
        self.worker = ttk.Entry(frame, font=fonts["entry"])
        self.worker.insert(0, worker or "")
        self.worker.pack(fill="x")
        ttk.Label(frame, text=t("reprint_user", lang), font=fonts["body"]).pack(anchor="w", pady=(12, 0))
        self.username = ttk.Entry(frame, font=fonts["entry"])
        self.username.insert(0, worker or "")
        self.username.pack(fill="x")
        ttk.Label(frame, text=t("reprint_password", lang), font=fonts["body"]).pack(anchor="w", pady=(12, 0))
        self.password = ttk.Entry(frame, font=fonts["entry"], show="•")
        self.password.pack(fill="x")
        buttons = ttk.Frame(frame)
        buttons.pack(fill="x", pady=(16, 0))
        ttk.Button(buttons, text=t("reprint_send", lang), command=self.submit, padding=14).pack(
            side="left", expand=True, fill="x", padx=(0, 8)
        )
        ttk.Button(buttons, text=t("cancel", lang), command=self.destroy, padding=14).pack(
            side="left", expand=True, fill="x"
        )
        self.bind("<Escape>", lambda _e: self.destroy())
        self.password.bind("<Return>", lambda _e: self.submit())
        self.reason.focus_set()

    def submit(self) -> None:
        reason, worker, password = self.reason.get().strip(), self.worker.get().strip(), self.password.get()
        username = self.username.get().strip() or worker
        if not (reason and worker and password):
            self.bell()
            return
        self._on_send(
            {
                "serial_number": self._serial,
                "reason": reason,
                "worker_id": worker,
                "username": username,
                "password": password,
            }
        )
        self.destroy()
