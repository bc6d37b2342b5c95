#!/usr/bin/env bash
# Prints the path of a helm binary, building it from source once (no Debian package of helm exists)
# into $PIONEER_CACHE_DIR/bin. Used by deploy/validate.sh and the Kubernetes tests (tests/test_k8s.py).
# Needs Go >= 1.26 (Debian's golang-go is too old).
set -euo pipefail
HELM_VERSION=v3.22.0
# helm's default Kubernetes version is set at build time from its k8s.io/client-go (v0.37 in v3.22.0),
# as helm's own Makefile does; without it a `go install` build assumes Kubernetes 1.20.
HELM_K8S_MAJOR=1
HELM_K8S_MINOR=37
CACHE=${PIONEER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pioneer-telemetry}
HELM=$CACHE/bin/helm-$HELM_VERSION

if ! "$HELM" version --short >/dev/null 2>&1; then
  # Go's official install location, when it is not on PATH
  command -v go >/dev/null || { [[ -x /usr/local/go/bin/go ]] && PATH=$PATH:/usr/local/go/bin; }
  command -v go >/dev/null || {
    echo "building helm $HELM_VERSION needs Go >= 1.26: install Go or set HELM=/path/to/helm" >&2
    exit 1
  }
  mkdir -p "$CACHE/bin"
  tmp=$(mktemp -d "$CACHE/bin/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "building helm $HELM_VERSION from source into $CACHE/bin (once; a few minutes on 2 cores)" >&2
  # GOTOOLCHAIN=local: use this Go, never download another toolchain
  GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags "-s -w \
    -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$HELM_K8S_MAJOR \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$HELM_K8S_MAJOR \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  mv "$tmp/helm" "$HELM"
fi
echo "$HELM"
