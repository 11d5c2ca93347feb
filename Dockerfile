# Latch: passwordless login service.
#   docker build -t latch .
#   docker run --rm -v latch-data:/data latch python -m service keys generate   # once
#   docker run -p 8000:8000 -v latch-data:/data --stop-timeout 35 \
#     -e PUBLIC_URL=https://login.example.com -e SECRET_KEY=... -e SMTP_HOST=... \
#     -e MAIL_FROM="Example Login <login@example.com>" latch
# --stop-timeout: on SIGTERM Latch finishes requests in flight (up to 10 s), then drains its mail
# queue for up to SHUTDOWN_GRACE (20 s): longer than Docker's default 10 s before SIGKILL
# (compose: stop_grace_period: 35s).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric id, so orchestrators can check runAsNonRoot and volumes can be chowned to match.
RUN groupadd --system --gid 10001 latch \
    && useradd --system --uid 10001 --gid latch --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin latch

WORKDIR /app

# Installed as root into the system site-packages (non-editable); the running user cannot modify
# the code it runs.
COPY pyproject.toml ./
COPY service/ ./service/
# The source copy is removed after the install, so `python -m service` runs the installed package.
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info ./service ./pyproject.toml

# Read from the working directory (/app/email_templates) unless EMAIL_TEMPLATES_DIR says otherwise.
COPY email_templates/ ./email_templates/

# The only writable place: the SQLite database and the generated keys live here. The chown must
# come before VOLUME, which freezes the directory's contents and ownership in the image.
ENV DATA_DIR=/data
RUN mkdir -p /data && chown latch:latch /data && chmod 0700 /data
VOLUME ["/data"]

USER 10001:10001

EXPOSE 8000

# slim has no curl; urlopen raises (non-zero exit) on refused connections and non-2xx answers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

STOPSIGNAL SIGTERM

CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8000"]
