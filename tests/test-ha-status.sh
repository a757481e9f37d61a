#!/usr/bin/env bash
# tessera status with standby MDSes (docs/high-availability.md): through
# an address list that names the standby first, --json status shows the
# leader a, b as the synchronous standby with lag 0 once the cluster is
# quiet after some changes, and three healthy etcd endpoints (one of them etcd's leader);
# once one etcd member is killed, that endpoint shows unhealthy and the
# others still healthy.  The human output has the two sections.
source ./functions.sh
set -e
set -x

requires_built
requires etcd --version
make_cluster_dir
start_etcd 3

# The leader's lease in etcd (start_ha_mds).
TTL=4

export TESSERA_KEY_FILE="$CLUSTER/cluster.key"
# The standby first: the CLI goes on to the leader.
export TESSERA_MDS="unix:$CLUSTER/mdsb.sock,unix:$CLUSTER/mdsa.sock"
start_ha_mds a --init --segment-size 64K
wait_log "$CLUSTER/mdsa.log" "leading at epoch"
start_ha_mds b
wait_log "$CLUSTER/mdsa.log" "b is the synchronous standby"
# Changes: two storage servers register, a volume is made.
for i in 1 2; do
    start_storesrv $i --mds "$TESSERA_MDS"
done
wait_servers_up 2
tessera volume create v1 --size 64M --replicas 2
# A quiet second: b has acknowledged everything.
sleep 1

# check_status PYTHON-ASSERTIONS [SECONDS]: poll --json status (at most
# SECONDS, default 10) until the assertions on S (the document) hold.
check_status ()
{
    local i
    for (( i = 0; i < ${2:-10} * 5; ++i )); do
        tessera --json status >"$CLUSTER/status.json"
        if $PYTHON - "$CLUSTER/status.json" "$1" "$ETCD_ENDPOINTS" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
try:
    exec(sys.argv[2])
except AssertionError as e:
    print("not yet:", e)
    sys.exit(1)
PYEOF
        then
            return 0
        fi
        sleep 0.2
    done
    cat "$CLUSTER/status.json"
    return 1
}

check_status '
assert s["ha"] is True
assert s["leader"] == "a", s["leader"]
assert s["epoch"] > 0
assert s["sync_standby"] == "b", s["sync_standby"]
sb = {x["name"]: x for x in s["standbys"]}
assert list(sb) == ["b"], sb
assert sb["b"]["sync"] is True
assert sb["b"]["lag"] == 0, sb["b"]
assert sb["b"]["acked"] == s["published"] > 2, sb["b"]
assert s["volumes"] == 1 and s["servers_up"] == 2
assert sb["b"]["last_seen_ms"] < 5000, sb["b"]
e = s["etcd"]
assert [x["url"] for x in e] == sys.argv[3].split(","), e
assert all(x["healthy"] for x in e), e
assert all(x["version"].startswith("3.") for x in e), e
assert sum(x["leader"] for x in e) == 1, e
' || exit 1
cat "$CLUSTER/status.json"

out="$(tessera status)"
echo "$out"
grep -q "^Metadata servers (epoch [0-9]*, change [0-9]*):" <<<"$out"
grep -Eq "^a +leader " <<<"$out"
grep -Eq "^b +standby \(sync\) +[0-9]+ +0 " <<<"$out"
grep -q "^etcd:" <<<"$out"
[ "$(grep -c "^http://127.0.0.1:[0-9]* *healthy" <<<"$out")" = 3 ]

# One etcd member dies: its endpoint is unhealthy, the others (still a
# quorum) healthy.
stop_pidfile "$CLUSTER/etcd3.pid" KILL
check_status '
e = s["etcd"]
assert len(e) == 3, e
assert [x["healthy"] for x in e] == [True, True, False], e
assert e[2]["version"] == "" and not e[2]["leader"], e
assert s["leader"] == "a"
'
cat "$CLUSTER/status.json"
out="$(tessera status)"
echo "$out"
grep -Eq "^http://127.0.0.1:[0-9]+ +unhealthy +- +-" <<<"$out"
