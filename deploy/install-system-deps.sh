#!/usr/bin/env bash
# Installs the machine packages Homeward's embedded defaults need, when they are missing:
# PostgreSQL server binaries and Mosquitto, Node.js's npm (the web app's front-end
# packages, `npm ci`) and Chromium (the browser tests) (Debian/Ubuntu, as root). Idempotent.
set -euo pipefail

need=()
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
  need+=(postgresql postgresql-contrib)
fi
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  need+=(mosquitto)
fi
if ! command -v npm >/dev/null; then
  need+=(npm)
fi
if ! command -v chromium >/dev/null && [ ! -x /usr/bin/chromium ]; then
  need+=(chromium)
fi
if ! command -v setpriv >/dev/null; then
  need+=(util-linux)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "Homeward needs: ${need[*]}. Install them with your package manager," >&2
  echo "or set HOMEWARD_DATABASE_URL and HOMEWARD_MQTT_URL to existing services." >&2
  exit 1
fi
echo "installing ${need[*]} (Debian packages) ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Do not start the packaged services: Homeward runs its own private instances.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends "${need[@]}"
