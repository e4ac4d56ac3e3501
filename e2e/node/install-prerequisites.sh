#!/usr/bin/env bash
# Installs what the node tier needs from Debian packages (e2e/node/, NODE.md): containerd (with its
# CRI plugin), runc, the CNI plugins (/usr/lib/cni), buildah (daemonless image builds), debootstrap
# (the local stand-in base image), iptables and conntrack (kube-proxy), and the registry server the
# image hand-over uses (docker-registry, bound to 127.0.0.1 only), and redis-server (the gateway
# tests share rate-limit counters through a real one, started on a free loopback port).
#
# Idempotent: packages already installed are left alone, and apt-get runs only when something is
# missing. Prints one line per package (present / installed) and exits non-zero with one clear
# line when it cannot (not root, no apt-get, a package that does not install).
#
# Usage: e2e/node/install-prerequisites.sh [--check]   (--check: report only, install nothing)
set -euo pipefail

packages=(containerd runc containernetworking-plugins buildah debootstrap iptables conntrack docker-registry redis-server)
# The command (or file) each package must provide afterwards.
declare -A provides=(
  [containerd]=containerd
  [runc]=runc
  [containernetworking-plugins]=/usr/lib/cni/bridge
  [buildah]=buildah
  [debootstrap]=debootstrap
  [iptables]=iptables
  [conntrack]=conntrack
  [docker-registry]=docker-registry
  [redis-server]=redis-server
)

say() { printf 'install-prerequisites: %s\n' "$*"; }
fail() { printf 'install-prerequisites: FAILED: %s\n' "$*" >&2; exit 1; }

check_only=false
[[ "${1:-}" == "--check" ]] && check_only=true

installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }
available() {
  local want="${provides[$1]}"
  if [[ "$want" == /* ]]; then [[ -e "$want" ]]; else command -v "$want" >/dev/null 2>&1 || [[ -x "/usr/sbin/$want" || -x "/usr/bin/$want" ]]; fi
}

missing=()
for p in "${packages[@]}"; do
  if installed "$p" && available "$p"; then
    say "present   $p $(dpkg-query -W -f='${Version}' "$p")"
  else
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  say "nothing to do"
  exit 0
fi
if $check_only; then
  fail "missing: ${missing[*]} (run e2e/node/install-prerequisites.sh as root to install them)"
fi
command -v apt-get >/dev/null 2>&1 || fail "no apt-get on this machine; install by hand: ${missing[*]}"
[[ $(id -u) -eq 0 ]] || fail "must run as root to install: ${missing[*]}"

export DEBIAN_FRONTEND=noninteractive
apt_install() {
  apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}
say "installing: ${missing[*]}"
log="$(mktemp -t sage-apt-XXXXXX.log)"
# A stale package list is the usual reason an install fails: refresh once, then retry.
if ! apt_install "${missing[@]}" >"$log" 2>&1; then
  say "apt-get install failed on the current package lists; running apt-get update and retrying"
  apt-get update -q >>"$log" 2>&1 || fail "apt-get update failed (see $log): $(tail -1 "$log")"
  apt_install "${missing[@]}" >>"$log" 2>&1 || fail "apt-get install ${missing[*]} failed (see $log): $(tail -1 "$log")"
fi

# The Debian docker-registry package starts a system service on 0.0.0.0:5000 where an init system
# runs; the node tier starts its own registry process on loopback, so stop the packaged one.
if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
# Same for containerd: the node tier runs containerd as a plain process with its own config.
if [[ " ${missing[*]} " == *" containerd "* ]] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi

status=0
for p in "${missing[@]}"; do
  if installed "$p" && available "$p"; then
    say "installed $p $(dpkg-query -W -f='${Version}' "$p")"
  else
    say "FAILED: $p did not install (or ${provides[$p]} is absent); see $log" >&2
    status=1
  fi
done
[[ $status -eq 0 ]] && rm -f "$log"
exit $status
