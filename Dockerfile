# squeezeserve image: a build stage exports the model store (needs PyTorch), a slim runtime stage
# serves it (onnxruntime + tokenizers only: no torch, no transformers).
#
#   docker build -t squeezeserve .                                    # untrained demo models
#   docker build -t squeezeserve \
#     --build-arg MODEL=squeezebert/squeezebert-mnli \
#     --build-arg TASK=sequence-classification --build-arg NAME=mnli .  # export a real checkpoint
#   docker build -t squeezeserve --build-arg STORE_FROM_CONTEXT=image_store .   # copy a prebuilt store
#
# BuildKit (Docker's default builder) builds only the stages the image needs, so the
# STORE_FROM_CONTEXT build never installs PyTorch.
#
# No `# syntax=` line on purpose: it makes BuildKit pull a frontend image, which fails offline and
# behind registries that mirror only base images; the built-in frontend understands this file.

ARG PYTHON_IMAGE=python:3.11-slim
# Empty: export inside the build (demo store, or MODEL/TASK/NAME). Set: a directory of the build
# context holding a store made with `squeezeserve export` (model_store/ itself is in .dockerignore).
ARG STORE_FROM_CONTEXT=""

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# ---------------------------------------------------------------------------------------------
# Exporter: the project with the `export` extra on a CPU-only PyTorch.
FROM python-base AS exporter
ARG TORCH_VERSION=2.13.0
WORKDIR /src
RUN pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install "./[export]"
# MODEL: a Hugging Face hub id (fetched during the build). Unset: the demo store. For a local
# checkpoint, export it on the host and use STORE_FROM_CONTEXT instead.
ARG MODEL=""
ARG TASK=""
ARG NAME=""
ARG DEMO_SIZE=base
ARG PRECISION=int8
RUN if [ -n "${MODEL}" ]; then \
        squeezeserve export --model "${MODEL}" --task "${TASK}" ${NAME:+--name "${NAME}"} \
            --precision "${PRECISION}" --store /models --quiet; \
    else \
        squeezeserve export --demo --demo-size "${DEMO_SIZE}" --store /models --quiet; \
    fi \
    && squeezeserve validate --store /models

# The two ways to get a store; the ARG picks one below.
FROM python-base AS store-exported
COPY --from=exporter /models /models

FROM python-base AS store-exported-from-context
ARG STORE_FROM_CONTEXT
COPY ${STORE_FROM_CONTEXT} /models

# Names a stage of this file, not an image: hadolint cannot tell.
# hadolint ignore=DL3006
FROM store-exported${STORE_FROM_CONTEXT:+-from-context} AS model-store
# model.fp32.onnx is the export's reference graph (parity checks); the server loads model.onnx
# only, so drop it (2/3 of a base-size int8 entry). --build-arg KEEP_FP32_REFERENCE=1 keeps it.
ARG KEEP_FP32_REFERENCE=""
# The runtime user (uid 10001) must read every entry whoever made it and with whatever umask: a
# store copied from the build context keeps its host modes (0700/0600 under umask 077).
RUN if [ -z "${KEEP_FP32_REFERENCE}" ]; then find /models -name model.fp32.onnx -delete; fi \
    && chmod -R u=rwX,go=rX /models

# ---------------------------------------------------------------------------------------------
# Runtime: the server's install set only (no extras).
FROM python-base AS runtime
COPY pyproject.toml README.md /tmp/src/
COPY service /tmp/src/service
RUN pip install /tmp/src \
    && rm -rf /tmp/src \
    && useradd --system --no-log-init --uid 10001 --user-group --create-home \
        --shell /usr/sbin/nologin squeezeserve
COPY deploy/docker/healthcheck.py /usr/local/bin/squeezeserve-healthcheck
# Models are root-owned and read-only to the server. Mount another store over /models to serve
# it without rebuilding (docker run -v "$PWD/model_store:/models:ro" ...).
COPY --from=model-store /models /models

# SQZ_INTRA_OP_THREADS defaults to the container's CPU quota (docker --cpus / k8s limits.cpu);
# set it to override. Every SQZ_* setting of service/config.py can be passed with -e.
ENV SQZ_HOST=0.0.0.0 \
    SQZ_STORE_DIR=/models \
    SQZ_HTTP_PORT=8000 \
    SQZ_GRPC_PORT=50051

WORKDIR /home/squeezeserve
USER 10001:10001
EXPOSE 8000 50051
# /readyz is 200 only once every model is loaded and warm, and 503 again while draining.
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "/usr/local/bin/squeezeserve-healthcheck"]
# SIGTERM: not ready at once, SQZ_DRAIN_DELAY_S later the listeners close, in-flight requests get
# SQZ_SHUTDOWN_GRACE_S to finish, exit 0. Give `docker stop -t` more than those two together.
STOPSIGNAL SIGTERM
ENTRYPOINT ["squeezeserve", "serve"]
