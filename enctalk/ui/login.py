"""The start view: server address, username and password; log in or register.

The view checks what it can locally (empty fields, the server address,
the password rules, the repeated password) and shows every problem in
plain words under the form. The slow part runs on a worker thread while
an indeterminate progress bar moves; :meth:`LoginView.show_error` and
:meth:`LoginView.set_busy` are called back on the Tk main thread.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from enctalk.client.address import parse_server_address
from enctalk.client.discovery import DiscoveredServer
from enctalk.client.errors import ClientError
from enctalk.client.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    password_problem,
)
from enctalk.ui.formatting import friendly_error

PASSWORD_RULES = (
    f"Your password needs at least {MIN_PASSWORD_LENGTH} characters "
    f"(at most {MAX_PASSWORD_LENGTH}). It must not be a commonly used password "
    "or your username. A few words in a row make a strong one. "
    "There is no way to read your messages without it."
)

# submit(server, username, password, register)
Submit = Callable[[str, str, str, bool], None]


class LoginView(ttk.Frame):
    """The form that logs in to an account or registers a new one."""

    def __init__(
        self, master: tk.Misc, server: str, username: str, on_submit: Submit
    ) -> None:
        super().__init__(master, padding=24)
        self.on_submit = on_submit
        self.register_mode = False
        self.busy = False

        self.server = tk.StringVar(value=server)
        self.username = tk.StringVar(value=username)
        self.password = tk.StringVar()
        self.repeat = tk.StringVar()
        self.error = tk.StringVar()
        self.rule_status = tk.StringVar()

        self._build()
        self.password.trace_add("write", lambda *_: self._update_rule_status())
        self.username.trace_add("write", lambda *_: self._update_rule_status())
        self._apply_mode()

    def _build(self) -> None:
        self.columnconfigure(0, weight=1)
        form = ttk.Frame(self)
        form.grid(row=0, column=0)
        form.columnconfigure(1, weight=1, minsize=260)

        self.heading = ttk.Label(form, style="Title.TLabel")
        self.heading.grid(row=0, column=0, columnspan=2, sticky="w", pady=(0, 12))

        def field(
            row: int, label: str, variable: tk.StringVar, show: str = ""
        ) -> ttk.Entry:
            ttk.Label(form, text=label).grid(row=row, column=0, sticky="w", pady=4)
            entry = ttk.Entry(form, textvariable=variable, width=32, show=show)
            entry.grid(row=row, column=1, sticky="ew", pady=4, padx=(8, 0))
            entry.bind("<Return>", lambda _event: self.submit())
            entry.bind("<KP_Enter>", lambda _event: self.submit())
            return entry

        self.server_entry = field(1, "Server:", self.server)
        self.username_entry = field(2, "Username:", self.username)
        self.password_entry = field(3, "Password:", self.password, show="•")
        self.repeat_label = ttk.Label(form, text="Repeat password:")
        self.repeat_label.grid(row=4, column=0, sticky="w", pady=4)
        self.repeat_entry = ttk.Entry(
            form, textvariable=self.repeat, width=32, show="•"
        )
        self.repeat_entry.grid(row=4, column=1, sticky="ew", pady=4, padx=(8, 0))
        self.repeat_entry.bind("<Return>", lambda _event: self.submit())
        self.repeat_entry.bind("<KP_Enter>", lambda _event: self.submit())

        self.rules = ttk.Label(
            form, text=PASSWORD_RULES, wraplength=420, style="Muted.TLabel"
        )
        self.rules.grid(row=5, column=0, columnspan=2, sticky="w", pady=(8, 0))
        self.rule_label = ttk.Label(form, textvariable=self.rule_status)
        self.rule_label.grid(row=6, column=0, columnspan=2, sticky="w")

        self.error_label = ttk.Label(
            form, textvariable=self.error, wraplength=420, style="Error.TLabel"
        )
        self.error_label.grid(row=7, column=0, columnspan=2, sticky="w", pady=(8, 0))

        self.progress = ttk.Progressbar(form, mode="indeterminate", length=200)
        self.progress.grid(row=8, column=0, columnspan=2, sticky="ew", pady=(8, 0))
        self.progress.grid_remove()

        buttons = ttk.Frame(form)
        buttons.grid(row=9, column=0, columnspan=2, sticky="e", pady=(12, 0))
        self.switch_button = ttk.Button(buttons, command=self.toggle_mode)
        self.switch_button.pack(side="left", padx=(0, 8))
        self.submit_button = ttk.Button(buttons, command=self.submit, default="active")
        self.submit_button.pack(side="left")

        self._build_server_list(form)

        top = self.winfo_toplevel()
        top.bind("<Alt-r>", lambda _event: self.toggle_mode(), add="+")

    def _build_server_list(self, form: ttk.Frame) -> None:
        ttk.Label(form, text="Servers on this network:").grid(
            row=10, column=0, columnspan=2, sticky="w", pady=(16, 4)
        )
        self.servers = ttk.Treeview(
            form,
            columns=("name", "address"),
            show="headings",
            height=4,
            selectmode="browse",
        )
        self.servers.heading("name", text="Name")
        self.servers.heading("address", text="Address")
        self.servers.column("name", width=180)
        self.servers.column("address", width=200)
        self.servers.grid(row=11, column=0, columnspan=2, sticky="ew")
        self.servers.bind("<<TreeviewSelect>>", lambda _event: self._pick_server())
        self.discovery_status = tk.StringVar()
        ttk.Label(
            form,
            textvariable=self.discovery_status,
            wraplength=420,
            style="Muted.TLabel",
        ).grid(row=12, column=0, columnspan=2, sticky="w", pady=(4, 0))
        self.search_button = ttk.Button(form, text="Search again")
        self.search_button.grid(row=13, column=1, sticky="e", pady=(4, 0))
        self.search_button.grid_remove()

    def enable_discovery(self, search: Callable[[], None]) -> None:
        """Show the "Search again" button, which calls ``search``."""
        self.search_button.configure(command=search)
        self.search_button.grid()

    def show_discovery_status(self, text: str) -> None:
        """Show ``text`` under the list of servers on this network."""
        self.discovery_status.set(text)

    def show_servers(self, servers: list[DiscoveredServer]) -> None:
        """Replace the list of servers on this network with ``servers``."""
        self.servers.delete(*self.servers.get_children())
        for server in servers:
            self.servers.insert(
                "",
                "end",
                iid=server.server_address,
                values=(server.name, server.server_address),
            )
        if servers:
            self.discovery_status.set(
                "Pick a server to fill in its address. The first connection "
                "still shows its fingerprint to compare."
            )
        else:
            self.discovery_status.set("No server heard on this network.")

    def _pick_server(self) -> None:
        if self.busy:
            return
        for item in self.servers.selection():
            self.server.set(item)

    def _apply_mode(self) -> None:
        if self.register_mode:
            self.heading.configure(text="Create an EncTalk account")
            self.submit_button.configure(text="Register")
            self.switch_button.configure(text="I have an account", underline=2)
            self.repeat_label.grid()
            self.repeat_entry.grid()
            self.rules.grid()
            self.rule_label.grid()
        else:
            self.heading.configure(text="Log in to EncTalk")
            self.submit_button.configure(text="Log in")
            self.switch_button.configure(text="New here? Register", underline=10)
            self.repeat_label.grid_remove()
            self.repeat_entry.grid_remove()
            self.rules.grid_remove()
            self.rule_label.grid_remove()
        self._update_rule_status()

    def toggle_mode(self) -> None:
        """Switch between logging in and registering (Alt+R)."""
        if self.busy:
            return
        self.register_mode = not self.register_mode
        self.error.set("")
        self._apply_mode()

    def _update_rule_status(self) -> None:
        password = self.password.get()
        if not self.register_mode or not password:
            self.rule_status.set("")
            return
        problem = password_problem(password, self.username.get().strip() or None)
        self.rule_status.set(f"✗ {problem}" if problem else "✓ This password is fine.")

    def focus_first_empty(self) -> None:
        """Put the keyboard focus on the first field that still needs typing."""
        for variable, entry in (
            (self.server, self.server_entry),
            (self.username, self.username_entry),
        ):
            if not variable.get().strip():
                entry.focus_set()
                return
        self.password_entry.focus_set()

    def problem(self) -> str | None:
        """Return what is wrong with the form before it goes anywhere, or None."""
        server = self.server.get().strip()
        if not server:
            return "Type the server address, for example 192.168.1.10:5443."
        try:
            parse_server_address(server)
        except ClientError as exc:
            return friendly_error(exc)
        if not self.username.get().strip():
            return "Type your username."
        password = self.password.get()
        if not password:
            return "Type your password."
        if self.register_mode:
            problem = password_problem(password, self.username.get().strip())
            if problem is not None:
                return problem
            if self.repeat.get() != password:
                return "The two passwords are different. Type them again."
        return None

    def submit(self) -> None:
        """Check the form, then hand it to ``on_submit`` (Enter)."""
        if self.busy:
            return
        problem = self.problem()
        if problem is not None:
            self.show_error(problem, clear_password=False)
            return
        self.error.set("")
        self.set_busy(True)
        self.on_submit(
            self.server.get().strip(),
            self.username.get().strip(),
            self.password.get(),
            self.register_mode,
        )

    def set_busy(self, busy: bool) -> None:
        """Show or hide the busy indicator and lock the form while busy."""
        self.busy = busy
        state = ["disabled"] if busy else ["!disabled"]
        for widget in (
            self.server_entry,
            self.username_entry,
            self.password_entry,
            self.repeat_entry,
            self.submit_button,
            self.switch_button,
        ):
            widget.state(state)
        if busy:
            self.progress.grid()
            self.progress.start(15)
        else:
            self.progress.stop()
            self.progress.grid_remove()

    def show_error(self, text: str, clear_password: bool = True) -> None:
        """Show ``text`` under the form and unlock it."""
        self.set_busy(False)
        self.error.set(text)
        if clear_password:
            self.password.set("")
            self.repeat.set("")
        self.focus_first_empty()
