# One image for every component; the command is the `pioneer-telemetry` subcommand:
#   docker run IMAGE worker | collect ... | dashboard | topics create | simulate ... | parse ... | --version
# Used by deploy/docker-compose.yml and the Helm chart (deploy/helm/pioneer-telemetry).
#
# BASE_IMAGE is the official Python image for users. Where no registry is reachable (this project's CI),
# deploy/docker/local-docker.sh builds it on a Debian base made with debootstrap instead (python3 at
# /usr/bin): the Dockerfile calls `python3` and keeps the base's own layout, so both work.
# GIT_COMMIT names the source commit: `pioneer-telemetry --version` prints it (from the venv's build-commit).

ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the project and its dependencies ---------------------------------------
FROM ${BASE_IMAGE} AS build
ARG TARGETARCH
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# On linux/amd64 every dependency is a binary wheel, so no compiler is needed. Elsewhere (arm64) some
# (faust-streaming) come as source only: the compiler stays in this stage, never in the final image.
# hadolint ignore=DL3008
RUN if [ "${TARGETARCH:-amd64}" != "amd64" ]; then \
      apt-get update && apt-get install -y --no-install-recommends build-essential \
      && rm -rf /var/lib/apt/lists/*; \
    fi

RUN python3 -m venv /opt/pioneer-telemetry
WORKDIR /src

# Dependencies first (their own layer, rebuilt only when pyproject.toml changes), then the project.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
    && /opt/pioneer-telemetry/bin/pip install -r /tmp/requirements.txt

COPY README.md ./
COPY deploy/local/pom.xml deploy/local/log4j2.properties deploy/local/
COPY pioneer_base pioneer_base
COPY pioneer_telemetry pioneer_telemetry
COPY streams streams
COPY collector collector
COPY dashboard dashboard
COPY simulator simulator
# the installer leaves with the build: the final image runs the project, it installs nothing
ARG GIT_COMMIT=""
RUN /opt/pioneer-telemetry/bin/pip install --no-deps . \
    && printf '%s\n' "${GIT_COMMIT}" > /opt/pioneer-telemetry/build-commit \
    && /opt/pioneer-telemetry/bin/pioneer-telemetry --version \
    && /opt/pioneer-telemetry/bin/pip uninstall --yes pip

# --- final: the virtualenv on a clean base, a non-root user, no build tools ----------------------------
FROM ${BASE_IMAGE}
ARG GIT_COMMIT=""
LABEL org.opencontainers.image.title="pioneer-telemetry" \
      org.opencontainers.image.description="JupyterLab pioneer telemetry: pod logs -> Kafka -> Faust -> Streamlit" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.revision="${GIT_COMMIT}"

# uid/gid 10001: the Helm chart's securityContext and the compose file assume it. The directories are
# mount points: a named volume mounted there starts with this ownership (compose's pod-logs volume, where
# the demo simulator writes as this user).
RUN groupadd --system --gid 10001 pioneer \
    && useradd --system --uid 10001 --gid pioneer --home-dir /home/pioneer --create-home \
       --shell /usr/sbin/nologin pioneer \
    && mkdir -p /var/lib/pioneer-telemetry/worker /var/lib/pioneer-telemetry/collector /var/log/containers \
    && chown -R pioneer:pioneer /var/lib/pioneer-telemetry /var/log/containers

COPY --from=build /opt/pioneer-telemetry /opt/pioneer-telemetry

# State lives under /var/lib/pioneer-telemetry (a volume in compose, a PVC or hostPath in Kubernetes);
# nothing is written to the image at run time, so the root filesystem can be read-only.
ENV PATH=/opt/pioneer-telemetry/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIONEER_WORKER_DATA_DIR=/var/lib/pioneer-telemetry/worker \
    PIONEER_COLLECTOR_CHECKPOINT_FILE=/var/lib/pioneer-telemetry/collector/positions.json

USER 10001:10001
WORKDIR /home/pioneer
# worker API, dashboard, Fluent forward protocol, collector metrics
EXPOSE 6066 8501 24224 9464
ENTRYPOINT ["pioneer-telemetry"]
CMD ["--help"]
