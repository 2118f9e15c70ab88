"""CORS (`node/s3/cors.py`): the rules' matching and document, hostile documents, and through the
S3 door in-process: the configuration with boto3, a browser's preflight (no signature) and the
headers on an allowed request's answer."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.node.s3 import cors, xml
from maillage.node.s3.errors import S3Error
from maillage.testing.inmemory import InMemoryMesh

from .conftest import run
from .test_s3_inprocess import code, keys, serving

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402

RULES = (
    cors.CorsRule(origins=("https://*.example.org",), methods=("GET", "PUT"), headers=("x-amz-*", "content-type"),
                  expose=("ETag",), max_age=600, id="app"),
    cors.CorsRule(origins=("*",), methods=("GET",)),
)


def test_the_first_rule_allowing_origin_method_and_headers_answers():
    assert cors.match(RULES, "https://app.example.org", "PUT", ["X-Amz-Date", "Content-Type"]) is RULES[0]
    assert cors.match(RULES, "https://app.example.org", "PUT", ["Authorization"]) is None  # a header not allowed
    assert cors.match(RULES, "https://evil.example.com", "GET") is RULES[1]                # any origin may GET
    assert cors.match(RULES, "https://evil.example.com", "PUT") is None
    assert cors.match(RULES[:1], "https://example.org", "GET") is None   # "*." needs a subdomain
    answer = cors.answer_headers(RULES[0], "https://app.example.org")
    assert answer["Access-Control-Allow-Origin"] == "https://app.example.org"
    assert answer["Access-Control-Expose-Headers"] == "ETag" and answer["Access-Control-Max-Age"] == "600"
    assert cors.answer_headers(RULES[1], "https://x.test")["Access-Control-Allow-Origin"] == "*"


def test_the_document_round_trips_and_the_setting_too():
    parsed = cors.rules_from_document(xml.document(cors.document(RULES)))
    assert parsed == RULES
    assert cors.decode(cors.encode(RULES)) == RULES and cors.decode("") == ()


@pytest.mark.parametrize("inner, error", [
    ("", "MalformedXML"),
    ("<CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>", "MalformedXML"),
    ("<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod></CORSRule>", "InvalidRequest"),
    ("<CORSRule><AllowedOrigin>https://*.*.org</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>",
     "InvalidArgument"),
    ("<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
     "<MaxAgeSeconds>-1</MaxAgeSeconds></CORSRule>", "InvalidArgument"),
    ("<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod><Evil/></CORSRule>",
     "MalformedXML"),
    ("<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>" * 101,
     "InvalidArgument"),
])
def test_bad_documents_are_refused_with_s3_codes(inner, error):
    with pytest.raises(S3Error) as err:
        cors.rules_from_document(f"<CORSConfiguration>{inner}</CORSConfiguration>".encode())
    assert err.value.code == error


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(lambda t: f"<CORSConfiguration>{t}"
                                                                     "</CORSConfiguration>".encode()))
def test_any_body_is_rules_or_an_s3_error(body):
    try:
        rules = cors.rules_from_document(body)
    except S3Error:
        return
    assert cors.decode(cors.encode(rules)) == rules


def test_cors_through_the_door(mesh: InMemoryMesh) -> None:
    made = keys(mesh)

    async def scenario(client: Callable[..., Any]) -> None:
        s3 = client(made["hospital"])

        def call(name: str, **kwargs: Any) -> Any:
            return asyncio.to_thread(getattr(s3, name), **kwargs)

        endpoint = s3.meta.endpoint_url

        def browser(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
            """An unsigned request as a browser sends it: its status and answer headers."""
            request = urllib.request.Request(endpoint + path, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return answer.status, dict(answer.headers)
            except urllib.error.HTTPError as err:
                return err.code, dict(err.headers)

        await call("create_bucket", Bucket="site", CreateBucketConfiguration={"LocationConstraint": "france-only"})
        with pytest.raises(ClientError) as err:
            await call("get_bucket_cors", Bucket="site")
        assert code(err.value) == "NoSuchCORSConfiguration"
        preflight = {"Origin": "https://app.example.org", "Access-Control-Request-Method": "PUT",
                     "Access-Control-Request-Headers": "content-type"}
        status, _ = await asyncio.to_thread(browser, "OPTIONS", "/site/page.html", preflight)
        assert status == 403   # no rules: nothing allowed
        await call("put_bucket_cors", Bucket="site", CORSConfiguration={"CORSRules": [
            {"ID": "app", "AllowedOrigins": ["https://*.example.org"], "AllowedMethods": ["GET", "PUT"],
             "AllowedHeaders": ["content-type"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600}]})
        rules = (await call("get_bucket_cors", Bucket="site"))["CORSRules"]
        assert rules[0]["AllowedOrigins"] == ["https://*.example.org"] and rules[0]["MaxAgeSeconds"] == 600
        status, headers = await asyncio.to_thread(browser, "OPTIONS", "/site/page.html", preflight)
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://app.example.org"
        assert "PUT" in headers["Access-Control-Allow-Methods"] and headers["Access-Control-Max-Age"] == "600"
        status, _ = await asyncio.to_thread(browser, "OPTIONS", "/site/page.html",
                                            {**preflight, "Origin": "https://evil.example.com"})
        assert status == 403
        status, _ = await asyncio.to_thread(browser, "OPTIONS", "/nowhere/x", preflight)
        assert status == 404
        # A signed request from an allowed page gets the headers on its answer, others none.
        await call("put_object", Bucket="site", Key="page.html", Body=b"<p>hi</p>")
        for operation in ("GetObject", "HeadObject"):
            s3.meta.events.register(f"before-call.s3.{operation}",
                                    lambda params, **_: params["headers"].update({"Origin": "https://app.example.org"}))
        got = await call("get_object", Bucket="site", Key="page.html")
        assert got["ResponseMetadata"]["HTTPHeaders"]["access-control-allow-origin"] == "https://app.example.org"
        assert got["ResponseMetadata"]["HTTPHeaders"]["access-control-expose-headers"] == "ETag"
        head = await call("head_object", Bucket="site", Key="page.html")   # HEAD: a method no rule allows
        assert "access-control-allow-origin" not in head["ResponseMetadata"]["HTTPHeaders"]
        await call("delete_bucket_cors", Bucket="site")
        with pytest.raises(ClientError) as err:
            await call("get_bucket_cors", Bucket="site")
        assert code(err.value) == "NoSuchCORSConfiguration"
        # Only the owner's write keys change them.
        stranger = client(made["housing"])
        with pytest.raises(ClientError) as err:
            await asyncio.to_thread(stranger.put_bucket_cors, Bucket="site", CORSConfiguration={
                "CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]})
        assert code(err.value) == "AccessDenied"

    run(serving(mesh, "paris-1", scenario))
