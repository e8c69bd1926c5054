# syntax=docker/dockerfile:1
#
# cert-manager-csi-driver: the CSI node driver image run by the DaemonSet in
# config/. Build from the repository root: docker build -t IMAGE .
#
# Both stages use the current Node LTS on Debian slim. Build and runtime share
# one base so the node_modules built here run unchanged there.

FROM node:24-bookworm-slim AS build
WORKDIR /src
# Manifests first: the dependency layer stays cached while only sources change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY proto/ proto/
COPY src/ src/
COPY scripts/bundle.ts scripts/
# Type-check and compile, then bundle: the runtime stage needs only the
# bundle (no node_modules), about 9 MiB less resident per node.
RUN npm run build \
 && npm run bundle

FROM node:24-bookworm-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cert-manager-csi-driver" \
      org.opencontainers.image.description="CSI node driver that gives every Pod its own private key and certificate, signed through cert-manager" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/cert-manager-csi-driver/cert-manager-csi-driver" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/node:24-bookworm-slim"

# The driver mounts tmpfs on its data root and bind-mounts each volume into the
# pod through mount(8)/umount(8) from util-linux (Debian package `mount`).
# Versions are left to the base image's Debian release: pinning them would
# break the build at every Debian point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends mount \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV NODE_ENV=production
# The bundle (dist/bundle/main.js) reads ../../package.json (its version) and
# ../../proto/*.proto at run time.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/dist/bundle/ ./dist/bundle/
COPY proto/ ./proto/

# Root on purpose: mount(2) needs CAP_SYS_ADMIN in the host's mount namespace,
# and the DaemonSet runs this container privileged with Bidirectional mount
# propagation. A non-root user could not mount tmpfs or bind-mount volumes.
# hadolint ignore=DL3002
USER 0:0
ENTRYPOINT ["node", "/app/dist/bundle/main.js"]
