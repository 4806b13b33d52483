#!/usr/bin/env bash
# Builds the Compose deployment's two images with no image registry, from
# what is on this machine, FROM scratch:
#
#   edgetier-caddy:latest        the Caddy built here (default bin/caddy),
#                                Debian's busybox-static, deploy/*.Caddyfile,
#                                testdata/sample.mp4 (caddy.Dockerfile)
#   edgetier-prometheus:offline  Debian's prometheus (prometheus.Dockerfile)
#
# docker-compose.yml runs them unchanged: it names edgetier-caddy:latest
# itself (use `up --no-build`), and PROMETHEUS_IMAGE=edgetier-prometheus:offline
# replaces prom/prometheus. Dynamically linked binaries take their shared
# libraries along (ldd), so any Caddy build works.
#
# Usage: deploy/offline/build.sh [CADDY_BINARY]
# Environment: DOCKER (default docker; DOCKER_HOST chooses the engine),
# CADDY_IMAGE, PROMETHEUS_IMAGE (the tags), BUSYBOX, PROMETHEUS (binaries).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
caddy=${1:-$root/bin/caddy}
docker=${DOCKER:-docker}
caddy_image=${CADDY_IMAGE:-edgetier-caddy:latest}
prometheus_image=${PROMETHEUS_IMAGE:-edgetier-prometheus:offline}
busybox=${BUSYBOX:-$(command -v busybox || true)}
prometheus=${PROMETHEUS:-$(command -v prometheus || true)}

for bin in "$caddy" "$busybox" "$prometheus"; do
	[ -x "$bin" ] || {
		echo "build.sh: missing binary '$bin' (make build; apt-get install busybox-static prometheus)" >&2
		exit 1
	}
done
if ldd "$busybox" >/dev/null 2>&1; then
	echo "build.sh: $busybox is not static: apt-get install busybox-static" >&2
	exit 1
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/edgetier-images.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# install_binary SRC ROOTFS DEST: the binary and every shared library ldd
# lists for it (with the dynamic loader), at the same paths as here.
install_binary() {
	local src=$1 rootfs=$2 dest=$3 lib
	install -D -m 0755 "$src" "$rootfs$dest"
	if ldd "$src" >/dev/null 2>&1; then
		for lib in $(ldd "$src" | grep -oE '/[^ ]+'); do
			install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
		done
	fi
}

# base ROOTFS: what every image has besides its binaries.
base() {
	local rootfs=$1
	mkdir -p "$rootfs/etc" "$rootfs/tmp"
	chmod 1777 "$rootfs/tmp"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
	if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
		install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
	fi
	if [ -f /etc/mime.types ]; then
		install -m 0644 /etc/mime.types "$rootfs/etc/mime.types"
	fi
}

c=$stage/caddy/rootfs
base "$c"
install_binary "$caddy" "$c" /usr/bin/caddy
install -D -m 0755 "$busybox" "$c/bin/busybox"
for applet in $("$busybox" --list); do
	[ -e "$c/bin/$applet" ] || ln -s busybox "$c/bin/$applet"
done
install -D -m 0644 "$root/deploy/lb.Caddyfile" "$c/etc/caddy/lb.Caddyfile"
install -D -m 0644 "$root/deploy/edge.Caddyfile" "$c/etc/caddy/edge.Caddyfile"
install -D -m 0644 "$root/testdata/sample.mp4" "$c/srv/sample/sample.mp4"
mkdir -p "$c/data" "$c/config" "$c/srv/videos"
cp "$root/deploy/offline/caddy.Dockerfile" "$stage/caddy/Dockerfile"

p=$stage/prometheus/rootfs
base "$p"
install_binary "$prometheus" "$p" /bin/prometheus
install -D -m 0644 "$root/prometheus.yml" "$p/etc/prometheus/prometheus.yml"
if [ -d /usr/share/prometheus/web ]; then
	mkdir -p "$p/usr/share/prometheus"
	cp -r /usr/share/prometheus/web "$p/usr/share/prometheus/"
fi
mkdir -p "$p/prometheus"
cp "$root/deploy/offline/prometheus.Dockerfile" "$stage/prometheus/Dockerfile"

# The legacy builder: FROM scratch needs no registry and no BuildKit.
export DOCKER_BUILDKIT=0
"$docker" build --quiet --tag "$caddy_image" "$stage/caddy" >/dev/null
"$docker" build --quiet --tag "$prometheus_image" "$stage/prometheus" >/dev/null
echo "built $caddy_image and $prometheus_image"
