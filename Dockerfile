# Multi-stage build: the Swift toolchain image builds a statically linked Swift stdlib binary;
# the runtime is Debian slim with only librdkafka and libpq.
FROM swift:6.0-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends librdkafka-dev libpq-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
RUN swift build -c release --product cdcr --static-swift-stdlib && cp "$(swift build -c release --show-bin-path)/cdcr" /cdcr

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends librdkafka1 libpq5 ca-certificates tzdata && rm -rf /var/lib/apt/lists/*
COPY --from=build /cdcr /usr/local/bin/cdcr
COPY config /etc/cdcr
USER nobody
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/cdcr"]
CMD ["run"]
