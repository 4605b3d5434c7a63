"""The desktop app: one Tk root, the client core, and the queues between them.

Only the Tk main thread touches widgets. Two queues feed it, and
:meth:`App.pump` drains both with ``after()`` in bounded batches, so a
burst of incoming messages never starves the keyboard:

- the core's event queue (``Event`` objects from its threads);
- the worker's outcome queue (results of blocking calls, and questions
  such as "trust this certificate?" that a core thread waits on).

Quitting with messages still in the outbox asks first. Closing then
stops the worker, closes the client on a helper thread and waits for it
at most :data:`CLOSE_WAIT_SECONDS`, so the process exits promptly even
while the connection is busy.
"""

from __future__ import annotations

import argparse
import logging
import queue
import sys
import threading
import tkinter as tk
from collections.abc import Callable
from typing import Any

from enctalk.client.address import format_server_address, parse_server_address
from enctalk.client.core import Client
from enctalk.client.discovery import (
    DEFAULT_LISTEN_ADDRESS,
    DiscoveredServer,
    listen_for_servers,
)
from enctalk.client.errors import ClientError
from enctalk.client.events import Event
from enctalk.client.groups import GroupInfo
from enctalk.client.profile import Profile, default_profile_dir
from enctalk.protocol.announcement import DEFAULT_DISCOVERY_PORT
from enctalk.ui import theme
from enctalk.ui.about_dialog import add_help_menu
from enctalk.ui.formatting import certificate_fingerprints, friendly_error
from enctalk.ui.login import REGISTER, SETUP, LoginForm, LoginView
from enctalk.ui.main_window import MainWindow, latest_activity
from enctalk.ui.quit_dialog import QuitDialog
from enctalk.ui.trust_dialog import CertificateChangedDialog, FirstConnectionDialog
from enctalk.ui.worker import Outcome, Worker

logger = logging.getLogger(__name__)

PUMP_INTERVAL_MS = 40
# Events handled per pump; the rest wait for the next one, 1 ms later.
MAX_EVENTS_PER_PUMP = 100
MAX_OUTCOMES_PER_PUMP = 20
CLOSE_WAIT_SECONDS = 0.7
# How long quitting waits for the core to list the unsent messages, in seconds.
OUTBOX_WAIT_SECONDS = 0.5
CLIENT_TIMEOUT = 15.0
# Seconds one search for servers listens; servers announce every 5 s by default.
DISCOVERY_SECONDS = 6.0
# The command line's exit code for usage errors, also used when no window opens.
NO_WINDOW_EXIT = 2


class App:
    """The EncTalk window for one profile."""

    def __init__(
        self,
        root: tk.Tk,
        profile_dir: str | None,
        server: str | None,
        discovery: tuple[str, int] | None = None,
    ):
        self.root = root
        # The UDP address and port to hear server announcements on, or None.
        self.discovery = discovery
        self._searching = False
        self.profile_dir = profile_dir or str(default_profile_dir())
        self.events: queue.Queue[Event] = queue.Queue()
        self.outcomes: queue.Queue[Outcome] = queue.Queue()
        self.worker = Worker(self.outcomes, "enctalk-ui-worker")
        self.client: Client | None = None
        self.view: LoginView | MainWindow | None = None
        self.closing = False
        self._pump_id: str | None = None
        self.quit_dialog: QuitDialog | None = None

        root.title("EncTalk")
        root.minsize(640, 420)
        root.geometry("980x640")
        root.protocol("WM_DELETE_WINDOW", self.request_quit)
        root.bind_all("<Control-q>", lambda _event: self.request_quit())
        self.saved_server, self.saved_username = self._read_profile(server)
        self.show_login()
        self._pump_id = root.after(PUMP_INTERVAL_MS, self.pump)

    def _read_profile(self, server: str | None) -> tuple[str, str]:
        profile = Profile(self.profile_dir)
        if server is not None:
            text = server
        elif profile.server is not None:
            text = format_server_address(*profile.server)
        else:
            text = ""
        return text, profile.username or ""

    # The queues.

    def pump(self) -> None:
        """Drain a bounded batch of outcomes and events, then reschedule."""
        self._pump_id = None
        if self.closing:
            return
        more = self._run_outcomes() | self._run_events()
        if not self.closing:
            delay = 1 if more else PUMP_INTERVAL_MS
            self._pump_id = self.root.after(delay, self.pump)

    def _run_outcomes(self) -> bool:
        for _ in range(MAX_OUTCOMES_PER_PUMP):
            try:
                outcome = self.outcomes.get_nowait()
            except queue.Empty:
                return False
            try:
                outcome.callback(*outcome.args)
            except Exception:
                logger.exception("a view callback failed")
            if self.closing:
                return False
        return True

    def _run_events(self) -> bool:
        batch: list[Event] = []
        while len(batch) < MAX_EVENTS_PER_PUMP:
            try:
                batch.append(self.events.get_nowait())
            except queue.Empty:
                break
        if batch and isinstance(self.view, MainWindow):
            try:
                self.view.apply_events(batch)
            except Exception:
                logger.exception("applying events failed")
        return len(batch) == MAX_EVENTS_PER_PUMP

    # Login.

    def show_login(self, error: str = "") -> None:
        if self.view is not None:
            self.view.destroy()
        menu = tk.Menu(self.root)
        add_help_menu(menu, self.root)
        self.root.configure(menu=menu)
        self.root.title("EncTalk")
        view = LoginView(self.root, self.saved_server, self.saved_username, self.login)
        view.pack(fill="both", expand=True)
        self.view = view
        if error:
            view.show_error(error)
        view.focus_first_empty()
        if self.discovery is not None:
            view.enable_discovery(self.search_servers)
            self.search_servers()

    def search_servers(self) -> None:
        """Listen for server announcements on a background thread.

        The thread touches no widget: it hands the result to the Tk main
        thread through the outcome queue.
        """
        if self.discovery is None or self._searching or self.closing:
            return
        address, port = self.discovery
        self._searching = True
        if isinstance(self.view, LoginView):
            self.view.show_discovery_status("Searching this network for servers…")

        def work() -> None:
            try:
                servers = listen_for_servers(DISCOVERY_SECONDS, address, port)
            except OSError as exc:
                logger.info(
                    "cannot listen for servers on %s:%d: %s", address, port, exc
                )
                self.outcomes.put(Outcome(self._search_failed, (exc,)))
                return
            self.outcomes.put(Outcome(self._servers_found, (servers,)))

        threading.Thread(target=work, name="enctalk-ui-discovery", daemon=True).start()

    def _servers_found(self, servers: list[DiscoveredServer]) -> None:
        self._searching = False
        if isinstance(self.view, LoginView):
            self.view.show_servers(servers)

    def _search_failed(self, error: OSError) -> None:
        self._searching = False
        if isinstance(self.view, LoginView):
            self.view.show_discovery_status(
                f"Cannot search this network for servers: {error.strerror or error}."
            )

    def login(self, form: LoginForm) -> None:
        """Log in, register or redeem a setup code on the worker.

        Called by the login view.
        """
        old = self.client
        self.client = None
        if old is not None:
            self._close_in_background(old)

        def work() -> tuple[Client, str]:
            client = Client(
                self.profile_dir,
                server=form.server,
                confirm_server=self._confirm_server,
                events=self.events,
                timeout=CLIENT_TIMEOUT,
            )
            try:
                if form.mode == REGISTER:
                    name = client.register(form.username, form.password)
                elif form.mode == SETUP:
                    name = client.redeem_setup(form.username, form.code, form.password)
                else:
                    name = client.login(form.username, form.password)
            except BaseException:
                self._close_in_background(client)
                raise
            return client, name

        self.saved_server = form.server
        self.saved_username = form.username
        self.worker.submit(work, self._logged_in, self._login_failed)

    def _confirm_server(self, address: str, fingerprint: str) -> bool:
        """Ask the user about a new certificate; runs on a client thread."""

        def question(answer: Callable[[Any], None]) -> None:
            if self.closing:
                answer(False)
                return
            FirstConnectionDialog(self.root, address, fingerprint, answer)

        return bool(self.worker.ask(question))

    def _login_failed(self, error: BaseException) -> None:
        if not isinstance(self.view, LoginView):
            return
        if isinstance(error, ClientError) and error.code == "certificate_changed":
            found = certificate_fingerprints(error.message)
            if len(found) >= 2:
                CertificateChangedDialog(self.root, self.saved_server, *found[:2])
        self.view.show_failure(error)

    def _logged_in(self, result: tuple[Client, str]) -> None:
        client, name = result
        if self.closing:
            self._close_in_background(client)
            return
        self.client = client
        self.saved_username = name
        address = self.saved_server
        try:
            address = format_server_address(*parse_server_address(address))
        except ClientError:
            pass
        if self.view is not None:
            self.view.destroy()
        view = MainWindow(self.root, self, name, address)
        view.pack(fill="both", expand=True)
        self.view = view
        if client.connected:
            view.status.set(f"Connected to {address}")
        view.focus_contacts()
        self.worker.submit(lambda: self._load_contacts(client), self._contacts_loaded)

    @staticmethod
    def _load_contacts(
        client: Client,
    ) -> tuple[list[Any], list[GroupInfo], dict[str, int]]:
        contacts = client.contacts()
        groups = client.groups()
        names = [contact.username for contact in contacts]
        names += [group.conversation for group in groups]
        activity = {name: latest_activity(client.history(name, 1)) for name in names}
        return contacts, groups, activity

    def _contacts_loaded(
        self, result: tuple[list[Any], list[GroupInfo], dict[str, int]]
    ) -> None:
        if isinstance(self.view, MainWindow):
            contacts, groups, activity = result
            self.view.load_groups(groups, activity)
            self.view.load_contacts(contacts, activity, [])

    # Logout and close.

    def log_out(self) -> None:
        """End the session on the server and return to the login view."""
        client = self.client
        if client is None:
            return
        self.client = None

        def work() -> None:
            try:
                client.logout()
            finally:
                client.close()

        self.worker.submit(work, lambda _result: self.show_login(), self._logout_failed)

    def _logout_failed(self, error: BaseException) -> None:
        self.show_login(f"Logged out on this computer. {friendly_error(error)}")

    def session_ended(self) -> None:
        """Return to the login view after the server ended the session."""
        client, self.client = self.client, None
        if client is not None:
            self._close_in_background(client)
        self.show_login(
            "Your session ended (password changed or logged out). Log in again."
        )

    def _close_in_background(self, client: Client) -> threading.Thread:
        thread = threading.Thread(
            target=client.close, name="enctalk-ui-close", daemon=True
        )
        thread.start()
        return thread

    def request_quit(self) -> None:
        """Quit, after asking when messages are still unsent (Ctrl+Q, Quit)."""
        if self.closing:
            return
        if self.quit_dialog is not None and self.quit_dialog.winfo_exists():
            self.quit_dialog.focus_set()
            return
        unsent = 0
        if isinstance(self.view, MainWindow):
            unsent = self.view.unsent_messages(OUTBOX_WAIT_SECONDS)
        if unsent == 0:
            self.close()
            return
        self.quit_dialog = QuitDialog(self.root, unsent, self.close)

    def close(self) -> None:
        """Stop the worker and the client, then destroy the window."""
        if self.closing:
            return
        self.closing = True
        if self._pump_id is not None:
            self.root.after_cancel(self._pump_id)
            self._pump_id = None
        self.worker.stop()
        client, self.client = self.client, None
        if client is not None:
            closer = self._close_in_background(client)
            closer.join(CLOSE_WAIT_SECONDS)
            if closer.is_alive():
                logger.warning("the client did not close in time; exiting anyway")
        self.root.destroy()


def run_app(args: argparse.Namespace) -> int:
    """Create the Tk root and run the app until its window closes."""
    theme.enable_dpi_awareness()
    try:
        root = tk.Tk(className="EncTalk")
    except tk.TclError as exc:
        print(
            f"error: cannot open the EncTalk window ({exc}); run it on a desktop, "
            "or run a command, for example 'run_client.py --help'.",
            file=sys.stderr,
        )
        return NO_WINDOW_EXIT
    theme.apply_theme(root)
    discovery = None
    if not getattr(args, "no_discovery", False):
        discovery = (DEFAULT_LISTEN_ADDRESS, DEFAULT_DISCOVERY_PORT)
    app = App(root, args.profile, args.server, discovery)
    try:
        root.mainloop()
    except KeyboardInterrupt:
        app.close()
    return 0
