#!/bin/sh
# A Docker engine of the deployment tests' own: containerd and dockerd with
# their own data root, exec root, sockets and cgroup parent, never another
# daemon's. The test starts it as the first process of new network, mount
# and PID namespaces:
#
#   unshare --net --mount --pid --fork --mount-proc --propagation slave \
#       --kill-child -- sh sandbox.sh DATA RUN CGROUP
#
# so the engine's bridges, iptables rules, published ports (the Compose
# file's 80, 443 and 9090) and swarm ports are in a network namespace of
# its own, its mounts in a mount namespace of its own, and when this
# script ends, however it ends, the kernel ends every process it started
# (dockerd, containerd, shims, containers): nothing of the engine outlives
# it but files under DATA and RUN and empty cgroups, which the test
# removes. The namespace has no route out: image pulls fail at once.
#
# DATA  data roots (dockerd's images, volumes, swarm state; containerd's)
# RUN   a short directory for sockets and state (unix socket paths are
#       limited to 108 bytes); the engine's socket is RUN/docker.sock
# CGROUP the cgroup parent of the containers, e.g. /etd-1234
#
# SIGTERM stops dockerd (which stops its containers), then containerd.
set -eu
data=$1 run=$2 cgroup=$3
mkdir -p "$data" "$run"
ip link set lo up

cat >"$run/containerd.toml" <<EOF
version = 2
root = "$data/containerd"
state = "$run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$run/containerd.sock"
[ttrpc]
  address = "$run/containerd.sock.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$data/containerd-opt"
EOF
# An empty daemon.json of our own: nothing from /etc/docker applies.
echo '{}' >"$run/daemon.json"

containerd --config "$run/containerd.toml" >"$run/containerd.log" 2>&1 &
containerd_pid=$!
i=0
until [ -S "$run/containerd.sock" ]; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 $containerd_pid 2>/dev/null; then
		echo "containerd did not start:" >&2
		cat "$run/containerd.log" >&2
		exit 1
	fi
	sleep 0.1
done

dockerd --config-file "$run/daemon.json" --containerd "$run/containerd.sock" \
	--data-root "$data/docker" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
	-H "unix://$run/docker.sock" --cgroup-parent "$cgroup" --storage-driver overlay2 \
	--bridge none >"$run/dockerd.log" 2>&1 &
dockerd_pid=$!

stop() {
	kill -TERM $dockerd_pid 2>/dev/null || true
	wait $dockerd_pid 2>/dev/null || true
	kill -TERM $containerd_pid 2>/dev/null || true
	wait $containerd_pid 2>/dev/null || true
	exit 0
}
trap stop TERM INT
# Either daemon ending on its own ends the sandbox (and, with it, the other).
while kill -0 $dockerd_pid 2>/dev/null && kill -0 $containerd_pid 2>/dev/null; do
	sleep 1 &
	wait $! || true
done
echo "a daemon ended by itself; see $run/dockerd.log and $run/containerd.log" >&2
exit 1
