"""engines/redis/connect.py: what each kind of `Realtime.redis_url` names."""

from __future__ import annotations

import pytest

from nyo_realtime_ext.config import Realtime
from nyo_realtime_ext.engines import make_engine
from nyo_realtime_ext.engines.redis import RedisEngine
from nyo_realtime_ext.engines.redis.connect import Target, parse


def test_a_plain_url_is_one_server_as_redis_py_reads_it():
    for url in ("redis://h:6379/0", "rediss://:pw@h:6380/2", "unix:///tmp/redis.sock"):
        assert parse(url) == Target("single", url)


def test_a_cluster_url_lists_its_nodes_and_credentials():
    target = parse("redis+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")
    assert target.mode == "cluster"
    assert target.hosts == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)]
    assert (target.username, target.password) == ("app", "s@cret")
    assert target.sharded
    assert not parse("redis+cluster://h:1?sharded=no").sharded


def test_a_sentinel_url_names_its_sentinels_service_and_database():
    target = parse("redis+sentinel://:pw@s1:26379,s2:26379/hub/3")
    assert target.mode == "sentinel"
    assert target.hosts == [("s1", 26379), ("s2", 26379)]
    assert (target.password, target.service, target.db) == ("pw", "hub", 3)
    assert parse("redis+sentinel://s1:26379").service == "mymaster"


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://",  # no host
        "redis+cluster://h",  # no port
        "redis+cluster://h:x",
        "redis+cluster://h:1/0",  # a cluster has database 0 only
        "redis+sentinel://,",
        "h:6379",  # no scheme
    ],
)
def test_a_url_that_names_no_server_is_refused_saying_why(url):
    with pytest.raises(ValueError):
        parse(url)


def test_every_mode_is_the_redis_engine():
    # Made without connecting: clients connect on first use.
    for url in (
        "redis://127.0.0.1:1/0",
        "redis+cluster://127.0.0.1:1",
        "redis+sentinel://127.0.0.1:1/s",
    ):
        engine = make_engine(Realtime(redis_url=url))
        assert isinstance(engine, RedisEngine)
        assert engine.redis.target.mode == parse(url).mode
