"""The committed gRPC stubs must be what the .proto generates: a stale stub is a silent contract drift."""

from maillage.proto import generate


def test_generated_stubs_match_the_proto():
    assert generate.stale_outputs() == [], "run: python -m maillage.proto.generate"


def test_bulk_method_names_sit_in_the_versioned_package():
    from maillage.proto import bulk

    for name in (bulk.PUT_CHUNK, bulk.GET_CHUNK, bulk.PUT_OBJECT, bulk.PUT_SMALL_OBJECT):
        assert name.startswith("/maillage.v1.Bulk/")
    assert len({bulk.TAG_HEADER, bulk.TAG_DATA, bulk.TAG_TRAILER}) == 3
