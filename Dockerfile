# syntax=docker/dockerfile:1
# ForgeFluid: one image, many roles. SERVICES picks what a container hosts (see docker-compose.yml, k8s/).
# Base image: the exact Node of .node-version on Debian bookworm slim, pinned by tag and by the digest of
# its multi-platform index (docker-library's published digest for that tag; see docs/deploy.md, "Images").
# Bump .node-version, the tag and the digest together.

# ---------- build: full dependencies, TypeScript -> dist/, then drop dev dependencies ----------
FROM node:24.21.0-bookworm-slim@sha256:0e0ff40c39bc087845bfb27465a0df4ea419520094bc35842ff83dd8cbe6f9b6 AS build
WORKDIR /app
ENV CI=true NPM_CONFIG_AUDIT=false NPM_CONFIG_FUND=false
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json moleculer.config.ts ./
COPY app ./app
COPY bin ./bin
COPY src ./src
COPY services ./services
COPY mixins ./mixins
COPY migrations ./migrations
COPY types ./types
COPY scripts ./scripts
# scripts/chain-dev.ts imports the dev chain helper, so tsc needs it to type-check the build.
COPY test/support ./test/support
RUN npm run build && test -f dist/bin/forgefluid.js && test -f dist/bin/healthcheck.js
# Contracts: no service loads compiled contracts at run time yet (src/chain is used by scripts and
# tests). When one does, compile here (node dist/src/chain/compile.js) and copy contracts/ below.
RUN npm prune --omit=dev && npm cache clean --force

# ---------- runtime: compiled code + production node_modules only, non-root ----------
FROM node:24.21.0-bookworm-slim@sha256:0e0ff40c39bc087845bfb27465a0df4ea419520094bc35842ff83dd8cbe6f9b6 AS runtime
WORKDIR /app
ENV NODE_ENV=production
# Code stays root-owned (read-only to the app user); only the data dir (embedded mode) is writable.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
# dist/ holds the compiled migrations too (dist/migrations/*.js, found by src/db/migrate.ts).
COPY --from=build /app/dist ./dist
RUN mkdir -p /app/.data && chown 1000:1000 /app/.data
# uid 1000 is the image's "node" user; numeric so Kubernetes can verify runAsNonRoot.
USER 1000:1000
# 3000: gateway (PORT: API, /health/*, /metrics); 3001: worker health (HEALTH_PORT);
# 3002: worker Prometheus metrics (METRICS_PORT).
EXPOSE 3000 3001 3002
# Follows the role: HEALTH_PORT when set (workers), otherwise PORT (gateway).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["node", "dist/bin/healthcheck.js"]
CMD ["node", "dist/bin/forgefluid.js"]
