# keygate-control: the control service and CLI, as envoy/docker-compose.yaml builds it.
#   docker build -t keygate-control .
#   docker run -p 127.0.0.1:8081:8081 -e KEYGATE_ADMIN_TOKEN=… -e KEYGATE_SYNC_TOKEN=… \
#     -v keygate-data:/var/lib/keygate keygate-control
# The web console, built with its pinned npm packages and embedded by control/build.rs. Its
# build generates the API's types from control/openapi.json (console/openapi/, a workspace).
FROM node:20-bookworm-slim AS console
WORKDIR /src/console
COPY console/package.json console/package-lock.json ./
COPY console/openapi/package.json openapi/
RUN npm ci --no-audit --no-fund
COPY control/openapi.json /src/control/
COPY console/ ./
RUN npm run build -- --outDir /console-dist

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY --from=console /console-dist /console-dist
ENV KEYGATE_CONSOLE_DIST=/console-dist
# The whole workspace (see .dockerignore): cargo needs every member's manifest, and the control
# service depends on the filter crate (`keygate`) for the snapshot types.
COPY . .
RUN cargo build --release --locked -p keygate-control

FROM debian:bookworm-slim
# SQLite is compiled in (rusqlite "bundled") and the service speaks plain HTTP: no runtime libraries beyond glibc.
RUN useradd --system --uid 10001 --home-dir /var/lib/keygate --create-home keygate
COPY --from=build /src/target/release/keygate-control /usr/local/bin/keygate-control
USER keygate
WORKDIR /var/lib/keygate
ENV KEYGATE_LISTEN=0.0.0.0:8081
# The SQLite file is --db's default, keygate.db in the working directory: /var/lib/keygate/keygate.db,
# on the volume. Not set as KEYGATE_DB, which would conflict with KEYGATE_DATABASE_URL (PostgreSQL:
# envoy/docker-compose.postgres.yaml, envoy/istio/control-service.yaml).
VOLUME /var/lib/keygate
EXPOSE 8081
ENTRYPOINT ["keygate-control"]
CMD ["serve"]
