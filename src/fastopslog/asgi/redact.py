"""Redaction of credentials before an entry is published.

An ops log is shown to every admin who opens the dashboard, so what a
request carried as a credential must not reach it. :class:`Redactor`
replaces, with a marker (``[REDACTED]`` by default):

- the values of credential query parameters (``key``, ``api_key``,
  ``apikey``, ``api-key``, ``access_token``, ``token``, ``auth``,
  ``password``, ``secret``, ``signature``, ``sig``, and any you add), in a
  path's query string and wherever ``name=value`` appears in an error text;
- the credential after ``Bearer`` or ``Basic`` (``Authorization: Bearer
  …``), and the value of ``x-api-key`` / ``api-key`` / ``x-goog-api-key``
  style headers quoted in an error text;
- the value of JSON members named like those parameters (``"api_key":
  "…"``) in an error text;
- strings that look like provider secret keys wherever they appear:
  ``sk-…`` (OpenAI, Anthropic ``sk-ant-…``, DeepSeek and others), ``rk-…``,
  Google ``AIza…``, GitHub ``ghp_…``/``gho_…``/…, Slack ``xox?-…``, AWS
  access key ids ``AKIA…``/``ASIA…``, Hugging Face ``hf_…``, Groq
  ``gsk_…``, and JWTs (``eyJ….eyJ….…``).

It is a best effort: it catches the usual shapes, not every secret a
backend may echo. Pass ``extra_patterns`` (regular expressions whose whole
match is replaced) for your own formats, or any callable ``str -> str`` as
the middleware's ``redact`` for full control.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from re import Pattern

__all__ = ("DEFAULT_PARAMS", "MARKER", "Redactor", "truncate")

MARKER = "[REDACTED]"

DEFAULT_PARAMS: tuple[str, ...] = (
    "key",
    "api_key",
    "apikey",
    "api-key",
    "x-api-key",
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "auth",
    "authorization",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "signature",
    "sig",
)

# Provider secret keys and other bearer-style credentials, matched anywhere.
_SECRET_SOURCES: tuple[str, ...] = (
    # sk-…, sk-proj-…, sk-ant-api03-…, rk-live-…: at least 16 key characters.
    r"\b(?:sk|rk)-[A-Za-z0-9_\-]{16,}",
    r"\bAIza[0-9A-Za-z_\-]{30,}",
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bhf_[A-Za-z0-9]{20,}",
    r"\bgsk_[A-Za-z0-9]{20,}",
    r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
)
# The cheap test that decides whether the secret pattern runs on a path at
# all: every secret shape above contains one of these.
_SECRET_HINTS = ("sk-", "rk-", "AIza", "gh", "xox", "AKIA", "ASIA", "hf_", "gsk_", "eyJ")


def truncate(text: str, limit: int) -> str:
    """``text`` cut after ``limit`` characters, with ``…[truncated N
    chars]`` appended to say how much was cut. ``limit <= 0`` means no
    limit."""
    if limit <= 0 or len(text) <= limit:
        return text
    return f"{text[:limit]}…[truncated {len(text) - limit} chars]"


class Redactor:
    """Replaces credentials by ``marker``. Callable on any text; the
    middleware calls :meth:`path` for the request path and the instance
    itself for ``error_message`` and ``error_detail``."""

    __slots__ = ("marker", "params", "_param_re", "_query_re", "_text_res", "_secret_re")

    def __init__(
        self,
        *,
        marker: str = MARKER,
        params: Iterable[str] = DEFAULT_PARAMS,
        extra_params: Iterable[str] = (),
        extra_patterns: Iterable[str | Pattern[str]] = (),
    ) -> None:
        if not isinstance(marker, str):
            raise TypeError("marker must be a str")
        self.marker = marker
        names = tuple(dict.fromkeys(p.lower() for p in (*params, *extra_params)))
        for name in names:
            if not name or not isinstance(name, str):
                raise ValueError("parameter names must be non-empty strings")
        self.params = frozenset(names)
        alternation = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        # name=value inside free text: the name must start a word (so
        # ``monkey=1`` is not ``key=1``) and the value ends at a separator.
        self._param_re = re.compile(
            rf"(?i)(?<![A-Za-z0-9_\-])((?:{alternation})\s*=\s*)(?!{re.escape(marker)})"
            rf"([^&\s\"',;)}}\]]+)"
        ) if names else None
        self._query_re = re.compile(r"([^&=;]*)=([^&;]*)")
        secret = "|".join([*_SECRET_SOURCES])
        extra = [p.pattern if isinstance(p, re.Pattern) else str(p) for p in extra_patterns]
        for source in extra:
            re.compile(source)  # a bad pattern fails here, not at publish
        self._secret_re = re.compile("|".join([secret, *extra]) if extra else secret)
        text_res: list[tuple[Pattern[str], str]] = [
            # Authorization: Bearer <token> / Basic <b64>, also without the header name.
            (
                re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]+=*"),
                rf"\1\2{_escape(marker)}",
            ),
            # Authorization: <credential> without a scheme word.
            (
                re.compile(
                    r"(?i)\b(authorization[\"']?\s*:\s*[\"']?)(?!(?:bearer|basic)\s)([^\s\"',;}]+)"
                ),
                rf"\1{_escape(marker)}",
            ),
            # x-api-key: value, api-key=value, "x-goog-api-key": "value".
            (
                re.compile(
                    r"(?i)\b((?:x-)?(?:goog-)?api-key[\"']?\s*[:=]\s*[\"']?)([^\s\"',;}]+)"
                ),
                rf"\1{_escape(marker)}",
            ),
        ]
        if names:
            # JSON members: "api_key": "value".
            text_res.append(
                (
                    re.compile(rf"(?i)(\"(?:{alternation})\"\s*:\s*\")((?:[^\"\\]|\\.)*)(\")"),
                    rf"\1{_escape(marker)}\3",
                )
            )
        self._text_res = tuple(text_res)

    def __repr__(self) -> str:
        return f"<Redactor marker={self.marker!r} params={sorted(self.params)}>"

    def __call__(self, text: str) -> str:
        """``text`` with every credential the rules find replaced."""
        if not text:
            return text
        marker = self.marker
        for pattern, replacement in self._text_res:
            text = pattern.sub(replacement, text)
        if self._param_re is not None:
            text = self._param_re.sub(lambda m: m.group(1) + marker, text)
        return self._secret_re.sub(marker, text)

    def query(self, query: str) -> str:
        """A query string with credential parameters' values replaced (the
        names stay, so the shape of the request is still visible)."""
        if not query:
            return query
        params = self.params
        marker = self.marker

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if _unquote_name(name).lower() in params:
                return f"{name}={marker}"
            return self._secret_re.sub(marker, match.group(0))

        redacted = self._query_re.sub(one, query)
        return redacted

    def path(self, path: str, query: str = "") -> str:
        """``path`` plus ``?query`` when there is one, redacted. The path
        is searched for secret-key shapes only when one of their prefixes
        is there, so a plain path costs a few substring tests."""
        for hint in _SECRET_HINTS:
            if hint in path:
                path = self._secret_re.sub(self.marker, path)
                break
        if query:
            return path + "?" + self.query(query)
        return path


def _escape(replacement: str) -> str:
    return replacement.replace("\\", "\\\\")


def _unquote_name(name: str) -> str:
    if "%" not in name and "+" not in name:
        return name
    from urllib.parse import unquote_plus

    return unquote_plus(name)
