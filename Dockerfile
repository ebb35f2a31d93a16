# syntax=docker/dockerfile:1
# xentinel image: `docker build -t xentinel .`; used by docker-compose.yml.

FROM rust:1-bookworm AS builder
WORKDIR /src
# Build the dependencies first, in their own layer, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
# Make cargo see the real sources as newer than the placeholder build.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# glibc and libgcc, no shell, runs as uid 65532. No libxenstat here: this image serves the demo
# and the webhook; on a real Xen host the exporter runs in dom0.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/xentinel /usr/local/bin/xentinel
USER nonroot:nonroot
# 10031-10034: exporter (the demo serves one per simulated host); 10027: migration webhook.
EXPOSE 10031-10034 10027
ENTRYPOINT ["xentinel"]
