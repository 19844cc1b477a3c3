# syntax=docker/dockerfile:1
# The Tidings image: api, chat and push (`tidings api|chat|push`, as the operator's pods
# run them) and the operator (`python -m tidings_operator`, as the chart runs it) all run
# from it.
#
#   docker build -t ghcr.io/tidings-dev/tidings:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Its layout is the contract the pods rely on, and e2e/image/build.sh (the daemonless
# build the tests import into containerd) makes the same one; change both together:
#   - a virtualenv in /opt/tidings with the project's wheel and its dependencies, its bin/
#     first on PATH (`tidings` and `python` are the venv's) and /usr/local/bin/tidings;
#   - the user tidings, uid and gid 10001 (the pods' runAsUser/runAsGroup), home
#     /nonexistent, working directory /var/lib/tidings (owned by 10001: `tidings up`
#     keeps its data there unless --data-dir says otherwise);
#   - nothing written at run time: the pods run with a read-only root filesystem and an
#     emptyDir on /tmp (PYTHONDONTWRITEBYTECODE; the .pyc files are compiled at install);
#   - ENTRYPOINT ["tidings"], CMD ["--help"]; the pods set their own command.
# The differences: here Python is python:3.11-slim-bookworm's (/usr/local/bin/python3) and
# pip resolves the dependencies at build time; build.sh uses Debian bookworm's python3
# (3.11, /usr/bin/python3) from a debootstrap rootfs and pins the dependencies to the
# versions of the project's .venv.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY workloads ./workloads
COPY operator ./operator
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/tidings \
    && /opt/tidings/bin/pip install /wheels/*.whl

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tidings" \
      org.opencontainers.image.description="Tidings chat: chat, api, push and the operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="python:3.11-slim-bookworm"
RUN groupadd --system --gid 10001 tidings \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin tidings \
    && install -d -m 0755 -o 10001 -g 10001 /var/lib/tidings
ENV PATH=/opt/tidings/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# The same path as in the build stage, so the venv's interpreter links stay valid.
COPY --from=build /opt/tidings /opt/tidings
RUN ln -s /opt/tidings/bin/tidings /usr/local/bin/tidings \
    && tidings version
USER 10001:10001
WORKDIR /var/lib/tidings
STOPSIGNAL SIGTERM
ENTRYPOINT ["tidings"]
CMD ["--help"]
