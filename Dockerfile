# The Accord application image: one image, two roles (`accord worker`, `accord stream`).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1
WORKDIR /app
COPY . .
# Bytecode is compiled at build: the workflow sandbox re-imports workflow modules for every case.
RUN pip install --no-cache-dir -c constraints.txt . \
    && python -m compileall -q /app /usr/local/lib/python3.11/site-packages \
    && useradd --system --home /var/lib/accord accord \
    && mkdir -p /var/lib/accord && chown accord /var/lib/accord
USER accord
ENTRYPOINT []
CMD ["accord", "worker"]
