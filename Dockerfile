# firegen worker image. CPU by default; the GPU worker builds with DEEPMD_EXTRAS="gpu,cu12,lmp".
FROM python:3.11-slim
ARG DEEPMD_EXTRAS="cpu,lmp"
RUN apt-get update && apt-get install -y --no-install-recommends cp2k openmpi-bin && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY campaign campaign
COPY orchestrator orchestrator
COPY workflows workflows
COPY launchers launchers
COPY db db
COPY configs configs
RUN pip install --no-cache-dir "deepmd-kit[${DEEPMD_EXTRAS}]" . \
    && chmod +x /app/launchers/docker_worker.sh
ENTRYPOINT []
