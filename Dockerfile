# The dtask demo binary (api, worker, serve). Built by docker-compose.yml.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p dtask-demo

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/dtask-demo /usr/local/bin/dtask-demo
ENTRYPOINT ["dtask-demo"]
