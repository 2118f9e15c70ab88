"""The S3 front door: the S3 HTTP API served by a node on top of its own coordinator (no extra hop).

`server` (addressing, authentication, the error boundary), `routes` (which operation a request is),
`sigv4` (signatures), `payload` (request bodies and their checksums), `buckets`, `objects` and
`multipart` (the operations), `xml` and `errors` (the wire format), `door` (connections: caps and
deadlines). See ARCHITECTURE.md ("Front doors") and S3.md. Nothing is imported here, so that the
`maillage` command can read `door.DoorLimits` for its `--help` without loading the HTTP server.
"""
