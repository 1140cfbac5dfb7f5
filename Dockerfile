# The Accord application image: one image, two roles (`accord worker`, `accord stream`).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --system --home /var/lib/accord accord \
    && mkdir -p /var/lib/accord && chown accord /var/lib/accord
USER accord
ENTRYPOINT []
CMD ["accord", "worker"]
