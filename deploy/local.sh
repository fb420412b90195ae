#!/usr/bin/env bash
# deploy/local.sh: the topology of deploy/k8s as local processes on this machine: redis-server on 127.0.0.1 with
# its append-only file on, the trainer (`k2rl rl` with a job file whose rollout.workers names that Redis) and N
# `k2rl rollout-worker` processes. Ctrl-C stops them in order: the trainer first (it writes a checkpoint), then
# the workers, then Redis. Rerunning with the same --run-root continues the run (--resume; Redis's AOF is kept there).
#
#   dotnet build -c Release src/Cli
#   deploy/local.sh --workers 2                    # base: RUN_ROOT/base, pretrained first if it is not there
#   deploy/local.sh --base runs/nano --workers 2 --max-iterations 20
#   deploy/local.sh --print-job --base runs/nano   # print the job file it would run, and exit
#
# The job file is the Kubernetes one (the ConfigMap in deploy/k8s/trainer.yaml) with the base, the local Redis and
# the weight transport (rollout.transport: shm by default, one machine) put in; --job FILE runs your own instead,
# whose rollout.workers must then name redis://127.0.0.1:PORT (the port this script starts Redis on).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
workers=2
run_root="runs/local"
base=""
job=""
weights="shm"
shm_name="k2rl-local"
redis_port=6390
k2rl="$repo/src/Cli/bin/Release/net10.0/k2rl"
max_iterations=""
print_job=false
ready_timeout=900
worker_listen_base=7170   # worker i listens on 7170+i, and serves metrics on 9400+i; the trainer's metrics: 9400
metrics_base=9400

usage() {
  sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<EOF

Options:
  --workers N          rollout worker processes (default $workers)
  --run-root DIR       where everything goes: base/, rl/ (the run directory), redis/ (AOF), logs/ (default $run_root)
  --base DIR           the base model (a pretrain or SFT run directory or a checkpoint); default RUN_ROOT/base,
                       pretrained with configs/jobs/pretrain-nano.yaml first if it holds no finished run
  --job FILE           run this RL job file as it is (default: the Kubernetes job with local settings)
  --weights shm|net    how workers get weights: the workers' --weights and the job's rollout.transport
                       (default $weights; net: pushed to each worker's --listen address)
  --redis-port PORT    Redis on 127.0.0.1:PORT (default $redis_port)
  --max-iterations N   stop the trainer (with a checkpoint) after N iterations
  --k2rl PATH          the k2rl binary (default src/Cli/bin/Release/net10.0/k2rl)
  --ready-timeout S    seconds to wait for the trainer's job control to answer (default $ready_timeout)
  --print-job          print the job file and exit
EOF
}

die() {
  echo "local.sh: $*" >&2
  exit 1
}

need_value() {
  if [ "$#" -lt 2 ] || [ -z "$2" ] || [[ "$2" == --* ]]; then
    die "$1 needs a value (--help for usage)"
  fi
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --workers) need_value "$@"; workers="$2"; shift 2 ;;
    --run-root) need_value "$@"; run_root="$2"; shift 2 ;;
    --base) need_value "$@"; base="$2"; shift 2 ;;
    --job) need_value "$@"; job="$2"; shift 2 ;;
    --weights) need_value "$@"; weights="$2"; shift 2 ;;
    --redis-port) need_value "$@"; redis_port="$2"; shift 2 ;;
    --max-iterations) need_value "$@"; max_iterations="$2"; shift 2 ;;
    --k2rl) need_value "$@"; k2rl="$2"; shift 2 ;;
    --ready-timeout) need_value "$@"; ready_timeout="$2"; shift 2 ;;
    --print-job) print_job=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument $1 (--help for usage)" ;;
  esac
done

[[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer, got '$workers'"
if ! [[ "$redis_port" =~ ^[0-9]+$ ]] || [ "$redis_port" -lt 1 ] || [ "$redis_port" -gt 65535 ]; then
  die "--redis-port must be a port number, got '$redis_port'"
fi
[[ "$ready_timeout" =~ ^[0-9]+$ ]] || die "--ready-timeout must be a number of seconds, got '$ready_timeout'"
[ -z "$max_iterations" ] || [[ "$max_iterations" =~ ^[1-9][0-9]*$ ]] || die "--max-iterations must be a positive integer, got '$max_iterations'"
case "$weights" in shm | net) ;; *) die "--weights must be shm or net, got '$weights'" ;; esac

mkdir -p "$run_root"
run_root="$(cd "$run_root" && pwd)"
default_base="$run_root/base"
base="$(realpath -m "${base:-$default_base}")"
redis_url="redis://127.0.0.1:$redis_port"
logs="$run_root/logs"

# The Kubernetes job file (the ConfigMap's rl.yaml block) with the local base, Redis and weight transport put in.
sed_escape() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }
local_job() {
  local text line shm_line=""
  text="$(awk '/^  rl\.yaml: \|$/ { on = 1; next } on && /^    / { print substr($0, 5); next } on && /^$/ { print ""; next } on { exit }' \
    "$repo/deploy/k8s/trainer.yaml")"
  for line in '^init_from: ' '^  workers: redis://' '^  transport: net'; do
    grep -q "$line" <<<"$text" || die "deploy/k8s/trainer.yaml's job file has no line matching '$line': update local.sh with it"
  done
  if [ "$weights" = shm ]; then
    shm_line="\\
  shm_name: $shm_name"
  fi
  sed -e "s|^init_from: .*|init_from: $(sed_escape "$base")|" \
    -e "s|^  workers: redis://.*|  workers: $redis_url|" \
    -e "s|^  transport: net.*|  transport: $weights$shm_line|" <<<"$text"
}

if [ -n "$job" ]; then
  [ -f "$job" ] || die "no job file $job"
  grep -Eq "^[[:space:]]+workers:[[:space:]]*$redis_url([[:space:]]|$)" "$job" \
    || die "$job: rollout.workers must be $redis_url (the Redis this script starts; --redis-port sets the port)"
  job_text="$(cat "$job")"
else
  job_text="$(local_job)"
fi

if [ "$print_job" = true ]; then
  printf '%s\n' "$job_text"
  exit 0
fi

[ -x "$k2rl" ] || die "no k2rl binary at $k2rl: build it first (dotnet build -c Release src/Cli) or pass --k2rl PATH"
command -v redis-server >/dev/null || die "redis-server is not installed (Debian: apt-get install redis-server)"
command -v redis-cli >/dev/null || die "redis-cli is not installed (Debian: apt-get install redis-tools)"
if redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  die "something already answers on 127.0.0.1:$redis_port: stop it or choose --redis-port"
fi

mkdir -p "$logs" "$run_root/redis"
job_file="$run_root/rl.yaml"
printf '%s\n' "$job_text" >"$job_file"

pids=()      # workers and Redis, stopped in reverse order of start after the trainer
trainer_pid=""
stopping=false

# shellcheck disable=SC2317  # reached from the EXIT trap, which shellcheck does not follow
stop_pid() {
  # TERM, then wait up to $2 seconds, then KILL: only the processes this script started, by their id.
  local pid="$1" grace="$2"
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((t = 0; t < grace * 10; t++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  echo "local.sh: $pid did not stop in ${grace}s: killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # the EXIT trap
cleanup() {
  [ "$stopping" = true ] && return
  stopping=true
  if [ -n "$trainer_pid" ]; then
    echo "local.sh: stopping the trainer (it writes a checkpoint)" >&2
    stop_pid "$trainer_pid" 180
  fi

  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    stop_pid "${pids[i]}" 30
  done

  echo "local.sh: stopped; logs in $logs, the run in $run_root/rl" >&2
}

trap cleanup EXIT
trap 'exit 130' INT TERM

# Each child gets its own session (setsid), so Ctrl-C reaches this script alone and the stop order above holds.
start() {
  local out="$1" log="$2"
  shift 2
  setsid "$@" >"$out" 2>"$log" &
  last_pid=$!
}

if [ "$base" = "$default_base" ]; then
  # As the trainer pod's init container does: pretrain the base, or resume it (a no-op once it is finished).
  [ -f "$base/LATEST" ] || echo "local.sh: pretraining the base into $base first (configs/jobs/pretrain-nano.yaml, about 20 minutes on 2 cores; log: $logs/base.log)" >&2
  (cd "$repo" && "$k2rl" pretrain --job configs/jobs/pretrain-nano.yaml --run-dir "$base" --resume >"$logs/base.json" 2>"$logs/base.log") \
    || die "pretraining the base failed: see $logs/base.log"
elif [ ! -f "$base/LATEST" ] && [ ! -f "$base/config.json" ]; then
  die "--base $base holds no run (LATEST) and no checkpoint (config.json)"
fi

start "$logs/redis.log" "$logs/redis.log" redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$run_root/redis" \
  --appendonly yes --appendfsync everysec --save "" --protected-mode yes
pids+=("$last_pid")
for ((t = 0; ; t++)); do
  [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break
  kill -0 "${pids[0]}" 2>/dev/null || die "redis-server exited: see $logs/redis.log"
  [ "$t" -lt 300 ] || die "redis-server did not answer within 30 s: see $logs/redis.log"
  sleep 0.1
done

cd "$repo"   # the job files' relative paths (configs/...) resolve from the repository root, as in the image's /app
for ((i = 1; i <= workers; i++)); do
  args=(rollout-worker --redis "$redis_url" --weights "$weights" --listen "127.0.0.1:$((worker_listen_base + i))"
    --id "local-$i" --metrics "127.0.0.1:$((metrics_base + i))")
  [ "$weights" = shm ] && args+=(--shm "$shm_name")
  start "$logs/worker-$i.log" "$logs/worker-$i.log" "$k2rl" "${args[@]}"
  pids+=("$last_pid")
done

args=(rl --job "$job_file" --run-dir "$run_root/rl" --resume --metrics "127.0.0.1:$metrics_base")
[ -n "$max_iterations" ] && args+=(--max-iterations "$max_iterations")
start "$logs/trainer.json" "$logs/trainer.log" "$k2rl" "${args[@]}"
trainer_pid="$last_pid"
echo "local.sh: redis-server (pid ${pids[0]}) on $redis_url, $workers worker(s), trainer (pid $trainer_pid); logs in $logs" >&2

# Ready when the trainer's job control answers (it writes RUN_DIR/control.json once it serves).
deadline=$((SECONDS + ready_timeout))
until "$k2rl" job status --run-dir "$run_root/rl" --json >"$logs/status.json" 2>/dev/null; do
  kill -0 "$trainer_pid" 2>/dev/null || { wait "$trainer_pid" || true; trainer_pid=""; die "the trainer exited before it was ready: see $logs/trainer.log"; }
  for ((i = 1; i <= workers; i++)); do
    kill -0 "${pids[i]}" 2>/dev/null || die "worker $i exited before the trainer was ready: see $logs/worker-$i.log"
  done
  [ "$SECONDS" -lt "$deadline" ] || die "the trainer's job control did not answer within ${ready_timeout}s: see $logs/trainer.log"
  sleep 1
done

# Builtins only from here to `wait`: a SIGINT that reaches bash alone (kill -INT, not a terminal's Ctrl-C to the whole
# group) while a foreground child runs is dropped when that child exits normally (bash's wait-and-cooperative-exit
# rule), so no child may run between the "ready" line a caller waits for and the interruptible `wait`.
IFS= read -r -d '' status <"$logs/status.json" || true
{
  echo "local.sh: ready. ${status%$'\n'}"
  echo "  logs:     $logs/{trainer,worker-N,redis}.log (the trainer's structured log: $run_root/rl/logs/rl.clef)"
  echo "  control:  $k2rl job status|pause|drain|resume|stop --run-dir $run_root/rl [--json]"
  echo "  metrics:  curl -s http://127.0.0.1:$metrics_base/metrics (trainer), http://127.0.0.1:$((metrics_base + 1))/metrics (worker 1), ..."
  echo "  Ctrl-C stops everything (the trainer checkpoints first); rerun with the same --run-root to continue."
} >&2

code=0
wait "$trainer_pid" || code=$?
trainer_pid=""
echo "local.sh: the trainer exited with $code: its result (one JSON object) is in $logs/trainer.json, its log in $logs/trainer.log" >&2
exit "$code"
