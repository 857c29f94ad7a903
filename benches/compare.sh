#!/usr/bin/env bash
# The daemon beside its peers and beside this machine's limits, all measured in one run with
# the peers' own load tools (issue 14, item 4):
#
#   logbook  APPEND            driven by redis-benchmark (logbook speaks RESP)
#   Redis    XADD              appendonly yes, appendfsync always, driven by redis-benchmark
#   Postgres INSERT            into order_events, synchronous_commit on, driven by pgbench -f
#
# at 1 and 64 clients, next to two ceilings measured in the same run:
#   1 client:   1 / (PING round trip against Redis + one durable 256-byte write into a
#               preallocated file, write + fdatasync)
#   64 clients: redis-benchmark PING rate against Redis
#
# Usage: benches/compare.sh [logbook binary]... (default: target/release/logbook, or
#        $CARGO_TARGET_DIR/release/logbook). With several binaries (say a build before and
#        after a change), each runs as its own daemon and all are measured in the same rounds.
#        Environment: ROUNDS (default 3: every measurement is repeated, rounds interleaved, and
#        the median is shown, since a shared machine's disk and CPUs vary from minute to
#        minute), N1 (requests per measurement at 1 client, default 5000), N64 (at 64 clients,
#        default 100000), PG_SECONDS (pgbench run length, default 5), PORT_BASE (default
#        17800: Redis +1, PostgreSQL +2, logbook daemons +10, +11, ...).
#
# Starts a throw-away Redis and PostgreSQL (when installed) and a logbook daemon on temporary
# directories, and stops each by its PID on exit. Installs nothing: a missing peer is skipped
# and named, with the apt-get line that installs it.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
binaries=("$@")
[[ ${#binaries[@]} -eq 0 ]] && binaries=("${CARGO_TARGET_DIR:-$here/target}/release/logbook")
rounds="${ROUNDS:-3}"
n1="${N1:-5000}"
n64="${N64:-100000}"
pg_seconds="${PG_SECONDS:-5}"
port_base="${PORT_BASE:-17800}"
redis_port=$((port_base + 1))
pg_port=$((port_base + 2))
payload='{"order_id":"o-1842","customer_id":"c-77","total":12999,"currency":"EUR","items":[{"sku":"p-9","qty":2},{"sku":"p-41","qty":1}],"note":"leave at the door, ring twice"}'

for logbook in "${binaries[@]}"; do
    if [[ ! -x "$logbook" ]]; then
        echo "no logbook binary at $logbook (cargo build --release --bin logbook)" >&2
        exit 1
    fi
done
if ! command -v redis-benchmark >/dev/null; then
    echo "redis-benchmark is needed to drive the daemon: apt-get install redis-tools" >&2
    exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/logbook-compare.XXXXXX")"
pids=()
pg_data=""
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        # Not our children when pg_ctl started them: poll until gone.
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
    rm -rf "$work"
}
trap cleanup EXIT

skipped=()
wait_for() { # command... : retry for up to 10 s
    for _ in $(seq 1 100); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for: $*" >&2
    return 1
}
# redis-benchmark --csv prints "name","rps",avg,min,p50,p95,p99,max per test (the name of a
# custom command is its text, quotes unescaped, so fields are counted from the right): the rate
# of the test named $1, or of the only test.
rate_of() {
    local name="$1"
    awk -F'","' -v name="\"$1" 'NR > 1 && (name == "\"" || $1 == name) { print $(NF - 6); exit }'
}
bench() { # port clients requests [command...] -> requests/s
    local port=$1 clients=$2 requests=$3
    shift 3
    redis-benchmark -p "$port" -c "$clients" -n "$requests" -r 100000 --csv "$@" 2>/dev/null | rate_of ""
}
cpu_ticks() { # pid -> user + system CPU time so far, in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
bench_cpu() { # key pid port clients requests [command...]: adds the rate to key, and the
    # server's CPU µs per request to cpu:key
    local key=$1 pid=$2 port=$3 clients=$4 requests=$5 before after
    shift 5
    before=$(cpu_ticks "$pid")
    add "$key" "$(bench "$port" "$clients" "$requests" "$@")"
    after=$(cpu_ticks "$pid")
    add "cpu:$key" "$(calc "($after - $before) * 1e6 / $(getconf CLK_TCK) / $requests")"
}
calc() { python3 -c "print($1)"; }
ping_rate() { # port clients requests -> PING (RESP array form) requests/s
    redis-benchmark -p "$1" -c "$2" -n "$3" -t ping --csv 2>/dev/null | rate_of PING_MBULK
}

# --- the durable-write ceiling: 256-byte writes into a preallocated file, each made durable.
write_us() { # flag: fdatasync | dsync -> microseconds per durable write
    python3 - "$work/probe" "$1" <<'EOF'
import os, sys, time
path, how = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
os.posix_fallocate(fd, 0, 64 << 20)
os.fsync(fd)
os.close(fd)
flags = os.O_RDWR | (os.O_DSYNC if how == "dsync" else 0)
fd = os.open(path, flags)
record = b"\x5a" * 256
n, start = 0, time.perf_counter()
while time.perf_counter() - start < 2 or n < 50:
    os.pwrite(fd, record, n * 256)
    if how == "fdatasync":
        os.fdatasync(fd)
    n += 1
print("%.1f" % ((time.perf_counter() - start) / n * 1e6))
os.close(fd)
os.unlink(path)
EOF
}

# --- peers
redis_ok=no
if command -v redis-server >/dev/null; then
    mkdir -p "$work/redis"
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --save '' \
        --appendonly yes --appendfsync always --logfile "$work/redis/log" &
    redis_pid=$!
    pids+=($!)
    wait_for redis-cli -p "$redis_port" ping
    redis_ok=yes
else
    skipped+=("Redis (redis-server not installed: apt-get install redis-server redis-tools)")
fi

pg_ok=no
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
if [[ -n "$pg_bin" && -x "$pg_bin/initdb" ]] && command -v pgbench >/dev/null; then
    pg_data="$work/pg"
    mkdir -p "$pg_data"
    as_pg=()
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres "$work" "$pg_data"
        as_pg=(runuser -u postgres --)
    fi
    "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_data" -U postgres --auth=trust >"$work/initdb.log" 2>&1
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/log" -w \
        -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $pg_data -c max_connections=100 -c fsync=on -c synchronous_commit=on" \
        start >/dev/null
    pids+=("$(head -1 "$pg_data/postmaster.pid")")
    psql_pg() { "${as_pg[@]}" "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qAt "$@"; }
    psql_pg -c "CREATE TABLE order_events (position bigserial PRIMARY KEY, stream text NOT NULL, type text NOT NULL, data jsonb NOT NULL, recorded timestamptz NOT NULL DEFAULT now())"
    cat >"$work/insert.sql" <<EOF
\set order random(1, 100000)
INSERT INTO order_events (stream, type, data) VALUES ('order-' || :order, 'ORDER_PLACED', '$payload');
EOF
    chmod a+r "$work/insert.sql"
    pg_ok=yes
else
    skipped+=("PostgreSQL (initdb or pgbench not installed: apt-get install postgresql)")
fi
pg_tps() { # clients -> INSERT transactions/s
    "${as_pg[@]}" pgbench -n -h 127.0.0.1 -p "$pg_port" -U postgres -c "$1" -j "$(( $1 < 2 ? 1 : 2 ))" \
        -T "$pg_seconds" -f "$work/insert.sql" postgres 2>/dev/null |
        awk '/^tps = / { printf "%.0f\n", $3; exit }'
}

# --- logbook daemons, one per binary
lb_ports=()
lb_pids=()
for i in "${!binaries[@]}"; do
    port=$((port_base + 10 + i))
    "${binaries[$i]}" serve --data "$work/logbook-$i" --listen "127.0.0.1:$port" >"$work/logbook-$i.log" 2>&1 &
    pids+=($!)
    lb_pids+=($!)
    wait_for redis-cli -p "$port" ping
    lb_ports+=("$port")
done

# --- measurements: every one in every round, rounds interleaved; samples["key"] = "a b c"
declare -A samples
add() { samples[$1]="${samples[$1]:-} $2"; }
for round in $(seq 1 "$rounds"); do
    echo "round $round of $rounds ..." >&2
    add fsync "$(write_us fdatasync)"
    add dsync "$(write_us dsync)"
    for clients in 1 64; do
        n=$n1
        [[ $clients == 64 ]] && n=$n64
        if [[ $redis_ok == yes ]]; then
            add "ping_redis,$clients" "$(ping_rate "$redis_port" "$clients" "$n")"
        fi
        for i in "${!binaries[@]}"; do
            add "ping_lb$i,$clients" "$(ping_rate "${lb_ports[$i]}" "$clients" "$n")"
            bench_cpu "lb$i,$clients" "${lb_pids[$i]}" "${lb_ports[$i]}" "$clients" "$n" APPEND 'order-__rand_int__' ORDER_PLACED "$payload"
        done
        if [[ $redis_ok == yes ]]; then
            bench_cpu "xadd,$clients" "$redis_pid" "$redis_port" "$clients" "$n" XADD 'xorder-__rand_int__' '*' type ORDER_PLACED data "$payload"
            bench_cpu "rappend,$clients" "$redis_pid" "$redis_port" "$clients" "$n" APPEND 'sorder-__rand_int__' "$payload"
        fi
        if [[ $pg_ok == yes ]]; then
            add "pg,$clients" "$(pg_tps "$clients")"
        fi
    done
done

# --- the table (medians)
median() { # key -> median of its samples, or nothing
    [[ -z "${samples[$1]:-}" ]] && return
    python3 -c "import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:] if x))" ${samples[$1]}
}
fmt() { [[ -z "${1:-}" ]] && { echo "—"; return; }; printf "%.0f" "$1"; }
ratio() { [[ -z "${1:-}" || -z "${2:-}" ]] && { echo "—"; return; }; calc "'%.2f×' % ($1 / $2)"; }

fsync_us=$(median fsync)
dsync_us=$(median dsync)
ping_source="Redis"
ping1_ceiling=$(median "ping_redis,1")
ping64_ceiling=$(median "ping_redis,64")
if [[ -z "$ping1_ceiling" ]]; then
    # Without Redis, the PING ceilings are the (first) logbook's own PING.
    ping_source="logbook itself (no Redis)"
    ping1_ceiling=$(median "ping_lb0,1")
    ping64_ceiling=$(median "ping_lb0,64")
fi
ceiling1=$(calc "1 / (1 / $ping1_ceiling + $fsync_us / 1e6)")
rtt_us=$(calc "'%.1f' % (1e6 / $ping1_ceiling)")
echo
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(nproc) cores, load average at the end $(cut -d' ' -f1-3 /proc/loadavg); medians of $rounds interleaved rounds"
echo "ceilings (same run): PING round trip $rtt_us µs at 1 client against $ping_source;" \
    "durable 256-byte write into a preallocated file $(printf %.1f "$fsync_us") µs (pwrite + fdatasync; $(printf %.1f "$dsync_us") µs with O_DSYNC);" \
    "1-client ceiling = 1/(round trip + durable write) = $(fmt "$ceiling1")/s;" \
    "64-client ceiling = PING rate against $ping_source at 64 clients = $(fmt "$ping64_ceiling")/s"
for i in "${!binaries[@]}"; do
    echo "logbook $i = ${binaries[$i]}; its PING: 1 client $(fmt "$(median "ping_lb$i,1")")/s, 64 clients $(fmt "$(median "ping_lb$i,64")")/s"
done
echo
echo "| clients | what | ops/s | / best peer | / ceiling | server CPU µs per op |"
echo "|---:|---|---:|---:|---:|---:|"
for clients in 1 64; do
    best=""
    for peer in xadd rappend pg; do
        r=$(median "$peer,$clients")
        [[ -z "$r" ]] && continue
        if [[ -z "$best" ]] || python3 -c "import sys; sys.exit(0 if $r > $best else 1)"; then best=$r; fi
    done
    ceiling=$ceiling1
    [[ $clients == 64 ]] && ceiling=$ping64_ceiling
    for i in "${!binaries[@]}"; do
        r=$(median "lb$i,$clients")
        echo "| $clients | logbook $i APPEND | $(fmt "$r") | $(ratio "$r" "$best") | $(ratio "$r" "$ceiling") | $(fmt "$(median "cpu:lb$i,$clients")") |"
    done
    for peer in xadd rappend pg; do
        r=$(median "$peer,$clients")
        [[ -z "$r" ]] && continue
        case $peer in
            xadd) name="Redis XADD (appendfsync always)" ;;
            rappend) name="Redis APPEND (appendfsync always)" ;;
            pg) name="PostgreSQL INSERT (pgbench)" ;;
        esac
        echo "| $clients | $name | $(fmt "$r") | $(ratio "$r" "$best") | $(ratio "$r" "$ceiling") | $(fmt "$(median "cpu:$peer,$clients")") |"
    done
    echo "| $clients | ceiling | $(fmt "$ceiling") | | | |"
done
echo
echo "server CPU: user + system time of the daemon's process per request (PostgreSQL's backends are not counted: —)"
echo "aims: 1 client logbook >= 0.9x ceiling and >= 1.1x best peer; 64 clients >= 0.8x ceiling and >= 2x best peer"
for s in "${skipped[@]}"; do
    echo "skipped: $s"
done
