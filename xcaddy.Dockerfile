# Caddy with the edgetier modules. The same image runs the load balancer
# and the edges, with different Caddyfiles.
FROM caddy:2.11-builder AS builder
WORKDIR /src
COPY . .
RUN xcaddy build v2.11.9 --with github.com/edgetier/edgetier=./

FROM caddy:2.11
COPY --from=builder /usr/bin/caddy /usr/bin/caddy
COPY deploy/lb.Caddyfile deploy/edge.Caddyfile /etc/caddy/
COPY testdata/sample.mp4 /srv/sample/sample.mp4
