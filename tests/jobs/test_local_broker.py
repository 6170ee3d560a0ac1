"""The local broker on durable storage (an S3-compatible store on loopback) survives a restart."""
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from jobs.kafka_io import TopicReader, produce
from jobs.local_broker import LocalBroker, LocalObjectStore

pytestmark = pytest.mark.integration


def test_durable_broker_keeps_records_and_committed_offsets_across_a_restart(tmp_path):
    with LocalObjectStore(tmp_path / "store") as store:
        broker = LocalBroker(storage=store.storage_url, env=store.client_env(), log_path=tmp_path / "broker.log")
        with broker:
            broker.create_topics(["durable"], partitions=2)
            ends = produce(broker.bootstrap_servers, "durable", [(f"k{i}", {"i": i}) for i in range(20)])
            committer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id="g",
                                      enable_auto_commit=False)
            committer.commit({TopicPartition("durable", p): OffsetAndMetadata(end, "", -1) for p, end in ends.items()})
            committer.close()
            port = broker.port

            broker.restart(down_s=1)

            assert broker.port == port
            reader = TopicReader(broker.bootstrap_servers, "durable")
            try:
                records = reader.read_until(lambda rs: len(rs) >= 20, timeout_s=30, settle_s=0.5)
            finally:
                reader.close()
            assert sorted(r["value"]["i"] for r in records) == list(range(20))
            check = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id="g", enable_auto_commit=False)
            try:
                assert {p: check.committed(TopicPartition("durable", p)) for p in ends} == ends
            finally:
                check.close(autocommit=False)
