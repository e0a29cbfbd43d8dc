# The mfrec SageMaker algorithm image: `docker run IMAGE train`, `docker run IMAGE serve`, or any
# other mfrec command (`docker run IMAGE validate /data`).
#
# CUDA: PyTorch's own CUDA 12.6 wheel (torch+cu126) on python:3.12-slim. The wheel brings the CUDA
# user-space libraries (cuBLAS, cuDNN, ...) as pip packages; the NVIDIA driver comes from the host.
# CUDA 12.6 runs on any driver >= 525 (CUDA minor-version compatibility), e.g. SageMaker's
# 535-driver AMIs. SageMaker batch transform GPU hosts default to driver 470 (CUDA 11.4): choose
# TransformResources.TransformAmiVersion="al2-ami-sagemaker-batch-gpu-535" (mfrec.sagemaker does
# this for GPU instance types); without it mfrec logs that CUDA cannot start and runs on the CPU.
# The same image runs on CPU instances. See docs/container.md.
#
# Builds for linux/amd64 whatever the host (SageMaker hosts are x86_64 for this image):
#   docker build --platform linux/amd64 -t mfrec .

ARG PYTHON_IMAGE=python:3.12-slim-trixie

# --- Stage 1: build the mfrec wheel from the sources (no dependencies) ---------------------------
# FROM --platform pins amd64 even for a plain `docker build` on an arm64 laptop (hadolint's DL3029
# discourages it for multi-platform images; this image is amd64-only on purpose).
# hadolint ignore=DL3029
FROM --platform=linux/amd64 ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY container/ container/
COPY train/ train/
COPY serve/ serve/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- Stage 2: the runtime image -----------------------------------------------------------------
# hadolint ignore=DL3029
FROM --platform=linux/amd64 ${PYTHON_IMAGE}

# torch must be installed before mfrec from PyTorch's CUDA 12.6 index: PyPI's default torch
# 2.13 build targets CUDA 13, which needs driver >= 580. The version is inside mfrec's range
# (torch>=2.3,<2.14). Why cu126 (checked 2026-12 in pytorch/pytorch): RELEASE.md's compatibility
# matrix lists CUDA 12.6 as a stable CUDA of 2.13 (with 13.0), and .ci/manywheel/build_cuda.sh
# builds the 12.6 wheels for sm_50;60;70;75;80;86;90: V100 (ml.p3, sm_70), T4 (ml.g4dn, sm_75),
# A100 (ml.p4d, sm_80), A10G (ml.g5, sm_86; its code also runs on L4/L40S, ml.g6/g6e, sm_89) and
# H100/H200 (ml.p5/p5e, sm_90). The CUDA 13 wheels start at sm_75 (no V100) and need driver 580.
# Blackwell (sm_100/120) needs the cu128+ wheels: build with --build-arg TORCH_INDEX_URL=...cu130.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126

LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      org.opencontainers.image.title="mfrec" \
      org.opencontainers.image.description="Implicit-feedback matrix factorisation recommender (SageMaker algorithm container)"

# The NVIDIA container runtime exposes GPUs and the driver's libraries only when these are set
# (NVIDIA's "Specialized Configurations with Docker", container toolkit docs: unset means "same
# as runc", no GPU); the CUDA base images set the same values. SageMaker also passes the GPUs of
# GPU instances; on CPU instances they are harmless.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

# Install the wheel (not loose files) with its dependencies from PyPI; the wheel is mounted from
# the builder stage for this step only, so no copy of it stays in the image. With the serving
# extras: SigV4 checks (auth, MFREC_AUTH_KEYS), the events store on Redis (redis,
# MFREC_EVENTS_DB=redis://...) and the approximate index for catalogues of 1M+ items (ann).
# (DL3013 asks for pinned versions: the package is the local wheel, its extras pinned by ranges.)
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    for wheel in /wheels/mfrec-*.whl; do \
        pip install --no-cache-dir "${wheel}[auth,redis,ann]"; \
    done

# SageMaker mounts /opt/ml at run time: nothing of the image lives there.
EXPOSE 8080
ENTRYPOINT ["mfrec"]
CMD ["--help"]
