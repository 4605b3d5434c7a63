"""Class rosters: read a CSV file of accounts to create, and check every row.

The file is UTF-8, with or without a byte order mark, comma-separated
with optional double quotes (RFC 4180, as spreadsheets save "CSV UTF-8").
Its header row names the columns ``username`` and ``display_name``, and
optionally ``group`` (a class label such as ``7B``, may be empty) and
``role`` (``staff`` or ``pupil``, default pupil), in any order. Header
names ignore case, and a space or hyphen counts as ``_``.

:func:`parse_roster` checks the whole file and returns every problem with
the line it starts on, so the administrator can fix them all in one pass.
Nothing here touches the database: names already taken are checked by the
admin command, which reads the accounts.

Cost: linear in the file size, which is capped at :data:`MAX_ROSTER_BYTES`.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from enctalk.protocol import InvalidUsername, canonical_username
from enctalk.protocol.schema import MAX_CLASS_LABEL_LENGTH, MAX_DISPLAY_NAME_LENGTH

COLUMNS = ("username", "display_name", "group", "role")
REQUIRED_COLUMNS = ("username", "display_name")
ROLES = {"pupil": False, "staff": True}
# A school's whole roster fits easily; larger files are more likely a
# wrong file than a roster.
MAX_ROSTER_ROWS = 5000
MAX_ROSTER_BYTES = 4 * 1024 * 1024
# Characters that would let a name reorder or break the line it is shown
# in: the Unicode bidi embedding, override and isolate controls (UAX #9)
# and the line and paragraph separators. C0 and C1 controls are rejected
# by their category.
_FORBIDDEN_FORMAT_CHARACTERS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    "\u2028\u2029"
)


class RosterError(Exception):
    """The file cannot be read as a roster at all; the message gives the reason."""


@dataclass(frozen=True)
class RosterRow:
    """One valid row: canonical username, display name, class label, staff flag.

    ``line`` is the line of the file that the row starts on.
    """

    line: int
    username: str
    display_name: str
    class_label: str
    staff: bool


@dataclass(frozen=True)
class RosterProblem:
    """One invalid row and what is wrong with it."""

    line: int
    message: str


def _forbidden_character(text: str) -> str | None:
    """Return the first control or bidi character of ``text``, or None."""
    for char in text:
        if unicodedata.category(char) == "Cc" or char in _FORBIDDEN_FORMAT_CHARACTERS:
            return char
    return None


def display_name_problem(name: str) -> str | None:
    """Return why ``name`` cannot be a display name, or None if it can."""
    if not name:
        return "the display name is empty"
    if len(name) > MAX_DISPLAY_NAME_LENGTH:
        return (
            f"the display name has {len(name)} characters, "
            f"at most {MAX_DISPLAY_NAME_LENGTH} are allowed"
        )
    char = _forbidden_character(name)
    if char is not None:
        return f"the display name contains the control character U+{ord(char):04X}"
    return None


def class_label_problem(label: str) -> str | None:
    """Return why ``label`` cannot be a group label, or None if it can.

    The empty label means no class and is allowed.
    """
    if len(label) > MAX_CLASS_LABEL_LENGTH:
        return (
            f"the group {label[:40]!r} has {len(label)} characters, "
            f"at most {MAX_CLASS_LABEL_LENGTH} are allowed"
        )
    char = _forbidden_character(label)
    if char is not None:
        return f"the group contains the control character U+{ord(char):04X}"
    return None


def read_roster(path: Path) -> tuple[list[RosterRow], list[RosterProblem]]:
    """Read and check a roster file; return its valid rows and every problem.

    Raises :class:`RosterError` when the file cannot be read, is not
    UTF-8, or has no usable header.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_ROSTER_BYTES + 1)
    except OSError as exc:
        raise RosterError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_ROSTER_BYTES:
        raise RosterError(
            f"{path} is larger than {MAX_ROSTER_BYTES // (1024 * 1024)} MiB; "
            "a roster is much smaller, so check that this is the right file"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RosterError(
            f"{path}, line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02X}); "
            "save the file as 'CSV UTF-8'"
        ) from exc
    return parse_roster(text)


def _column_name(raw: str) -> str:
    return raw.strip().casefold().replace(" ", "_").replace("-", "_")


def _header_columns(header: list[str]) -> dict[str, int]:
    """Return the index of each known column; raise RosterError for a bad header."""
    names = [_column_name(item) for item in header]
    if len(names) == 1 and ";" in names[0]:
        raise RosterError(
            "line 1: the header has one column with ';' in it; the file must "
            "separate columns with commas, not semicolons"
        )
    indexes: dict[str, int] = {}
    for index, name in enumerate(names):
        if not name and index == len(names) - 1:
            continue  # A trailing comma, as some spreadsheets write.
        if name not in COLUMNS:
            raise RosterError(
                f"line 1: unknown column {header[index].strip()!r}; the columns "
                f"are {', '.join(COLUMNS)} (group and role are optional)"
            )
        if name in indexes:
            raise RosterError(f"line 1: the column {name} appears twice")
        indexes[name] = index
    missing = [name for name in REQUIRED_COLUMNS if name not in indexes]
    if missing:
        raise RosterError(
            f"line 1: the header has no column {' and no column '.join(missing)}; "
            f"the columns are {', '.join(COLUMNS)} (group and role are optional)"
        )
    return indexes


def parse_roster(text: str) -> tuple[list[RosterRow], list[RosterProblem]]:
    """Check the roster ``text``; return its valid rows and every problem.

    Rows whose fields are all empty are skipped. Raises
    :class:`RosterError` when the header is missing or unusable.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise RosterError(f"line 1: cannot be read as CSV: {exc}") from exc
    if header is None or not any(item.strip() for item in header):
        raise RosterError(
            "the file has no header row; the first line must name the columns, "
            f"for example {','.join(COLUMNS)}"
        )
    columns = _header_columns(header)
    width = len(header)

    rows: list[RosterRow] = []
    problems: list[RosterProblem] = []
    first_line: dict[str, int] = {}
    count = 0
    line = reader.line_num + 1
    while True:
        try:
            fields = next(reader, None)
        except csv.Error as exc:
            problems.append(RosterProblem(line, f"cannot be read as CSV: {exc}"))
            break
        if fields is None:
            break
        start, line = line, reader.line_num + 1
        if not any(item.strip() for item in fields):
            continue
        count += 1
        if count > MAX_ROSTER_ROWS:
            problems.append(
                RosterProblem(
                    start,
                    f"the file has more than {MAX_ROSTER_ROWS} rows; split it "
                    "into several files",
                )
            )
            break
        row, problem = _check_row(start, fields, columns, width)
        if problem is not None:
            problems.append(RosterProblem(start, problem))
            continue
        assert row is not None
        if row.username in first_line:
            problems.append(
                RosterProblem(
                    start,
                    f"the username {row.username} is also on line "
                    f"{first_line[row.username]}",
                )
            )
            continue
        first_line[row.username] = start
        rows.append(row)
    if count == 0 and not problems:
        raise RosterError("the file has no rows after the header")
    return rows, problems


def _check_row(
    line: int, fields: list[str], columns: dict[str, int], width: int
) -> tuple[RosterRow | None, str | None]:
    """Check one row; return ``(row, None)`` or ``(None, problem)``."""
    extra = fields[width:]
    if len(fields) < width or any(item.strip() for item in extra):
        return None, (
            f"the row has {len(fields)} fields, but the header has {width} "
            "columns; check for a missing or extra comma, or quote a field "
            "that contains a comma"
        )

    def value(name: str) -> str:
        index = columns.get(name)
        return "" if index is None else fields[index].strip()

    raw_username = value("username")
    if not raw_username:
        return None, "the username is empty"
    try:
        username = canonical_username(raw_username)
    except InvalidUsername as exc:
        return None, f"the username {raw_username[:40]!r} is invalid. {exc}"

    display_name = value("display_name")
    problem = display_name_problem(display_name)
    if problem is not None:
        return None, problem

    class_label = value("group")
    problem = class_label_problem(class_label)
    if problem is not None:
        return None, problem

    role = value("role").casefold() or "pupil"
    if role not in ROLES:
        return None, (
            f"the role {value('role')[:40]!r} is not one of {', '.join(ROLES)}"
        )
    return RosterRow(line, username, display_name, class_label, ROLES[role]), None
