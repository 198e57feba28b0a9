#!/usr/bin/env bash
# Throwaway Debian "VM" for Molecule without Docker: a debootstrapped root filesystem booted
# with systemd as PID 1 by systemd-nspawn, in a network namespace of its own, reached over SSH.
# Recipe: /work/shared/reference/test-target.md (see docs/design.md, molecule/).
#
#   target.sh build SUITE          build (once) and cache <repo>/.cache/molecule-rootfs/SUITE.tar.gz
#   target.sh up NAME INDEX [SUITE] boot instance NAME at 10.213.INDEX.2 (host end .1)
#   target.sh down NAME INDEX      stop and remove it (safe after a failed or interrupted up)
#   target.sh ssh NAME INDEX [CMD]  SSH into a running instance
#   target.sh key                  print the path of the private key used for every instance
#
# Environment: DI2SIEM_CACHE (default <repo>/.cache), TARGET_BOOT_TIMEOUT (default 150 s),
# TARGET_MIRROR (default: the host's apt mirror), TARGET_REBUILD=1 (rebuild the cached rootfs).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${DI2SIEM_CACHE:-$REPO/.cache}"
ROOTFS_CACHE="$CACHE/molecule-rootfs"
INSTANCES="$CACHE/molecule-instances"
KEY="$ROOTFS_CACHE/id_ed25519"
BOOT_TIMEOUT="${TARGET_BOOT_TIMEOUT:-150}"
PACKAGES="python3,python3-apt,systemd,systemd-sysv,dbus,cron,sudo,procps,iproute2,openssh-server,ca-certificates,curl"

log() { printf '[target %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, netns, nspawn)"; }

check_name_index() {
  local name=$1 index=$2
  [[ $name =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || die "NAME must match [a-z0-9-]{1,31}: '$name'"
  [[ $index =~ ^[0-9]+$ ]] && ((index >= 1 && index <= 254)) || die "INDEX must be 1..254: '$index'"
}

# The host's own Debian/Ubuntu mirror (never hard-coded): first non-security URI of a deb line.
# TARGET_MIRROR overrides it.
host_mirror() {
  if [[ -n ${TARGET_MIRROR:-} ]]; then
    printf '%s\n' "${TARGET_MIRROR%/}"
    return
  fi
  local uri=""
  shopt -s nullglob
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    uri=$(awk '
      /^[[:space:]]*#/ {next}
      /^[[:space:]]*$/ { if (types ~ /(^| )deb( |$)/ && uris != "" && suites !~ /security/) { print uris; exit } types=""; uris=""; suites=""; next }
      tolower($1) == "types:" { $1=""; types=$0 }
      tolower($1) == "uris:" { uris=$2 }
      tolower($1) == "suites:" { $1=""; suites=$0 }
      END { if (types ~ /(^| )deb( |$)/ && uris != "" && suites !~ /security/) print uris }
    ' "$f" | head -n1)
    [[ -n $uri ]] && break
  done
  if [[ -z $uri ]]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -r $f ]] || continue
      uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { if ($(i+1) !~ /security/) { print $i; exit } else break } }' "$f" | head -n1)
      [[ -n $uri ]] && break
    done
  fi
  shopt -u nullglob
  [[ -n $uri ]] || die "no deb mirror found in the host's apt configuration"
  printf '%s\n' "${uri%/}"
}

ensure_key() {
  mkdir -p "$ROOTFS_CACHE"
  (
    flock 9
    [[ -s $KEY ]] || ssh-keygen -q -t ed25519 -N '' -C molecule-di2siem -f "$KEY"
  ) 9>"$ROOTFS_CACHE/.key.lock"
}

mounted_under() {  # prints mount points at or below $1
  local dir
  dir=$(readlink -f "$1")
  awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo
}

cmd_build() {
  local suite=${1:?usage: build SUITE}
  [[ $suite =~ ^[a-z]+$ ]] || die "bad suite '$suite'"
  need_root
  mkdir -p "$ROOTFS_CACHE/debs"
  local tarball="$ROOTFS_CACHE/$suite.tar.gz"
  (
    flock 9
    if [[ -s $tarball && -z ${TARGET_REBUILD:-} ]]; then
      log "rootfs cached: $tarball"
      exit 0
    fi
    build_locked "$suite" "$tarball"
  ) 9>"$ROOTFS_CACHE/.build-$suite.lock"
}

build_locked() {
  local suite=$1 tarball=$2
  local mirror dir start=$SECONDS
  mirror=$(host_mirror)
  dir=$(mktemp -d "$ROOTFS_CACHE/build-$suite.XXXXXX")
  # mktemp makes 0700; that would become the guest's / mode and dbus hangs the boot.
  chmod 755 "$dir"
  log "debootstrap $suite from $mirror (cold build takes about a minute)"
  if ! debootstrap --variant=minbase --cache-dir="$ROOTFS_CACHE/debs" --include="$PACKAGES" \
      "$suite" "$dir" "$mirror" >"$ROOTFS_CACHE/build-$suite.log" 2>&1; then
    tail -n 30 "$ROOTFS_CACHE/build-$suite.log" >&2
    [[ -z $(mounted_under "$dir") ]] && rm -rf --one-file-system "$dir"
    die "debootstrap failed (log: $ROOTFS_CACHE/build-$suite.log)"
  fi
  [[ -z $(mounted_under "$dir") ]] || die "something is still mounted under $dir; not packing"
  rm -f "$dir"/etc/ssh/ssh_host_*
  rm -rf "$dir"/var/cache/apt/archives/*.deb
  # Quieter, faster boots for a test machine.
  ln -sf /dev/null "$dir/etc/systemd/system/systemd-networkd-wait-online.service"
  ln -sf /dev/null "$dir/etc/systemd/system/getty@.service"
  tar --numeric-owner -C "$dir" -czf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf --one-file-system "$dir"
  log "built $tarball in $((SECONDS - start)) s"
}

instance_dir() { printf '%s/%s\n' "$INSTANCES" "$1"; }
host_veth() { printf 'mol%sh\n' "$1"; }

ssh_opts() {
  printf '%s\n' -i "$KEY" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=3
}

# PIDs of systemd-nspawn processes booting exactly this instance's root (leftovers included).
nspawn_pids() {
  local root=$1 p cmd
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    [[ $cmd == *systemd-nspawn* && $cmd == *" -D $root "* ]] && printf '%s\n' "${p#/proc/}"
  done
  return 0
}

cmd_down() {
  local name=${1:?usage: down NAME INDEX} index=${2:?usage: down NAME INDEX}
  check_name_index "$name" "$index"
  need_root
  local dir root pids p i veth=""
  dir=$(instance_dir "$name")
  root="$dir/rootfs"
  veth=$(host_veth "$index")
  pids=$( { [[ -s $dir/nspawn.pid ]] && cat "$dir/nspawn.pid"; nspawn_pids "$root"; } | sort -u)
  for p in $pids; do
    [[ -d /proc/$p ]] || continue
    grep -qa systemd-nspawn "/proc/$p/cmdline" 2>/dev/null || continue
    log "stopping nspawn pid $p ($name)"
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do [[ -d /proc/$p ]] || break; sleep 0.5; done
    if [[ -d /proc/$p ]]; then
      log "pid $p still alive after 15 s: SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
      for ((i = 0; i < 20; i++)); do [[ -d /proc/$p ]] || break; sleep 0.5; done
    fi
  done
  while iptables -t nat -C POSTROUTING -s "10.213.$index.0/30" ! -o "$veth" \
      -m comment --comment "mol-$name" -j MASQUERADE 2>/dev/null; do
    iptables -t nat -D POSTROUTING -s "10.213.$index.0/30" ! -o "$veth" \
      -m comment --comment "mol-$name" -j MASQUERADE
  done
  # Any other rule of ours for this name (e.g. created with another INDEX before).
  local rule args
  while rule=$(iptables -t nat -S POSTROUTING | grep -E -- "--comment \"?mol-$name\"? " | head -n1) \
      && [[ -n $rule ]]; do
    read -ra args <<<"${rule#-A }"
    iptables -t nat -D "${args[@]//\"/}"
  done
  if ip netns list | awk '{print $1}' | grep -qx "mol-$name"; then
    ip netns del "mol-$name"
  fi
  # Deleting the namespace removes the veth pair, asynchronously: tolerate that race.
  if ip link show "$veth" >/dev/null 2>&1; then
    ip link del "$veth" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do ip link show "$veth" >/dev/null 2>&1 || break; sleep 0.25; done
    ! ip link show "$veth" >/dev/null 2>&1 || die "cannot remove the host veth $veth"
  fi
  if [[ -d $dir ]]; then
    local m
    m=$(mounted_under "$dir")
    [[ -z $m ]] || die "refusing to remove $dir: still mounted: $m"
    rm -rf --one-file-system "$dir"
  fi
  log "down: $name"
}

cmd_up() {
  local name=${1:?usage: up NAME INDEX [SUITE]} index=${2:?usage: up NAME INDEX [SUITE]}
  local suite=${3:-bookworm}
  check_name_index "$name" "$index"
  need_root
  local start=$SECONDS dir root veth ns="mol-$name" host_ip="10.213.$index.1" guest_ip="10.213.$index.2"
  dir=$(instance_dir "$name")
  root="$dir/rootfs"
  veth=$(host_veth "$index")
  cmd_build "$suite"
  ensure_key
  # Leftovers of an interrupted run (process, rule, namespace, folder) go first.
  cmd_down "$name" "$index"
  if ip addr show | grep -q "inet $host_ip/"; then
    die "$host_ip is already in use on this host (another instance with INDEX $index?)"
  fi

  mkdir -p "$root"
  chmod 755 "$dir" "$root"
  tar --numeric-owner -C "$root" -xzf "$ROOTFS_CACHE/$suite.tar.gz"
  echo "$name" >"$root/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$name" >"$root/etc/hosts"
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || rm -f "$root/etc/resolv.conf"
  install -d -m 0700 "$root/root/.ssh"
  install -m 0600 "$KEY.pub" "$root/root/.ssh/authorized_keys"
  chroot "$root" ssh-keygen -A >/dev/null
  local crts=(/usr/local/share/ca-certificates/*.crt)
  if [[ -e ${crts[0]} ]]; then
    cp "${crts[@]}" "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1 || log "warning: update-ca-certificates failed in guest"
  fi

  ip netns add "$ns"
  ip link add "$veth" type veth peer name "mol${index}g"
  ip link set "mol${index}g" netns "$ns"
  ip addr add "$host_ip/30" dev "$veth"
  ip link set "$veth" up
  ip -n "$ns" link set "mol${index}g" name eth0
  ip -n "$ns" addr add "$guest_ip/30" dev eth0
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$host_ip"
  sysctl -qw net.ipv4.ip_forward=1
  iptables -t nat -A POSTROUTING -s "10.213.$index.0/30" ! -o "$veth" \
    -m comment --comment "$ns" -j MASQUERADE

  setsid systemd-nspawn --register=no --keep-unit -q -M "$name" -D "$root" -b \
    --network-namespace-path="/run/netns/$ns" --resolv-conf=off --console=passive \
    </dev/null >"$dir/console.log" 2>&1 &
  echo $! >"$dir/nspawn.pid"
  local pid
  pid=$(cat "$dir/nspawn.pid")

  local deadline=$((SECONDS + BOOT_TIMEOUT)) out="" rc=1
  mapfile -t opts < <(ssh_opts)
  while ((SECONDS < deadline)); do
    if [[ ! -d /proc/$pid ]]; then
      log "systemd-nspawn exited during boot; console.log:"
      tail -n 60 "$dir/console.log" >&2
      die "boot of $name failed"
    fi
    out=$(timeout 100 ssh "${opts[@]}" "root@$guest_ip" \
      'timeout 90 systemctl is-system-running --wait' 2>&1) && rc=0 || rc=$?
    if [[ $out == *running* || $out == *degraded* ]]; then
      break
    fi
    sleep 1
  done
  if [[ $out != *running* && $out != *degraded* ]]; then
    log "no SSH / systemd not up after ${BOOT_TIMEOUT} s (last: $out); console.log:"
    tail -n 60 "$dir/console.log" >&2
    die "boot of $name timed out"
  fi
  if [[ $out == *degraded* ]]; then
    log "guest is degraded; failed units:"
    ssh "${opts[@]}" "root@$guest_ip" 'systemctl --failed --no-legend' >&2 || true
  fi
  log "up: $name at $guest_ip (pid $pid, $((SECONDS - start)) s)"
}

cmd_ssh() {
  local name=${1:?usage: ssh NAME INDEX [CMD]} index=${2:?usage: ssh NAME INDEX [CMD]}
  shift 2
  check_name_index "$name" "$index"
  mapfile -t opts < <(ssh_opts)
  exec ssh "${opts[@]}" "root@10.213.$index.2" "$@"
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  ssh) shift; cmd_ssh "$@" ;;
  key) ensure_key; printf '%s\n' "$KEY" ;;
  *) echo "usage: $0 build SUITE | up NAME INDEX [SUITE] | down NAME INDEX | ssh NAME INDEX [CMD] | key" >&2; exit 2 ;;
esac
