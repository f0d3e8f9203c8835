# comfy-multi control plane. Build: docker build -t comfy-multi .
# Run:   docker run -d -p 8080:8080 -v comfy-multi-data:/data -e PUBLIC_URL=https://workshop.example.org comfy-multi
# (or compose.yaml). The image runs `comfy-multi serve` as an unprivileged user (uid 10001); every CLI
# command works the same way: docker compose exec control-plane comfy-multi users list
#
# Node 24 LTS on Debian 12. The tag follows Node 24's patch releases (security fixes); pin a digest
# (node:24-bookworm-slim@sha256:…) if you need bit-for-bit rebuilds.

# ---- build: full install (dev dependencies too), TypeScript and the dashboard compiled into dist/ ----
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY bin ./bin
COPY scripts ./scripts
COPY src ./src
COPY tsconfig.json tsconfig.build.json ./
# --ignore-scripts: npm would otherwise run node-gyp for better-sqlite3 (it ships a binding.gyp
# beside its prebuilt binaries), which needs Python and make that the slim image does not have.
# Nothing else needs an install script; the build runs explicitly.
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm run build \
 && test -f dist/cli/index.js && test -f src/admin/ui/dist/index.html

# ---- runtime: production dependencies only, no compiler (better-sqlite3 ships prebuilt binaries) ----
FROM node:24-bookworm-slim AS runtime
# tini as PID 1: forwards SIGTERM/SIGINT to node (which shuts down gracefully: finishes in-flight
# requests, closes the store) and reaps zombies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 comfy-multi \
 && useradd --system --uid 10001 --gid comfy-multi --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin comfy-multi \
 && mkdir -p /data && chown comfy-multi:comfy-multi /data && chmod 0700 /data
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force \
 && rm -rf /root/.npm /tmp/*
COPY bin ./bin
COPY --from=build /src/dist ./dist
COPY --from=build /src/src/admin/ui/dist ./src/admin/ui/dist
RUN ln -s /app/bin/comfy-multi.js /usr/local/bin/comfy-multi

ENV HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
USER 10001:10001
# Liveness: GET /health on the configured port (slim images have no curl; node does it). HTTPS when
# the server has TLS_CERT; loopback, so the certificate's name is not checked.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "const h=require(process.env.TLS_CERT?'https':'http');h.get({host:'127.0.0.1',port:process.env.PORT||8080,path:'/health',rejectUnauthorized:false,timeout:4000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).on('timeout',()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/bin/comfy-multi.js"]
CMD ["serve"]
