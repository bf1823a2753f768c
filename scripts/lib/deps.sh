# Installs what cdcr needs on a fresh Debian machine of this kind, only when missing. Source this file.
ensure_deps() {
  local missing=()
  pkg-config --exists rdkafka 2>/dev/null || missing+=(librdkafka-dev)
  pkg-config --exists libpq 2>/dev/null || missing+=(libpq-dev)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Debian's postgresql package starts a cluster on 5432; cdcr never uses it, tests run their own.
  command -v swift >/dev/null 2>&1 || { echo "swift not found on PATH (expected the Swift 6 toolchain at /opt/swift)" >&2; return 1; }
}
