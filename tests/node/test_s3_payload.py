"""Request bodies of the S3 front door (node/s3/payload.py): aws-chunked decoding with chunk and trailer
signatures, trailing and header checksums, Content-MD5, and every way a hostile or broken body fails.

The signed streams are AWS's documented examples (sigv4-streaming and sigv4-streaming-trailers: 65536 +
1024 bytes of 'a' with the EXAMPLEKEY secret) and streams signed here by an independent signer (plain
hmac, not the node's code); the unsigned-trailer streams are made by botocore's own encoder
(`AwsChunkedWrapper`), as boto3 and aws-cli send them over HTTPS.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import zlib

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from maillage.node.s3 import payload
from maillage.node.s3.checksums import ALGORITHMS, Running
from maillage.node.s3.common import Call
from maillage.node.s3.errors import S3Error
from maillage.node.s3.sigv4 import (
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED,
    Verified,
    verify,
)
from maillage.proto.trust.access import AccessKey
from maillage.proto.trust.requestauth import signing_key
from maillage.testing.secret_keys import SecretKeys

botocore = pytest.importorskip("botocore")
from botocore import httpchecksum  # noqa: E402

AWS_KEY = AccessKey(key_id="AKIAIOSFODNN7EXAMPLE", secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                    tenant="demo", role="read-write")
AWS_TIME = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC)
TS, SCOPE = "20130524T000000Z", "20130524/us-east-1/s3/aws4_request"
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
SIGS = ("ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9")
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
TRAILER_SIGS = ("b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
                "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
                "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992")
TRAILER = b"x-amz-checksum-crc32c:sOO8/Q=="
TRAILER_SIG = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
A1, A2 = b"a" * 65536, b"a" * 1024


def aws_example_body(sigs=SIGS, trailer: bytes = b"", trailer_sig: str = "") -> bytes:
    body = (b"10000;chunk-signature=" + sigs[0].encode() + b"\r\n" + A1 + b"\r\n"
            + b"400;chunk-signature=" + sigs[1].encode() + b"\r\n" + A2 + b"\r\n"
            + b"0;chunk-signature=" + sigs[2].encode() + b"\r\n")
    if trailer:
        body += trailer + b"\r\nx-amz-trailer-signature:" + trailer_sig.encode() + b"\r\n"
    return body + b"\r\n"


def aws_example_auth(trailer: bool = False) -> Verified:
    mode = STREAMING_SIGNED_TRAILER if trailer else STREAMING_SIGNED
    signed = ("content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
              "x-amz-storage-class;x-amz-trailer" if trailer else
              "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
              "x-amz-storage-class")
    headers = {"host": "s3.amazonaws.com", "x-amz-date": TS, "x-amz-storage-class": "REDUCED_REDUNDANCY",
               "x-amz-content-sha256": mode, "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": "66560", "content-length": "66824",
               "authorization": f"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/{SCOPE},SignedHeaders={signed},"
                                f"Signature={TRAILER_SEED if trailer else SEED}"}
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32c"
    return verify("PUT", "/examplebucket/chunkObject.txt", "", {k: [v] for k, v in headers.items()},
                  SecretKeys(AWS_KEY), now=AWS_TIME)


# ----- an independent signer and a fake request ---------------------------------------------------

def _hmac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


KEY = signing_key(AWS_KEY.secret, "20130524", "us-east-1", "s3")
EMPTY = hashlib.sha256(b"").hexdigest()


def sign_stream(chunks: list[bytes], seed: str = "f" * 64, trailers: list[bytes] | None = None) -> bytes:
    """An aws-chunked body with chunk signatures (and a signed trailer when `trailers` is a list)."""
    out, previous = b"", seed
    for data in [*chunks, b""]:
        sig = _hmac(KEY, "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", TS, SCOPE, previous, EMPTY,
                                    hashlib.sha256(data).hexdigest())))
        out += f"{len(data):x};chunk-signature={sig}\r\n".encode() + data + (b"\r\n" if data else b"")
        previous = sig
    if trailers is not None:
        canonical = b"".join(t + b"\n" for t in trailers)
        sig = _hmac(KEY, "\n".join(("AWS4-HMAC-SHA256-TRAILER", TS, SCOPE, previous,
                                    hashlib.sha256(canonical).hexdigest())))
        out += b"".join(t + b"\r\n" for t in trailers) + b"x-amz-trailer-signature:" + sig.encode() + b"\r\n"
    return out + b"\r\n"


def auth_of(mode: str, seed: str = "f" * 64, payload_sha256: str | None = None) -> Verified:
    return Verified(AWS_KEY, payload_sha256, mode=mode, signature=seed, signing_key=KEY, scope=SCOPE, timestamp=TS)


class Content:
    """request.content: the body in pieces of `piece` bytes."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.piece = data, piece

    def iter_chunked(self, _n: int):
        async def pieces():
            for i in range(0, len(self.data), self.piece):
                yield self.data[i:i + self.piece]
        return pieces()


class FakeRequest(dict):
    """headers and content, and the request's own mapping (where `payload` notes what it read)."""

    def __init__(self, headers: CIMultiDictProxy, content: Content) -> None:
        super().__init__()
        self.headers, self.content = headers, content


def call_of(data: bytes, auth: Verified, headers: dict[str, str] | None = None, piece: int = 4096) -> Call:
    request = FakeRequest(CIMultiDictProxy(CIMultiDict(headers or {})), Content(data, piece))
    return Call(request=request, caller=None, bucket="b", key="k", auth=auth)  # type: ignore[arg-type]


def read(call: Call, got: list[bytes] | None = None, **kwargs) -> bytes:
    """The decoded body; `got` receives every piece yielded before an error."""
    got = [] if got is None else got

    async def run() -> bytes:
        async for piece in payload.body(call, **kwargs):
            got.append(piece)
        return b"".join(got)
    return asyncio.run(run())


def fails(call: Call, code: str, got: list[bytes] | None = None, **kwargs) -> S3Error:
    with pytest.raises(S3Error) as err:
        read(call, got, **kwargs)
    assert err.value.code == code, err.value.message
    return err.value


def chunked_headers(length: int, **extra: str) -> dict[str, str]:
    return {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(length), **extra}


# ----- signed chunks ----------------------------------------------------------------------------

@pytest.mark.parametrize("piece", [1, 7, 4096, 65536 + 90, 1 << 20])
def test_the_aws_documented_signed_stream_decodes_in_any_slicing(piece):
    assert read(call_of(aws_example_body(), aws_example_auth(), chunked_headers(66560), piece)) == A1 + A2


def test_the_aws_documented_signed_trailer_stream_decodes_and_its_crc32c_is_checked():
    body = aws_example_body(TRAILER_SIGS, TRAILER, TRAILER_SIG)
    headers = chunked_headers(66560, **{"x-amz-trailer": "x-amz-checksum-crc32c"})
    verified: dict[str, str] = {}
    got = read(call_of(body, aws_example_auth(trailer=True), headers), verified=verified)
    assert got == A1 + A2 and verified == {"crc32c": "sOO8/Q=="}
    # the checksum changed: the trailer's signature no longer matches
    fails(call_of(body.replace(b"sOO8/Q==", b"AAAAAA=="), aws_example_auth(trailer=True), headers),
          "SignatureDoesNotMatch")
    # the trailer signature changed, or missing
    fails(call_of(body.replace(TRAILER_SIG.encode(), TRAILER_SEED.encode()), aws_example_auth(trailer=True),
                  headers), "SignatureDoesNotMatch")
    fails(call_of(body.replace(b"x-amz-trailer-signature:" + TRAILER_SIG.encode() + b"\r\n", b""),
                  aws_example_auth(trailer=True), headers), "SignatureDoesNotMatch")


def test_a_bad_chunk_signature_fails_before_the_chunk_is_passed_on():
    headers = chunked_headers(66560)
    got: list[bytes] = []
    fails(call_of(aws_example_body((SIGS[0], "0" * 64, SIGS[2])), aws_example_auth(), headers), "SignatureDoesNotMatch",
          got)
    assert b"".join(got) == A1  # the first chunk, verified; nothing of the second
    got = []
    tampered = aws_example_body().replace(b"a\r\n400;", b"b\r\n400;")  # the first chunk's last byte
    fails(call_of(tampered, aws_example_auth(), headers), "SignatureDoesNotMatch", got)
    assert got == []
    for body in (aws_example_body((SIGS[1], SIGS[0], SIGS[2])),                       # reordered signatures
                 aws_example_body((SIGS[0], SIGS[1], SIGS[1])),                       # the final chunk's
                 aws_example_body().replace(b"400;chunk-signature=" + SIGS[1].encode(), b"400")):  # missing
        fails(call_of(body, aws_example_auth(), headers), "SignatureDoesNotMatch")
    # a signed stream from another seed (another request's signature)
    fails(call_of(sign_stream([A1, A2], seed=SIGS[0]), aws_example_auth(), headers), "SignatureDoesNotMatch")


def test_independently_signed_streams_decode():
    chunks = [bytes(range(256)) * 300, b"x" * 8192, b"tail"]
    data = b"".join(chunks)
    seed = "1" * 64
    assert read(call_of(sign_stream(chunks, seed), auth_of(STREAMING_SIGNED, seed), chunked_headers(len(data)),
                        piece=1000)) == data
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big"))
    body = sign_stream(chunks, seed, trailers=[b"x-amz-checksum-crc32:" + crc])
    headers = chunked_headers(len(data), **{"x-amz-trailer": "x-amz-checksum-crc32"})
    assert read(call_of(body, auth_of(STREAMING_SIGNED_TRAILER, seed), headers)) == data
    # correctly signed, but the checksum is not the data's: BadDigest
    body = sign_stream(chunks, seed, trailers=[b"x-amz-checksum-crc32:AAAAAA=="])
    fails(call_of(body, auth_of(STREAMING_SIGNED_TRAILER, seed), headers), "BadDigest")
    # an empty object
    assert read(call_of(sign_stream([], seed), auth_of(STREAMING_SIGNED, seed), chunked_headers(0))) == b""


def test_a_trailer_on_a_stream_signed_without_one_is_refused():
    body = aws_example_body()[:-2] + b"x-amz-checksum-crc32:NSRBwg==\r\n\r\n"
    fails(call_of(body, aws_example_auth(), chunked_headers(66560)), "InvalidRequest")


# ----- framing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cut", [0, 10, 90, 91, 65536, 65627, 66700, 66760])
def test_a_truncated_stream_is_incomplete(cut):
    body = aws_example_body()[:cut]
    fails(call_of(body, aws_example_auth(), chunked_headers(66560)), "IncompleteBody")


def test_the_final_blank_line_may_be_left_out():
    assert read(call_of(aws_example_body()[:-2], aws_example_auth(), chunked_headers(66560))) == A1 + A2


def test_oversized_header_lines_and_chunks_are_refused_without_buffering_them():
    headers = chunked_headers(66560)
    for body in (b"1" * 5000 + b"\r\n", b"4" * 2_000_000, b"10000;chunk-signature=" + b"a" * 5000):
        err = fails(call_of(body, aws_example_auth(), headers, piece=1 << 20), "InvalidRequest")
        assert "longer than" in err.message
    # a chunk larger than the bound is refused from its header, before its bytes are read
    big = b"2000000;chunk-signature=" + SIGS[0].encode() + b"\r\n"
    err = fails(call_of(big, aws_example_auth(), chunked_headers(1 << 26)), "InvalidRequest")
    assert "at most" in err.message
    fails(call_of(b"ffffffffffffffff\r\n", auth_of(STREAMING_UNSIGNED_TRAILER), chunked_headers(1)), "InvalidRequest")
    # no more trailer lines than the bound
    body = b"0\r\n" + b"x-amz-checksum-crc32:AAAAAA==\r\n" * 20 + b"\r\n"
    fails(call_of(body, auth_of(STREAMING_UNSIGNED_TRAILER), chunked_headers(0, **{
        "x-amz-trailer": "x-amz-checksum-crc32"})), "InvalidRequest")


@pytest.mark.parametrize("body", [
    b"zz;chunk-signature=" + SIGS[0].encode() + b"\r\n",           # not hex
    b"10000;chunk-signature=" + SIGS[0].upper().encode() + b"\r\n",  # upper-case signature
    b"10000;chunk-signature=" + SIGS[0].encode() + b"\r\n" + A1 + b"XX",  # data not followed by CRLF
    aws_example_body() + b"more",                                   # bytes after the end
], ids=["not-hex", "upper-signature", "no-crlf", "trailing-bytes"])
def test_malformed_framing_is_refused(body):
    with pytest.raises(S3Error) as err:
        read(call_of(body, aws_example_auth(), chunked_headers(66560)))
    assert err.value.code in ("InvalidRequest", "SignatureDoesNotMatch")


def test_the_decoded_length_must_be_x_amz_decoded_content_length():
    got: list[bytes] = []
    err = fails(call_of(aws_example_body(), aws_example_auth(), chunked_headers(66000)), "InvalidRequest", got)
    assert "more bytes" in err.message and b"".join(got) == A1  # refused before the chunk that overflows
    fails(call_of(aws_example_body(), aws_example_auth(), chunked_headers(66561)), "IncompleteBody")
    fails(call_of(aws_example_body(), aws_example_auth(), {"Content-Encoding": "aws-chunked"}), "MissingContentLength")
    fails(call_of(aws_example_body(), aws_example_auth(), chunked_headers(-1)), "InvalidArgument")
    fails(call_of(aws_example_body(), aws_example_auth(), {"x-amz-decoded-content-length": str(6 << 40)}),
          "EntityTooLarge")


# ----- unsigned chunks with a trailing checksum (boto3 and aws-cli over HTTPS) -------------------

BOTOCORE_CHECKSUMS = {"crc32": httpchecksum.Crc32Checksum, "sha1": httpchecksum.Sha1Checksum,
                      "sha256": httpchecksum.Sha256Checksum}
if hasattr(httpchecksum, "Sha512Checksum"):
    BOTOCORE_CHECKSUMS["sha512"] = httpchecksum.Sha512Checksum
for _name, _cls in (("crc32c", "CrtCrc32cChecksum"), ("crc64nvme", "CrtCrc64NvmeChecksum"),
                    ("xxhash64", "CrtXxhash64Checksum"), ("xxhash3", "CrtXxhash3Checksum"),
                    ("xxhash128", "CrtXxhash128Checksum")):
    if hasattr(httpchecksum, _cls):
        BOTOCORE_CHECKSUMS[_name] = getattr(httpchecksum, _cls)


def botocore_stream(data: bytes, algorithm: str, chunk_size: int = 64 * 1024) -> bytes:
    """What botocore sends: its own aws-chunked encoder with its own checksum of `data`."""
    import io
    wrapper = httpchecksum.AwsChunkedWrapper(io.BytesIO(data), checksum_cls=BOTOCORE_CHECKSUMS[algorithm],
                                             checksum_name=f"x-amz-checksum-{algorithm}", chunk_size=chunk_size)
    return wrapper.read()


DATA = bytes(range(251)) * 1000  # not a multiple of the chunk size


@pytest.mark.parametrize("algorithm", sorted(BOTOCORE_CHECKSUMS))
def test_botocore_unsigned_trailer_streams_decode_and_verify(algorithm):
    body = botocore_stream(DATA, algorithm)
    headers = chunked_headers(len(DATA), **{"x-amz-trailer": f"x-amz-checksum-{algorithm}"})
    verified: dict[str, str] = {}
    assert read(call_of(body, auth_of(STREAMING_UNSIGNED_TRAILER), headers, piece=3000), verified=verified) == DATA
    assert list(verified) == [algorithm]
    # the same trailer for other bytes: BadDigest, after every byte went by but before the stream ended
    other = botocore_stream(DATA[:-1] + b"\x00", algorithm)
    body = other[:other.index(b"0\r\nx-amz")] + body[body.index(b"0\r\nx-amz"):]
    fails(call_of(body, auth_of(STREAMING_UNSIGNED_TRAILER), headers), "BadDigest")


def test_unsigned_trailer_refusals():
    body = botocore_stream(DATA, "crc32")
    announced = chunked_headers(len(DATA), **{"x-amz-trailer": "x-amz-checksum-crc32"})
    auth = auth_of(STREAMING_UNSIGNED_TRAILER)
    # the announced trailer is missing
    bare = body[:body.index(b"0\r\nx-amz")] + b"0\r\n\r\n"
    err = fails(call_of(bare, auth, announced), "InvalidRequest")
    assert "missing" in err.message
    # a trailer that was not announced, or another one than announced
    fails(call_of(body, auth, chunked_headers(len(DATA))), "InvalidRequest")
    fails(call_of(body, auth, chunked_headers(len(DATA), **{"x-amz-trailer": "x-amz-checksum-sha256"})),
          "InvalidRequest")
    # a trailer value that is not a CRC32
    bad = body.replace(body[body.index(b"x-amz-checksum-crc32:"):-4], b"x-amz-checksum-crc32:bm90IGEgY3Jj")
    fails(call_of(bad, auth, announced), "InvalidRequest")
    # a chunk signature in an unsigned stream
    fails(call_of(aws_example_body(), auth, announced), "InvalidRequest")
    # x-amz-trailer naming something else than a checksum, or on a body that has no trailer
    fails(call_of(body, auth, chunked_headers(len(DATA), **{"x-amz-trailer": "x-amz-meta-a"})), "InvalidRequest")
    fails(call_of(DATA, auth_of(UNSIGNED), {"x-amz-trailer": "x-amz-checksum-crc32"}), "InvalidRequest")
    # the same checksum as a header and as a trailer
    fails(call_of(body, auth, {**announced, "x-amz-checksum-crc32": "AAAAAA=="}), "InvalidRequest")


# ----- plain bodies: checksum headers, Content-MD5, the signed SHA-256 -------------------------

def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("algorithm", sorted(BOTOCORE_CHECKSUMS))
def test_checksum_headers_are_verified(algorithm):
    checksum = BOTOCORE_CHECKSUMS[algorithm]()
    checksum.update(DATA)
    header = {f"x-amz-checksum-{algorithm}": checksum.b64digest()}
    assert read(call_of(DATA, auth_of(UNSIGNED), header)) == DATA
    wrong = b64(b"\x00" * ALGORITHMS[algorithm])
    fails(call_of(DATA, auth_of(UNSIGNED), {f"x-amz-checksum-{algorithm}": wrong}), "BadDigest")
    # a value that is no such checksum at all: BadDigest too, as S3 answers (ceph/s3-tests)
    fails(call_of(DATA, auth_of(UNSIGNED), {f"x-amz-checksum-{algorithm}": "not base64!"}), "BadDigest")


def test_known_check_values():
    """The algorithms' published check values of "123456789" (not computed with the same library)."""
    expected = {"crc32": 0xCBF43926, "crc32c": 0xE3069283, "crc64nvme": 0xAE8B14860A799888}
    for algorithm, value in expected.items():
        running = Running(algorithm)
        running.update(b"1234")
        running.update(b"56789")
        assert running.digest() == value.to_bytes(ALGORITHMS[algorithm], "big")


def test_checksum_header_refusals():
    fails(call_of(DATA, auth_of(UNSIGNED), {"x-amz-checksum-crc32": b64(zlib.crc32(DATA).to_bytes(4, "big")),
                                            "x-amz-checksum-sha1": b64(hashlib.sha1(DATA).digest())}),
          "InvalidRequest")
    fails(call_of(DATA, auth_of(UNSIGNED), {"x-amz-checksum-whirlpool": "AAAA"}), "NotImplemented")
    # options of other operations are not checksums of the body
    assert read(call_of(DATA, auth_of(UNSIGNED), {"x-amz-checksum-type": "FULL_OBJECT",
                                                  "x-amz-checksum-algorithm": "CRC32"})) == DATA
    # CompleteMultipartUpload's whole-object checksum is not its XML body's
    assert read(call_of(DATA, auth_of(UNSIGNED), {"x-amz-checksum-crc32": "AAAAAA=="}),
                checksum_headers=False) == DATA


def test_content_md5():
    good = b64(hashlib.md5(DATA).digest())
    assert read(call_of(DATA, auth_of(UNSIGNED), {"Content-MD5": good})) == DATA
    fails(call_of(DATA + b"!", auth_of(UNSIGNED), {"Content-MD5": good}), "BadDigest")
    for malformed in ("abc", "!!!!", b64(b"\x00" * 15), "A" * 200):
        fails(call_of(DATA, auth_of(UNSIGNED), {"Content-MD5": malformed}), "InvalidDigest")
    # with a trailing checksum too
    body = botocore_stream(DATA, "crc32")
    headers = chunked_headers(len(DATA), **{"x-amz-trailer": "x-amz-checksum-crc32", "Content-MD5": good})
    assert read(call_of(body, auth_of(STREAMING_UNSIGNED_TRAILER), headers)) == DATA


def test_a_signed_sha256_is_checked():
    good = hashlib.sha256(DATA).hexdigest()
    assert read(call_of(DATA, auth_of(good, payload_sha256=good))) == DATA
    fails(call_of(DATA[:-1], auth_of(good, payload_sha256=good)), "XAmzContentSHA256Mismatch")


def test_small_body_is_bounded():
    async def run(limit: int) -> bytes:
        return await payload.small_body(call_of(DATA, auth_of(UNSIGNED)), limit)
    assert asyncio.run(run(len(DATA))) == DATA
    with pytest.raises(S3Error) as err:
        asyncio.run(run(1000))
    assert err.value.code == "MaxMessageLengthExceeded"


def test_signed_chunks_held_whole_count_against_the_node_upload_budget():
    """A signed chunk is held whole until its signature is checked: its bytes are leased from the
    node's upload budget (shared with gRPC uploads), so many large chunks at once get SlowDown."""
    from maillage.node.runtime.budget import Overloaded, UploadBudget
    chunks = [b"a" * 20_000, b"b" * 20_000]
    data = b"".join(chunks)
    seed = "2" * 64
    roomy = UploadBudget(64 * 1024, wait=0.1)
    assert read(call_of(sign_stream(chunks, seed), auth_of(STREAMING_SIGNED, seed), chunked_headers(len(data))),
                budget=roomy) == data
    assert roomy.used == 0  # every lease given back

    full = UploadBudget(64 * 1024, wait=0.1)

    async def hold_all() -> None:
        await full.acquire(full.limit)
    asyncio.run(hold_all())
    with pytest.raises(Overloaded):
        read(call_of(sign_stream(chunks, seed), auth_of(STREAMING_SIGNED, seed), chunked_headers(len(data))),
             budget=full)


def test_the_md5_etag_is_of_every_piece_in_order_whatever_their_sizes():
    """PutObject and UploadPart hash MD5 on a thread of its own while the stream goes on: small
    pieces first inline, then every piece on the thread, in order."""
    from maillage.node.s3.objects import md5_stream
    sizes = [10, 3, 70_000, 5, 300_000, 1, 0, 65_536, 7]
    pieces = [bytes([i]) * n for i, n in enumerate(sizes)]

    async def run() -> tuple[list[bytes], str | None]:
        async def source():
            for p in pieces:
                yield p
        body = md5_stream(source())
        assert body.end.md5 is None  # known only once the stream has ended
        passed = [p async for p in body.pieces]
        return passed, body.end.md5
    passed, md5 = asyncio.run(run())
    assert passed == pieces
    assert md5 == hashlib.md5(b"".join(pieces)).hexdigest()
