# syntax=docker/dockerfile:1
# job-manager: Node 24 runs the TypeScript sources directly (type stripping),
# so there is no build step, only the production dependencies.
# The same image runs the webhook sink (command `node src/sink/main.ts`) and the
# pg-boss dashboard (`node src/tools/dashboard-cli.ts`, what `npm run dashboard` runs).

ARG NODE_IMAGE=node:24-slim

# --- stage 1: production dependencies only ---------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# devDependencies (incl. the npm package "node", tests, tooling) are left out;
# the image's own Node 24 runs the service.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# --- stage 2: runtime --------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# NODE_COMPILE_CACHE: Node's compile cache, filled below at build time, so a
# container's first start already runs without the TypeScript stripper (about
# 20 MB less resident) and starts faster. MALLOC_ARENA_MAX: the pod's glibc
# setting (src/lib/node-runtime.ts). See docs/production.md.
ENV NODE_ENV=production \
    PORT=8080 \
    NODE_COMPILE_CACHE=/app/.cache/node-compile-cache \
    MALLOC_ARENA_MAX=2
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json openapi.yaml ./
COPY db ./db
COPY src ./src
# Sources stay root-owned and read-only for the service; only .data (the
# embedded PostgreSQL, used when DATABASE_URL is unset) is writable.
RUN mkdir -p /app/.data && chown node:node /app/.data
# Load every module the service may load once (nothing starts), filling the
# compile cache for the image; the service may add entries (owned by it).
RUN node src/main.ts --warm-compile-cache && chown -R node:node /app/.cache
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/health-alive').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node is PID 1 (exec-form CMD, no npm or shell in between), so SIGTERM from
# `docker stop` reaches src/main.ts, which drains and exits. npm would stay
# as a parent process of about 50 MB for the pod's whole life.
# --max-semi-space-size=4: V8's young generation at 2 x 4 MB instead of up to
# 2 x 32 MB (the pod's flag, src/lib/node-runtime.ts; given here, src/main.ts
# need not relaunch to add it).
STOPSIGNAL SIGTERM
CMD ["node", "--max-semi-space-size=4", "src/main.ts"]
