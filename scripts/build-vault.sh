#!/usr/bin/env bash
# Builds the pinned HashiCorp Vault that `npm run test:vault` runs, once per
# machine, into a cache folder outside the repository:
#
#   ${JOB_MANAGER_CACHE:-$HOME/.cache/job-manager}/vault-1.21.0/vault
#
# Exits at once when that binary exists. Otherwise it needs Go: in a scratch
# module next to the binary it runs `go get github.com/hashicorp/vault@v1.21.0`
# and `go build`, so the source comes from the Go module proxy (GOPROXY) and
# nowhere else; no release archive is downloaded. The first build takes about
# 10 minutes on 2 cores and makes a ~500 MB binary; later builds reuse Go's
# caches. v1.21.0, not a later 1.21.x: v1.21.4's go.mod asks for an
# unreleased version of its own `sdk` module, so it does not build this way.
# Prints the binary's path on its last line.
set -euo pipefail

version=1.21.0
cache="${JOB_MANAGER_CACHE:-$HOME/.cache/job-manager}"
binary="$cache/vault-$version/vault"

if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "Vault $version is not built ($binary is missing) and Go is not installed to build it" >&2
  exit 1
fi

echo "building Vault $version into $binary (the first time takes about 10 minutes)" >&2
scratch="$cache/vault-build"
mkdir -p "$scratch" "$(dirname "$binary")"
cd "$scratch"
[ -f go.mod ] || go mod init vaultbuild >/dev/null 2>&1
go get "github.com/hashicorp/vault@v$version"
# Built beside the target, then moved: an interrupted build never leaves a half-written binary at $binary.
go build -o "$binary.partial" github.com/hashicorp/vault
mv "$binary.partial" "$binary"
echo "$binary"
