"""The key two nodes share for their membership datagrams, from their certificates alone.

SWIM's probes travel as UDP datagrams (`maillage.node.rpc.datagrams`): a TLS connection per pair
of nodes cost ~3.3 ms of CPU to open and ~0.3 MB to keep, a 100-site mesh opened ~10,000 of them
while it started, and at 1,000 sites each probe of a peer (every ~1,000 s) would open a new one.
Two nodes instead derive one AES-GCM key by static ECDH between the keys of their node
certificates (P-256, the keys their TLS already uses): only the holders of the two private keys
can compute it, so a datagram that opens under it was sealed by the other node, and no one else
reads it. A peer's certificate (public, carried by a HELLO datagram) is admitted as a TLS handshake
admits it: issued by the cluster CA, valid now, a node certificate with the node usages naming the
node it claims, and carrying the key the layout pins for that node when the layout pins one.
"""

from __future__ import annotations

import datetime
from collections import OrderedDict

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from maillage.proto.trust.identity import TlsIdentity, key_fingerprint, peer_of_certificate

__all__ = ["PairKeys", "PairError"]

_SALT = b"maillage membership datagrams v1"
ADMITTED_CACHE = 4096   # certificates admitted, remembered: more than the nodes of a 1,000-site mesh


class PairError(Exception):
    """A peer certificate this node does not admit; the message says why (for the log, never sent)."""


class PairKeys:
    """This node's side of every pairwise key: its private key, its certificate, the cluster CA."""

    def __init__(self, identity: TlsIdentity) -> None:
        key = serialization.load_pem_private_key(identity.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PairError("the node key is not an elliptic-curve key")
        own = x509.load_pem_x509_certificate(identity.cert_pem)
        self._key = key
        self._ca = x509.load_pem_x509_certificate(identity.ca_pem)
        self.cert_der = own.public_bytes(serialization.Encoding.DER)
        self._own_fingerprint = key_fingerprint(own)
        # Admitting costs a signature check and an ECDH (~0.3 ms): done once per certificate.
        self._admitted: OrderedDict[tuple[bytes, str, str | None], AESGCM] = OrderedDict()

    def known(self, cert_der: bytes, node_id: str, pinned: str | None) -> AESGCM | None:
        """The key of a certificate admitted before (for that node and pin), without checking again."""
        entry = (cert_der, node_id, pinned)
        key = self._admitted.get(entry)
        if key is not None:
            self._admitted.move_to_end(entry)
        return key

    def admit(self, cert_der: bytes, node_id: str, pinned: str | None) -> AESGCM:
        """The key shared with `node_id`, whose certificate `cert_der` is; PairError if not admitted."""
        key = self.known(cert_der, node_id, pinned)
        if key is None:
            key = self._admitted[(cert_der, node_id, pinned)] = self._check(cert_der, node_id, pinned)
            if len(self._admitted) > ADMITTED_CACHE:
                self._admitted.popitem(last=False)
        return key

    def _check(self, cert_der: bytes, node_id: str, pinned: str | None) -> AESGCM:
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError:
            raise PairError("not a certificate") from None
        try:
            cert.verify_directly_issued_by(self._ca)
        except (ValueError, TypeError, InvalidSignature):
            raise PairError("not issued by the cluster CA") from None
        now = datetime.datetime.now(datetime.UTC)
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            raise PairError("not valid now")
        peer = peer_of_certificate(cert)
        if peer.role != "node" or peer.node_id != node_id:
            raise PairError(f"not a node certificate of {node_id!r} ({peer.problem or peer.role})")
        if pinned is not None and pinned != peer.key:
            raise PairError(f"its key {peer.key} is not the one the layout pins for {node_id!r}")
        public = cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, type(self._key.curve)):
            raise PairError("its key is not on this node's curve")
        shared = self._key.exchange(ec.ECDH(), public)
        ends = "|".join(sorted((self._own_fingerprint, str(peer.key))))
        secret = HKDF(hashes.SHA256(), 32, salt=_SALT, info=ends.encode()).derive(shared)
        return AESGCM(secret)
