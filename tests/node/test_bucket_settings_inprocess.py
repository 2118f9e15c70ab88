"""A bucket's settings (`node/data/bucket_settings.py`, the S3 door's bucket tags) over in-process
replicas: newest write wins whichever node writes or reads, the entry rests inside the bucket's
policy only, an index replica cut off during a change still reads the new value, and a setting
never makes a bucket "not empty"."""

from __future__ import annotations

from maillage.node.data.bucket_settings import SETTINGS, TAGS

from .conftest import FRENCH, run


def test_a_setting_is_read_back_everywhere_rests_in_policy_and_never_blocks_a_delete(mesh) -> None:
    async def scenario():
        await mesh.create_bucket("labelled", "france-only")
        paris, lyon = mesh.via("paris-1"), mesh.via("lyon-1")
        record = await paris.coordinator.head_bucket("labelled")
        assert await paris.service.settings.get(record, TAGS) == ""
        await paris.service.settings.put(record, TAGS, "team=radiology")
        await lyon.service.settings.put(record, TAGS, "team=care+home")      # the newest wins
        assert await paris.service.settings.get(record, TAGS) == "team=care+home"
        for node_id, node in mesh.nodes.items():                            # inside the policy only
            held = [m.key for m in node.local.meta.iter_manifests("labelled", record.generation)]
            assert node_id in FRENCH or not held, (node_id, held)
        assert any(SETTINGS + TAGS in [m.key for m in mesh.nodes[n].local.meta.iter_manifests(
            "labelled", record.generation)] for n in FRENCH)
        await paris.service.settings.put(record, TAGS, "")
        assert await lyon.service.settings.get(record, TAGS) == ""
        await paris.coordinator.delete_bucket(record)                       # a setting is not an object
    run(scenario())


def test_an_index_replica_cut_off_during_a_change_reads_the_new_value(mesh) -> None:
    from maillage.placement import bucket_partition

    async def scenario():
        await mesh.create_bucket("labelled", "france-only")
        table = mesh.via("paris-1").layout.table("france-only")
        cut_off = table.replicas(bucket_partition("labelled", table.bits))[0]
        other = next(n for n in sorted(FRENCH) if n != cut_off)
        record = await mesh.via(other).coordinator.head_bucket("labelled")
        await mesh.via(cut_off).service.settings.put(record, TAGS, "old=1")
        mesh.down(cut_off)
        await mesh.via(other).service.settings.put(record, TAGS, "new=2")
        mesh.up(cut_off)
        await mesh.gossip(3)
        assert await mesh.via(cut_off).service.settings.get(record, TAGS) == "new=2"
    run(scenario())
