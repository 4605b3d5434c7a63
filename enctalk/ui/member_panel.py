"""The member list beside a group conversation, with the moderation controls.

The panel shows the members the client core returns (display name,
presence, role, muted, pending), the owner first, then moderators, then the
others, each part by display name. The username of a member whose
display name differs is in the row's tooltip and in the grey line under
the list for the selected member. A member that has not redeemed its
setup code yet gets a clock mark, grey italics and "waiting for setup"
in its details. The panel also shows the actions this
account may take on them, following
:mod:`enctalk.ui.group_rules`. An action is hidden when it needs a role
the account lacks (Add for members), and disabled when it only depends
on the selected member. Actions on the whole group (rename, read-only)
are in the window's Group menus. The panel
makes no client call itself: it calls the :class:`MemberPanelActions`
it was given, on the Tk main thread.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import font as tkfont
from tkinter import ttk
from typing import Any, Protocol

from enctalk.crypto.grouplog import MEMBER, MODERATOR
from enctalk.ui import group_rules, theme
from enctalk.ui.formatting import display_text
from enctalk.ui.group_rules import MemberActions
from enctalk.ui.tooltip import TreeTooltip
from enctalk.ui.viewmodel import GroupRow

# Minimum width of the Add, Remove and Mute buttons, in average characters
# (negative: ttk then widens a button to fit its text).
BUTTON_WIDTH = -5
# The mark (a clock face) in place of the presence dot of a member that has
# not redeemed its setup code, and so gets no messages yet.
PENDING_MARK = "◷"
PRESENCE_UNKNOWN_TEXT = "Not connected to the server, so who is online is unknown."


class MemberPanelActions(Protocol):
    """The callbacks of the panel's buttons and menu, called on the Tk main thread."""

    def add_members(self) -> None: ...
    def remove_member(self, username: str) -> None: ...
    def mute_member(self, username: str, muted: bool) -> None: ...
    def set_role(self, username: str, role: str) -> None: ...
    def leave(self) -> None: ...


class MemberPanel(ttk.Frame):
    """Members of the open group with presence and role, and their actions."""

    def __init__(self, master: tk.Misc, actions: MemberPanelActions) -> None:
        super().__init__(master, padding=(8, 0, 0, 0))
        self.actions = actions
        self.me = ""
        self.row: GroupRow | None = None
        self.members: dict[str, dict[str, Any]] = {}
        # False while the client is not connected: the presence shown may be
        # stale, so every member shows as unknown until a new list arrives.
        self.presence_known = True
        self.title = tk.StringVar(value="Members")
        # The selected member's username and presence, in grey under the list.
        self.details = tk.StringVar()
        self.message = tk.StringVar()
        self._build()

    def _build(self) -> None:
        for column in range(3):
            self.columnconfigure(column, weight=1)
        ttk.Label(self, textvariable=self.title, style="Heading.TLabel").grid(
            row=0, column=0, columnspan=4, sticky="w", pady=(0, 4)
        )
        self.tree = ttk.Treeview(
            self, columns=("role",), show="tree", selectmode="browse", height=6
        )
        self.tree.column("#0", width=165, stretch=True)
        self.tree.column("role", width=80, anchor="e", stretch=False)
        self.tree.tag_configure("online", foreground=theme.ONLINE_COLOUR)
        self.tree.tag_configure("offline", foreground=theme.MUTED)
        self.pending_font = tkfont.nametofont("TkDefaultFont").copy()
        self.pending_font.configure(slant="italic")
        self.tree.tag_configure(
            "pending", foreground=theme.MUTED, font=self.pending_font
        )
        self.tree.tag_configure("unknown", foreground=theme.MUTED)
        scrollbar = ttk.Scrollbar(self, orient="vertical", command=self.tree.yview)
        self.tree.configure(yscrollcommand=scrollbar.set)
        self.tree.grid(row=1, column=0, columnspan=3, sticky="nsew")
        scrollbar.grid(row=1, column=3, sticky="ns")
        self.rowconfigure(1, weight=1)
        self.tree.bind("<<TreeviewSelect>>", lambda _event: self._selection_changed())
        self.tooltip = TreeTooltip(self.tree, self.member_tooltip)
        self.tree.bind("<Button-3>", self._right_clicked)
        # The menu key is "Menu" on X11 and "App" on Windows.
        for sequence in ("<Shift-F10>", "<Key-Menu>", "<Key-App>"):
            try:
                self.tree.bind(sequence, self._menu_key)
            except tk.TclError:
                pass
        self.tree.bind("<Delete>", lambda _event: self._remove_selected())

        self.add_button = ttk.Button(
            self, text="Add…", width=BUTTON_WIDTH, command=self.actions.add_members
        )
        self.remove_button = ttk.Button(
            self, text="Remove…", width=BUTTON_WIDTH, command=self._remove_selected
        )
        self.mute_button = ttk.Button(
            self, text="Mute", width=BUTTON_WIDTH, command=self._mute_selected
        )
        self.role_button = ttk.Button(
            self, text="Make moderator", command=self._role_selected
        )
        self.leave_button = ttk.Button(
            self, text="Leave group…", command=self.actions.leave
        )
        self.details_label = ttk.Label(
            self, textvariable=self.details, style="Muted.TLabel", wraplength=230
        )
        self.details_label.grid(row=2, column=0, columnspan=4, sticky="w", pady=(2, 0))
        self.add_button.grid(row=3, column=0, sticky="ew", pady=(6, 0), padx=(0, 2))
        self.remove_button.grid(row=3, column=1, sticky="ew", pady=(6, 0), padx=2)
        self.mute_button.grid(
            row=3, column=2, columnspan=2, sticky="ew", pady=(6, 0), padx=(2, 0)
        )
        self.role_button.grid(row=4, column=0, columnspan=4, sticky="ew", pady=(4, 0))
        self.leave_button.grid(row=5, column=0, columnspan=4, sticky="ew", pady=(6, 0))
        self.message_label = ttk.Label(
            self,
            textvariable=self.message,
            style="Muted.TLabel",
            wraplength=230,
            justify="left",
        )
        self.message_label.grid(row=6, column=0, columnspan=4, sticky="ew", pady=(4, 0))
        self.message_label.bind(
            "<Configure>",
            lambda event: self.message_label.configure(
                wraplength=max(event.width, 120)
            ),
        )
        self.menu = tk.Menu(self, tearoff=False)

    # State.

    def show(
        self, row: GroupRow, me: str, members: list[dict[str, Any]] | None
    ) -> None:
        """Show ``row``'s controls and, unless None (still loading), its members."""
        self.row = row
        self.me = me
        if members is not None:
            self._fill(members)
        self._place_controls()
        self._update_buttons()

    def _fill(self, members: list[dict[str, Any]]) -> None:
        # The list comes from the server, with presence as of now.
        self.presence_known = True
        selected = self.selected()
        self.members = {str(member["username"]): member for member in members}
        if self.tooltip.row not in self.members:
            self.tooltip.hide()
        self.tree.delete(*self.tree.get_children())
        for member in group_rules.sorted_members(members):
            name = str(member["username"])
            self.tree.insert(
                "",
                "end",
                iid=name,
                text=self._name_label(member),
                values=(group_rules.member_label(member),),
                tags=(self._presence_tag(member),),
            )
        if selected in self.members:
            self.tree.selection_set(selected)
        self._show_details()
        self.title.set(group_rules.members_title(members))

    def _name_label(self, member: dict[str, Any]) -> str:
        if member.get("pending"):
            mark = PENDING_MARK
        elif self.presence_known and member.get("online"):
            mark = "●"
        else:
            mark = "○"
        label = f"{mark} {display_text(group_rules.member_name(member))}"
        return f"{label} (you)" if member["username"] == self.me else label

    def _presence_tag(self, member: dict[str, Any]) -> str:
        if member.get("pending"):
            return "pending"
        if not self.presence_known:
            return "unknown"
        return "online" if member.get("online") else "offline"

    def set_presence_known(self, known: bool) -> None:
        """Show every member's presence as unknown, or as listed again."""
        if known == self.presence_known:
            return
        self.presence_known = known
        for username, member in self.members.items():
            if self.tree.exists(username):
                self.tree.item(
                    username,
                    text=self._name_label(member),
                    tags=(self._presence_tag(member),),
                )
        self._show_details()
        if not known:
            self.message.set(PRESENCE_UNKNOWN_TEXT)

    def pending_count(self) -> int:
        """Return how many listed members have not redeemed their setup code."""
        return group_rules.count_pending(list(self.members.values()))

    def member_name(self, username: str) -> str:
        """Return the display name of ``username`` if listed, else the username."""
        member = self.members.get(username)
        return group_rules.member_name(member) if member else username

    def member_tooltip(self, username: str) -> str | None:
        """Return a row's tooltip: the whole name, which a narrow row cuts off,
        above the details line."""
        member = self.members.get(username)
        if member is None:
            return None
        details = group_rules.member_details(member, self.presence_known)
        return f"{group_rules.member_name(member)}\n{details}"

    def _selection_changed(self) -> None:
        self._show_details()
        self._update_buttons()

    def _show_details(self) -> None:
        member = self.members.get(self.selected() or "")
        if member is None:
            self.details.set("")
            return
        details = group_rules.member_details(member, self.presence_known)
        self.details.set(display_text(details))

    def set_online(self, username: str, online: bool) -> None:
        """Show a presence change of a member, if it is listed."""
        member = self.members.get(username)
        if member is None or not self.tree.exists(username):
            return
        member["online"] = online
        if online:
            # Only an account that is set up logs in.
            member["pending"] = False
        self.tree.item(
            username,
            text=self._name_label(member),
            tags=(self._presence_tag(member),),
        )
        if username == self.selected():
            self._show_details()

    def clear(self) -> None:
        self.row = None
        self.members = {}
        self.tooltip.hide()
        self.tree.delete(*self.tree.get_children())
        self.title.set("Members")
        self.details.set("")
        self.message.set("")

    def selected(self) -> str | None:
        selection = self.tree.selection()
        return str(selection[0]) if selection else None

    def actions_for(self, username: str | None) -> MemberActions:
        """Return what this account may do to ``username`` in the shown group."""
        if self.row is None or username is None or username not in self.members:
            return MemberActions()
        return group_rules.member_actions(
            self.row.role, self.me, self.members[username]
        )

    def _place_controls(self) -> None:
        row = self.row
        moderator = row is not None and group_rules.is_moderator(row.role)
        owner = row is not None and row.role == "owner"
        shown = {
            self.add_button: moderator,
            self.remove_button: moderator,
            self.mute_button: moderator,
            self.role_button: owner,
            self.leave_button: row is not None and group_rules.may_leave(row),
        }
        for widget, visible in shown.items():
            if visible:
                widget.grid()
            else:
                widget.grid_remove()

    def _update_buttons(self) -> None:
        name = self.selected()
        allowed = self.actions_for(name)
        member = self.members.get(name or "")
        muted = bool(member and member.get("muted"))
        self.mute_button.configure(text="Unmute" if muted else "Mute")
        moderator = bool(member and member.get("role") == MODERATOR)
        self.role_button.configure(
            text="Make ordinary member" if moderator else "Make moderator"
        )
        states = {
            self.remove_button: allowed.remove,
            self.mute_button: allowed.unmute if muted else allowed.mute,
            self.role_button: allowed.make_member
            if moderator
            else allowed.make_moderator,
        }
        for button, enabled in states.items():
            button.state(["!disabled"] if enabled else ["disabled"])

    # Actions on the selected member.

    def _remove_selected(self) -> None:
        name = self.selected()
        if name is not None and self.actions_for(name).remove:
            self.actions.remove_member(name)

    def _mute_selected(self) -> None:
        name = self.selected()
        allowed = self.actions_for(name)
        if name is None:
            return
        if allowed.unmute:
            self.actions.mute_member(name, False)
        elif allowed.mute:
            self.actions.mute_member(name, True)

    def _role_selected(self) -> None:
        name = self.selected()
        allowed = self.actions_for(name)
        if name is None:
            return
        if allowed.make_member:
            self.actions.set_role(name, MEMBER)
        elif allowed.make_moderator:
            self.actions.set_role(name, MODERATOR)

    def _right_clicked(self, event: tk.Event[ttk.Treeview]) -> None:
        name = self.tree.identify_row(event.y)
        if not name:
            return
        self.tree.selection_set(name)
        self.tree.focus(name)
        self._post_menu(name, event.x_root, event.y_root)

    def _menu_key(self, _event: tk.Event[ttk.Treeview]) -> str:
        name = self.selected()
        if name is not None:
            box = self.tree.bbox(name)
            x, y = (box[0], box[1] + box[3]) if box else (0, 0)
            self._post_menu(
                name, self.tree.winfo_rootx() + x, self.tree.winfo_rooty() + y
            )
        return "break"

    def _post_menu(self, name: str, x: int, y: int) -> None:
        """Open the menu of actions on member ``name``, if there is any."""
        allowed = self.actions_for(name)
        if not allowed.any:
            return
        menu = self.menu
        menu.delete(0, "end")
        shown = display_text(self.member_name(name))

        if allowed.mute:
            menu.add_command(
                label=f"Mute {shown}",
                command=lambda: self.actions.mute_member(name, True),
            )
        if allowed.unmute:
            menu.add_command(
                label=f"Unmute {shown}",
                command=lambda: self.actions.mute_member(name, False),
            )

        if allowed.make_moderator:
            menu.add_command(
                label=f"Make {shown} a moderator",
                command=lambda: self.actions.set_role(name, MODERATOR),
            )
        if allowed.make_member:
            menu.add_command(
                label=f"Make {shown} an ordinary member",
                command=lambda: self.actions.set_role(name, MEMBER),
            )

        if allowed.remove:
            menu.add_separator()
            menu.add_command(
                label=f"Remove {shown} from the group…",
                command=lambda: self.actions.remove_member(name),
            )
        menu.tk_popup(x, y)
