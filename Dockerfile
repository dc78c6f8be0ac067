# syntax=docker/dockerfile:1
# Build: docker build -t todo-api .
# Run:   docker run -p 7860:7860 -e DATABASE_URL=... -e BETTER_AUTH_SECRET=... todo-api

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them (with the patched crates that
# Cargo.toml's [patch.crates-io] names under vendor/).
COPY Cargo.toml Cargo.lock ./
COPY vendor vendor
RUN mkdir src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for b in list verify; do echo 'fn main() {}' > benches/$b.rs; done \
    && cargo build --release --locked \
    && rm -rf src benches
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /app/data && chown app /app/data
COPY --from=build /src/target/release/todo-api /usr/local/bin/todo-api
WORKDIR /app
USER app
# Hugging Face Spaces routes to 7860; any other host can set PORT. SIGTERM (docker stop)
# lets requests in flight finish within SHUTDOWN_GRACE_SECS (6) before the process exits.
ENV ROCKET_PROFILE=release PORT=7860
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["todo-api", "healthcheck"]
CMD ["todo-api"]
