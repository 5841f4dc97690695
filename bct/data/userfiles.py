"""The one way a user's text file is read: CSV tables (the own-images CSV, GLDv2's CSVs) and
``path label`` lists.

Every such file is accepted in the common dialects: UTF-8 with or without a byte-order mark; LF,
CRLF or old Mac CR line ends; CSV fields quoted or not (a space after the comma is ignored). A CSV
header must name each required column once: a missing or repeated column is refused by name. Text
that will be written into a list or a tab-separated file is checked by ``list_safe``: a tab, a line
break or another control character, or white space at either end, is refused with the file and line,
never written.

Every reader of such a file is declared with ``@user_file_reader`` (it lands in READERS), so that
the tests can find each one and feed it every dialect.
"""
import csv
import io
import re

from bct.utils.errors import BadInputError
from bct.utils.fileio import BOM, _not_utf8, read_text

# Qualified name -> function of every reader of a user's CSV or list (the dialect test walks it).
READERS = {}
_LINE_END = re.compile(r"\r\n|\r|\n")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def user_file_reader(fn):
    """Declare ``fn`` a reader of a user's file (it must read it through this module)."""
    READERS[f"{fn.__module__}.{fn.__qualname__}"] = fn
    return fn


def read_lines(path: str, label: str = "") -> list:
    """The lines of a UTF-8 text file (a leading byte-order mark dropped), split at LF, CRLF or CR
    only, without their line ends."""
    lines = _LINE_END.split(read_text(path, label))
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def csv_rows(path: str, required: tuple, optional: tuple = (), lower: bool = False):
    """Read a CSV with a header: returns (columns {name: index} of the required and present optional
    columns, header (list), an iterator of (line number, row)). The header names each required
    column once (``lower``: compared in lower case); a row's line number is that of its first line."""
    try:
        f = io.TextIOWrapper(open(path, "rb"), encoding="utf-8-sig", newline="")
    except OSError as e:
        raise BadInputError(f"{path}: cannot read it ({e.strerror or e})") from None
    reader = csv.reader(f, skipinitialspace=True)
    try:
        header = next(reader, None)
    except UnicodeDecodeError:
        f.close()
        raise _not_utf8_line(path) from None
    except csv.Error as e:
        f.close()
        raise BadInputError(f"{path}:1: not a CSV header ({e})") from None
    if header is None:
        f.close()
        raise BadInputError(f"{path}: the file is empty (expected a header with columns {', '.join(required)})")
    header = [h.strip().lstrip(BOM) for h in header]
    names = [h.lower() for h in header] if lower else header
    for c in (*required, *optional):
        if names.count(c) > 1:
            f.close()
            raise BadInputError(f"{path}:1: column {c!r} appears {names.count(c)} times in the header {header}; "
                                "name each column once")
    missing = [c for c in required if c not in names]
    if missing:
        f.close()
        raise BadInputError(f"{path}:1: column {missing[0]!r} is missing from the header {header} "
                            f"(expected {', '.join(required)}{' and optionally ' + ', '.join(optional) if optional else ''})")
    cols = {c: names.index(c) for c in (*required, *optional) if c in names}

    def rows():
        with f:
            line = reader.line_num + 1
            try:
                for row in reader:
                    yield line, row
                    line = reader.line_num + 1
            except UnicodeDecodeError:
                raise _not_utf8_line(path) from None
            except csv.Error as e:
                raise BadInputError(f"{path}:{line}: not valid CSV ({e})") from None
    return cols, header, rows()


def _not_utf8_line(path: str) -> BadInputError:
    """The one-line error naming the line of the first byte of ``path`` that is not UTF-8."""
    with open(path, "rb") as raw:
        data = raw.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return _not_utf8(path, data, e)
    return BadInputError(f"{path}: not UTF-8 text")


def list_safe(text: str, what: str, where: str) -> str:
    """``text`` when a list or tab-separated file can hold it as one field; else one line naming
    ``where`` (file:line): a tab, a line break or another control character, or white space at
    either end, would change the file's lines or fields when written."""
    bad = _UNSAFE.search(text)
    if bad:
        raise BadInputError(f"{where}: the {what} {text!r} holds the control character {bad.group()!r} (a tab or "
                            "line break), which the lists cannot hold; remove it")
    if text != text.strip():
        raise BadInputError(f"{where}: the {what} {text!r} begins or ends with white space, which the lists cannot "
                            "hold; remove it")
    return text
