# The pantau binary and its shipped rules, for docker-compose.yml (pantau, the simulator
# and pantau-store all run this image with different commands).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY pipeline pipeline
COPY tests tests
COPY schemas schemas
RUN cargo build --release --locked --bin pantau

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates fonts-dejavu-core && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/pantau /usr/local/bin/pantau
COPY rules /etc/pantau/rules
# pantau notify --routes /etc/pantau/notify/routes.toml --templates /etc/pantau/notify/templates
COPY notify /etc/pantau/notify
ENTRYPOINT ["pantau"]
