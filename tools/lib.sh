# Shared helpers for the project's commands (sourced, not run).
# Everything here is idempotent: each ensure_* does nothing when its thing is ready.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REDIS_VPS_VENV:-$REPO_ROOT/.venv}"
STATE_DIR="${REDIS_VPS_STATE:-/var/tmp/redis-vps}"   # images' root filesystems, VM disks, logs
# Debian 13 (trixie) is what a VPS ordered today runs; bookworm (12) is still supported.
SUITES=(trixie bookworm)
BASE_SUITE="${REDIS_VPS_SUITE:-trixie}"
base_image() { echo "redis-vps/debian:${1:-$BASE_SUITE}"; }
BASE_IMAGE="$(base_image)"
DEBIAN_MIRROR="http://deb.debian.org/debian"

# The time of day on each line: CI's log shows where its minutes go.
log() { printf '==> %s %s\n' "$(date -u +%T)" "$*" >&2; }

# Debian packages the tooling needs on the controller (not on the managed hosts).
ensure_apt_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Python venv with the pinned controller stack (requirements.txt), or with
# `ensure_venv newest`, the newest ansible-core's (requirements-newest.txt) on a Python
# 3.12+ from pyenv, in $VENV-newest. Either one is put first on PATH.
ensure_venv() {
  local venv="$VENV" requirements="$REPO_ROOT/requirements.txt" python=python3
  if [ "${1:-}" = newest ]; then
    venv="$VENV-newest" requirements="$REPO_ROOT/requirements-newest.txt" python="$(newest_python)"
  fi
  local stamp="$venv/.requirements.sha256" want
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "creating the Python venv in $venv ($("$python" --version))"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    mkdir -p "$STATE_DIR"
    "$venv/bin/pip" install -q -r "$requirements" >"$STATE_DIR/pip.log" 2>&1 \
      || { cat "$STATE_DIR/pip.log" >&2; return 1; }
    echo "$want" > "$stamp"
  fi
  export PATH="$venv/bin:$PATH"
  export ANSIBLE_CONFIG="$REPO_ROOT/ansible.cfg"
}

# A Python 3.12 or newer for the newest ansible-core (pyenv's, as on these machines).
newest_python() {
  local root candidate
  root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
  for candidate in $(ls -d "$root"/versions/3.12* "$root"/versions/3.13* 2>/dev/null) ; do
    [ -x "$candidate/bin/python" ] && { echo "$candidate/bin/python"; return 0; }
  done
  for candidate in python3.13 python3.12; do
    command -v "$candidate" >/dev/null && { command -v "$candidate"; return 0; }
  done
  log "no Python 3.12 or newer (pyenv or PATH): the newest ansible-core needs one"
  return 1
}

# A Docker engine from Debian's docker.io, started detached when nothing answers.
ensure_docker() {
  # Each systemd container takes a dozen inotify instances of root's 128 (the kernel's
  # default): two lanes of scenarios, a dozen containers, reach it, and the next
  # container's systemd then exits at start. This machine's own setting, not a VPS's.
  if [ "$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 1024)" -lt 1024 ]; then
    sysctl -qw fs.inotify.max_user_instances=1024 || log "could not raise fs.inotify.max_user_instances"
  fi
  docker info >/dev/null 2>&1 && return 0
  ensure_apt_packages docker.io
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    mkdir -p "$STATE_DIR"
    setsid dockerd >"$STATE_DIR/dockerd.log" 2>&1 < /dev/null &
    local i
    for i in $(seq 1 60); do
      docker info >/dev/null 2>&1 && return 0
      sleep 1
    done
    log "dockerd did not answer within 60 s; see $STATE_DIR/dockerd.log"
    return 1
  fi
}

# A root filesystem's apt sources: the suite, its updates and the security archive.
# (trixie's debootstrap also writes a deb822 file; one list is enough.)
write_apt_sources() {
  local suite="${2:-$BASE_SUITE}"
  rm -f "$1/etc/apt/sources.list.d/debian.sources"
  cat > "$1/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $suite main
deb $DEBIAN_MIRROR $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES
}

# SSH host keys are made at first boot, per machine, like on a new VPS.
host_keys_at_first_boot() {
  rm -f "$1"/etc/ssh/ssh_host_*
  cat > "$1/etc/systemd/system/ssh-hostkeys.service" <<UNIT
[Unit]
Description=Generate SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
[Install]
WantedBy=multi-user.target
UNIT
  ln -sf /etc/systemd/system/ssh-hostkeys.service "$1/etc/systemd/system/multi-user.target.wants/ssh-hostkeys.service"
}

# The lab's Debian base image of SUITE (default BASE_SUITE): debootstrap (minbase) +
# docker import. No project config inside. Built once per machine and suite.
ensure_base_image() {
  local suite="${1:-$BASE_SUITE}" image
  image="$(base_image "$suite")"
  ensure_docker
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  ensure_apt_packages debootstrap
  local rootfs="$STATE_DIR/rootfs-$suite"
  log "building $image with debootstrap (about a minute)"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,iproute2,ca-certificates,procps,openssh-server \
    "$suite" "$rootfs" "$DEBIAN_MIRROR" >"$STATE_DIR/debootstrap-$suite.log" 2>&1 \
    || { tail -20 "$STATE_DIR/debootstrap-$suite.log" >&2; return 1; }
  write_apt_sources "$rootfs" "$suite"
  # Like a fresh VPS image: no package lists yet, no cached .debs.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  # Units that cannot work in a container and only add noise to "systemctl is-system-running".
  local unit
  for unit in systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount \
              sys-kernel-tracing.mount systemd-remount-fs.service getty@tty1.service \
              console-getty.service systemd-firstboot.service; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  host_keys_at_first_boot "$rootfs"
  echo "redis-lab" > "$rootfs/etc/hostname"
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/sbin/init"]' -c 'ENV container=docker' - "$image" >/dev/null
  rm -rf "$rootfs"
}

# Every supported release's base image (the scenarios run on all of them).
ensure_base_images() {
  local suite
  for suite in "${SUITES[@]}"; do ensure_base_image "$suite"; done
}

# Options that give a faithful systemd "VPS" in a container on this platform (see docs/lab.md):
# every capability but SYS_RESOURCE, no seccomp/apparmor, host cgroup namespace, tmpfs /run.
LAB_DOCKER_OPTS=(
  --cap-add ALL --cap-drop SYS_RESOURCE
  --security-opt seccomp=unconfined --security-opt apparmor=unconfined
  --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw
  --tmpfs /run --tmpfs /run/lock
)

# Start (or keep) a systemd container NAME from the base image, and wait until systemd is up.
ensure_vps_container() {
  local name="$1"; shift
  ensure_base_image
  if [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" != "true" ]; then
    docker rm -f "$name" >/dev/null 2>&1 || true
    log "starting the systemd container $name"
    docker run -d --name "$name" --hostname "$name" "${LAB_DOCKER_OPTS[@]}" "$@" "$BASE_IMAGE" /sbin/init >/dev/null
  fi
  wait_for_systemd "$name"
}

# The controller's key for the lab VPSs (root login), made once.
LAB_KEY="$STATE_DIR/lab_ed25519"
ensure_lab_key() {
  [ -f "$LAB_KEY" ] && return 0
  mkdir -p "$STATE_DIR"
  ssh-keygen -q -t ed25519 -N '' -C redis-vps-lab -f "$LAB_KEY"
}

# Authorize the lab key for root in container NAME, as a VPS provider does at creation.
authorize_lab_key() {
  local name="$1"
  ensure_lab_key
  docker exec -i "$name" sh -c 'umask 077; mkdir -p /root/.ssh; cat > /root/.ssh/authorized_keys' < "$LAB_KEY.pub"
}

# Wait until sshd answers on 127.0.0.1:PORT.
wait_for_ssh() {
  local port="$1" i
  for i in $(seq 1 60); do
    ssh -i "$LAB_KEY" -p "$port" -o BatchMode=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=2 root@127.0.0.1 true 2>/dev/null && return 0
    sleep 0.5
  done
  log "no SSH on 127.0.0.1:$port"
  return 1
}

wait_for_systemd() {
  local name="$1" state i
  for i in $(seq 1 60); do
    state="$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)"
    case "$state" in running|degraded) return 0 ;; esac
    sleep 0.5
  done
  log "systemd in $name did not come up (state: $state)"
  return 1
}

# A 172.29.N /24 that no Docker network of this machine uses (for molecule/ha).
free_ha_net() {
  local used n
  used="$(docker network ls -q | xargs -r docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' 2>/dev/null)"
  for _ in $(seq 1 50); do
    n=$((RANDOM % 200 + 30))
    case " $used " in *" 172.29.$n.0/24 "*) ;; *) echo "172.29.$n"; return 0 ;; esac
  done
  echo "172.29.87"
}
