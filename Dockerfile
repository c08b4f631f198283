# syntax=docker/dockerfile:1
# fly-replay-sidecar, built into one executable file (a Node single executable application: the
# Node binary with the bundled sidecar and its V8 flags inside), in a directory beside the licences
# of what it contains, that any app image can take with `COPY --from=`, even one without Node
# (PHP, Ruby, Python).
#
#   docker build --target sidecar -t fly-replay-sidecar .   # an image holding only the executable
#   docker build -t fly-replay-sidecar-demo .                # the demo app below (fly.toml deploys it)
#
# In your own app's Dockerfile (see docs/deploying.md for Laravel, Rails and Django):
#   COPY --from=fly-replay-sidecar /fly-replay-sidecar /opt/fly-replay-sidecar
# (/opt/fly-replay-sidecar/fly-replay-sidecar is the executable; THIRD_PARTY_LICENSES.txt is beside it)

# ── 1. build: npm ci + esbuild bundle + single executable ──────────────────────────────────────
# Debian (glibc) on purpose: the executable is this stage's Node binary, which runs in any glibc
# image with libstdc++ (every Debian/Ubuntu based php, ruby and python image). For Alpine app
# images, build this stage from node:24-alpine instead and `apk add libstdc++` in the app image.
FROM node:24-bookworm-slim AS build
# binutils for `strip`: the binary's symbols and debug info are about 18 MB nobody runs.
RUN apt-get update && apt-get install -y --no-install-recommends binutils && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY package.json package-lock.json ./
# --ignore-scripts: nothing here needs an install script (esbuild finds its platform binary in
# its optional dependency; postject is plain JavaScript; the `node` devDependency is not needed,
# this image has Node 24).
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
# The image's own Node (not node_modules/.bin/node) runs the script, so it is the binary the
# executable is made of. `--help` at the end proves the executable runs.
RUN /usr/local/bin/node scripts/bundle.ts --out /fly-replay-sidecar \
 && /fly-replay-sidecar/fly-replay-sidecar --help >/dev/null

# ── 2. sidecar: the executable and its licences, nothing else, for `COPY --from=` ─────────────
FROM scratch AS sidecar
COPY --from=build /fly-replay-sidecar /fly-replay-sidecar

# ── 3. demo: a Python app with no Node in its image, behind the sidecar ────────────────────────
# GET / answers at once on any Machine; POST /reports streams for a while and is replayed to a
# Machine of the `tasker` pool, which the sidecar creates on first use.
FROM python:3.13-slim-bookworm AS demo
WORKDIR /app
COPY --from=sidecar /fly-replay-sidecar /opt/fly-replay-sidecar

COPY <<'EOF' /app/app.py
import json, os, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

WHO = {'machine': os.environ.get('FLY_MACHINE_ID'), 'pool': os.environ.get('SIDECAR_POOL', 'app')}

class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_GET(self):
        body = json.dumps({**WHO, 'path': self.path}).encode() + b'\n'
        self.send_response(200)
        self.send_header('content-type', 'application/json')
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get('content-length') or 0))
        self.send_response(200)
        self.send_header('content-type', 'text/plain; charset=utf-8')
        self.send_header('transfer-encoding', 'chunked')
        self.end_headers()
        for i in range(10):
            line = f'{WHO["pool"]} {WHO["machine"]}: step {i + 1}/10\n'.encode()
            self.wfile.write(b'%x\r\n%s\r\n' % (len(line), line))
            self.wfile.flush()
            time.sleep(1)
        self.wfile.write(b'0\r\n\r\n')

ThreadingHTTPServer(('127.0.0.1', 8081), Handler).serve_forever()
EOF

COPY <<'EOF' /app/config/routes.yaml
app:
  url: http://127.0.0.1:8081
pools:
  tasker:
    size: 1
    autostop: stop
rules:
  - name: reports
    match:
      method: POST
      path: /reports
    to: tasker
EOF

EXPOSE 8080 9091
# The sidecar is PID 1: it starts the app in its own process group, drains on SIGTERM, stops the
# app and exits with its exit code. Exec form, so signals reach it.
ENTRYPOINT ["/opt/fly-replay-sidecar/fly-replay-sidecar", "--config", "/app/config/routes.yaml", "--"]
CMD ["python3", "-u", "/app/app.py"]
