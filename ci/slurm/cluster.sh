#!/usr/bin/env bash
# A throwaway single-node SLURM cluster (slurmctld + slurmd + slurmdbd on
# MariaDB, munge auth, one fake GPU) for integration tests, built from the
# Debian 12 packages.  Meant for a disposable CI machine, run as root, with no
# systemd: every daemon is started and stopped by this script.
#
# Usage: bash ci/slurm/cluster.sh {install|start|stop|restart|status|smoke|logs}
#
#   install   apt-get install the packages (quick no-op when already installed)
#   start     write the config, start munged, mariadbd, slurmdbd, slurmctld,
#             slurmd, register cluster/account/user, wait for an idle node
#             and working sacct; idempotent (daemons already up are kept,
#             slurm daemons are restarted only if the generated config changed)
#   stop      stop every daemon through its PID file; idempotent
#   restart   stop, then start
#   status    daemons, sinfo, squeue, sacctmgr show assoc (exit 1 if one is down)
#   smoke     submit a 1-GPU job, check that a 2-GPU job is rejected, check sacct
#   logs      tail every daemon log
#
# Environment:
#   SLURM_STATE_DIR   state dir: logs, spool, PID files, fake GPU device
#                     (default /tmp/biaslab-slurm; stop/status/smoke/logs read
#                     it back from /etc/slurm/slurm.conf when unset)
#   SLURM_WAIT_S      seconds to wait for each daemon/condition (default 90)
#
# The config is written to /etc/slurm (slurm.conf, gres.conf, slurmdbd.conf)
# so that sbatch/squeue/sacct run by any other process work without extra env.
# MariaDB uses the Debian default datadir /var/lib/mysql, unix socket only.
set -euo pipefail

readonly CLUSTER=biaslab
readonly ACCOUNT=biaslab
readonly PARTITION=main
readonly ETC=/etc/slurm
readonly DB_USER=slurm
readonly DB_PASS=biaslab-slurm-test  # local test DB, unix socket only
readonly MYSQL_RUN=/run/mysqld
readonly MYSQL_PID=$MYSQL_RUN/mysqld.pid
readonly MYSQL_SOCK=$MYSQL_RUN/mysqld.sock
readonly MUNGE_RUN=/run/munge
readonly MUNGE_PID=$MUNGE_RUN/munged.pid
readonly MUNGE_KEY=/etc/munge/munge.key
readonly PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd
  slurm-wlm-mysql-plugin mariadb-server)
WAIT_S=${SLURM_WAIT_S:-90}

# Clients must see exactly the config this script writes.
export SLURM_CONF=$ETC/slurm.conf

log() { printf '[slurm-ci %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[slurm-ci] ERROR: %s\n' "$*" >&2; exit 1; }

# State dir: env, else (except for start/restart) the one recorded in the
# generated slurm.conf, else the default.
state_dir() {
  if [[ -n ${SLURM_STATE_DIR:-} ]]; then
    printf '%s\n' "$SLURM_STATE_DIR"
  elif [[ $1 != start && $1 != restart && -r $ETC/slurm.conf ]] &&
    sed -n 's/^# state-dir: //p' "$ETC/slurm.conf" | grep -q .; then
    sed -n 's/^# state-dir: //p' "$ETC/slurm.conf" | head -n1
  else
    printf '%s\n' /tmp/biaslab-slurm
  fi
}
STATE=$(state_dir "${1:-}")
LOGS=$STATE/log
RUN=$STATE/run
# One accounting database per state dir: job IDs come from slurmctld's saved
# state, so a new state dir restarts them at 1, and old records with the same
# IDs in a shared database would confuse sacct (and Snakemake's plugin).
DB_NAME=slurm_acct_$(printf '%s' "$STATE" | cksum | cut -d' ' -f1)
DB_MARKER=$STATE/spool/ctld/accounting-db

require_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (it starts system daemons)"; }

show_log() {  # show_log FILE [N]
  local f=$1 n=${2:-40}
  if [[ -s $f ]]; then
    printf -- '----- last %s lines of %s -----\n' "$n" "$f" >&2
    tail -n "$n" "$f" >&2
    printf -- '-----\n' >&2
  else
    printf -- '----- %s: missing or empty -----\n' "$f" >&2
  fi
}

# wait_for DESCRIPTION LOGFILE CMD... : poll CMD until it succeeds or WAIT_S.
wait_for() {
  local what=$1 logf=$2
  shift 2
  local deadline=$((SECONDS + WAIT_S))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${WAIT_S}s waiting for $what"
      [[ -n $logf ]] && show_log "$logf"
      exit 1
    fi
    sleep 0.3
  done
}

# running PIDFILE NAME : the PID file names a live process called NAME.
running() {
  local pidfile=$1 name=$2 pid
  [[ -r $pidfile ]] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null &&
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]
}

# stop_pids PIDFILE:NAME... : SIGTERM them together, wait up to 30 s for all,
# then SIGKILL the rest.
stop_pids() {
  local spec pidfile name pid pids=() i alive
  for spec in "$@"; do
    pidfile=${spec%%:*} name=${spec##*:}
    if running "$pidfile" "$name"; then
      pid=$(tr -dc '0-9' <"$pidfile")
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid:$name")
    elif pgrep -x "$name" >/dev/null 2>&1; then
      log "warning: a '$name' is running that $pidfile does not name; left alone"
    fi
  done
  for ((i = 0; i < 150; i++)); do
    alive=0
    for spec in "${pids[@]}"; do kill -0 "${spec%%:*}" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.2
  done
  for spec in "${pids[@]}"; do
    if kill -0 "${spec%%:*}" 2>/dev/null; then
      log "${spec##*:} (pid ${spec%%:*}) ignored SIGTERM for 30 s; sending SIGKILL"
      kill -KILL "${spec%%:*}" 2>/dev/null || true
    fi
  done
  for spec in "$@"; do
    pidfile=${spec%%:*} name=${spec##*:}
    running "$pidfile" "$name" || rm -f "$pidfile"
  done
}

# ---------------------------------------------------------------- install
installed() {
  local p st
  for p in "${PACKAGES[@]}"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) || return 1
    [[ $st == "install ok installed" ]] || return 1
  done
}

cmd_install() {
  require_root
  if installed; then
    log "packages already installed: ${PACKAGES[*]}"
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "${PACKAGES[@]}")
  local t0=$SECONDS
  # The image's package lists may be stale (old versions gone from the
  # mirror): refresh them first, it costs about a second.
  log "apt-get update"
  apt-get update -q </dev/null || die "apt-get update failed (is the Debian mirror reachable?)"
  log "installing ${PACKAGES[*]}"
  if ! "${apt[@]}" </dev/null; then
    log "apt-get install failed; retrying once"
    sleep 2
    "${apt[@]}" </dev/null || die "apt-get install failed"
  fi
  installed || die "packages still not installed after apt-get: ${PACKAGES[*]}"
  log "installed in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- config
# Writes $2 to $1 when different; returns 0 if the file changed.
put_file() {
  local dest=$1 content=$2 mode=$3
  if [[ -f $dest ]] && [[ $(cat "$dest") == "$content" ]]; then
    chmod "$mode" "$dest"
    return 1
  fi
  local tmp
  tmp=$(mktemp "$dest.XXXXXX")
  printf '%s\n' "$content" >"$tmp"
  chmod "$mode" "$tmp"
  chown root:root "$tmp"
  mv -f "$tmp" "$dest"
  return 0
}

# Sets NODE_NAME and NODE_HW from `slurmd -C`.
probe_node() {
  local line
  line=$(slurmd -C 2>/dev/null | grep -m1 '^NodeName=') ||
    die "'slurmd -C' printed no NodeName line (is slurmd installed?)"
  NODE_NAME=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$line")
  local key val hw=()
  for key in CPUs Boards SocketsPerBoard CoresPerSocket ThreadsPerCore RealMemory; do
    val=$(grep -o "\b$key=[0-9]*" <<<"$line" | cut -d= -f2 || true)
    [[ -n $val ]] || continue
    [[ $key == RealMemory ]] && val=$((val * 9 / 10))
    hw+=("$key=$val")
  done
  [[ -n $NODE_NAME && ${#hw[@]} -ge 2 ]] || die "cannot parse 'slurmd -C': $line"
  NODE_HW=${hw[*]}
}

write_config() {
  install -d -m 0755 "$STATE" "$LOGS" "$RUN" "$STATE/spool" "$STATE/gpu" "$ETC"
  install -d -m 0700 "$STATE/spool/ctld" "$STATE/spool/d"
  install -d -m 0755 "$STATE/smoke"
  # Fake GPU: the index comes from the name "nvidia0"; a symlink to /dev/null
  # (not a regular file) makes slurmd export CUDA_VISIBLE_DEVICES.
  ln -sfn /dev/null "$STATE/gpu/nvidia0"

  probe_node
  local host=$NODE_NAME
  CONFIG_CHANGED=0

  local slurm_conf
  slurm_conf=$(
    cat <<EOF
# Generated by ci/slurm/cluster.sh; overwritten on every start.
# state-dir: $STATE
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldPort=6817
SlurmdPort=6818
ReturnToService=2
# Fast turnaround for tests.
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2,sched_min_interval=100000,batch_sched_delay=1
MinJobAge=300
KillWait=5
CompleteWait=0
InactiveLimit=0
Waittime=0
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=60
# Per-core and per-memory scheduling; without DefMemPerCPU a job with no
# --mem takes the whole node.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStoreFlags=job_comment
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
MailProg=/bin/true
NodeName=$host $NODE_HW Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  )
  local gres_conf
  gres_conf=$(
    cat <<EOF
# Generated by ci/slurm/cluster.sh: one fake GPU (a symlink to /dev/null).
AutoDetect=off
NodeName=$host Name=gpu File=$STATE/gpu/nvidia0
EOF
  )
  local dbd_conf
  dbd_conf=$(
    cat <<EOF
# Generated by ci/slurm/cluster.sh; mode 0600, owned by SlurmUser (root).
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$LOGS/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
  )
  if put_file "$ETC/slurm.conf" "$slurm_conf" 0644; then CONFIG_CHANGED=1; fi
  if put_file "$ETC/gres.conf" "$gres_conf" 0644; then CONFIG_CHANGED=1; fi
  if put_file "$ETC/slurmdbd.conf" "$dbd_conf" 0600; then CONFIG_CHANGED=1; fi
}

# ---------------------------------------------------------------- daemons
start_munge() {
  if running "$MUNGE_PID" munged; then return 0; fi
  install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
  install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
  if [[ ! -s $MUNGE_KEY ]]; then
    log "creating munge key $MUNGE_KEY"
    (umask 077 && head -c 1024 /dev/urandom >"$MUNGE_KEY")
  fi
  chown munge:munge "$MUNGE_KEY"
  chmod 0600 "$MUNGE_KEY"
  : >>"$LOGS/munged.log"
  chown munge:munge "$LOGS/munged.log"
  log "starting munged"
  # --force: run even if a previous munged left its socket behind.
  runuser -u munge -- munged --force --pid-file="$MUNGE_PID" \
    --log-file="$LOGS/munged.log" </dev/null ||
    { show_log "$LOGS/munged.log"; die "munged failed to start"; }
  wait_for "munge to answer" "$LOGS/munged.log" \
    bash -c 'munge -n </dev/null | unmunge >/dev/null'
}

start_mariadb() {
  if ! running "$MYSQL_PID" mariadbd; then
    install -d -o mysql -g mysql -m 0755 "$MYSQL_RUN"
    if [[ ! -d /var/lib/mysql/mysql ]]; then
      log "initialising MariaDB datadir /var/lib/mysql"
      mariadb-install-db --user=mysql --datadir=/var/lib/mysql \
        >"$LOGS/mariadb-install.log" 2>&1 ||
        { show_log "$LOGS/mariadb-install.log"; die "mariadb-install-db failed"; }
    fi
    : >>"$LOGS/mariadb.log"
    chown mysql:mysql "$LOGS/mariadb.log"
    log "starting mariadbd"
    setsid -f mariadbd --user=mysql --datadir=/var/lib/mysql \
      --socket="$MYSQL_SOCK" --pid-file="$MYSQL_PID" --skip-networking \
      --innodb-buffer-pool-size=512M --innodb-lock-wait-timeout=900 \
      --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --innodb-file-per-table=0 \
      --log-error="$LOGS/mariadb.log" </dev/null >>"$LOGS/mariadb.log" 2>&1
  fi
  wait_for "MariaDB to answer" "$LOGS/mariadb.log" \
    mariadb-admin --socket="$MYSQL_SOCK" ping
  local drop=""
  if [[ ! -f $DB_MARKER ]]; then
    # Fresh slurmctld state (new or wiped state dir): start accounting empty too.
    drop="DROP DATABASE IF EXISTS $DB_NAME;"
  fi
  mariadb --socket="$MYSQL_SOCK" -uroot <<EOF || die "creating the accounting database failed"
$drop
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
EOF
  printf '%s\n' "$DB_NAME" >"$DB_MARKER"
}

# A daemon whose PID file names no live process must not find its port taken
# (e.g. the state dir was deleted while the cluster ran).
port_free() {  # port_free PORT NAME
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    die "port $1 is in use, but $RUN/$2.pid names no running $2: a $2 not started from $STATE is running (state dir removed while the cluster ran?); stop it first"
  fi
}

start_slurmdbd() {
  if ! running "$RUN/slurmdbd.pid" slurmdbd; then
    log "starting slurmdbd"
    slurmdbd </dev/null || { show_log "$LOGS/slurmdbd.log"; die "slurmdbd failed to start"; }
  fi
  wait_for "slurmdbd to answer (sacctmgr show cluster)" "$LOGS/slurmdbd.log" \
    timeout 20 sacctmgr -n -P show cluster
}

# Cluster, account and user associations (idempotent).
register_accounting() {
  if ! sacctmgr -n -P show cluster format=Cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster failed"
  fi
  if ! sacctmgr -n -P show account "$ACCOUNT" format=Account | grep -qx "$ACCOUNT"; then
    sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" \
      Description="CI test account" Organization="$ACCOUNT" >/dev/null ||
      die "sacctmgr add account failed"
  fi
  if ! sacctmgr -n -P show assoc cluster="$CLUSTER" user=root account="$ACCOUNT" \
    format=User | grep -qx root; then
    sacctmgr -i add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" \
      Cluster="$CLUSTER" >/dev/null || die "sacctmgr add user root failed"
  fi
}

start_slurmctld() {
  if ! running "$RUN/slurmctld.pid" slurmctld; then
    log "starting slurmctld"
    slurmctld </dev/null || { show_log "$LOGS/slurmctld.log"; die "slurmctld failed to start"; }
  fi
  wait_for "slurmctld to answer (scontrol ping)" "$LOGS/slurmctld.log" \
    bash -c 'timeout 15 scontrol ping | grep -q "is UP"'
}

SLURMD_STARTED_AT=0
start_slurmd() {
  if ! running "$RUN/slurmd.pid" slurmd; then
    log "starting slurmd"
    SLURMD_STARTED_AT=$(date +%s)
    slurmd </dev/null || { show_log "$LOGS/slurmd.log"; die "slurmd failed to start"; }
  fi
}

node_state() { timeout 15 sinfo -h -N -n "$NODE_NAME" -o %T 2>/dev/null | head -n1; }

# The slurmd we just started has registered with slurmctld (a node that
# slurmctld still remembers as idle would otherwise pass for a ready one).
slurmd_registered() {
  ((SLURMD_STARTED_AT == 0)) && return 0
  running "$RUN/slurmd.pid" slurmd || return 1
  local t
  t=$(timeout 15 scontrol show node "$NODE_NAME" 2>/dev/null |
    grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2) || return 1
  [[ -n $t && $t != None ]] || return 1
  t=$(date -d "$t" +%s 2>/dev/null) || return 1
  ((t >= SLURMD_STARTED_AT - 1))
}

wait_node_ready() {
  local deadline=$((SECONDS + WAIT_S)) st resumed=0
  while :; do
    st=$(node_state || true)
    if ! running "$RUN/slurmd.pid" slurmd; then
      log "slurmd is not running (it exited after starting)"
      show_log "$LOGS/slurmd.log"
      exit 1
    fi
    case $st in
      idle | mixed | allocated | completing) slurmd_registered && return 0 ;;
      *drain* | down | fail*)
        # Saved state survives restarts: a node drained earlier stays so.
        if ((resumed < 3)); then
          log "node $NODE_NAME is '$st'; resuming it"
          local reason
          reason=$(timeout 15 sinfo -h -N -n "$NODE_NAME" -o %E 2>/dev/null || true)
          [[ -n $reason ]] && log "  reason: $reason"
          timeout 15 scontrol update nodename="$NODE_NAME" state=resume || true
          resumed=$((resumed + 1))
        fi
        ;;
    esac
    if ((SECONDS >= deadline)); then
      log "node $NODE_NAME not ready after ${WAIT_S}s (state '${st:-unknown}')"
      timeout 15 scontrol show node "$NODE_NAME" >&2 || true
      show_log "$LOGS/slurmd.log"
      show_log "$LOGS/slurmctld.log"
      exit 1
    fi
    sleep 0.3
  done
}

cmd_start() {
  require_root
  local t0=$SECONDS
  command -v slurmctld >/dev/null && command -v mariadbd >/dev/null ||
    die "packages missing: run 'bash $0 install' first"
  local prev
  prev=$(sed -n 's/^# state-dir: //p' "$ETC/slurm.conf" 2>/dev/null | head -n1 || true)
  if [[ -n $prev && $prev != "$STATE" ]]; then
    log "state dir changes from $prev to $STATE: stopping the old slurm daemons"
    stop_pids "$prev/run/slurmd.pid:slurmd" "$prev/run/slurmctld.pid:slurmctld"
    stop_pids "$prev/run/slurmdbd.pid:slurmdbd"
  fi
  write_config
  if ((CONFIG_CHANGED)); then
    local any=0 d
    for d in slurmd slurmctld slurmdbd; do
      running "$RUN/$d.pid" "$d" && any=1
    done
    if ((any)); then
      log "generated config changed: restarting the slurm daemons"
      stop_pids "$RUN/slurmd.pid:slurmd" "$RUN/slurmctld.pid:slurmctld"
      stop_pids "$RUN/slurmdbd.pid:slurmdbd"
    fi
  fi
  if [[ ! -f $DB_MARKER ]]; then
    # Fresh slurmctld state: the accounting DB is recreated below, so no slurm
    # daemon may keep running on the old one.
    stop_pids "$RUN/slurmd.pid:slurmd" "$RUN/slurmctld.pid:slurmctld"
    stop_pids "$RUN/slurmdbd.pid:slurmdbd"
  fi
  running "$RUN/slurmdbd.pid" slurmdbd || port_free 6819 slurmdbd
  running "$RUN/slurmctld.pid" slurmctld || port_free 6817 slurmctld
  running "$RUN/slurmd.pid" slurmd || port_free 6818 slurmd
  start_munge
  start_mariadb
  start_slurmdbd
  register_accounting
  start_slurmctld
  start_slurmd
  wait_node_ready
  wait_for "sacct to work" "$LOGS/slurmdbd.log" \
    timeout 20 sacct -n -X -a -S now-1hours -o JobID
  local gres
  gres=$(timeout 15 sinfo -h -N -n "$NODE_NAME" -o '%c CPUs, %m MB, %G' | head -n1)
  echo "SLURM up in $((SECONDS - t0)) s: cluster $CLUSTER, partition $PARTITION," \
    "node $NODE_NAME $(node_state) ($gres), account $ACCOUNT, config $ETC, state $STATE"
}

cmd_stop() {
  require_root
  # Order: slurmctld still talks to slurmdbd (via munge) while shutting down.
  stop_pids "$RUN/slurmd.pid:slurmd" "$RUN/slurmctld.pid:slurmctld"
  stop_pids "$RUN/slurmdbd.pid:slurmdbd"
  stop_pids "$MYSQL_PID:mariadbd" "$MUNGE_PID:munged"
  echo "SLURM stopped (state kept in $STATE)"
}

cmd_status() {
  local rc=0 d pidfile name
  for d in "$MUNGE_PID:munged" "$MYSQL_PID:mariadbd" "$RUN/slurmdbd.pid:slurmdbd" \
    "$RUN/slurmctld.pid:slurmctld" "$RUN/slurmd.pid:slurmd"; do
    pidfile=${d%%:*} name=${d##*:}
    if running "$pidfile" "$name"; then
      printf '%-10s up (pid %s)\n' "$name" "$(tr -dc '0-9' <"$pidfile")"
    else
      printf '%-10s DOWN\n' "$name"
      rc=1
    fi
  done
  echo "--- sinfo"
  timeout 15 sinfo -N -o '%N %P %T %c %m %G %E' || rc=1
  echo "--- squeue"
  timeout 15 squeue || rc=1
  echo "--- sacctmgr show assoc"
  timeout 15 sacctmgr show assoc format=Cluster,Account,User,Partition,DefaultQOS || rc=1
  return $rc
}

cmd_logs() {
  local f
  for f in "$LOGS"/*.log; do show_log "$f" "${1:-20}"; done
}

cmd_smoke() {
  local dir=$STATE/smoke fail=0 jid out st deadline
  install -d "$dir"
  # (1) A 1-GPU batch job runs, sees CUDA_VISIBLE_DEVICES=0, and a job step works.
  jid=$(sbatch --parsable -J smoke-gpu --gpus=1 -t 5 -D "$dir" -o "$dir/%j.out" \
    --wrap 'echo hi; echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset}"; srun -n1 echo step-ok') ||
    die "sbatch --gpus=1 failed"
  jid=${jid%%;*}
  echo "submitted 1-GPU job $jid"
  deadline=$((SECONDS + WAIT_S))
  while :; do
    st=$(timeout 15 sacct -j "$jid" -X -n -P -o State 2>/dev/null | head -n1 || true)
    case $st in
      COMPLETED | FAILED | CANCELLED* | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) break ;;
    esac
    if ((SECONDS >= deadline)); then
      echo "FAIL (1): job $jid not finished after ${WAIT_S}s (sacct state '${st}')"
      timeout 15 squeue -j "$jid" || true
      show_log "$LOGS/slurmctld.log" 20
      show_log "$LOGS/slurmd.log" 20
      exit 1
    fi
    sleep 0.5
  done
  out=$(cat "$dir/$jid.out" 2>/dev/null || true)
  printf 'job %s output:\n%s\n' "$jid" "$out" | sed 's/^/  /'
  if [[ $st == COMPLETED ]] && grep -qx hi <<<"$out" &&
    grep -qx CUDA_VISIBLE_DEVICES=0 <<<"$out" && grep -qx step-ok <<<"$out"; then
    echo "ok (1): job $jid COMPLETED, printed hi, CUDA_VISIBLE_DEVICES=0, srun step ran"
  else
    echo "FAIL (1): job $jid state $st, output above"
    fail=1
  fi

  # (2) Asking for more GPUs than the node has is rejected at submission.
  local rej
  if rej=$(sbatch --parsable -J smoke-2gpu --gpus=2 -D "$dir" -o /dev/null --wrap true 2>&1); then
    echo "FAIL (2): sbatch --gpus=2 was accepted (job ${rej%%;*})"
    timeout 15 scancel "${rej%%;*}" || true
    fail=1
  else
    echo "ok (2): sbatch --gpus=2 rejected: $rej"
  fi

  # (3) sacct lists the completed job.  For the first ~5 s after a short job
  # slurmdbd may hold a placeholder record named "allocation" (the job's own
  # record reaches it on slurmctld's next db-index pass), so poll.
  local acct
  deadline=$((SECONDS + WAIT_S))
  while :; do
    acct=$(timeout 15 sacct -j "$jid" --format=JobID,JobName,State -n -P 2>&1) || true
    grep -qx "$jid|smoke-gpu|COMPLETED" <<<"$acct" && break
    ((SECONDS >= deadline)) && break
    sleep 0.5
  done
  printf 'sacct -j %s:\n%s\n' "$jid" "$acct" | sed 's/^/  /'
  if grep -qx "$jid|smoke-gpu|COMPLETED" <<<"$acct"; then
    echo "ok (3): sacct lists job $jid as COMPLETED"
  else
    echo "FAIL (3): sacct does not list $jid|smoke-gpu|COMPLETED"
    fail=1
  fi
  if ((fail)); then
    echo "SMOKE FAILED"
    return 1
  fi
  echo "SMOKE OK"
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart)
      cmd_stop
      cmd_start
      ;;
    status) cmd_status ;;
    smoke) cmd_smoke ;;
    logs) cmd_logs "$@" ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
