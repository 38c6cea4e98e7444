"""Credentials out of everything that leaves the process, and names safe to print.

A camera URL carries its password in one of two places: the userinfo (``rtsp://admin:pa@ss@cam/``,
any characters, ``@`` included) or the query string (``?user=admin&password=...``, the Dahua, Amcrest
and Reolink style; also ``token``, ``auth``, ``key``...). :func:`redact` replaces both with ``***``;
sources build their display name with it once, so every log line, error, output, file and topic name
and the preview see only the redacted form, while the opening code keeps the real URL.

:func:`expand_env` substitutes ``${EDGEPOSE_...}`` variables in a source URL (only names starting with
``EDGEPOSE_``, as Frigate does with ``FRIGATE_``), so a password can stay out of the command line and
``ps``; the display name keeps the placeholder. :func:`printable` escapes control characters and
undecodable bytes so that a file name cannot forge lines or colours in a terminal.

Example:
    >>> redact("rtsp://admin:p@ss:w/rd@10.0.0.2:554/cam?channel=1&password=x&user=admin")
    'rtsp://admin:***@10.0.0.2:554/cam?channel=1&password=***&user=***'
    >>> printable("clip\\n\\x1b[31m.mp4")
    'clip\\\\n\\\\x1b[31m.mp4'
"""

from __future__ import annotations

import os
import re

__all__ = ["redact", "expand_env", "printable", "SECRET_PARAM"]

#: query parameters whose values are credentials (matched case-insensitively on the whole name,
#: with any prefix/suffix such as ``auth_token``, ``api_key``, ``loginPassword``; Foscam's ``loginuse``
#: and ``loginpas``; the one-letter ``u``/``p``/``pw``)
SECRET_PARAM = re.compile(r"user|pass|pwd|token|auth|key|secret|credential|signature|session|login|^(u|p|pw)$",
                          re.IGNORECASE)
_QUERY = re.compile(r"([?&;])([^=&;#\s]+)=([^&;#\s]*)")
_ENV = re.compile(r"\$\{(EDGEPOSE_[A-Za-z0-9_]+)\}")


def redact(text: str) -> str:
    """``text`` with the userinfo's password (or a bare token) and secret query values as ``***``.

    Works on any string: URLs of any scheme, GStreamer pipelines holding a URL, or an error message
    that quotes one.
    """
    if not isinstance(text, str):
        text = str(text)
    out = []
    pos = 0
    for m in re.finditer(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        if m.start() < pos:
            continue
        out.append(text[pos:m.end()])
        rest_start = m.end()
        # the authority ends at the first whitespace, '?' or '#'; its userinfo at the LAST '@' in it
        # (a password may hold '@', ':' or '/')
        end = len(text)
        for ch in (" ", "\t", "\n", "?", "#", '"', "'"):
            i = text.find(ch, rest_start)
            if i != -1:
                end = min(end, i)
        at = text.rfind("@", rest_start, end)
        if at == -1:
            pos = rest_start
            continue
        user, colon, _ = text[rest_start:at].partition(":")
        out.append(f"{user}:***@" if colon else "***@")
        pos = at + 1
    out.append(text[pos:])
    s = "".join(out)
    return _QUERY.sub(lambda q: f"{q[1]}{q[2]}=***" if SECRET_PARAM.search(q[2]) else q[0], s)


def expand_env(url: str, environ: dict[str, str] | None = None) -> str:
    """Substitute ``${EDGEPOSE_NAME}`` from the environment; an unset variable is an error.

    Raises:
        KeyError: a variable named in ``url`` is not set (the message names it, not its value).
    """
    env = os.environ if environ is None else environ

    def sub(m: re.Match) -> str:
        if m[1] not in env:
            raise KeyError(f"environment variable {m[1]} is not set (named in a source as ${{{m[1]}}})")
        return env[m[1]]

    return _ENV.sub(sub, url) if isinstance(url, str) else url


def printable(text: str) -> str:
    """``text`` with control characters, lone surrogates (undecodable bytes of a file name) and other
    non-printable characters escaped as ``\\n``, ``\\x1b``, ``\\udcff``: one line, no terminal codes."""
    if not isinstance(text, str):
        text = str(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii", "backslashreplace")
                       if not 0xD800 <= ord(ch) <= 0xDFFF else f"\\u{ord(ch):04x}")  # fmt: skip
    return "".join(out)
