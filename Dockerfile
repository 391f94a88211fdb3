# The fleet-controller image: the static binary and nothing else — no shell, no libc, no CA
# bundle (the hub's CA comes with the ServiceAccount token, each member's CA with its
# kubeconfig). `make docker-build` builds the binary into bin/image/ first: no builder stage,
# because a golang base image cannot be pulled where no registry is reachable, and FROM
# scratch needs no pull.
FROM scratch
ARG VERSION=unknown
LABEL org.opencontainers.image.title="fleet-controller" \
      org.opencontainers.image.description="Flotilla hub controller: member clusters, baselines, service mirrors" \
      org.opencontainers.image.source="https://github.com/flotilla-dev/flotilla" \
      org.opencontainers.image.version="${VERSION}"
COPY bin/image/fleet-controller /fleet-controller
# Numeric, so that the kubelet can check runAsNonRoot without an /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/fleet-controller"]
