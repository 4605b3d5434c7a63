"""Settings: change the password, the account's devices, the server, log out."""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk
from typing import TYPE_CHECKING, Any

from enctalk.client.address import format_server_address
from enctalk.client.passwords import password_problem
from enctalk.ui.formatting import (
    display_text,
    fingerprint_lines,
    format_time,
    friendly_error,
)
from enctalk.ui.login import PASSWORD_RULES

if TYPE_CHECKING:
    from enctalk.ui.app import App

TITLE = "Settings"


class SettingsDialog(tk.Toplevel):
    """A notebook with the password, devices and server pages (Ctrl+Tab)."""

    def __init__(self, parent: tk.Misc, app: App) -> None:
        super().__init__(parent)
        self.title(TITLE)
        self.transient(parent.winfo_toplevel())
        self.app = app
        self.old = tk.StringVar()
        self.new = tk.StringVar()
        self.repeat = tk.StringVar()
        self.password_message = tk.StringVar()
        self.devices_message = tk.StringVar()

        outer = ttk.Frame(self, padding=12)
        outer.pack(fill="both", expand=True)
        notebook = ttk.Notebook(outer)
        notebook.pack(fill="both", expand=True)
        notebook.enable_traversal()
        notebook.add(self._password_page(notebook), text="Password", underline=0)
        notebook.add(self._devices_page(notebook), text="Devices", underline=0)
        notebook.add(self._server_page(notebook), text="Server", underline=0)

        buttons = ttk.Frame(outer)
        buttons.pack(fill="x", pady=(8, 0))
        ttk.Button(buttons, text="Log out", command=self.log_out, underline=4).pack(
            side="left"
        )
        ttk.Button(buttons, text="Close", command=self.destroy).pack(side="right")
        self.bind("<Escape>", lambda _event: self.destroy())
        self.bind("<Alt-o>", lambda _event: self.log_out())
        self.geometry(f"+{parent.winfo_rootx() + 60}+{parent.winfo_rooty() + 40}")
        self.old_entry.focus_set()
        self.load_devices()

    # Pages.

    def _password_page(self, notebook: ttk.Notebook) -> ttk.Frame:
        page = ttk.Frame(notebook, padding=12)
        page.columnconfigure(1, weight=1)
        rows = (
            ("Current password:", self.old),
            ("New password:", self.new),
            ("Repeat new password:", self.repeat),
        )
        entries = []
        for row, (label, variable) in enumerate(rows):
            ttk.Label(page, text=label).grid(row=row, column=0, sticky="w", pady=3)
            entry = ttk.Entry(page, textvariable=variable, show="•", width=30)
            entry.grid(row=row, column=1, sticky="ew", pady=3, padx=(8, 0))
            entry.bind("<Return>", lambda _event: self.change_password())
            entries.append(entry)
        self.old_entry = entries[0]
        ttk.Label(page, text=PASSWORD_RULES, wraplength=400, style="Muted.TLabel").grid(
            row=3, column=0, columnspan=2, sticky="w", pady=(6, 0)
        )
        ttk.Label(page, textvariable=self.password_message, wraplength=400).grid(
            row=4, column=0, columnspan=2, sticky="w", pady=(6, 0)
        )
        self.change_button = ttk.Button(
            page, text="Change password", command=self.change_password
        )
        self.change_button.grid(row=5, column=1, sticky="e", pady=(6, 0))
        return page

    def _devices_page(self, notebook: ttk.Notebook) -> ttk.Frame:
        page = ttk.Frame(notebook, padding=12)
        page.columnconfigure(0, weight=1)
        page.rowconfigure(0, weight=1)
        self.devices = ttk.Treeview(
            page, columns=("name", "seen", "note"), show="headings", height=5
        )
        for column, heading, width in (
            ("name", "Device", 160),
            ("seen", "Last seen", 140),
            ("note", "", 120),
        ):
            self.devices.heading(column, text=heading)
            self.devices.column(column, width=width)
        self.devices.grid(row=0, column=0, columnspan=2, sticky="nsew")
        ttk.Label(page, textvariable=self.devices_message, wraplength=400).grid(
            row=1, column=0, sticky="w", pady=(6, 0)
        )
        ttk.Button(page, text="Remove device", command=self.remove_device).grid(
            row=1, column=1, sticky="e", pady=(6, 0)
        )
        return page

    def _server_page(self, notebook: ttk.Notebook) -> ttk.Frame:
        page = ttk.Frame(notebook, padding=12)
        client = self.app.client
        address, fingerprint = "", ""
        if client is not None and client.profile.server is not None:
            address = format_server_address(*client.profile.server)
            pin = client.profile.known_servers.get(address)
            if isinstance(pin, dict):
                fingerprint = str(pin.get("fingerprint", ""))
        ttk.Label(page, text=f"Server: {address}").pack(anchor="w")
        ttk.Label(page, text="Certificate fingerprint (SHA-256):").pack(
            anchor="w", pady=(8, 0)
        )
        ttk.Label(
            page,
            text="\n".join(fingerprint_lines(fingerprint)) if fingerprint else "none",
            font="TkFixedFont",
            padding=8,
        ).pack(anchor="w")
        return page

    # Actions.

    def change_password(self) -> None:
        client = self.app.client
        if client is None:
            return
        old, new = self.old.get(), self.new.get()
        problem = password_problem(new, client.username)
        if not old:
            problem = "Type your current password."
        elif problem is None and new != self.repeat.get():
            problem = "The two new passwords are different. Type them again."
        if problem is not None:
            self.password_message.set(problem)
            return
        self.password_message.set("Changing the password…")
        self.change_button.state(["disabled"])
        self.app.worker.submit(
            lambda: client.change_password(old, new),
            self._password_changed,
            self._password_failed,
        )

    def _password_changed(self, _result: object) -> None:
        if not self.winfo_exists():
            return
        for variable in (self.old, self.new, self.repeat):
            variable.set("")
        self.change_button.state(["!disabled"])
        self.password_message.set(
            "Password changed. Your other devices must log in again."
        )

    def _password_failed(self, error: BaseException) -> None:
        if not self.winfo_exists():
            return
        self.change_button.state(["!disabled"])
        self.password_message.set(friendly_error(error))

    def load_devices(self) -> None:
        client = self.app.client
        if client is None:
            return
        self.app.worker.submit(client.devices, self._show_devices, self._devices_failed)

    def _show_devices(self, devices: list[dict[str, Any]]) -> None:
        if not self.winfo_exists():
            return
        self.devices.delete(*self.devices.get_children())
        for device in devices:
            notes = []
            if device.get("current"):
                notes.append("this computer")
            if device.get("stale"):
                notes.append("stale")
            self.devices.insert(
                "",
                "end",
                iid=str(device["device_id"]),
                values=(
                    display_text(str(device["name"])),
                    format_time(device.get("last_seen")),
                    ", ".join(notes),
                ),
            )

    def _devices_failed(self, error: BaseException) -> None:
        if self.winfo_exists():
            self.devices_message.set(friendly_error(error))

    def remove_device(self) -> None:
        client = self.app.client
        selection = self.devices.selection()
        if client is None or not selection:
            self.devices_message.set("Select a device first.")
            return
        device_id = int(selection[0])
        self.app.worker.submit(
            lambda: client.remove_device(device_id),
            lambda _result: self.load_devices(),
            self._devices_failed,
        )

    def log_out(self) -> None:
        self.destroy()
        self.app.log_out()
