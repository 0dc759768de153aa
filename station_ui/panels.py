"""One frame per panel of the station window; each has `show(model)` and holds no logic beyond layout.

Widgets that would steal the scanner's focus (lists, buttons) take none: the scan field keeps it.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable, Sequence
from tkinter import ttk

from station_ui.presenter import Verdict
from station_ui.status_presenter import Banner, Line, ScreenModel
from station_ui.theme import TONE_COLOURS, Sizes

Fonts = dict[str, tuple[str, int] | tuple[str, int, str]]
# Text colours on the window's background: Bootstrap's amber is for fills, too light for text on white.
TEXT_COLOURS = {**{tone: colours[0] for tone, colours in TONE_COLOURS.items()}, "warning": "#b35c00"}


def fonts_for(family: str, sizes: Sizes) -> Fonts:
    return {
        "body": (family, sizes.body),
        "bold": (family, sizes.body, "bold"),
        "small": (family, sizes.small),
        "entry": (family, sizes.entry, "bold"),
        "headline": (family, sizes.headline, "bold"),
        "title": (family, sizes.headline - 10, "bold"),
        "detail": (family, sizes.detail),
        "banner": (family, sizes.banner, "bold"),
        "button": (family, sizes.body + 2, "bold"),
    }


class BannerPanel(tk.Frame):
    """Full-width red strip; hidden (zero height) while nothing is wrong."""

    def __init__(self, master: tk.Misc, fonts: Fonts) -> None:
        super().__init__(master, bg=TONE_COLOURS["danger"][0])
        self.text = tk.Label(self, font=fonts["banner"], bg=TONE_COLOURS["danger"][0], fg="#ffffff", anchor="w")
        self.detail = tk.Label(self, font=fonts["body"], bg=TONE_COLOURS["danger"][0], fg="#ffffff", anchor="w")
        self.text.pack(fill="x", padx=16, pady=(8, 0))
        self.detail.pack(fill="x", padx=16, pady=(0, 8))
        self.visible = False
        self.shown_text = ""

    def show(self, banner: Banner | None, place: Callable[[bool], None]) -> None:
        self.shown_text = banner.text if banner else ""
        if banner is not None:
            bg, fg = TONE_COLOURS[banner.tone]
            for widget in (self, self.text, self.detail):
                widget.configure(bg=bg)
            self.text.configure(text=f"⚠ {banner.text}", fg=fg)
            self.detail.configure(text=banner.detail, fg=fg)
        if (banner is not None) != self.visible:
            self.visible = banner is not None
            place(self.visible)


class AnswerPanel(tk.Frame):
    """The big answer to the last scan: green start, red refusal, amber warning, blue info."""

    def __init__(self, master: tk.Misc, fonts: Fonts, wrap: int) -> None:
        super().__init__(master, bg=TONE_COLOURS["idle"][0], height=180)
        self.headline = tk.Label(self, font=fonts["headline"], anchor="center", wraplength=wrap)
        self.detail = tk.Label(self, font=fonts["detail"], anchor="center", justify="center", wraplength=wrap)
        self.headline.pack(fill="both", expand=True, padx=20, pady=(14, 2))
        self.detail.pack(fill="both", expand=True, padx=20, pady=(2, 14))
        self.tone = "idle"
        self.show(Verdict("idle", "", "", None))

    def show(self, verdict: Verdict) -> None:
        self.tone = verdict.tone
        bg, fg = TONE_COLOURS.get(verdict.tone, TONE_COLOURS["idle"])
        self.configure(bg=bg)
        self.headline.configure(text=verdict.headline, bg=bg, fg=fg)
        self.detail.configure(text=verdict.detail, bg=bg, fg=fg)


def _tree(master: tk.Misc, columns: tuple[tuple[str, int], ...], rows: int) -> ttk.Treeview:
    tree = ttk.Treeview(master, columns=[c for c, _ in columns], show="headings", height=rows, takefocus=False)
    for name, width in columns:
        tree.column(name, width=width, stretch=name == columns[0][0])
    return tree


def fill_tree(tree: ttk.Treeview, rows: Sequence[tuple[str, ...]], headings: tuple[str, ...]) -> None:
    """Replace the rows, keeping the selection by first column (the retry/reprint target)."""
    for column, heading in zip(tree["columns"], headings, strict=False):
        tree.heading(column, text=heading)
    selected = {tree.item(item, "values")[0] for item in tree.selection() if tree.item(item, "values")}
    tree.delete(*tree.get_children())
    for row in rows:
        item = tree.insert("", "end", iid=row[0], values=row)
        if row[0] in selected:
            tree.selection_add(item)


def selected_key(tree: ttk.Treeview) -> str | None:
    selection = tree.selection()
    return str(selection[0]) if selection else None


class StatusPanel(ttk.Frame):
    """Connection, current LOT and process, today's counts, outbox."""

    def __init__(self, master: tk.Misc, fonts: Fonts) -> None:
        super().__init__(master, padding=8)
        self.connection = ttk.Label(self, font=fonts["bold"])
        self.current = ttk.Label(self, font=fonts["bold"])
        self.today = ttk.Label(self, font=fonts["body"])
        self.outbox = ttk.Label(self, font=fonts["body"])
        for widget in (self.connection, self.current, self.today, self.outbox):
            widget.configure(wraplength=600)
            widget.pack(anchor="w", pady=2)

    def show(self, model: ScreenModel, current_label: str) -> None:
        self.connection.configure(text=f"● {model.connection.text}", foreground=TEXT_COLOURS[model.connection.tone])
        self.current.configure(text=f"{current_label}: {model.current}")
        self.today.configure(text=model.today)
        self.outbox.configure(text=model.outbox.text, foreground=TEXT_COLOURS[model.outbox.tone])


class FilesPanel(ttk.Frame):
    """pending/ (oldest first) and the last files moved to completed/."""

    def __init__(self, master: tk.Misc, fonts: Fonts, rows: int) -> None:
        super().__init__(master, padding=8)
        self.pending_title = ttk.Label(self, font=fonts["bold"])
        self.pending = _tree(self, (("file", 420), ("age", 90)), rows)
        self.completed_title = ttk.Label(self, font=fonts["bold"])
        self.completed = _tree(self, (("file", 420), ("time", 90)), rows)
        for widget in (self.pending_title, self.pending, self.completed_title, self.completed):
            widget.pack(fill="x", anchor="w")

    def show(self, model: ScreenModel, headings: dict[str, str]) -> None:
        self.pending_title.configure(text=model.pending_title)
        self.completed_title.configure(text=model.completed_title)
        fill_tree(self.pending, model.pending, (headings["file"], headings["age"]))
        fill_tree(self.completed, model.completed, (headings["file"], headings["time"]))


class ErrorsPanel(ttk.Frame):
    """Every file of error/ with the selected one's log, and the retry button (after the file was fixed)."""

    def __init__(self, master: tk.Misc, fonts: Fonts, rows: int, on_retry: Callable[[], None], retry_text: str) -> None:
        super().__init__(master, padding=8)
        self.error_title = ttk.Label(self, font=fonts["bold"], foreground=TONE_COLOURS["danger"][0])
        self.errors = _tree(self, (("file", 300), ("code", 190)), rows)
        self.log = tk.Text(self, height=rows, font=fonts["small"], wrap="word", takefocus=0)
        self.retry = ttk.Button(self, text=retry_text, command=on_retry, takefocus=False, padding=12)
        self.error_title.pack(fill="x", anchor="w")
        self.errors.pack(fill="x")
        self.retry.pack(side="bottom", fill="x")  # packed before the log: on a short screen the log gives way
        self.log.pack(fill="both", expand=True, pady=(4, 4))
        self.errors.bind("<<TreeviewSelect>>", lambda _e: self._show_log())
        self._logs: dict[str, str] = {}

    def show(self, model: ScreenModel, headings: dict[str, str]) -> None:
        self.error_title.configure(text=model.error_title)
        fill_tree(self.errors, [(name, code) for name, code, _ in model.errors], (headings["file"], headings["code"]))
        self._logs = model.error_logs
        if not self.errors.selection() and model.errors:
            self.errors.selection_set(model.errors[0][0])  # the newest error is shown without a touch
        self._show_log()

    def _show_log(self) -> None:
        key = selected_key(self.errors)
        text = self._logs.get(key, "") if key else ""
        if self.log.get("1.0", "end-1c") != text:
            self.log.delete("1.0", "end")
            self.log.insert("1.0", text)


class LinesPanel(ttk.Frame):
    """A titled list of coloured lines (firmware status, alerts)."""

    def __init__(self, master: tk.Misc, fonts: Fonts) -> None:
        super().__init__(master, padding=8)
        self._fonts = fonts
        self.title = ttk.Label(self, font=fonts["bold"])
        self.title.pack(anchor="w")
        self.body = ttk.Frame(self)
        self.body.pack(fill="both", expand=True)
        self._shown: list[Line] | None = None

    def show(self, title: str, lines: list[Line]) -> None:
        self.title.configure(text=title)
        if lines == self._shown:
            return
        self._shown = list(lines)
        for child in self.body.winfo_children():
            child.destroy()
        for line in lines:
            ttk.Label(
                self.body,
                text=line.text,
                font=self._fonts["body"],
                foreground=TEXT_COLOURS[line.tone],
                wraplength=560,
            ).pack(anchor="w", pady=1)

    def texts(self) -> list[str]:
        return [line.text for line in self._shown or []]


class SerialsPanel(ttk.Frame):
    """PROC-007: serials with their label state, and the reprint button."""

    def __init__(self, master: tk.Misc, fonts: Fonts, rows: int, on_reprint: Callable[[], None], text: str) -> None:
        super().__init__(master, padding=8)
        self.title = ttk.Label(self, font=fonts["bold"])
        self.tree = _tree(self, (("serial", 260), ("state", 140), ("printer", 120)), rows)
        self.reprint = ttk.Button(self, text=text, command=on_reprint, takefocus=False, padding=12)
        self.title.pack(anchor="w")
        self.reprint.pack(side="bottom", fill="x", pady=(4, 0))
        self.tree.pack(fill="both", expand=True)

    def show(self, model: ScreenModel, headings: tuple[str, str, str]) -> None:
        self.title.configure(text=model.serials_title)
        fill_tree(self.tree, model.serials, headings)
