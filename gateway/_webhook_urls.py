"""Where tenants may point webhooks: only where the operator allows (`KEEL_WEBHOOK_URLS`).

A webhook makes keel send a request to a URL a tenant chose, from inside the operator's
network; left open, any tenant could have keel call an internal address (a database's HTTP
port, a cloud metadata service). So nothing is allowed by default, and the operator lists
URL prefixes: `scheme://host[:port][/path]`, matched on the scheme, the host and the port
exactly (a prefix of the host name is no match: `https://hooks.example.com` does not allow
`https://hooks.example.com.evil.org`) and on whole path segments. A URL with credentials,
a fragment, or a `.`/`..` segment (which a server may resolve out of the allowed path) is
refused whatever the list says. Redirects are not followed (`managed._webhook_sender`), so
an allowed receiver cannot bounce keel elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import SplitResult, unquote, urlsplit

from schemas import SettingsError

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# URLs that are never `malformed`, as the served document says of an endpoint's `url` (a
# JSON Schema pattern): http(s), a host, a port, path segments of unreserved characters (so
# none is a dot segment, even percent-decoded), a query; no credentials, no fragment. Some
# URLs `malformed` takes are left out (a dot in a segment, percent-escapes): simple, and on
# the safe side.
WELL_FORMED: Final = (
    r"^https?://[a-z0-9-]+(\.[a-z0-9-]+)*(:[1-9][0-9]{0,3})?(/[A-Za-z0-9_~-]*)*"
    r"(\?[A-Za-z0-9_~=&-]*)?$"
)
# A host name, IPv4 or IPv6 address (urlsplit gives it lowercased, without brackets).
_HOST: Final = re.compile(r"[a-z0-9.:-]+")


class WebhookUrls:
    """The prefixes an operator allows, each `(scheme, host, port, path)`."""

    def __init__(self, prefixes: Sequence[tuple[str, str, int, str]]) -> None:
        self.prefixes = tuple(prefixes)

    @classmethod
    def parse(cls, setting: str, variable: str = "KEEL_WEBHOOK_URLS") -> WebhookUrls:
        """The comma-separated prefixes of `setting`; SettingsError naming a bad one."""
        prefixes = []
        for entry in (part.strip() for part in setting.split(",")):
            if not entry:
                continue
            problem = malformed(entry)
            if problem is not None:
                raise SettingsError(f"{variable}: {entry!r} is not a URL prefix ({problem})")
            parts = urlsplit(entry)
            if parts.query:
                raise SettingsError(f"{variable}: {entry!r} is a prefix; it takes no query")
            prefixes.append((*_origin(parts), parts.path.rstrip("/")))
        return cls(prefixes)

    @property
    def enabled(self) -> bool:
        return bool(self.prefixes)

    def permits(self, url: str) -> bool:
        """Whether `url` (already found well-formed) is under an allowed prefix."""
        parts = urlsplit(url)
        origin = _origin(parts)
        for scheme, host, port, path in self.prefixes:
            if (scheme, host, port) == origin and (
                not path or parts.path == path or parts.path.startswith(path + "/")
            ):
                return True
        return False


def malformed(url: str) -> str | None:
    """What makes `url` no place to send a webhook, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in _DEFAULT_PORTS:
        return "use an http:// or https:// URL"
    if parts.username is not None or parts.password is not None:
        return "a webhook URL carries no credentials; verify the signature instead"
    if parts.fragment or url.endswith("#"):
        return "a webhook URL has no fragment"
    if not parts.hostname or not _HOST.fullmatch(parts.hostname):
        return "the URL names no host"
    if port == 0:
        return "port 0 is no port"
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        return "a webhook URL's path has no . or .. segments"
    return None


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    assert parts.hostname is not None
    return parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme]
