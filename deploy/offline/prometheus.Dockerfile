# Prometheus built with no registry, FROM scratch: Debian's prometheus
# binary with the libraries it needs, laid out as prom/prometheus is
# (config in /etc/prometheus, data in /prometheus, the binary as the
# entry point), so docker-compose.yml's command runs unchanged.
# deploy/offline/build.sh assembles the context.
FROM scratch
COPY rootfs/ /
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
