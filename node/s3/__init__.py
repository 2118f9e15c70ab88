"""The S3 front door: the S3 HTTP API served by a node on top of its own coordinator (no extra hop).

`server` (addressing, authentication, the error boundary), `routes` (which operation a request is),
`sigv4` (signatures), `payload` (request bodies and their checksums), `buckets`, `objects` and
`multipart` (the operations), `xml` and `errors` (the wire format). See ARCHITECTURE.md, "S3 front door".
"""

from maillage.node.s3.common import Services
from maillage.node.s3.server import S3Server

__all__ = ["S3Server", "Services"]
