#!/usr/bin/env bash
# Container check for berth (not part of `npm test`; run with `npm run test:container`):
#   1. builds docker/Dockerfile with podman (or a working docker engine);
#   2. bridge network, control port and passive range published 1:1, BERTH_PASSIVE_ADDRESS=127.0.0.1:
#      FileZilla (fz-check.sh) in passive mode, and the image's HEALTHCHECK; then implicit FTPS only,
#      with every capability dropped but NET_BIND_SERVICE and the password from BERTH_PASSWORD_FILE:
#      a login on port 990 and the HEALTHCHECK;
#   3. --network host: FileZilla in active and passive mode;
#   4. `stop` during a running upload: the container exits 0 within 10 s, the running upload
#      completes, and a file stored before is still there.
# Skips (exit 0) where no container engine exists. Knobs: BERTH_CT_ENGINE=podman|docker,
# BERTH_CT_IMAGE (default berth:test), BERTH_CT_NOBUILD=1, BERTH_CT_NOFZ=1 (skip FileZilla).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TOOLS=${BERTH_CT_TOOLS:-$ROOT/../shared/tools}
IMAGE=${BERTH_CT_IMAGE:-berth:test}
USER_NAME=ctuser
USER_PASS=ct-$RANDOM-$RANDOM
FAILS=0
RESULTS=()

say() { printf '%s\n' "container: $*"; }
result() { RESULTS+=("$1  $2"); [ "$1" = PASS ] || FAILS=$((FAILS + 1)); say "$1 $2"; }

ENGINE=${BERTH_CT_ENGINE:-}
if [ -z "$ENGINE" ]; then
  if command -v podman >/dev/null 2>&1; then ENGINE=podman
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then ENGINE=docker
  fi
fi
if [ -z "$ENGINE" ]; then
  say "SKIP: no container engine (podman, or docker with a running daemon) on this machine"
  exit 0
fi
say "engine: $ENGINE"

if [ "$ENGINE" = podman ] && ! podman image exists docker.io/library/node:20-bookworm-slim 2>/dev/null \
  && [ -x "$TOOLS/containers/make-base-images.sh" ]; then
  say "building local base images (make-base-images.sh)"
  "$TOOLS/containers/make-base-images.sh" || { say "FAIL: base images"; exit 1; }
fi

if [ "${BERTH_CT_NOBUILD:-0}" != 1 ]; then
  say "building $IMAGE"
  fmt=(); [ "$ENGINE" = podman ] && fmt=(--format docker)   # keeps the HEALTHCHECK
  $ENGINE build "${fmt[@]}" -f docker/Dockerfile -t "$IMAGE" . >/tmp/berth-ct-build.log 2>&1 \
    || { tail -30 /tmp/berth-ct-build.log; say "FAIL: image build (log: /tmp/berth-ct-build.log)"; exit 1; }
fi

WORK=$(mktemp -d /tmp/berth-ct.XXXXXX)
mkdir -p "$WORK/data" "$WORK/users"
chown -R 1000:1000 "$WORK/data" "$WORK/users" 2>/dev/null || chmod 0777 "$WORK/data" "$WORK/users"
NAMES=()
cleanup() { for n in "${NAMES[@]}"; do $ENGINE rm -f "$n" >/dev/null 2>&1; done; }
trap cleanup EXIT

# waits until HOST:PORT greets with 220 (or 30 s pass)
wait_220() {
  local host=$1 port=$2 i
  for i in $(seq 1 60); do
    if timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port; head -c 3 <&3" 2>/dev/null | grep -q 220; then return 0; fi
    sleep 0.5
  done
  return 1
}

fz() { # fz LABEL PORT MODE
  if [ "${BERTH_CT_NOFZ:-0}" = 1 ] || ! command -v filezilla >/dev/null 2>&1 || [ ! -x "$TOOLS/filezilla/fz-check.sh" ]; then
    say "FileZilla not available: $1 skipped"; return 0
  fi
  local out
  out=$("$TOOLS/filezilla/fz-check.sh" 127.0.0.1 "$2" "$USER_NAME" "$USER_PASS" plain "$3" 2>&1)
  local rc=$?
  printf '%s\n' "$out" | tail -1
  if [ $rc -eq 0 ]; then result PASS "$1"; else printf '%s\n' "$out" | tail -40; result FAIL "$1"; fi
}

common_env=(-e "BERTH_USER=$USER_NAME" -e "BERTH_PASSWORD=$USER_PASS" -e BERTH_LOG_LEVEL=info
  -v "$WORK/data:/data" -v "$WORK/users:/users")

# --- 2. bridge network, passive ---
BR=berth-ct-bridge-$$; NAMES+=("$BR")
$ENGINE run -d --name "$BR" -p 127.0.0.1:22021:21 -p 127.0.0.1:21100-21110:21100-21110 \
  -e BERTH_PASSIVE_ADDRESS=127.0.0.1 "${common_env[@]}" "$IMAGE" 2>/dev/null >/dev/null \
  || { say "FAIL: cannot start the bridge container"; exit 1; }
if wait_220 127.0.0.1 22021; then result PASS "bridge: 220 greeting on published port 21"
else $ENGINE logs "$BR" | tail -20; result FAIL "bridge: no 220 greeting"; fi
listening=""   # the log line may come a moment after the 220 (pino writes asynchronously)
for _ in $(seq 20); do
  listening=$($ENGINE logs "$BR" 2>&1 | grep '"event":"listening"') && break
  sleep 0.25
done
# The image's /config/berth.yaml repeats the defaults, which its ENV overrides without a warning.
if $ENGINE logs "$BR" 2>&1 | grep -q '"event":"env-override"'; then
  $ENGINE logs "$BR" 2>&1 | grep '"event":"env-override"'; result FAIL "image: a stock start warns about its own ENV"
else result PASS "image: a stock start logs no env-override warning"; fi
if printf '%s' "$listening" | grep -q '"sendfile":"on"'; then result PASS "image: plain downloads by sendfile (native/ built)"
else printf '%s\n' "${listening:-no listening line}"; result FAIL "image: sendfile not on"; fi
if printf '%s' "$listening" | grep -q '"jail":"held"'; then result PASS "image: the jail holds what it checked (/proc/self/fd)"
else printf '%s\n' "${listening:-no listening line}"; result FAIL "image: the jail cannot hold directories"; fi
if printf '%s' "$listening" | grep -q '"beneath":"on"'; then result PASS "image: paths open below the held home in one call (openat2 allowed)"
else printf '%s\n' "${listening:-no listening line}"; result FAIL "image: no openat2 below the home (addon, kernel or seccomp)"; fi
if $ENGINE exec "$BR" node -e 'process.exit(typeof require("/app/native/build/berth_native.node").lstatNames === "function" ? 0 : 1)' 2>/dev/null
then result PASS "image: listings stat'ed by the addon (lstatNames)"
else result FAIL "image: the addon has no lstatNames"; fi
if $ENGINE exec "$BR" node -e 'process.exit(typeof require("/app/native/build/berth_native.node").watchReadable === "function" ? 0 : 1)' 2>/dev/null
then result PASS "image: small plain uploads read without a Socket (watchReadable, libuv's header found)"
else result FAIL "image: the addon has no watchReadable"; fi
# RNTO by a user without overwrite: renameat2 with RENAME_NOREPLACE under the engine's seccomp
# profile (native/rename.c): a free name is taken (0), a taken one refused (-EEXIST, -17).
if $ENGINE exec "$BR" node -e '
  const a = require("/app/native/build/berth_native.node"), fs = require("fs"), os = require("os"), p = require("path");
  const d = fs.mkdtempSync(p.join(os.tmpdir(), "nr-"));
  fs.writeFileSync(p.join(d, "a"), "a"); fs.writeFileSync(p.join(d, "b"), "b");
  const free = a.renameNoReplace(p.join(d, "a"), p.join(d, "c")), taken = a.renameNoReplace(p.join(d, "c"), p.join(d, "b"));
  fs.rmSync(d, { recursive: true });
  process.exit(free === 0 && taken === -17 ? 0 : 1);' 2>/dev/null
then result PASS "image: renames that never replace (renameat2 RENAME_NOREPLACE allowed)"
else result FAIL "image: no renameat2 RENAME_NOREPLACE (addon or seccomp)"; fi
# A new file's upload: created by openat2 with O_CREAT | O_EXCL below a directory held open, under
# the engine's seccomp profile (native/beneath.c createBeneath): a new name gives a descriptor, a
# taken one -EEXIST (-17).
if $ENGINE exec "$BR" node -e '
  const a = require("/app/native/build/berth_native.node"), fs = require("fs"), os = require("os"), p = require("path");
  const d = fs.mkdtempSync(p.join(os.tmpdir(), "cb-")), c = fs.constants;
  const dir = fs.openSync(d, 0o10000000 | c.O_DIRECTORY), NEW = c.O_WRONLY | c.O_CREAT | c.O_EXCL | c.O_NOFOLLOW;
  const fd = a.createBeneath(dir, "n", NEW, 0o644), taken = a.createBeneath(dir, "n", NEW, 0o644);
  const made = fd >= 0 && fs.fstatSync(fd).ino === fs.statSync(p.join(d, "n")).ino;
  if (fd >= 0) fs.closeSync(fd);
  fs.closeSync(dir); fs.rmSync(d, { recursive: true });
  process.exit(made && taken === -17 ? 0 : 1);' 2>/dev/null
then result PASS "image: new files created below the held home in one call (openat2 O_CREAT allowed)"
else result FAIL "image: no createBeneath (addon or seccomp)"; fi
# The image's addon sets listener options (native/sockopt.c), and a control connection made inside
# the container has a keep-alive timer running ("tr" 02) on berth's side of port 21.
if $ENGINE exec "$BR" node -e '
  if (typeof require("/app/native/build/berth_native.node").listenerOptions !== "function") process.exit(1);
  const s = require("net").connect(21, "127.0.0.1");
  setTimeout(() => {
    const fs = require("fs");
    const rows = ["/proc/net/tcp", "/proc/net/tcp6"].flatMap((f) => fs.readFileSync(f, "latin1").split("\n").slice(1));
    const ours = rows.map((r) => r.trim().split(/\s+/)).filter((c) => c[1] && c[1].endsWith(":0015") && c[3] === "01");
    s.destroy();
    process.exit(ours.length > 0 && ours.every((c) => c[5].startsWith("02:")) ? 0 : 1);
  }, 500);' 2>/dev/null
then result PASS "image: the addon sets listener options, and a control connection has its keep-alive timer"
else result FAIL "image: no listenerOptions in the addon, or no keep-alive timer on a control connection"; fi
if [ "$ENGINE" = podman ]; then
  if podman healthcheck run "$BR" >/dev/null 2>&1; then result PASS "bridge: HEALTHCHECK healthy"
  else result FAIL "bridge: HEALTHCHECK"; fi
else
  if $ENGINE exec "$BR" node /app/docker/healthcheck.mjs; then result PASS "bridge: health script"
  else result FAIL "bridge: health script"; fi
fi
if $ENGINE exec "$BR" sh -c 'id -un; command -v berth' | tr '\n' ' ' | grep -q '^node /usr/local/bin/berth'; then
  result PASS "image: runs as node, berth on PATH"
else result FAIL "image: user/PATH"; fi
if $ENGINE exec "$BR" berth selftest >"$WORK/selftest.out" 2>&1; then result PASS "bridge: berth selftest inside the container"
else cat "$WORK/selftest.out"; result FAIL "bridge: berth selftest inside the container"; fi
fz "bridge: FileZilla plain passive" 22021 passive
$ENGINE stop -t 10 "$BR" >/dev/null 2>&1

# --- 2b. implicit FTPS only, every capability dropped but NET_BIND_SERVICE, password from a file ---
IM=berth-ct-implicit-$$; NAMES+=("$IM")
mkdir -p "$WORK/secrets" "$WORK/im-data" "$WORK/im-users"
printf '%s\n' "$USER_PASS" >"$WORK/secrets/pw"
chmod 0644 "$WORK/secrets/pw"
chown -R 1000:1000 "$WORK/im-data" "$WORK/im-users" 2>/dev/null || chmod 0777 "$WORK/im-data" "$WORK/im-users"
$ENGINE run -d --name "$IM" --cap-drop ALL --cap-add NET_BIND_SERVICE -e BERTH_TLS_MODE=implicit \
  -e "BERTH_USER=$USER_NAME" -e BERTH_PASSWORD_FILE=/run/secrets/pw -v "$WORK/secrets/pw:/run/secrets/pw:ro" \
  -v "$WORK/im-data:/data" -v "$WORK/im-users:/users" "$IMAGE" 2>/dev/null >/dev/null \
  || { say "FAIL: cannot start the implicit-FTPS container"; exit 1; }
# A login over implicit FTPS on port 990 inside the container (any certificate: berth made its own).
implicit_login() {
  $ENGINE exec -e "U=$USER_NAME" -e "P=$USER_PASS" "$IM" node -e '
    const s = require("tls").connect({ host: "127.0.0.1", port: 990, rejectUnauthorized: false });
    let buf = "", step = 0;
    s.on("error", () => process.exit(1));
    s.on("data", (c) => {
      buf += c;
      const lines = buf.split("\r\n").filter((l) => /^\d{3} /.test(l));
      if (step === 0 && lines.some((l) => l.startsWith("220"))) { step = 1; buf = ""; s.write(`USER ${process.env.U}\r\n`); }
      else if (step === 1 && lines.some((l) => l.startsWith("331"))) { step = 2; buf = ""; s.write(`PASS ${process.env.P}\r\n`); }
      else if (step === 2 && lines.length > 0) process.exit(lines[0].startsWith("230") ? 0 : 1);
    });
    setTimeout(() => process.exit(1), 5000);' 2>/dev/null
}
ok=0
for _ in $(seq 1 60); do implicit_login && { ok=1; break; }; sleep 0.5; done
if [ $ok = 1 ]; then result PASS "implicit FTPS, --cap-drop ALL --cap-add NET_BIND_SERVICE: login on 990 with BERTH_PASSWORD_FILE"
else $ENGINE logs "$IM" 2>&1 | tail -20; result FAIL "implicit FTPS: no login on 990"; fi
if [ "$ENGINE" = podman ]; then
  if podman healthcheck run "$IM" >/dev/null 2>&1; then result PASS "implicit FTPS only: HEALTHCHECK healthy"
  else $ENGINE exec "$IM" node /app/docker/healthcheck.mjs; result FAIL "implicit FTPS only: HEALTHCHECK"; fi
else
  if $ENGINE exec "$IM" node /app/docker/healthcheck.mjs; then result PASS "implicit FTPS only: health script"
  else result FAIL "implicit FTPS only: health script"; fi
fi
$ENGINE stop -t 10 "$IM" >/dev/null 2>&1

# --- 3. host network, active and passive ---
HO=berth-ct-host-$$; NAMES+=("$HO")
$ENGINE run -d --name "$HO" --network host -e BERTH_LISTEN_HOST=127.0.0.1 -e BERTH_LISTEN_PORT=22031 \
  -e BERTH_PASSIVE_PORTS=22110-22120 "${common_env[@]}" "$IMAGE" 2>/dev/null >/dev/null \
  || { say "FAIL: cannot start the host-network container"; exit 1; }
if wait_220 127.0.0.1 22031; then result PASS "host network: 220 greeting"
else $ENGINE logs "$HO" | tail -20; result FAIL "host network: no 220 greeting"; fi
fz "host network: FileZilla plain active" 22031 active
fz "host network: FileZilla plain passive" 22031 passive

# --- 4. stop during a running upload ---
head -c 300000 /dev/urandom >"$WORK/early.bin"
head -c 6000000 /dev/urandom >"$WORK/big.bin"
URL="ftp://$USER_NAME:$USER_PASS@127.0.0.1:22031"
curl -sS --ftp-pasv -T "$WORK/early.bin" "$URL/early.bin" || result FAIL "stop: first upload"
curl -sS --ftp-pasv --limit-rate 1000k -T "$WORK/big.bin" "$URL/during.bin" >"$WORK/curl.out" 2>&1 &
CURL=$!
sleep 1.5
t0=$(date +%s.%N)
$ENGINE stop -t 10 "$HO" >/dev/null 2>&1
t1=$(date +%s.%N)
wait $CURL; curl_rc=$?
code=$($ENGINE inspect -f '{{.State.ExitCode}}' "$HO" 2>/dev/null)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
say "stop took ${secs}s, exit code $code, running upload: curl exit $curl_rc"
if [ "$code" = 0 ] && awk -v s="$secs" 'BEGIN { exit !(s < 10) }'; then result PASS "stop: exit 0 in ${secs}s (< 10 s)"
else $ENGINE logs "$HO" 2>&1 | tail -20; result FAIL "stop: exit code $code after ${secs}s"; fi
home=$(find "$WORK/data" -maxdepth 1 -mindepth 1 -type d | head -1)
if cmp -s "$WORK/early.bin" "$home/early.bin"; then result PASS "stop: file stored before is intact"
else result FAIL "stop: file stored before is missing or changed"; fi
if [ $curl_rc -eq 0 ] && cmp -s "$WORK/big.bin" "$home/during.bin"; then result PASS "stop: running upload finished within the grace time"
else cat "$WORK/curl.out"; result FAIL "stop: running upload (curl exit $curl_rc)"; fi

echo
say "summary"
printf '  %s\n' "${RESULTS[@]}"
if [ $FAILS -eq 0 ]; then say "PASS (all ${#RESULTS[@]})"; rm -rf "$WORK"; exit 0; fi
say "FAIL ($FAILS of ${#RESULTS[@]}; files in $WORK)"
exit 1
