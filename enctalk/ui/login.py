"""The start view: server address, username and password; log in or register.

The form has three modes: log in, register, and set up an account that a
teacher created from a class roster ("I have a setup code": username,
setup code and a new password twice). The view checks what it can
locally (empty fields, the server address, the password rules, the
repeated password) and shows every problem in plain words under the
form. The slow part runs on a worker thread while an indeterminate
progress bar moves; :meth:`LoginView.show_error` and
:meth:`LoginView.set_busy` are called back on the Tk main thread.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass
from tkinter import ttk

from enctalk.client.address import parse_server_address
from enctalk.client.discovery import DiscoveredServer
from enctalk.client.errors import ClientError
from enctalk.client.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    password_problem,
)
from enctalk.protocol.errors import INVALID_RESET_CODE
from enctalk.ui.formatting import friendly_error

PASSWORD_RULES = (
    f"Your password needs at least {MIN_PASSWORD_LENGTH} characters "
    f"(at most {MAX_PASSWORD_LENGTH}). It must not be a commonly used password "
    "or your username. A few words in a row make a strong one. "
    "There is no way to read your messages without it."
)

# The padding around the view, and the gap between the form and the list of
# servers beside it, in pixels.
VIEW_PADDING = 24
SERVER_LIST_GAP = 32
# The wrap width of the line under the list of servers, in pixels: the
# width of its two columns.
SERVER_LIST_WRAP = 380
# The wrap width of the form's sentences, in pixels. Every line wraps at
# the same width, so the form keeps its width while a hint changes.
FORM_WRAP = 420

LOGIN = "login"
REGISTER = "register"
SETUP = "setup"
SETUP_HELP = (
    "Your teacher gave you a username and a setup code. Type them here and "
    "choose your own password; the code works only once."
)


@dataclass(frozen=True)
class LoginForm:
    """The submitted form. ``mode`` is LOGIN, REGISTER or SETUP.

    ``code`` is the setup code in SETUP mode, else "". ``password`` is the
    new password when registering or setting up.
    """

    server: str
    username: str
    password: str
    mode: str
    code: str = ""


Submit = Callable[[LoginForm], None]


class LoginView(ttk.Frame):
    """The form that logs in, registers, or sets up an account with a code."""

    def __init__(
        self, master: tk.Misc, server: str, username: str, on_submit: Submit
    ) -> None:
        super().__init__(master, padding=VIEW_PADDING)
        self.on_submit = on_submit
        self.mode = LOGIN
        self.busy = False

        self.server = tk.StringVar(value=server)
        self.username = tk.StringVar(value=username)
        self.code = tk.StringVar()
        self.password = tk.StringVar()
        self.repeat = tk.StringVar()
        self.error = tk.StringVar()
        self.rule_status = tk.StringVar()
        # Set when a submit stopped at the password rules, so that the live
        # hint line shows the problem in red instead of the error line.
        self.rules_failed = False

        self._build()
        self.password.trace_add("write", lambda *_: self._update_rule_status())
        self.username.trace_add("write", lambda *_: self._update_rule_status())
        self._apply_mode()

    @property
    def register_mode(self) -> bool:
        """Return whether the form registers a new account."""
        return self.mode == REGISTER

    def _build(self) -> None:
        self.columnconfigure(0, weight=1)
        # The form and the list of servers, centred together in the view.
        self.content = ttk.Frame(self)
        self.content.grid(row=0, column=0)
        form = ttk.Frame(self.content)
        form.grid(row=0, column=0, sticky="n")
        self.form = form
        form.columnconfigure(1, weight=1, minsize=260)

        self.heading = ttk.Label(form, style="Title.TLabel")
        self.heading.grid(row=0, column=0, columnspan=2, sticky="w", pady=(0, 12))
        self.setup_help = ttk.Label(
            form, text=SETUP_HELP, wraplength=FORM_WRAP, style="Muted.TLabel"
        )
        self.setup_help.grid(row=1, column=0, columnspan=2, sticky="w", pady=(0, 8))

        def field(row: int, variable: tk.StringVar, show: str = "") -> ttk.Entry:
            entry = ttk.Entry(form, textvariable=variable, width=32, show=show)
            entry.grid(row=row, column=1, sticky="ew", pady=4, padx=(8, 0))
            entry.bind("<Return>", lambda _event: self.submit())
            entry.bind("<KP_Enter>", lambda _event: self.submit())
            return entry

        def label(row: int, text: str) -> ttk.Label:
            widget = ttk.Label(form, text=text)
            widget.grid(row=row, column=0, sticky="w", pady=4)
            return widget

        label(2, "Server:")
        self.server_entry = field(2, self.server)
        label(3, "Username:")
        self.username_entry = field(3, self.username)
        self.code_label = label(4, "Setup code:")
        self.code_entry = field(4, self.code)
        self.password_label = label(5, "Password:")
        self.password_entry = field(5, self.password, show="•")
        self.repeat_label = label(6, "Repeat password:")
        self.repeat_entry = field(6, self.repeat, show="•")

        self.rules = ttk.Label(
            form, text=PASSWORD_RULES, wraplength=FORM_WRAP, style="Muted.TLabel"
        )
        self.rules.grid(row=7, column=0, columnspan=2, sticky="w", pady=(8, 0))
        self.rule_label = ttk.Label(
            form, textvariable=self.rule_status, wraplength=FORM_WRAP, justify="left"
        )
        self.rule_label.grid(row=8, column=0, columnspan=2, sticky="w")

        self.error_label = ttk.Label(
            form, textvariable=self.error, wraplength=FORM_WRAP, style="Error.TLabel"
        )
        self.error_label.grid(row=9, column=0, columnspan=2, sticky="w", pady=(8, 0))

        self.progress = ttk.Progressbar(form, mode="indeterminate", length=200)
        self.progress.grid(row=10, column=0, columnspan=2, sticky="ew", pady=(8, 0))
        self.progress.grid_remove()

        buttons = ttk.Frame(form)
        buttons.grid(row=11, column=0, columnspan=2, sticky="e", pady=(12, 0))
        self.setup_button = ttk.Button(
            buttons,
            text="I have a setup code",
            underline=9,
            command=self.toggle_setup_mode,
        )
        self.setup_button.pack(side="left", padx=(0, 8))
        self.switch_button = ttk.Button(buttons, command=self.toggle_mode)
        self.switch_button.pack(side="left", padx=(0, 8))
        self.submit_button = ttk.Button(buttons, command=self.submit, default="active")
        self.submit_button.pack(side="left")

        self._build_server_list()
        self.servers_beside = False
        self._place_server_list()
        self.bind("<Configure>", lambda _event: self._place_server_list(), add="+")

        top = self.winfo_toplevel()
        top.bind("<Alt-r>", lambda _event: self.toggle_mode(), add="+")
        top.bind("<Alt-s>", lambda _event: self.toggle_setup_mode(), add="+")

    def _build_server_list(self) -> None:
        panel = ttk.Frame(self.content)
        self.server_panel = panel
        ttk.Label(panel, text="Servers on this network:").grid(
            row=0, column=0, sticky="w", pady=(0, 4)
        )
        self.servers = ttk.Treeview(
            panel,
            columns=("name", "address"),
            show="headings",
            height=4,
            selectmode="browse",
        )
        self.servers.heading("name", text="Name")
        self.servers.heading("address", text="Address")
        self.servers.column("name", width=180)
        self.servers.column("address", width=200)
        self.servers.grid(row=1, column=0, sticky="ew")
        self.servers.bind("<<TreeviewSelect>>", lambda _event: self._pick_server())
        self.discovery_status = tk.StringVar()
        ttk.Label(
            panel,
            textvariable=self.discovery_status,
            wraplength=SERVER_LIST_WRAP,
            style="Muted.TLabel",
        ).grid(row=2, column=0, sticky="w", pady=(4, 0))
        self.search_button = ttk.Button(panel, text="Search again")
        self.search_button.grid(row=3, column=0, sticky="e", pady=(4, 0))
        self.search_button.grid_remove()

    def _place_server_list(self) -> None:
        """Put the list of servers beside the form when the view is wide enough.

        Below the form, the setup and register forms pushed it out of a
        window of the default height.
        """
        gap = SERVER_LIST_GAP
        needed = (
            self.form.winfo_reqwidth()
            + gap
            + self.server_panel.winfo_reqwidth()
            + 2 * VIEW_PADDING
        )
        beside = self.winfo_width() >= needed
        if beside == self.servers_beside and self.server_panel.winfo_manager():
            return
        self.servers_beside = beside
        if beside:
            self.server_panel.grid(
                row=0, column=1, sticky="n", padx=(gap, 0), pady=(0, 0)
            )
        else:
            self.server_panel.grid(row=1, column=0, sticky="ew", padx=0, pady=(16, 0))

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
        if self.mode == REGISTER:
            self.heading.configure(text="Create an EncTalk account")
            self.submit_button.configure(text="Register")
            self.switch_button.configure(text="I have an account", underline=2)
        elif self.mode == SETUP:
            self.heading.configure(text="Set up your EncTalk account")
            self.submit_button.configure(text="Set up account")
            self.switch_button.configure(text="I have an account", underline=2)
        else:
            self.heading.configure(text="Log in to EncTalk")
            self.submit_button.configure(text="Log in")
            self.switch_button.configure(text="New here? Register", underline=10)
        new_password = self.mode != LOGIN
        self.password_label.configure(
            text="New password:" if self.mode == SETUP else "Password:"
        )
        self.repeat_label.configure(
            text="Repeat new password:" if self.mode == SETUP else "Repeat password:"
        )
        self._show(new_password, self.repeat_label, self.repeat_entry)
        self._show(new_password, self.rules, self.rule_label)
        self._show(self.mode == SETUP, self.code_label, self.code_entry)
        self._show(self.mode == SETUP, self.setup_help)
        # The setup form has its own way back ("I have an account").
        if self.mode == SETUP:
            self.setup_button.pack_forget()
        else:
            self.setup_button.pack(side="left", padx=(0, 8), before=self.switch_button)
        self._update_rule_status()

    @staticmethod
    def _show(visible: bool, *widgets: tk.Widget) -> None:
        for widget in widgets:
            if visible:
                widget.grid()
            else:
                widget.grid_remove()

    def _set_mode(self, mode: str) -> None:
        if self.busy:
            return
        self.mode = mode
        self.rules_failed = False
        self.error.set("")
        self._apply_mode()
        self.focus_first_empty()

    def toggle_mode(self) -> None:
        """Switch between logging in and registering (Alt+R).

        From the setup form, go back to logging in.
        """
        self._set_mode(LOGIN if self.mode != LOGIN else REGISTER)

    def toggle_setup_mode(self) -> None:
        """Switch to the setup-code form, or back to logging in (Alt+S)."""
        self._set_mode(SETUP if self.mode != SETUP else LOGIN)

    def _update_rule_status(self) -> None:
        problem = self.password_rule_problem()
        failed = self.rules_failed and problem is not None
        self.rule_label.configure(style="Error.TLabel" if failed else "TLabel")
        if self.mode == LOGIN or not self.password.get():
            self.rule_status.set("")
        elif problem is not None:
            self.rule_status.set(f"✗ {problem}")
        else:
            self.rule_status.set("✓ This password is fine.")

    def password_rule_problem(self) -> str | None:
        """Return why the new password breaks the rules, or None.

        It is always None when logging in, which checks no rules.
        """
        password = self.password.get()
        if self.mode == LOGIN or not password:
            return None
        return password_problem(password, self.username.get().strip() or None)

    def focus_first_empty(self) -> None:
        """Put the keyboard focus on the first field that still needs typing."""
        fields = [
            (self.server, self.server_entry),
            (self.username, self.username_entry),
        ]
        if self.mode == SETUP:
            fields.append((self.code, self.code_entry))
        for variable, entry in fields:
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
        if self.mode == SETUP and not self.code.get().strip():
            return "Type the setup code your teacher gave you."
        password = self.password.get()
        if not password:
            if self.mode == SETUP:
                return "Choose a new password and type it twice."
            return "Type your password."
        if self.mode != LOGIN:
            problem = self.password_rule_problem()
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
        if problem is not None and problem == self.password_rule_problem():
            # The hint line under the rules already shows it, so it turns red
            # there and the error line stays empty.
            self.rules_failed = True
            self.error.set("")
            self._update_rule_status()
            self.password_entry.focus_set()
            self.password_entry.select_range(0, "end")
            return
        if problem is not None:
            self.show_error(problem, clear_password=False)
            return
        self.error.set("")
        self.set_busy(True)
        self.on_submit(
            LoginForm(
                server=self.server.get().strip(),
                username=self.username.get().strip(),
                password=self.password.get(),
                mode=self.mode,
                code=self.code.get().strip() if self.mode == SETUP else "",
            )
        )

    def set_busy(self, busy: bool) -> None:
        """Show or hide the busy indicator and lock the form while busy."""
        self.busy = busy
        state = ["disabled"] if busy else ["!disabled"]
        for widget in (
            self.server_entry,
            self.username_entry,
            self.code_entry,
            self.password_entry,
            self.repeat_entry,
            self.submit_button,
            self.switch_button,
            self.setup_button,
        ):
            widget.state(state)
        if busy:
            self.progress.grid()
            self.progress.start(15)
        else:
            self.progress.stop()
            self.progress.grid_remove()

    def show_failure(self, error: BaseException) -> None:
        """Show why logging in, registering or the setup failed, and unlock the form.

        A wrong setup code keeps both new passwords and selects the code,
        which is what needs typing again.
        """
        code = error.code if isinstance(error, ClientError) else None
        if self.mode == SETUP and code == INVALID_RESET_CODE:
            self.set_busy(False)
            self.error.set(friendly_error(error))
            self.code_entry.focus_set()
            self.code_entry.select_range(0, "end")
            self.code_entry.icursor("end")
            return
        self.show_error(friendly_error(error))

    def show_error(self, text: str, clear_password: bool = True) -> None:
        """Show ``text`` under the form and unlock it."""
        self.set_busy(False)
        self.error.set(text)
        if clear_password:
            self.password.set("")
            self.repeat.set("")
        self.focus_first_empty()
