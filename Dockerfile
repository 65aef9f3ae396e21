# The pantau binary and its shipped rules, for docker-compose.yml (pantau, the simulator
# and pantau-store all run this image with different commands).
FROM rust:1-bookworm AS build
# librdkafka links the system OpenSSL, Cyrus SASL (GSSAPI) and libcurl (OAUTHBEARER/OIDC).
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev libsasl2-dev libcurl4-openssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY tests tests
COPY schemas schemas
# The shipped rules and notification templates are built into the binary too
# (crates/engine/build.rs, crates/notify/src/message.rs).
COPY rules rules
COPY notify notify
RUN cargo build --release --locked --bin pantau

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates fonts-dejavu-core libssl3 libsasl2-2 libsasl2-modules-gssapi-mit libcurl4 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/pantau /usr/local/bin/pantau
COPY rules /etc/pantau/rules
# A folder a rule author can mount over; without it the binary runs its built-in rules.
ENV PANTAU_RULES=/etc/pantau/rules
# pantau notify --routes /etc/pantau/notify/routes.toml --templates /etc/pantau/notify/templates
COPY notify /etc/pantau/notify
ENTRYPOINT ["pantau"]
