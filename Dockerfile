# edgesmith on a CPU-only image. Build: docker build -t edgesmith .   Run: docker run --rm -v $PWD/runs:/app/runs edgesmith run
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The CPU wheel of torch first, so nothing below resolves a CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml constraints.txt README.md ./
COPY pipeline ./pipeline
COPY exporters ./exporters
COPY profiles ./profiles
COPY recipes ./recipes
RUN grep -v '^torch==' constraints.txt > /tmp/c.txt && pip install -c /tmp/c.txt ".[datasets]"
ENTRYPOINT ["edgesmith"]
CMD ["run"]
