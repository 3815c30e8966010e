#!/usr/bin/env bash
# A single-node Slurm cluster with accounting, for the Slurm tests and for trying the Slurm backend
# on a Debian/Ubuntu machine (run as root, or with sudo).
#
#   tests/slurm/local-cluster.sh [start]      install what is missing, start munge, MariaDB, slurmdbd,
#                                             slurmctld and slurmd; wait until the node is idle
#   tests/slurm/local-cluster.sh stop         stop the daemons this script started
#   tests/slurm/local-cluster.sh stop-daemon slurmctld|slurmd|slurmdbd    stop one (fault tests)
#   tests/slurm/local-cluster.sh status       which daemons run, and `sinfo`
#
# Idempotent: running `start` again starts only what is not running. State, spool, logs, pid files and
# the database live under $ATZOO_SLURM_STATE (default /tmp/atzoo-slurm). Clients (sbatch, squeue,
# sacct, submitit) find the configuration through /etc/slurm/slurm.conf, a link to the generated one;
# an existing /etc/slurm/slurm.conf that this script did not write is never replaced.
set -euo pipefail

STATE="${ATZOO_SLURM_STATE:-/tmp/atzoo-slurm}"
DB_PORT="${ATZOO_SLURM_DB_PORT:-3306}"
CLUSTER=atzoo
ACCOUNT=atzoo
MARK="# written by atzoo tests/slurm/local-cluster.sh"
CONF="$STATE/etc/slurm.conf"
SYSTEM_CONF=/etc/slurm/slurm.conf
export SLURM_CONF="$CONF"

say() { echo "local-cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurm-wlm)
  command -v slurmdbd >/dev/null || missing+=(slurmdbd)
  command -v munged >/dev/null || missing+=(munge)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  [ ${#missing[@]} -eq 0 ] && return
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get here; install them with your package manager"
  say "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null \
    || { as_root apt-get update >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null; }
}

running() {  # running PIDFILE: the process named in the pid file is alive
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what did not come up within ${seconds} s (logs: $STATE/log)"
}

write_configs() {
  local host cpus memory
  host=$(hostname -s)
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys OMP_NUM_THREADS otherwise
  memory=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 2048 ))
  [ "$memory" -lt 1024 ] && memory=1024
  mkdir -p "$STATE"/{etc,state,spool,log,run,mysql-data}
  cat >"$CONF" <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
MpiDefault=none
SchedulerType=sched/backfill
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  cat >"$STATE/etc/slurmdbd.conf" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=atzoo-local
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$STATE/etc/slurmdbd.conf"
  as_root mkdir -p /etc/slurm
  if [ -e "$SYSTEM_CONF" ] || [ -L "$SYSTEM_CONF" ]; then
    grep -qF "$MARK" "$SYSTEM_CONF" 2>/dev/null \
      || die "$SYSTEM_CONF exists and was not written by this script; not replacing a real cluster's configuration"
  fi
  as_root ln -sfn "$CONF" "$SYSTEM_CONF"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
  if [ ! -s /etc/munge/munge.key ]; then
    as_root runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
  fi
  as_root mkdir -p /run/munge
  as_root chown munge:munge /run/munge
  as_root runuser -u munge -- /usr/sbin/munged
  touch "$STATE/run/munged.started"
  wait_for 15 munged sh -c 'munge -n | unmunge'
}

start_mariadb() {
  local sql="$STATE/run/mysql.sock"
  if ! running "$STATE/run/mariadbd.pid"; then
    if [ ! -d "$STATE/mysql-data/mysql" ]; then
      mariadb-install-db --user=root --datadir="$STATE/mysql-data" --auth-root-authentication-method=socket \
        >"$STATE/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (see $STATE/log/mariadb-install.log)"
    fi
    mariadbd --user=root --datadir="$STATE/mysql-data" --socket="$sql" --port="$DB_PORT" \
      --bind-address=127.0.0.1 --pid-file="$STATE/run/mariadbd.pid" --log-error="$STATE/log/mariadb.log" \
      --innodb-buffer-pool-size=64M --skip-name-resolve </dev/null >/dev/null 2>&1 &
    wait_for 60 MariaDB mariadb --socket="$sql" -u root -e "SELECT 1"
  fi
  mariadb --socket="$sql" -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'atzoo-local';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'atzoo-local';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

start_slurmdbd() {
  running "$STATE/run/slurmdbd.pid" && return
  slurmdbd
  wait_for 60 slurmdbd sacctmgr -n list cluster
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
  if ! sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT"; then
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="atzoo local cluster" organization=atzoo >/dev/null
  fi
  if ! sacctmgr -n -P list user root format=user,defaultaccount | grep -qx "root|$ACCOUNT"; then
    sacctmgr -i add user root account="$ACCOUNT" defaultaccount="$ACCOUNT" cluster="$CLUSTER" >/dev/null || true
    sacctmgr -i modify user root set defaultaccount="$ACCOUNT" >/dev/null || true
  fi
}

start_slurmctld() {
  running "$STATE/run/slurmctld.pid" && return
  slurmctld
  wait_for 60 slurmctld scontrol ping
}

start_slurmd() {
  running "$STATE/run/slurmd.pid" && return
  slurmd
}

node_idle() {
  local state
  state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1)
  case "$state" in
    idle|mixed|allocated) return 0 ;;
    down*|drain*|inval*)  scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true; return 1 ;;
    *) return 1 ;;
  esac
}

stop_daemon() {  # stop_daemon NAME: SIGTERM through its pid file, then wait until it is gone
  local pidfile="$STATE/run/$1.pid" pid
  running "$pidfile" || return 0
  pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }; sleep 0.2; done
  say "$1 (pid $pid) did not stop after 30 s; killing it"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

start() {
  install_packages
  write_configs
  start_munge
  start_mariadb
  start_slurmdbd
  start_slurmctld
  start_slurmd
  wait_for 120 "the node $(hostname -s) (idle in sinfo)" node_idle
  say "cluster $CLUSTER up: $(sinfo -h -o '%P %a %D %T %C' | head -n1) (state in $STATE)"
}

stop() {
  for daemon in slurmd slurmctld slurmdbd mariadbd; do stop_daemon "$daemon"; done
  if [ -f "$STATE/run/munged.started" ] && [ -s /run/munge/munged.pid ]; then
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
    rm -f "$STATE/run/munged.started"
  fi
  say "stopped"
}

status() {
  for daemon in mariadbd slurmdbd slurmctld slurmd; do
    if running "$STATE/run/$daemon.pid"; then echo "$daemon running (pid $(cat "$STATE/run/$daemon.pid"))"
    else echo "$daemon stopped"; fi
  done
  sinfo 2>&1 || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  stop-daemon)
    case "${2:-}" in slurmctld|slurmd|slurmdbd) stop_daemon "$2" ;; *) die "stop-daemon takes slurmctld, slurmd or slurmdbd" ;; esac ;;
  status) status ;;
  *) die "unknown command ${1}; expected start, stop, stop-daemon NAME or status" ;;
esac
