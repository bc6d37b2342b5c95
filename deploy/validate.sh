#!/usr/bin/env bash
# Validates everything under deploy/ statically (tests/test_compose.py runs the image and compose for real):
#   Dockerfile   hadolint; the build context after .dockerignore builds the wheel the image installs;
#                every dependency resolves to a binary wheel for linux/amd64 (no compiler in the image)
#   compose      the Compose Specification JSON schema (check-jsonschema's vendored copy) + our rules
#   Helm chart   helm lint --strict and helm template for the default values, every ci/*-values.yaml
#                and every values block of docs/kubernetes.md and docs/nebari.md; each rendering passes
#                kubernetes-validate --strict for Kubernetes 1.37 (newest known) and 1.30 (the chart's
#                floor), our policy rules, and Strimzi resources a shape check; values the chart must
#                refuse are refused
# Tools: helm is built from source once into the cache (deploy/build-helm.sh);
# the Python tools go into their own virtualenv there (deploy/validate-requirements.txt).
# Usage: deploy/validate.sh [--out DIR]   (DIR keeps the rendered manifests; default: a temp dir)
# Environment: PIONEER_CACHE_DIR (default ~/.cache/pioneer-telemetry), HELM (a helm binary to use
# instead), PYTHON (the interpreter for the tools' virtualenv, default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSIONS=(1.37.0 1.30.0)
CHART=deploy/helm/pioneer-telemetry
CACHE=${PIONEER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pioneer-telemetry}

OUT=""
while (($#)); do
  case $1 in
    --out) OUT=$2; shift 2 ;;
    *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
  esac
done
WORK=$(mktemp -d)
CURRENT=""
# errexit stops at the first failing command, also inside the step functions (they are never run in a
# condition, where bash would ignore -e); this names the step that failed
trap 'rc=$?; rm -rf "$WORK"; if ((rc)) && [[ -n $CURRENT ]]; then echo "FAILED: $CURRENT" >&2; fi; exit $rc' EXIT
KEEP=${OUT:+kept in $OUT}
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT/helm" "$OUT/values"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
TIMINGS=()
step() {  # step NAME COMMAND...: run and time it; the first failure ends the script
  local start
  CURRENT=$1
  shift
  start=$(now)
  echo "--- $CURRENT"
  "$@"
  TIMINGS+=("$(printf '%7ss  %s' "$(since "$start")" "$CURRENT")")
  CURRENT=""
}
START=$(now)

# --- tools -------------------------------------------------------------------------------------------
if [[ -z ${HELM:-} ]]; then
  HELM=$(bash deploy/build-helm.sh)
fi
echo "helm: $HELM ($("$HELM" version --short))"

REQUIREMENTS=deploy/validate-requirements.txt
TOOLS=$CACHE/deploy-tools-$(sha256sum "$REQUIREMENTS" | cut -c1-12)
install_tools() {  # a virtualenv cannot be moved: built in place, marked complete at the end
  rm -rf "$TOOLS"
  "${PYTHON:-python3}" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
  touch "$TOOLS/.complete"
}
if ! [[ -e $TOOLS/.complete ]]; then
  step "install validation tools ($REQUIREMENTS)" install_tools
fi
PY=$TOOLS/bin/python
PIP="$PY -m pip"
CHECK="$PY deploy/validate.py"

# --- Dockerfile ----------------------------------------------------------------------------------------
step "Dockerfile: hadolint" "$TOOLS/bin/hadolint" Dockerfile

image_wheel() {
  mkdir -p "$WORK/context" "$WORK/wheel"
  $CHECK context . "$WORK/context"
  $PIP wheel -q --disable-pip-version-check --no-deps -w "$WORK/wheel" "$WORK/context"
  $CHECK wheel "$WORK"/wheel/*.whl
}
step "Dockerfile: the build context after .dockerignore builds the wheel" image_wheel

binary_wheels() {
  "$PY" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
    > "$WORK/requirements.txt"
  $PIP install -q --disable-pip-version-check --dry-run --ignore-installed --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform linux_x86_64 --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    --target "$WORK/target" --report "$WORK/report.json" -r "$WORK/requirements.txt"
  "$PY" -c "import json, sys; n = len(json.load(open(sys.argv[1]))['install']); print(f'{n} packages, all binary wheels')" \
    "$WORK/report.json"
}
step "Dockerfile: every dependency is a binary wheel for linux/amd64, CPython 3.11" binary_wheels

# --- compose -------------------------------------------------------------------------------------------
step "compose: Compose Specification schema" \
  "$TOOLS/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/docker-compose.yml \
  deploy/compose.external-kafka.yml
step "compose: services, dependencies, health checks, volumes" $CHECK compose deploy/docker-compose.yml
cp deploy/docker-compose.yml "$OUT/docker-compose.yml"

# --- Helm chart ----------------------------------------------------------------------------------------
step "docs: values blocks of docs/kubernetes.md and docs/nebari.md" \
  $CHECK docs-values "$OUT/values" docs/kubernetes.md docs/nebari.md
VARIANTS=(default)
declare -A VALUES=([default]="")
for file in "$CHART"/ci/*-values.yaml; do
  name=$(basename "$file" -values.yaml)
  VARIANTS+=("$name")
  VALUES[$name]=$file
done
for file in "$OUT"/values/*.yaml; do
  name=docs-$(basename "$file" .yaml)
  VARIANTS+=("$name")
  VALUES[$name]=$file
done

lint_all() {
  local name
  for name in "${VARIANTS[@]}"; do
    echo "helm lint: $name"
    "$HELM" lint --strict --quiet --kube-version "${KUBE_VERSIONS[0]}" "$CHART" ${VALUES[$name]:+-f "${VALUES[$name]}"}
  done
}
step "helm lint --strict (${#VARIANTS[@]} value sets)" lint_all

render_and_validate() {
  local name=$1 version=$2 base
  base="$OUT/helm/$name-k8s-$version"
  "$HELM" template pioneer-telemetry "$CHART" --namespace dev --kube-version "$version" \
    ${VALUES[$name]:+-f "${VALUES[$name]}"} > "$base.yaml"
  $CHECK split "$base.yaml" "$base.k8s.yaml" "$base.strimzi.yaml"
  "$TOOLS/bin/kubernetes-validate" --strict --quiet -k "$version" "$base.k8s.yaml" > "$base.validate.log" 2>&1 \
    || { cat "$base.validate.log"; return 1; }
  # a resource without a schema is only a warning there: here it fails
  if grep -E "^(WARN|ERROR)" "$base.validate.log"; then return 1; fi
  $CHECK policy "$base.yaml"
  $CHECK strimzi "$base.strimzi.yaml"
}
for name in "${VARIANTS[@]}"; do
  for version in "${KUBE_VERSIONS[@]}"; do
    step "helm template $name | kubernetes-validate --strict -k $version | policy | strimzi shape" \
      render_and_validate "$name" "$version"
  done
done

refuses() {  # refuses MESSAGE --set ...: the chart must fail to render, saying why
  local message=$1 err
  shift
  if err=$("$HELM" template pioneer-telemetry "$CHART" --kube-version "${KUBE_VERSIONS[0]}" "$@" 2>&1 >/dev/null); then
    echo "rendered although it must not: $*" >&2
    return 1
  fi
  grep -q -- "$message" <<< "$err" || { echo "refused, but not saying '$message': $err" >&2; return 1; }
  echo "refused: $* ($message)"
}
refusals() {
  refuses "needs kafka.external.sasl.username and sasl.existingSecret" --set kafka.external.sasl.existingSecret=
  refuses "more than topics.partitions" --set worker.replicas=9
  refuses "use topics.create=strimzi" --set kafka.mode=strimzi --set topics.create=job
  refuses "needs kafka.mode=strimzi" --set topics.create=strimzi
  refuses "more than the 1 Strimzi brokers" --set kafka.mode=strimzi --set kafka.strimzi.nodePool.replicas=1
  refuses "dashboard.ingress.host is required" --set dashboard.ingress.enabled=true
  refuses "additional properties 'replica' not allowed" --set worker.replica=2
  refuses "value must be one of" --set logShipping.mode=promtail
  refuses "needs dashboard.oidc.clientId, serverMetadataUrl and existingSecret" \
    --set dashboard.oidc.enabled=true --set dashboard.oidc.clientId=pioneer-telemetry
  refuses "or dashboard.ingress.host to derive it from" --set dashboard.oidc.enabled=true \
    --set dashboard.oidc.clientId=c --set dashboard.oidc.serverMetadataUrl=https://k --set dashboard.oidc.existingSecret=s
}
step "helm template refuses values that cannot work" refusals

echo
echo "timings:"
printf '%s\n' "${TIMINGS[@]}"
echo "deploy validation passed in $(since "$START") s (${#VARIANTS[@]} value sets x ${#KUBE_VERSIONS[@]} Kubernetes versions); rendered manifests ${KEEP:-deleted (keep them with --out DIR)}"
