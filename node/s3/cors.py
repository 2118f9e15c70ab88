"""CORS, for web pages that talk to the S3 door from a browser: a bucket's CORSConfiguration
(Put/Get/DeleteBucketCors, a setting in the bucket's index like its tags), the preflight a browser
sends before a cross-origin request (OPTIONS, answered without a signature: browsers send none, and
it tells only whether a rule allows the origin, method and headers), and the Access-Control-*
headers on answers to requests that carry an `Origin` and match a rule.

Rules as S3 has them: AllowedOrigin and AllowedHeader patterns with at most one `*`, AllowedMethod
among GET, PUT, POST, DELETE and HEAD, ExposeHeader and MaxAgeSeconds; the first rule that matches
answers. The door reads a bucket's rules for requests with an Origin through `CorsCache` (a few
seconds old at most), so a page's requests do not each cost an index read.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from aiohttp import web

from maillage.node.s3 import payload, xml
from maillage.node.s3.common import Call, Services, xml_response
from maillage.node.s3.errors import S3Error

__all__ = ["CorsRule", "CorsCache", "rules_from_document", "document", "encode", "decode", "match",
           "answer_headers", "preflight_headers", "get_cors", "put_cors", "delete_cors"]

MAX_DOCUMENT = 64 * 1024
MAX_RULES = 100          # S3's limit
MAX_PATTERN = 256        # an origin or header pattern
METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
CACHE_SECONDS = 5.0
CACHE_BUCKETS = 1024
_RULE_FIELDS = {"ID", "AllowedOrigin", "AllowedMethod", "AllowedHeader", "ExposeHeader", "MaxAgeSeconds"}


@dataclass(frozen=True)
class CorsRule:
    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()
    max_age: int | None = None
    id: str = ""

    def allows(self, origin: str, method: str, headers: Sequence[str] = ()) -> bool:
        """Whether this rule lets `origin` send `method` with request `headers`."""
        return (method in self.methods and any(_matches(p, origin) for p in self.origins)
                and all(any(_matches(p.lower(), h.lower()) for p in self.headers) for h in headers))

    def allow_origin(self, origin: str) -> str:
        """Access-Control-Allow-Origin: `*` when the rule allows any origin, else the origin itself."""
        return "*" if "*" in self.origins else origin


def _matches(pattern: str, value: str) -> bool:
    """A pattern with at most one `*`, standing for any run of characters."""
    head, star, tail = pattern.partition("*")
    if not star:
        return value == pattern
    return len(value) >= len(head) + len(tail) and value.startswith(head) and value.endswith(tail)


def match(rules: Sequence[CorsRule], origin: str, method: str, headers: Sequence[str] = ()) -> CorsRule | None:
    """The first rule allowing the request, None if none does."""
    return next((r for r in rules if r.allows(origin, method, headers)), None)


def answer_headers(rule: CorsRule, origin: str) -> dict[str, str]:
    """The headers of an answer to a request from `origin` that `rule` allows."""
    headers = {"Access-Control-Allow-Origin": rule.allow_origin(origin), "Vary": "Origin",
               "Access-Control-Allow-Methods": ", ".join(rule.methods)}
    if "*" not in rule.origins:
        headers["Access-Control-Allow-Credentials"] = "true"
    if rule.expose:
        headers["Access-Control-Expose-Headers"] = ", ".join(rule.expose)
    if rule.max_age is not None:
        headers["Access-Control-Max-Age"] = str(rule.max_age)
    return headers


def requested_headers(value: str) -> list[str]:
    """The header names of an Access-Control-Request-Headers value."""
    return [h.strip() for h in value.split(",") if h.strip()]


def preflight_headers(rules: Sequence[CorsRule], request_headers: Mapping[str, str]) -> dict[str, str]:
    """The answer to a preflight (OPTIONS with Origin and Access-Control-Request-Method): the
    allowing rule's headers, or 403 as S3 answers when no rule allows it (or the bucket has none)."""
    origin = request_headers.get("Origin", "")
    method = request_headers.get("Access-Control-Request-Method", "")
    if not origin or not method:
        raise S3Error("InvalidRequest", "a CORS preflight sends Origin and Access-Control-Request-Method")
    wanted = requested_headers(request_headers.get("Access-Control-Request-Headers", ""))
    rule = match(rules, origin, method, wanted)
    if rule is None:
        raise S3Error("AccessForbidden", "CORSResponse: this CORS request is not allowed: no rule of the bucket's "
                                         "CORS configuration allows its origin, method and headers")
    headers = answer_headers(rule, origin)
    if wanted:
        headers["Access-Control-Allow-Headers"] = ", ".join(wanted)
    return headers


# ----- the document ---------------------------------------------------------------------------

def _pattern(text: str, what: str) -> str:
    if not text or len(text) > MAX_PATTERN or text.count("*") > 1 or not text.isprintable():
        raise S3Error("InvalidArgument", f"{what} {text[:40]!r}: a non-empty printable pattern of at most "
                                         f"{MAX_PATTERN} characters with at most one *")
    return text


def _rule(element: ET.Element) -> CorsRule:
    found = xml.children(element, _RULE_FIELDS, "a CORSRule")
    texts = {name: [xml.text(e) or "" for e in found.get(name, [])] for name in _RULE_FIELDS}
    if not texts["AllowedOrigin"] or not texts["AllowedMethod"]:
        raise S3Error("MalformedXML", "a CORSRule names at least one AllowedOrigin and one AllowedMethod")
    for method in texts["AllowedMethod"]:
        if method not in METHODS:
            raise S3Error("InvalidRequest", f"Found unsupported HTTP method in CORS config: {method[:20]!r} "
                                            f"(use {', '.join(METHODS)})")
    max_age = xml.text(xml.one(found, "MaxAgeSeconds", "a CORSRule"))
    if max_age is not None and (not max_age.isdigit() or len(max_age) > 9):
        raise S3Error("InvalidArgument", f"MaxAgeSeconds is a whole number of seconds (got {max_age[:20]!r})")
    ident = xml.text(xml.one(found, "ID", "a CORSRule")) or ""
    if len(ident) > 255:
        raise S3Error("InvalidArgument", "a CORSRule's ID is at most 255 characters")
    return CorsRule(origins=tuple(_pattern(o, "AllowedOrigin") for o in texts["AllowedOrigin"]),
                    methods=tuple(dict.fromkeys(texts["AllowedMethod"])),
                    headers=tuple(_pattern(h, "AllowedHeader") for h in texts["AllowedHeader"]),
                    expose=tuple(_pattern(h, "ExposeHeader") for h in texts["ExposeHeader"]),
                    max_age=int(max_age) if max_age is not None else None, id=ident)


def rules_from_document(body: bytes) -> tuple[CorsRule, ...]:
    """A PutBucketCors body, parsed strictly (MalformedXML, InvalidArgument, InvalidRequest)."""
    root = xml.parse(body, "CORSConfiguration", MAX_DOCUMENT)
    rules = xml.children(root, {"CORSRule"}, "a CORSConfiguration").get("CORSRule", [])
    if not rules:
        raise S3Error("MalformedXML", "a CORSConfiguration holds at least one CORSRule")
    if len(rules) > MAX_RULES:
        raise S3Error("InvalidArgument", f"a CORSConfiguration holds at most {MAX_RULES} rules")
    return tuple(_rule(r) for r in rules)


def document(rules: Sequence[CorsRule]) -> ET.Element:
    root = xml.root("CORSConfiguration")
    for rule in rules:
        r = xml.sub(root, "CORSRule")
        if rule.id:
            xml.sub(r, "ID", rule.id)
        for tag, values in (("AllowedHeader", rule.headers), ("AllowedMethod", rule.methods),
                            ("AllowedOrigin", rule.origins), ("ExposeHeader", rule.expose)):
            for value in values:
                xml.sub(r, tag, value)
        if rule.max_age is not None:
            xml.sub(r, "MaxAgeSeconds", rule.max_age)
    return root


def encode(rules: Sequence[CorsRule]) -> str:
    """The rules as the bucket setting keeps them (JSON)."""
    return json.dumps([asdict(r) for r in rules], separators=(",", ":"))


def decode(text: str) -> tuple[CorsRule, ...]:
    """The rules of a bucket setting (none when it is empty)."""
    if not text:
        return ()
    return tuple(CorsRule(origins=tuple(r["origins"]), methods=tuple(r["methods"]), headers=tuple(r["headers"]),
                          expose=tuple(r["expose"]), max_age=r["max_age"], id=r["id"]) for r in json.loads(text))


class CorsCache:
    """Buckets' CORS rules as read a few seconds ago, for the headers of answers to browsers."""

    def __init__(self, ttl: float = CACHE_SECONDS, size: int = CACHE_BUCKETS) -> None:
        self._ttl, self._size = ttl, size
        self._rules: dict[str, tuple[float, tuple[CorsRule, ...]]] = {}

    async def rules(self, s: Services, bucket: str) -> tuple[CorsRule, ...]:
        now = time.monotonic()
        cached = self._rules.get(bucket)
        if cached is not None and cached[0] > now:
            return cached[1]
        rules = decode(await s.service.cors_rules(bucket))
        if len(self._rules) >= self._size:
            self._rules.clear()
        self._rules[bucket] = (now + self._ttl, rules)
        return rules


# ----- operations ----------------------------------------------------------------------------

async def get_cors(s: Services, call: Call) -> web.StreamResponse:
    rules = decode(await s.service.bucket_cors(call.caller, call.bucket))
    if not rules:
        raise S3Error("NoSuchCORSConfiguration", f"bucket {call.bucket!r} has no CORS configuration")
    return xml_response(document(rules))


async def put_cors(s: Services, call: Call) -> web.StreamResponse:
    rules = rules_from_document(await payload.small_body(call, MAX_DOCUMENT))
    await s.service.set_bucket_cors(call.caller, call.bucket, encode(rules), "PutBucketCors")
    return web.Response(status=200)


async def delete_cors(s: Services, call: Call) -> web.StreamResponse:
    await s.service.set_bucket_cors(call.caller, call.bucket, "", "DeleteBucketCors")
    return web.Response(status=204)
