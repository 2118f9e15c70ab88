"""A node refuses what a newer release wrote, with words naming both versions: the data directory
(its FORMAT marker, checked before anything in it is opened), the metadata database, a manifest
record and a chunk frame (on disk and on the wire: the same codec)."""

from __future__ import annotations

import struct
import zlib

import pytest

from maillage.proto.frame import FRAME_VERSION, CorruptFrame, decode_frame, encode_frame, read_frame_header
from maillage.storage import (
    DATA_FORMAT,
    CorruptRecord,
    DataFormatError,
    Manifest,
    MetaStore,
    StorageError,
    check_data_format,
    decode_manifest,
    encode_manifest,
    read_data_format,
)
from maillage.storage.datadir import FORMAT_FILE


def test_first_start_writes_the_marker(tmp_path):
    data = tmp_path / "node"
    assert check_data_format(data) == DATA_FORMAT
    assert (data / FORMAT_FILE).read_text() == f"maillage data format {DATA_FORMAT}\n"
    assert read_data_format(data) == DATA_FORMAT
    assert check_data_format(data) == DATA_FORMAT  # and reads it on the next


def test_a_directory_from_before_the_marker_is_format_1(tmp_path):
    (tmp_path / "meta").mkdir()
    assert check_data_format(tmp_path) == 1
    assert read_data_format(tmp_path) == 1


def test_without_create_nothing_is_written(tmp_path):
    assert check_data_format(tmp_path, create=False) == DATA_FORMAT
    assert not (tmp_path / FORMAT_FILE).exists()


def test_a_newer_directory_is_refused_naming_both_formats(tmp_path):
    (tmp_path / FORMAT_FILE).write_text(f"maillage data format {DATA_FORMAT + 1}\n")
    with pytest.raises(DataFormatError) as caught:
        check_data_format(tmp_path)
    words = str(caught.value)
    assert f"format {DATA_FORMAT + 1}" in words and f"format {DATA_FORMAT}," in words and "newer release" in words
    assert read_data_format(tmp_path) == DATA_FORMAT + 1  # left as it was
    assert isinstance(caught.value, StorageError)


@pytest.mark.parametrize("content", [b"", b"format 2\n", b"maillage data format -1\n", b"x" * 100,
                                     b"maillage data format 1\nmore\n"])
def test_a_marker_that_is_not_one_is_refused(tmp_path, content):
    (tmp_path / FORMAT_FILE).write_bytes(content)
    with pytest.raises(DataFormatError, match="not a maillage data format marker"):
        check_data_format(tmp_path)


def test_a_newer_metadata_database_is_refused(tmp_path):
    MetaStore(tmp_path / "meta").close()
    from rocksdict import Options, Rdict

    db = Rdict(str(tmp_path / "meta"), options=Options(raw_mode=True))
    db[b"\x00format"] = bytes([9])
    db.close()
    with pytest.raises(StorageError, match=r"has format b'\\t'; this node reads formats 1, 2"):
        MetaStore(tmp_path / "meta")


def test_a_newer_manifest_record_is_refused():
    record = bytearray(encode_manifest(Manifest("b", "k", version=1, size=2, etag="e", inline=b"hi", writer="w")))
    record[0] = 99
    with pytest.raises(CorruptRecord, match="unsupported manifest format 99"):
        decode_manifest(bytes(record))


def test_a_newer_frame_is_refused():
    frame = bytearray(encode_frame(b"some bytes of a chunk"))
    frame[4] = FRAME_VERSION + 1
    prefix = struct.calcsize(">4sBBHQQ32s8s")
    frame[prefix:prefix + 4] = struct.pack(">I", zlib.crc32(bytes(frame[:prefix])))  # a well-made newer frame
    with pytest.raises(CorruptFrame, match=f"unsupported frame version {FRAME_VERSION + 1} "
                                           f"\\(this node reads version {FRAME_VERSION}\\)"):
        read_frame_header(bytes(frame))
    with pytest.raises(CorruptFrame):
        decode_frame(bytes(frame))
