"""The S3 door's LifecycleConfiguration (`node/s3/lifecycle.py`): what boto3 sends parses to the
service layer's model and renders back to the same; a Transition by Days to STANDARD_IA or GLACIER_IR
is served, other transitions are InvalidArgument or NotImplemented; hostile or
malformed documents are S3 errors, never a crash or a stored surprise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maillage.node.data.lifecycle import Filter, LifecycleConfig, Rule
from maillage.node.s3 import lifecycle, xml
from maillage.node.s3.errors import S3Error

NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def doc(*rules: str) -> bytes:
    inner = "".join(f"<Rule>{r}</Rule>" for r in rules)
    return f"<LifecycleConfiguration{NS}>{inner}</LifecycleConfiguration>".encode()


def test_documents_round_trip():
    body = doc(
        "<ID>logs</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>30</Days>"
        "</Expiration><NoncurrentVersionExpiration><NoncurrentDays>7</NoncurrentDays><NewerNoncurrentVersions>2"
        "</NewerNoncurrentVersions></NoncurrentVersionExpiration>",
        "<ID>big-scans</ID><Filter><And><Prefix>scans/</Prefix><Tag><Key>stage</Key><Value>raw</Value></Tag>"
        "<ObjectSizeGreaterThan>1048576</ObjectSizeGreaterThan></And></Filter><Status>Disabled</Status>"
        "<Expiration><Date>2030-01-01T00:00:00Z</Date></Expiration>",
        "<Prefix>tmp/</Prefix><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>3"
        "</DaysAfterInitiation></AbortIncompleteMultipartUpload><Expiration><ExpiredObjectDeleteMarker>true"
        "</ExpiredObjectDeleteMarker></Expiration>",
        "<ID>cold</ID><Filter><Prefix>scans/</Prefix></Filter><Status>Enabled</Status><Transition><Days>30</Days>"
        "<StorageClass>STANDARD_IA</StorageClass></Transition><Expiration><Days>3650</Days></Expiration>")
    config = lifecycle.config_from_document(body)
    assert config == LifecycleConfig((
        Rule(id="logs", filter=Filter(prefix="logs/"), expiration_days=30, noncurrent_days=7, newer_noncurrent=2),
        Rule(id="big-scans", enabled=False, filter=Filter(prefix="scans/", tags=(("stage", "raw"),),
                                                          size_greater_than=1048576),
             expiration_date_ms=1893456000000),
        Rule(id="rule-3", filter=Filter(prefix="tmp/"), abort_multipart_days=3, expired_object_delete_marker=True,
             rule_prefix=True),  # a rule without ID gets one
        Rule(id="cold", filter=Filter(prefix="scans/"), transition_days=30, transition_class="STANDARD_IA",
             expiration_days=3650)))
    assert lifecycle.config_from_document(xml.document(lifecycle.config_document(config))) == config
    assert LifecycleConfig.decode(config.encode()) == config
    assert LifecycleConfig.decode("not json") is None and LifecycleConfig.decode("") is None


@pytest.mark.parametrize("body, code", [
    (doc(), "InvalidArgument"),                                                          # no rule
    (doc("<Status>Enabled</Status>"), "InvalidArgument"),                                # no action
    (doc("<Status>On</Status><Expiration><Days>1</Days></Expiration>"), "MalformedXML"),
    (doc("<Status>Enabled</Status><Expiration><Days>0</Days></Expiration>"), "InvalidArgument"),
    (doc("<Status>Enabled</Status><Expiration><Days>-3</Days></Expiration>"), "InvalidArgument"),
    (doc("<Status>Enabled</Status><Expiration><Days>99999999999999</Days></Expiration>"), "InvalidArgument"),
    (doc("<Status>Enabled</Status><Expiration><Days>1</Days><Date>2030-01-01</Date></Expiration>"),
     "InvalidArgument"),
    (doc("<Status>Enabled</Status><Expiration><Date>soon</Date></Expiration>"), "InvalidArgument"),
    (doc("<Status>Enabled</Status><Expiration><Date>20200101</Date></Expiration>"), "InvalidArgument"),
    (doc("<Status>Enabled</Status><Expiration><Date>2030-01-01T12:00:00Z</Date></Expiration>"), "InvalidArgument"),
    (doc("<Status>Enabled</Status><Transition><Days>1</Days><StorageClass>GLACIER</StorageClass></Transition>"),
     "InvalidArgument"),   # S3 makes readers restore it first: not a class a cold copy serves
    (doc("<Status>Enabled</Status><Transition><Days>1</Days></Transition>"), "InvalidArgument"),
    (doc("<Status>Enabled</Status><Transition><Days>9</Days><StorageClass>STANDARD_IA</StorageClass></Transition>"
         "<Expiration><Days>9</Days></Expiration>"), "InvalidArgument"),
    (doc("<Status>Enabled</Status><Transition><Date>2030-01-01T00:00:00Z</Date><StorageClass>STANDARD_IA"
         "</StorageClass></Transition>"), "NotImplemented"),
    (doc("<Status>Enabled</Status><NoncurrentVersionTransition><NoncurrentDays>1</NoncurrentDays><StorageClass>"
         "STANDARD_IA</StorageClass></NoncurrentVersionTransition>"), "NotImplemented"),
    (doc("<Status>Enabled</Status><Filter><Prefix>a</Prefix><Prefix>b</Prefix></Filter>"
         "<Expiration><Days>1</Days></Expiration>"), "MalformedXML"),
    (doc("<Status>Enabled</Status><Filter><Prefix>a</Prefix><And><Prefix>b</Prefix></And></Filter>"
         "<Expiration><Days>1</Days></Expiration>"), "MalformedXML"),
    (doc("<Status>Enabled</Status><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>"
         "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
         "</AbortIncompleteMultipartUpload>"), "InvalidArgument"),  # tags do not filter uploads
    (doc("<ID>a</ID><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>",
         "<ID>a</ID><Status>Enabled</Status><Expiration><Days>2</Days></Expiration>"), "InvalidArgument"),
    (doc("<Status>Enabled</Status><Mystery/><Expiration><Days>1</Days></Expiration>"), "MalformedXML"),
    (doc(*["<Status>Enabled</Status><Expiration><Days>1</Days></Expiration>"] * 101), "InvalidArgument"),
    (b'<!DOCTYPE x [<!ENTITY e "boom">]><LifecycleConfiguration/>', "MalformedXML"),
    (b"x" * (lifecycle.MAX_DOCUMENT + 1), "MalformedXML"),
])
def test_bad_documents_are_refused_with_s3_codes(body, code):
    with pytest.raises(S3Error) as err:
        lifecycle.config_from_document(body)
    assert err.value.code == code


@given(st.binary(max_size=1500) | st.builds(
    lambda inner: doc(inner), st.text(alphabet="<>/RuleStatusEnabledExpirationDays0123-9FilterPrefixAndTagKey",
                                      max_size=300)))
def test_any_body_is_a_configuration_or_an_s3_error(body):
    try:
        lifecycle.config_from_document(body)
    except S3Error as err:
        assert err.status in (400, 501)


def test_conditions_directly_in_a_filter_are_taken_as_and():
    """S3 wants several conditions inside And; RGW, and clients written against it, put them in the
    Filter itself: the same rule."""
    direct = doc("<Status>Enabled</Status><Filter><Prefix>p/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag>"
                 "</Filter><Expiration><Days>1</Days></Expiration>")
    within = doc("<Status>Enabled</Status><Filter><And><Prefix>p/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag>"
                 "</And></Filter><Expiration><Days>1</Days></Expiration>")
    assert lifecycle.config_from_document(direct) == lifecycle.config_from_document(within)
    assert lifecycle.config_from_document(direct).rules[0].filter == Filter(prefix="p/", tags=(("k", "v"),))
