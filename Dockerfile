# syntax=docker/dockerfile:1
# xentinel image: `docker build -t xentinel .`; used by docker-compose.yml.
# tests/docker_build.rs replays this builder stage's COPY and RUN lines (with .dockerignore)
# without a container engine: keep the stage to COPY, WORKDIR and `&&`-chained RUN lines.

FROM rust:1-bookworm AS builder
WORKDIR /src
# Build the dependencies first, in their own layer, so source edits do not rebuild them. cargo
# refuses a manifest whose targets are missing, so the benches come along (Cargo.toml names
# benches/scrape.rs); the library and the binary are stubs.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
# The repository as it is, less what .dockerignore leaves out: src/ compiles in files from
# prometheus/ (the rules and routing the demo's stack uses).
COPY . .
# Make cargo see the real sources as newer than the placeholder build.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# busybox (static) only for docker-compose.yml's healthcheck (`/busybox wget`).
FROM busybox:1.36.1-musl AS busybox

# glibc and libgcc (and busybox for the healthcheck), runs as uid 65532. No libxenstat here: this image serves the demo
# and the webhook; on a real Xen host the exporter runs in dom0 (the Debian package).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/xentinel /usr/local/bin/xentinel
COPY --from=busybox /bin/busybox /busybox
USER nonroot:nonroot
# 10031-10034: exporter (the demo serves one per simulated host); 10027: migration webhook.
EXPOSE 10031-10034 10027
ENTRYPOINT ["xentinel"]
