#!/usr/bin/env bash
# make run: start a single-node orch dev cluster on this machine and run a demo web task.
# Needs root. Starts containerd and a local registry when they are not running, builds the
# demo image from busybox-static (no internet needed), starts `orch-scheduler --dev` in the
# background and runs the demo task. `make stop` (this script with "stop") undoes it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/bin
RUN=$ROOT/.data            # pid files and logs of what this script started
DATA=${ORCH_DATA:-/var/lib/orch}
REGISTRY=127.0.0.1:5000
SOCK=/run/containerd/containerd.sock
mkdir -p "$RUN"
# orchctl verifies the scheduler with the cluster CA and authenticates with an API token;
# `orchctl configure` (below) saves both in ~/.orch/config.json, $RUN/token keeps the token.
TOKEN_FILE=$RUN/token
orchctl_env() {
	ORCHCTL="$BIN/orchctl --endpoint 127.0.0.1:7400 --ca-cert $DATA/ca.pem"
	if [ -s "$TOKEN_FILE" ]; then ORCHCTL="$ORCHCTL --token $(cat "$TOKEN_FILE")"; fi
}
orchctl_env

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
start_bg() { # name, command...
	local name=$1; shift
	nohup "$@" >"$RUN/$name.log" 2>&1 &
	echo $! >"$RUN/$name.pid"
}
wait_for() { # description, command...
	local what=$1; shift
	for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "timed out waiting for $what" >&2; return 1
}

if [ "${1:-}" = stop ]; then
	if alive orch-scheduler; then
		say "stopping tasks"
		for c in $($ORCHCTL list-clusters -o json 2>/dev/null | sed -n 's/.*cluster\/\([^"]*\)".*/\1/p'); do
			for t in $($ORCHCTL list-tasks --cluster "$c" -o json | sed -n 's/.*task\/[^/]*\/\([0-9a-f]*\)".*/\1/p'); do
				$ORCHCTL stop-task --cluster "$c" --task "$t" --wait >/dev/null || true
			done
		done
	fi
	for p in orch-scheduler registry containerd; do
		if alive $p; then say "stopping $p"; kill "$(cat "$RUN/$p.pid")"; fi
		rm -f "$RUN/$p.pid"
	done
	exit 0
fi

[ "$(id -u)" = 0 ] || { echo "make run needs root (containers, network namespaces)" >&2; exit 1; }

if ! ctr --address "$SOCK" version >/dev/null 2>&1; then
	say "starting containerd"
	start_bg containerd containerd
	wait_for containerd ctr --address "$SOCK" version
fi

if ! curl -sf "http://$REGISTRY/v2/" >/dev/null; then
	say "starting a local OCI registry on $REGISTRY"
	mkdir -p "$RUN/registry"
	cat >"$RUN/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $RUN/registry
http:
  addr: $REGISTRY
YML
	start_bg registry docker-registry serve "$RUN/registry.yml"
	wait_for registry curl -sf "http://$REGISTRY/v2/"
fi

say "building the demo image from busybox-static"
"$BIN/orch-testimage" -registry "$REGISTRY" -image demo/web:latest -demo-web

if ! alive orch-scheduler; then
	say "starting orch-scheduler --dev (data in $DATA, log in $RUN/orch-scheduler.log)"
	start_bg orch-scheduler "$BIN/orch-scheduler" --dev --data-dir "$DATA"
fi
wait_for "the scheduler" curl -sf http://127.0.0.1:7401/healthz
wait_for "the cluster CA" test -s "$DATA/ca.pem"
if [ ! -s "$TOKEN_FILE" ]; then
	say "creating the first API token (orchctl operator bootstrap-token; shown once, kept in $TOKEN_FILE)"
	umask 077
	if ! $ORCHCTL operator bootstrap-token -o json >"$RUN/bootstrap.json"; then
		echo "the API token bootstrap of $DATA was done before and its token is not in $TOKEN_FILE:" >&2
		echo "use that token (orchctl configure --token ...) or start from an empty data dir (make stop; rm -rf $DATA)" >&2
		exit 1
	fi
	sed -n 's/.*"secretId": *"\([^"]*\)".*/\1/p' "$RUN/bootstrap.json" >"$TOKEN_FILE"
	rm -f "$RUN/bootstrap.json"
	umask 022
fi
orchctl_env
say "saving the endpoint, CA and token for orchctl (orchctl configure)"
$ORCHCTL configure --endpoint 127.0.0.1:7400 --ca-cert "$DATA/ca.pem" --token "$(cat "$TOKEN_FILE")"
wait_for "the embedded agent" sh -c "$ORCHCTL describe-container-instances -o json | grep -q '\"agentConnected\": true'"

say "registering examples/web.json and running it"
$ORCHCTL register-task-definition --cli-input-json "file://$ROOT/examples/web.json"
out=$($ORCHCTL run-task --task-definition web --wait -o json)
id=$(printf '%s' "$out" | sed -n 's/.*"taskArn": "[^"]*\/\([0-9a-f]*\)".*/\1/p' | head -1)
ip=$(printf '%s' "$out" | sed -n 's/.*"privateIpv4Address": "\([0-9.]*\)".*/\1/p' | head -1)
$ORCHCTL describe-tasks --tasks "$id"
say "curl http://$ip/"
curl -s --max-time 5 "http://$ip/"

cat <<MSG

orch is running: a single-node cluster (scheduler + agent) in one process, and the demo task
$id is serving on its own IP $ip.
Every connection is TLS with the cluster CA ($DATA/ca.pem); orchctl authenticates with the API
token saved by \`orchctl configure\` in ~/.orch/config.json. Add an agent on another machine with
  orch-agent --scheduler <this-host>:7400 --join-token "\$(orchctl operator join-token worker)"
(with the scheduler listening beyond loopback: orch-scheduler --grpc-addr 0.0.0.0:7400).
Try next:
  export PATH=$BIN:\$PATH
  orchctl list-tasks
  orchctl describe-tasks --tasks $id -o json
  orchctl logs $id --follow
  curl http://$ip/
  orchctl create-cluster --cluster-name homelab
  orchctl run-task --cluster homelab --task-definition web --count 2 --wait
  orchctl list-container-instances --cluster homelab
  orchctl stop-task --task $id --reason done --wait
  make stop          # stop every task, the scheduler, and what make run started
MSG
