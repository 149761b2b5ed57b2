#!/usr/bin/env bash
# Benchmark of the real worker-stats backing up a >= 1 GiB PostgreSQL
# database into S3 (versitygw on loopback), against plain
# `pg_dump -Fc -Z1 > /dev/null` on the same database, rounds alternating.
# Reports wall times (median, min-max), the worker's peak RSS (VmHWM), dump
# size and compression, and writes the table to bench/backup/RESULTS.md.
#
#   bench/backup/run.sh [--rounds N] [--drop] [--drop-only] [--regenerate] [--keep-logs DIR]
#
#   --rounds N     backup rounds and pg_dump rounds each (default 3)
#   --drop         drop the benchmark database after the run
#   --drop-only    drop the benchmark database and exit
#   --regenerate   rebuild the database even if a complete one exists
#   --keep-logs D  copy the worker's and versitygw's logs and the raw round
#                  data into directory D at the end
#
# Needs: local PostgreSQL at 127.0.0.1:5432 (user postgres, trust) with
# pgcrypto available, redis-server (a private one is started on a free
# loopback port, so no other Redis user can flush the task away), go,
# psql, pg_dump, jq, curl. The database cepjobs_bench_backup is kept for
# re-runs (a marker in its comment says it is complete).
set -euo pipefail

ROUNDS=3
DROP=0
DROP_ONLY=0
REGEN=0
KEEP_LOGS=
while (($#)); do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--rounds=*) ROUNDS=${1#*=}; shift ;;
	--drop) DROP=1; shift ;;
	--drop-only) DROP_ONLY=1; shift ;;
	--regenerate) REGEN=1; shift ;;
	--keep-logs) KEEP_LOGS=$2; shift 2 ;;
	-h|--help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DB=cepjobs_bench_backup
PGBASE=postgresql://postgres@127.0.0.1:5432
DBURL="$PGBASE/$DB?sslmode=disable"
ADMINURL="$PGBASE/postgres?sslmode=disable"
REDIS_URL= # the private redis-server's, once started
# Orders rows; events get as many, attachments 2 in 5. ~1.1 GiB on disk.
TOTAL=760000
MIN_BYTES=$((1 << 30))
MARKER="cepjobs bench/backup v1 orders=$TOTAL complete"

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -d "$ADMINURL" "$@"; }
psql_db() { psql -X -q -v ON_ERROR_STOP=1 -d "$DBURL" "$@"; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

for tool in go psql pg_dump jq curl redis-server redis-cli; do
	command -v "$tool" >/dev/null || die "$tool not found"
done

drop_db() {
	log "dropping $DB"
	psql_admin -c "drop database if exists $DB with (force)"
}
if ((DROP_ONLY)); then
	drop_db
	exit 0
fi

# --- 1. the database --------------------------------------------------------

db_comment() {
	psql_admin -tAc "select coalesce(shobj_description(oid, 'pg_database'), '') from pg_database where datname = '$DB'"
}
db_size() { psql_admin -tAc "select pg_database_size('$DB')"; }

generate_db() {
	log "creating $DB (about 1.1 GiB; two sessions side by side)"
	local t0=$SECONDS
	psql_admin -c "drop database if exists $DB with (force)" -c "create database $DB"
	psql_db -v schema_only=1 -f "$HERE/generate.sql"
	local half=$((TOTAL / 2)) ahalf=$((TOTAL * 2 / 5 / 2)) p1 p2
	psql_db -v lo=1 -v hi=$half -v alo=1 -v ahi=$ahalf -v total=$TOTAL \
		-f "$HERE/generate.sql" &
	p1=$!
	psql_db -v lo=$((half + 1)) -v hi=$TOTAL -v alo=$((ahalf + 1)) -v ahi=$((TOTAL * 2 / 5)) -v total=$TOTAL \
		-f "$HERE/generate.sql" &
	p2=$!
	# If one half fails (or we are interrupted), stop the other too.
	trap 'kill $p1 $p2 2>/dev/null' EXIT
	wait $p1 || die "generation (first half)"
	wait $p2 || die "generation (second half)"
	trap - EXIT
	log "rows in after $((SECONDS - t0)) s; vacuum analyze (sets hint bits, so no pg_dump round pays for them)"
	psql_db -c "vacuum analyze"
	local size
	size=$(db_size)
	((size >= MIN_BYTES)) || die "$DB is only $size bytes; raise TOTAL in $0"
	log "measuring the uncompressed dump (pg_dump -Fc -Z0 | wc -c)"
	local raw
	raw=$(pg_dump -Fc -Z0 -d "$DBURL" | wc -c)
	psql_admin -c "comment on database $DB is '$MARKER raw_dump=$raw'"
	log "$DB ready in $((SECONDS - t0)) s: $size bytes, uncompressed dump $raw bytes"
}

comment=$(db_comment)
if ((REGEN)) || [[ $comment != "$MARKER raw_dump="* ]] || (($(db_size) < MIN_BYTES)); then
	generate_db
	comment=$(db_comment)
else
	log "reusing $DB ($(db_size) bytes)"
fi
RAW_DUMP=${comment##*raw_dump=}
DB_SIZE=$(db_size)

# --- 2. binaries, S3 server, worker -----------------------------------------

TMP=$(mktemp -d /tmp/cepjobs-bench-backup.XXXXXX)
WORKER_PID=
GW_PID=
REDIS_PID=
cleanup() {
	local rc=$?
	set +e
	if [[ -n $WORKER_PID ]] && kill -0 "$WORKER_PID" 2>/dev/null; then
		kill -TERM "$WORKER_PID"
		for _ in $(seq 100); do kill -0 "$WORKER_PID" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$WORKER_PID" 2>/dev/null && kill -KILL "$WORKER_PID"
		wait "$WORKER_PID" 2>/dev/null
	fi
	if [[ -n $GW_PID ]] && kill -0 "$GW_PID" 2>/dev/null; then
		kill -TERM "$GW_PID"
		wait "$GW_PID" 2>/dev/null
	fi
	if [[ -n $REDIS_PID ]] && kill -0 "$REDIS_PID" 2>/dev/null; then
		kill -TERM "$REDIS_PID"
		wait "$REDIS_PID" 2>/dev/null
	fi
	if ((rc != 0)) && [[ -f $TMP/worker.log ]]; then
		echo "--- last lines of the worker's log:" >&2
		tail -n 20 "$TMP/worker.log" >&2
	fi
	if [[ -n $KEEP_LOGS ]]; then
		mkdir -p "$KEEP_LOGS" && cp "$TMP"/*.log "$TMP"/*.jsonl "$KEEP_LOGS"/ 2>/dev/null
	fi
	rm -rf "$TMP"
	if ((DROP)); then drop_db; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building worker-stats and the enqueue helper"
(cd "$ROOT" && go build -o "$TMP/worker-stats" ./cmd/worker-stats && go build -o "$TMP/enqueue" ./bench/backup/enqueue)

# backuptest.BinaryPath: the cached versitygw v1.8.0 (~/.cache/cepjobs/tools/),
# built from the module proxy on first use (about 5 minutes on 2 cores).
GW=$(cd "$ROOT" && "$TMP/enqueue" -versitygw)
GW_PORT=$("$TMP/enqueue" -free-port)
S3_AK=bench-backup
S3_SK=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$TMP/s3"
"$GW" --port "127.0.0.1:$GW_PORT" --access "$S3_AK" --secret "$S3_SK" --region us-east-1 --quiet \
	posix "$TMP/s3" >"$TMP/versitygw.log" 2>&1 &
GW_PID=$!
for i in $(seq 100); do
	curl -s -o /dev/null "http://127.0.0.1:$GW_PORT/" && break
	kill -0 "$GW_PID" 2>/dev/null || die "versitygw exited: $(cat "$TMP/versitygw.log")"
	((i < 100)) || die "versitygw not answering on 127.0.0.1:$GW_PORT"
	sleep 0.1
done
log "versitygw on 127.0.0.1:$GW_PORT (pid $GW_PID)"

REDIS_PORT=$("$TMP/enqueue" -free-port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
	>"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
for i in $(seq 100); do
	redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 && break
	kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited: $(cat "$TMP/redis.log")"
	((i < 100)) || die "redis-server not answering at $REDIS_URL"
	sleep 0.1
done
log "redis-server on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"

# env -i: no stray CEPJOBS_* variable of the caller's reaches the worker
# (config.Load refuses unknown ones). Debug level for the engine's phase
# times; asynq's own logger stays at warn.
env -i PATH="$PATH" HOME="$HOME" \
	REDIS_URL="$REDIS_URL" \
	DATABASE_URL="$ADMINURL" \
	CEPJOBS_BACKUP_DATABASE_URL="$DBURL" \
	S3_ENDPOINT="127.0.0.1:$GW_PORT" S3_ACCESS_KEY="$S3_AK" S3_SECRET_KEY="$S3_SK" S3_REGION=us-east-1 \
	CEPJOBS_STATS_METRICS_ADDR=127.0.0.1:0 \
	CEPJOBS_LOG_LEVEL=debug \
	"$TMP/worker-stats" >"$TMP/worker.log" 2>&1 &
WORKER_PID=$!
for i in $(seq 100); do
	grep -q '"worker started"' "$TMP/worker.log" && break
	kill -0 "$WORKER_PID" 2>/dev/null || die "worker-stats exited: $(cat "$TMP/worker.log")"
	((i < 100)) || die "worker-stats not started after 10 s"
	sleep 0.1
done
METRICS=$(jq -r 'select(.msg == "worker started") | .metrics' "$TMP/worker.log")
curl -sf "http://$METRICS/healthz" >/dev/null || die "worker-stats /healthz does not answer on $METRICS"
IDLE_RSS=$(awk '/^VmRSS/ {print $2}' "/proc/$WORKER_PID/status")
log "worker-stats pid $WORKER_PID, metrics on $METRICS, idle VmRSS $IDLE_RSS KiB"
if grep -q '"level":"WARN"\|"level":"ERROR"' "$TMP/worker.log"; then
	log "worker-stats start-up warnings:"
	grep '"level":"WARN"\|"level":"ERROR"' "$TMP/worker.log" >&2
fi

# --- 3./4. rounds -----------------------------------------------------------

PGDUMP_CMD=(pg_dump -Fc -Z1 -d "$DBURL")
: >"$TMP/pgdump.jsonl"
: >"$TMP/backup.jsonl"

# Machine-wide CPU busy ticks (all cores; USER_HZ 100), and one process's
# utime+stime ticks: how much CPU a round used besides the processes we
# time (PostgreSQL backends, versitygw).
machine_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
proc_cpu() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
# gometric NAME: a value from the worker's /metrics (Go runtime collector).
gometric() { curl -sf "http://$METRICS/metrics" | awk -v n="$1" '$1 == n {printf "%.0f", $2}'; }
secs() { awk -v t="$1" 'BEGIN {printf "%.2f", t / 100}'; }

pgdump_round() {
	local b0 b1 line
	b0=$(machine_busy)
	line=$("$TMP/enqueue" -run -- "${PGDUMP_CMD[@]}") || die "pg_dump round"
	b1=$(machine_busy)
	line=$(jq -c --argjson m "$(secs $((b1 - b0)))" '. + {machine_busy_s: $m}' <<<"$line")
	echo "$line" >>"$TMP/pgdump.jsonl"
	jq -r '"  pg_dump:  \(.wall_s) s wall, \(.cpu_s) s CPU, max RSS \(.maxrss_kib) KiB, waited for a CPU \(.sampled.run_delay_s) s, machine CPU busy \(.machine_busy_s) s"' <<<"$line" >&2
}

backup_round() {
	local line b0 b1 g0 g1 a0 a1 gc0 gc1
	a0=$(gometric go_memstats_alloc_bytes_total)
	gc0=$(gometric go_gc_duration_seconds_count)
	b0=$(machine_busy)
	g0=$(proc_cpu "$GW_PID")
	line=$("$TMP/enqueue" -redis "$REDIS_URL" -pid "$WORKER_PID" -reset-hwm -worker-log "$TMP/worker.log" -timeout 20m) ||
		die "backup round"
	b1=$(machine_busy)
	g1=$(proc_cpu "$GW_PID")
	a1=$(gometric go_memstats_alloc_bytes_total)
	gc1=$(gometric go_gc_duration_seconds_count)
	line=$(jq -c --argjson m "$(secs $((b1 - b0)))" --argjson g "$(secs $((g1 - g0)))" \
		--argjson a $((a1 - a0)) --argjson gc $((gc1 - gc0)) --argjson hs "$(gometric go_memstats_heap_sys_bytes)" \
		--argjson hi "$(gometric go_memstats_heap_inuse_bytes)" --argjson hr "$(gometric go_memstats_heap_released_bytes)" \
		--argjson gr "$(gometric go_goroutines)" \
		'. + {machine_busy_s: $m, versitygw_cpu_s: $g, go_alloc_bytes: $a, go_gc_cycles: $gc, go_heap_sys_bytes: $hs,
		      go_heap_inuse_bytes: $hi, go_heap_released_bytes: $hr, goroutines: $gr}' <<<"$line")
	echo "$line" >>"$TMP/backup.jsonl"
	jq -r '"  backup:   \(.wall_s * 100 | round / 100) s wall (dump phase \(.dump_s) s, finalize \(.done_at_s - .finalize_at_s | . * 100 | round / 100) s), \(.size) bytes, VmHWM \(.vmhwm_kib) KiB (reset: \(.vmhwm_reset)), CPU s: worker \(.worker_cpu_s), pg_dump \(.children_cpu_s), versitygw \(.versitygw_cpu_s), machine busy \(.machine_busy_s); Go allocated \(.go_alloc_bytes / 1048576 | round) MiB in \(.go_gc_cycles) GCs; pg_dump waited for a CPU \(.pg_dump.run_delay_s) s, blocked on the pipe \(.pg_dump.pipe_wait_share * 100 | round)% of samples; heap sys/inuse/released \(.go_heap_sys_bytes / 1048576 | round)/\(.go_heap_inuse_bytes / 1048576 | round)/\(.go_heap_released_bytes / 1048576 | round) MiB, \(.goroutines) goroutines; RSS series \(.rss_series_kib)"' <<<"$line" >&2
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$SECONDS
for ((r = 1; r <= ROUNDS; r++)); do
	log "round $r/$ROUNDS"
	# The order alternates, so neither side always runs right after the other.
	if ((r % 2)); then pgdump_round; backup_round; else backup_round; pgdump_round; fi
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
LIFETIME_HWM=$(awk '/^VmHWM/ {print $2}' "/proc/$WORKER_PID/status")

# --- report -----------------------------------------------------------------

# stats FILE: "median min max" of a column of numbers.
stats() {
	sort -n "$1" | awk '{v[NR] = $1} END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.2f %.2f %.2f", m, v[1], v[NR]}'
}
col() { awk -v c="$2" '{print $c}' "$1"; }
jcol() { jq -r "$2" "$1"; }
fmt_row() { # label, "median min max", unit
	read -r m lo hi <<<"$2"
	printf '| %s | %s %s | %s–%s %s |\n' "$1" "$m" "$3" "$lo" "$hi" "$3"
}

jcol "$TMP/pgdump.jsonl" .wall_s >"$TMP/s.pgdump_wall"
jcol "$TMP/pgdump.jsonl" .cpu_s >"$TMP/s.pgdump_cpu"
jcol "$TMP/pgdump.jsonl" .maxrss_kib >"$TMP/s.pgdump_rss"
jcol "$TMP/pgdump.jsonl" .machine_busy_s >"$TMP/s.pgdump_busy"
jcol "$TMP/pgdump.jsonl" .sampled.run_delay_s >"$TMP/s.pgdump_delay"
jcol "$TMP/backup.jsonl" .pg_dump.run_delay_s >"$TMP/s.bk_delay"
jcol "$TMP/pgdump.jsonl" '.sampled.pipe_wait_share * 100' >"$TMP/s.pgdump_pipe"
jcol "$TMP/backup.jsonl" '.pg_dump.pipe_wait_share * 100' >"$TMP/s.bk_pipe"
jcol "$TMP/backup.jsonl" .machine_busy_s >"$TMP/s.bk_busy"
jcol "$TMP/backup.jsonl" .versitygw_cpu_s >"$TMP/s.bk_gw"
jcol "$TMP/backup.jsonl" .wall_s >"$TMP/s.bk_wall"
jcol "$TMP/backup.jsonl" .dump_s >"$TMP/s.bk_dump"
jcol "$TMP/backup.jsonl" '.done_at_s - .finalize_at_s' >"$TMP/s.bk_final"
jcol "$TMP/backup.jsonl" '.wall_s - .start_latency_s - .done_at_s' >"$TMP/s.bk_after"
jcol "$TMP/backup.jsonl" .start_latency_s >"$TMP/s.bk_start"
jcol "$TMP/backup.jsonl" .worker_cpu_s >"$TMP/s.bk_cpu"
jcol "$TMP/backup.jsonl" .children_cpu_s >"$TMP/s.bk_child"
jcol "$TMP/backup.jsonl" .vmhwm_kib >"$TMP/s.bk_hwm"

# Each round's backup against the pg_dump of the same round: the machine's
# load drifts between rounds, less within one.
paste "$TMP/s.bk_wall" "$TMP/s.pgdump_wall" | awk '{printf "%.3f\n", $1 / $2}' >"$TMP/s.ratio"
paste "$TMP/s.bk_child" "$TMP/s.bk_cpu" "$TMP/s.bk_gw" "$TMP/s.pgdump_cpu" | awk '{printf "%.3f\n", ($1 + $2 + $3) / $4}' >"$TMP/s.cpu_ratio"
PD=$(stats "$TMP/s.pgdump_wall")
BK=$(stats "$TMP/s.bk_wall")
BKD=$(stats "$TMP/s.bk_dump")
RATIO=$(awk -v a="${BK%% *}" -v b="${PD%% *}" 'BEGIN {printf "%.2f", a / b}')
RATIO_DUMP=$(awk -v a="${BKD%% *}" -v b="${PD%% *}" 'BEGIN {printf "%.2f", a / b}')
DUMP_SIZE=$(jq -r .size "$TMP/backup.jsonl" | sort -n | tail -1)
PEAK_HWM=$(sort -n "$TMP/s.bk_hwm" | tail -1)
((LIFETIME_HWM > PEAK_HWM)) && PEAK_HWM_NOTE=" (lifetime VmHWM $LIFETIME_HWM KiB)" || PEAK_HWM_NOTE=""
HWM_RESET=$(jq -s 'all(.vmhwm_reset)' "$TMP/backup.jsonl")
MIB() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }
SIZES=$(psql_db -tAc "select string_agg(format('%s %s', c.relname, pg_size_pretty(pg_total_relation_size(c.oid))), ', ' order by c.relname)
	from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'bench' and c.relkind = 'r'")

{
	echo "# worker-stats backup vs pg_dump"
	echo
	echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/backup/run.sh --rounds $ROUNDS\` ($ROUNDS rounds each, alternating)."
	echo
	echo "Machine: $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, Linux $(uname -r); shared and noisy, load average $LOAD_BEFORE before, $LOAD_AFTER after."
	echo "PostgreSQL server $(psql_admin -tAc 'show server_version'), $(pg_dump --version); $(go version | cut -d' ' -f3); versitygw v1.8.0 (posix backend, same disk) on loopback."
	echo
	echo "Database \`$DB\`: $DB_SIZE bytes ($(awk -v b="$DB_SIZE" 'BEGIN {printf "%.2f GiB", b / 2^30}')) by pg_database_size; tables $SIZES."
	echo
	echo "| measure | median | min–max |"
	echo "|---|---|---|"
	fmt_row "\`pg_dump -Fc -Z1\` > /dev/null, wall" "$PD" s
	fmt_row "worker-stats backup, enqueue → task completed" "$BK" s
	fmt_row "&nbsp;&nbsp;of which dump phase (pg_dump → S3, manifest \`duration\`)" "$BKD" s
	fmt_row "&nbsp;&nbsp;of which finalize (manifest, complete the multipart upload)" "$(stats "$TMP/s.bk_final")" s
	fmt_row "&nbsp;&nbsp;of which after Run (prune, result), ±0.05 s polling" "$(stats "$TMP/s.bk_after")" s
	fmt_row "&nbsp;&nbsp;enqueue → task active" "$(stats "$TMP/s.bk_start")" s
	echo "| **ratio backup / pg_dump (medians)** | **$RATIO** (dump phase alone: $RATIO_DUMP) | |"
	fmt_row "**ratio backup / pg_dump, each round's pair**" "$(stats "$TMP/s.ratio")" ×
	fmt_row "CPU ratio: (pg_dump + worker-stats + versitygw CPU in a backup) / standalone pg_dump CPU, each round's pair" "$(stats "$TMP/s.cpu_ratio")" ×
	fmt_row "pg_dump CPU (user+sys), standalone" "$(stats "$TMP/s.pgdump_cpu")" s
	fmt_row "pg_dump CPU inside the backup (worker's children)" "$(stats "$TMP/s.bk_child")" s
	fmt_row "pg_dump runnable but waiting for a CPU (schedstat), standalone" "$(stats "$TMP/s.pgdump_delay")" s
	fmt_row "pg_dump runnable but waiting for a CPU (schedstat), inside the backup" "$(stats "$TMP/s.bk_delay")" s
	fmt_row "pg_dump blocked on a full stdout pipe (share of 10 ms samples), standalone" "$(stats "$TMP/s.pgdump_pipe")" %
	fmt_row "pg_dump blocked on a full stdout pipe (share of 10 ms samples), inside the backup" "$(stats "$TMP/s.bk_pipe")" %
	fmt_row "worker-stats own CPU per backup" "$(stats "$TMP/s.bk_cpu")" s
	fmt_row "versitygw CPU per backup" "$(stats "$TMP/s.bk_gw")" s
	fmt_row "whole machine CPU busy (2 cores) during a pg_dump round" "$(stats "$TMP/s.pgdump_busy")" s
	fmt_row "whole machine CPU busy (2 cores) during a backup round" "$(stats "$TMP/s.bk_busy")" s
	echo "| **worker-stats peak RSS (VmHWM, max over rounds)** | **$(MIB "$PEAK_HWM")**$PEAK_HWM_NOTE | per round: $(paste -sd' ' "$TMP/s.bk_hwm") KiB |"
	echo "| worker-stats idle RSS before the first round | $(MIB "$IDLE_RSS") | |"
	echo "| worker-stats Go heap allocated per backup (GC cycles) | $(jq -s -r 'map(.go_alloc_bytes / 1048576 | round | tostring) | join(", ")' "$TMP/backup.jsonl") MiB ($(jq -s -r 'map(.go_gc_cycles | tostring) | join(", ")' "$TMP/backup.jsonl") GCs) | heap sys after: $(jq -s -r 'map(.go_heap_sys_bytes / 1048576 | round | tostring) | join(", ")' "$TMP/backup.jsonl") MiB |"
	echo "| standalone pg_dump max RSS | $(MIB "$(sort -n "$TMP/s.pgdump_rss" | tail -1)") | |"
	echo "| dump size (\`-Fc -Z1\`) | $DUMP_SIZE bytes ($(awk -v b="$DUMP_SIZE" 'BEGIN {printf "%.0f MiB", b / 2^20}')) | |"
	echo "| compression: uncompressed dump (\`-Fc -Z0\`) / \`-Z1\` dump | $(awk -v a="$RAW_DUMP" -v b="$DUMP_SIZE" 'BEGIN {printf "%.2f : 1", a / b}') ($RAW_DUMP bytes raw) | |"
	echo "| database size / dump size | $(awk -v a="$DB_SIZE" -v b="$DUMP_SIZE" 'BEGIN {printf "%.2f : 1", a / b}') | |"
	echo
	echo "VmHWM is read from \`/proc/<pid>/status\` of the worker-stats process after each task completed; it was reset before each round (\`echo 5 > /proc/<pid>/clear_refs\`; reset worked: $HWM_RESET), so each round's figure is that round's peak. pg_dump runs as a child of the worker and is not included (its own max RSS is shown above for the standalone run)."
	echo
	echo "Commands:"
	echo
	echo '```'
	echo "pg_dump -Fc -Z1 -d '$DBURL' > /dev/null   # run by: enqueue -run -- pg_dump ..., which samples it"
	echo "worker-stats with REDIS_URL=$REDIS_URL DATABASE_URL='$ADMINURL' CEPJOBS_BACKUP_DATABASE_URL='$DBURL' S3_ENDPOINT=127.0.0.1:<port> (versitygw) CEPJOBS_STATS_METRICS_ADDR=127.0.0.1:0 CEPJOBS_LOG_LEVEL=debug"
	echo "go run ./bench/backup/enqueue -redis $REDIS_URL -pid <worker pid> -reset-hwm   # one backup:database task, waits for completion"
	echo '```'
	echo
	echo "Per round (backup):"
	echo
	echo "| round | wall s | dump s | finalize s | size | VmHWM KiB | VmRSS KiB at each tenth of the round | CPU s: worker / pg_dump / versitygw / machine | Go heap after, MiB: sys / inuse / released; goroutines |"
	echo "|---|---|---|---|---|---|---|---|---|"
	jq -r '"| \(input_line_number) | \(.wall_s * 100 | round / 100) | \(.dump_s) | \(.done_at_s - .finalize_at_s | . * 100 | round / 100) | \(.size) | \(.vmhwm_kib) | \(.rss_series_kib | map(tostring) | join(" ")) | \(.worker_cpu_s) / \(.children_cpu_s) / \(.versitygw_cpu_s) / \(.machine_busy_s) | \(.go_heap_sys_bytes / 1048576 | round) / \(.go_heap_inuse_bytes / 1048576 | round) / \(.go_heap_released_bytes / 1048576 | round); \(.goroutines) |"' "$TMP/backup.jsonl"
	echo
	echo "pg_dump rounds (wall s, CPU s, max RSS KiB, waited for a CPU s, machine CPU busy s): $(jq -r '"\(.wall_s) \(.cpu_s) \(.maxrss_kib) \(.sampled.run_delay_s) \(.machine_busy_s)"' "$TMP/pgdump.jsonl" | paste -sd';' | sed 's/;/; /g')."
} >"$TMP/RESULTS.md"

cp "$TMP/RESULTS.md" "$HERE/RESULTS.md"
cat "$HERE/RESULTS.md"
log "done in $((SECONDS - T_START)) s of rounds; results in bench/backup/RESULTS.md"
