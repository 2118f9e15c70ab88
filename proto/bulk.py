"""Names and framing of the raw-bytes methods (see the header of maillage.proto).

They are registered without (de)serializers so a chunk crosses gRPC as the bytes it is, instead of
being copied into and out of a protobuf message.
"""

SERVICE = "maillage.v1.Bulk"
PUT_CHUNK = f"/{SERVICE}/PutChunk"
GET_CHUNK = f"/{SERVICE}/GetChunk"
PUT_OBJECT = f"/{SERVICE}/PutObject"

# Metadata keys carried next to the raw bytes.
BUCKET_KEY = "x-maillage-bucket"
POLICY_KEY = "x-maillage-policy"
ERROR_KEY = "x-maillage-error"

# First byte of every PutObject stream message.
TAG_HEADER = 0x01
TAG_DATA = 0x02
TAG_TRAILER = 0x03


def error_reason(err) -> str:
    """The typed error's name a node put under ERROR_KEY in a failed call's trailing metadata."""
    trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == ERROR_KEY:
            return value if isinstance(value, str) else value.decode()
    return ""
