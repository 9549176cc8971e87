#!/usr/bin/env bash
# A one-node SLURM cluster on this machine: the place to try `dlbench train -m ... hydra/launcher=slurm`
# before a real cluster, and what tests/test_slurm.py submits to.
#
#   sudo scripts/cluster.sh start    install slurm-wlm and munge (apt, when missing), write the config,
#                                    start munged, slurmctld and slurmd, wait for the node to be idle
#   scripts/cluster.sh status        exit 0: this script's cluster runs; 1: none runs; 3: another
#                                    SLURM setup answers here (this script leaves it alone)
#   sudo scripts/cluster.sh stop     cancel its jobs and stop the daemons this script started
#
# start and stop are idempotent. When the cluster cannot be had here (not root, no apt-get, a daemon
# that does not come up, another SLURM setup), start says why in one line on stderr and exits 2.
# Debian or Ubuntu: slurm-wlm 22.05 on Debian 12 is what it was written against.
set -euo pipefail

CONF=/etc/slurm/slurm.conf            # where sbatch, squeue, sinfo and scontrol look: no SLURM_CONF needed
MARK="# Written by dlbench scripts/cluster.sh"
STATE=/run/dlbench-cluster            # what this script started (tmpfs: forgotten at a reboot, as the daemons are)
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
LOGS=/var/log/slurm
SPOOL=/var/lib/dlbench-cluster        # its own state: never mixed with another setup's (slurmctld refuses that)
NODE=$(hostname -s)

say() { echo "cluster: $*"; }
cannot() { echo "cluster: cannot start a SLURM cluster here: $*" >&2; exit 2; }
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
ours() { [[ -f $CONF ]] && head -n1 "$CONF" | grep -qF "$MARK"; }
answers() { command -v sinfo >/dev/null && timeout 10 sinfo -h >/dev/null 2>&1; }

install() {
    local missing=()
    for cmd in slurmctld slurmd sinfo munged; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $EUID -eq 0 ]] || cannot "${missing[*]} not installed, and installing them needs root (sudo $0 start)"
    command -v apt-get >/dev/null \
        || cannot "${missing[*]} not installed and no apt-get: install slurmctld, slurmd and munge by hand"
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-cache show slurm-wlm >/dev/null 2>&1 || apt-get update -q >/dev/null || cannot "apt-get update failed"
    # --no-install-recommends: the daemons and clients only, no MPI, mail or documentation stack
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null \
        || cannot "apt-get install slurm-wlm munge failed (run it by hand to see why)"
}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc)
    # what jobs may ask for without pushing out what already runs here; slurmd drains a node whose
    # configured memory is more than it has, so this stays under the machine's own total
    mem_mb=$(awk '/^MemAvailable:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    mkdir -p "$(dirname "$CONF")" "$LOGS" "$SPOOL/slurmctld" "$SPOOL/slurmd"
    cat > "$CONF" <<EOF
$MARK: a one-node try-out cluster.
# \`scripts/cluster.sh stop\` ends it; delete this file to give the machine back to another setup.
ClusterName=dlbench
# the controller and the only node are this machine, reached over loopback: no name service needed
SlurmctldHost=$NODE(127.0.0.1)
# the daemons run as root, the simplest on one machine (a real cluster runs slurmctld as user slurm)
SlurmUser=root
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it may start again (default 120): one machine has
# no slow node to wait for, and the tests requeue a job
AuthInfo=cred_expire=10
StateSaveLocation=$SPOOL/slurmctld
SlurmdSpoolDir=$SPOOL/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# a job's processes are found by their parent pids: no cgroup set-up (which containers and many
# desktops lack); a job is not confined to the CPUs it was given (task/none), fine for a try-out
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
# a job whose begin time has come (a requeued one) starts at the next scheduling pass: every 5 s
# here, instead of every 60 s (30 s for backfill)
SchedulerParameters=sched_interval=5,bf_interval=5
# CPUs are shared out one by one, so two 1-CPU jobs of a sweep run side by side (select/linear
# would give each job the whole node); memory is not counted, but a job asking for more than
# RealMemory is refused, as on a real cluster
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# a node that was down (the machine rebooted, slurmd was stopped) is used again when it registers
ReturnToService=2
# seconds between SIGTERM and SIGKILL when a job is cancelled, requeued or out of time (default 30)
KillWait=5
# no accounting database (slurmdbd + MariaDB): sacct fails with "Slurm accounting storage is
# disabled"; submitit then reads a job's end from its result file (docs/guide/sweeps.md: SLURM)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
# the partition the tests and docs/guide/sweeps.md name; jobs without --partition land here too
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if alive "$MUNGE_PID" || munge -n >/dev/null 2>&1; then return 0; fi  # a system munged serves us too
    if [[ ! -s /etc/munge/munge.key ]]; then  # Debian's package makes one; a cluster shares it, we are alone
        mkdir -p /etc/munge
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged || cannot "munged did not start (see /var/log/munge/munged.log)"
    touch "$STATE/munged"
}

start_daemon() {  # name pidfile: start it unless it runs; it daemonizes itself
    local name=$1 pidfile=$2
    alive "$pidfile" && return 0
    "/usr/sbin/$name" || cannot "$name did not start: $(tail -n 3 "$LOGS/$name.log" 2>/dev/null | tr '\n' ' ')"
}

wait_idle() {
    local state=""
    for _ in $(seq 60); do
        state=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null || true)
        case $state in idle|mixed|allocated) say "running: node $NODE $state, partition debug"; return 0 ;; esac
        sleep 0.5
    done
    cannot "node $NODE is '${state:-not answering}' after 30 s: $(sinfo -h -R 2>/dev/null | head -n1) (see $LOGS/)"
}

start() {
    if ours && alive "$CTLD_PID" && alive "$SLURMD_PID" && answers; then say "already running"; return 0; fi
    if ! ours && answers; then
        cannot "another SLURM setup answers here ($CONF was not written by this script); left alone"
    fi
    [[ $EUID -eq 0 ]] || cannot "the daemons need root (sudo $0 start)"
    install
    if [[ -f $CONF ]] && ! ours; then cannot "$CONF exists and was not written by this script; left alone"; fi
    mkdir -p "$STATE"
    alive "$CTLD_PID" || alive "$SLURMD_PID" || write_conf  # the config a running daemon read stays
    start_munge
    start_daemon slurmctld "$CTLD_PID"
    start_daemon slurmd "$SLURMD_PID"
    wait_idle
}

stop() {
    if ! ours; then say "no cluster of this script's here; nothing stopped"; return 0; fi
    if ! alive "$CTLD_PID" && ! alive "$SLURMD_PID" && [[ ! -e $STATE/munged ]]; then say "not running"; return 0; fi
    [[ $EUID -eq 0 ]] || { echo "cluster: stopping the daemons needs root (sudo $0 stop)" >&2; exit 2; }
    if alive "$CTLD_PID"; then
        # a try-out cluster ends with its jobs: none keeps running under a stopped slurmd
        scancel --quiet --partition=debug 2>/dev/null || true
        for _ in $(seq 40); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 0.5; done
        scontrol shutdown >/dev/null 2>&1 || true  # slurmctld saves its state and takes slurmd down
    fi
    for pidfile in "$CTLD_PID" "$SLURMD_PID"; do
        for _ in $(seq 20); do alive "$pidfile" || break; sleep 0.5; done
        if alive "$pidfile"; then kill -TERM "$(cat "$pidfile")"; fi
    done
    if [[ -e $STATE/munged ]]; then  # only a munged this script started
        alive "$MUNGE_PID" && kill -TERM "$(cat "$MUNGE_PID")"
        rm -f "$STATE/munged"
    fi
    say "stopped"
}

status() {
    if ours && alive "$CTLD_PID" && answers; then say "running: $(sinfo -h -N -o '%N %T, partition %P')"; return 0; fi
    if ! ours && answers; then say "another SLURM setup answers here (not this script's)"; return 3; fi
    say "not running"; return 1
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 64 ;;
esac
