#!/usr/bin/env bash
# Builds Jaeger v1.75.0's `jaeger` binary (Jaeger v2: an OpenTelemetry
# collector with Jaeger's storage and query) from the Go module proxy, for
# `npm run test:clients` (test/clients/tracing.test.ts). No Docker, no release
# download: a scratch module in a cache folder pins the version as a Go tool.
#
#   scripts/build-jaeger.sh          build unless the binary is there
#
# Output: ~/.cache/job-manager/jaeger-1.75.0/jaeger (JAEGER_BIN points the test elsewhere).
# Needs Go (1.24+). Takes several minutes and ~2 GB of module cache the first time.
set -euo pipefail

version=v1.75.0
cache="${XDG_CACHE_HOME:-$HOME/.cache}/job-manager"
binary="$cache/jaeger-${version#v}/jaeger"

if [ -x "$binary" ]; then
  echo "jaeger ${version} already built: $binary"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "go not found: cannot build jaeger; the Jaeger test will be skipped" >&2
  exit 1
fi

scratch="$cache/jaeger-build"
mkdir -p "$scratch" "$(dirname "$binary")"
cd "$scratch"
[ -f go.mod ] || go mod init jaegerbuild
go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@${version}"
go build -o "$binary.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
mv "$binary.tmp" "$binary"
echo "built $binary"
