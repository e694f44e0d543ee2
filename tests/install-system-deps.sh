#!/bin/sh
# System packages the test suite needs: Debian's Chromium for the browser tests and the
# Fashion-MNIST IDX files for the dataset tests. Installs only what is missing.
set -e
need=""
[ -x /usr/bin/chromium ] || need="$need chromium"
[ -d /usr/share/datasets/fashion-mnist ] || need="$need dataset-fashion-mnist"
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
echo "installing:$need"
$sudo apt-get update -qq
$sudo apt-get install -y -qq $need >/dev/null
