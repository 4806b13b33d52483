# The edgetier image built with no registry: the same layout as the image
# xcaddy.Dockerfile builds (Caddy at /usr/bin/caddy, deploy/*.Caddyfile in
# /etc/caddy, the sample video in /srv/sample, /data and /config for
# Caddy's state), but FROM scratch, from binaries already on this machine:
# the Caddy built here (make build), Debian's busybox-static (the one-shot
# `videos` service runs sh and cp), and the shared libraries they need.
# deploy/offline/build.sh assembles the context; users build
# xcaddy.Dockerfile, which needs Docker Hub and the Go module proxy.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/bin:/bin XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data
WORKDIR /srv
EXPOSE 80 443 443/udp
CMD ["caddy", "version"]
