# UDR in a container: `docker build -t udr . && docker run --rm udr` runs the tour on a temporary lake.
# Mount a directory to keep a lake: `docker run --rm -v "$PWD/lake:/lake" udr udr --lake /lake tables`.
FROM python:3.11-slim

WORKDIR /src
COPY pyproject.toml README.md LICENSE MANIFEST.in ./
COPY udr ./udr
RUN pip install --no-cache-dir . && rm -rf /src

WORKDIR /work
CMD ["udr", "demo"]
