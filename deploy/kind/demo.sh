#!/usr/bin/env bash
# berth on kind: a kind cluster (one control-plane node, two workers) with berth installed
# from the Helm chart, an FRR router container on the kind Docker network that every node
# peers with over BGP, and an echo Deployment behind two LoadBalancer Services: one from an
# L2 pool carved from the kind network (answered for with ARP), one from a BGP pool (routed
# through FRR). It shows both answering curl from this host. docs/kind.md says more.
#
# Usage:
#   deploy/kind/demo.sh [up]          create, or reuse, all of it and curl both Services
#   deploy/kind/demo.sh down          remove the cluster, the FRR container and the host route
#   deploy/kind/demo.sh render DIR    only write what `up` would apply (manifests, FRR config,
#                                     images, helm arguments) into DIR; deploy/kind_test.go
#                                     checks it against the chart and the CRDs
#
# Needs Docker, Go (builds the pinned kind and helm, hack/kind and hack/helm), curl, iproute2,
# and root for one command: `ip route replace BGP_POOL via FRR`, so that this host routes the
# BGP pool through FRR. Run as root, or the script runs that command with sudo.
#
# Environment (default):
#   CLUSTER_NAME      the kind cluster; the FRR container is CLUSTER_NAME-frr (berth)
#   NODE_IMAGE        kind's node image (kind's default for its version)
#   CONTROLLER_IMAGE  repository of the berth-controller image built and loaded (berth-controller)
#   SPEAKER_IMAGE     repository of the berth-speaker image built and loaded (berth-speaker)
#   IMAGE_TAG         tag of both (kind)
#   GO_IMAGE          the Dockerfiles' Go build image (theirs)
#   FRR_IMAGE         the router (frrouting/frr:v9.1.0)
#   ECHO_IMAGE        the workload, an image of hashicorp/http-echo (hashicorp/http-echo:1.0)
#   BERTH_ASN         the nodes' AS (64512)
#   ROUTER_ASN        FRR's AS (64500)
#   BGP_POOL          the BGP pool, an IPv4 CIDR routed on this host via FRR (203.0.113.0/24)
#   L2_POOL           the L2 pool (the top /28 of the kind network's IPv4 subnet)
#   KIND_SUBNET       the kind network's IPv4 subnet (read with docker network inspect)
#   FRR_IP            FRR's address (read with docker inspect; set it for render)
#   KUBECTL           kubectl to use (kubectl on PATH, else the one in the control-plane node)
#   KIND_EXPERIMENTAL_DOCKER_NETWORK  kind's Docker network (kind)
#   BERTH_CACHE       where kind, helm, the kubeconfig and the rendered files go (~/.cache/berth)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

CLUSTER_NAME=${CLUSTER_NAME:-berth}
NODE_IMAGE=${NODE_IMAGE:-}
CONTROLLER_IMAGE=${CONTROLLER_IMAGE:-berth-controller}
SPEAKER_IMAGE=${SPEAKER_IMAGE:-berth-speaker}
IMAGE_TAG=${IMAGE_TAG:-kind}
GO_IMAGE=${GO_IMAGE:-}
FRR_IMAGE=${FRR_IMAGE:-frrouting/frr:v9.1.0}
ECHO_IMAGE=${ECHO_IMAGE:-hashicorp/http-echo:1.0}
BERTH_ASN=${BERTH_ASN:-64512}
ROUTER_ASN=${ROUTER_ASN:-64500}
BGP_POOL=${BGP_POOL:-203.0.113.0/24}
L2_POOL=${L2_POOL:-}
KIND_SUBNET=${KIND_SUBNET:-}
FRR_IP=${FRR_IP:-}

network=${KIND_EXPERIMENTAL_DOCKER_NETWORK:-kind}
frr=$CLUSTER_NAME-frr
state=${BERTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}/kind-$CLUSTER_NAME
kubeconfig=$state/kubeconfig
berth_ns=berth-system
# The Services of app.yaml.tmpl, and their pools in berth.yaml.tmpl.
app_ns=berth-demo
l2_service=echo-l2
bgp_service=echo-bgp

# The images the demo builds and loads into kind: repository, Dockerfile (built from the
# repository root), and the chart value that names the image. The builds, the loads and
# the helm arguments all come from this table.
built_images=(
	"$CONTROLLER_IMAGE cmd/berth-controller/Dockerfile controller.image"
	"$SPEAKER_IMAGE cmd/berth-speaker/Dockerfile speaker.image"
)

usage() { sed -n '2,/^$/{/^#/!q;s/^# \{0,1\}//p}' "$0"; }
step() { echo "==> $*"; }
warn() { echo "demo.sh: $*" >&2; }
die() {
	warn "$*"
	exit 1
}

need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || die "needs $c on PATH"
	done
}

# as_root runs a command as root: directly when we are root, else with sudo.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null; then
		echo "    needs root, running with sudo: $*"
		sudo "$@"
	else
		warn "needs root: $*"
		return 1
	fi
}

# k is kubectl for the demo cluster.
k() {
	if [ -n "${KUBECTL:-}" ] || command -v kubectl >/dev/null; then
		"${KUBECTL:-kubectl}" --kubeconfig "$kubeconfig" "$@"
	else
		docker exec -i "$CLUSTER_NAME-control-plane" kubectl --kubeconfig /etc/kubernetes/admin.conf "$@"
	fi
}

# poll SECONDS WHAT CMD...: runs CMD every second until it succeeds; dies naming WHAT.
poll() {
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "timed out waiting for $what"
		sleep 1
	done
}

is_ipv4() { [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; }
is_ipv4_cidr() { [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ ]]; }

ip2int() {
	local a b c d
	IFS=. read -r a b c d <<<"$1"
	echo $(((a << 24) | (b << 16) | (c << 8) | d))
}

int2ip() { echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"; }

# top28 SUBNET prints the last /28 of an IPv4 subnet: Docker hands out addresses from the
# bottom, so the top stays free for the L2 pool.
top28() {
	is_ipv4_cidr "$1" || die "not an IPv4 subnet: $1"
	local len=${1#*/} size base
	((len <= 24)) || die "the kind network $1 is smaller than a /24: set L2_POOL"
	size=$((1 << (32 - len)))
	base=$(($(ip2int "${1%/*}") & ~(size - 1) & 0xffffffff))
	echo "$(int2ip $((base + size - 16)))/28"
}

kind_subnet() {
	local s
	s=$(docker network inspect "$network" -f '{{range .IPAM.Config}}{{println .Subnet}}{{end}}' |
		grep -E '^[0-9]+(\.[0-9]+){3}/[0-9]+$' | head -n 1) || true
	[ -n "$s" ] || die "the docker network $network has no IPv4 subnet"
	echo "$s"
}

container_ip() {
	docker inspect -f "{{with index .NetworkSettings.Networks \"$network\"}}{{.IPAddress}}{{end}}" "$1"
}

# render TEMPLATE VAR... prints TEMPLATE with each ${VAR} replaced by VAR's value, and dies
# naming any placeholder it has no value for.
render() {
	local tmpl=$1 text var left
	shift
	text=$(<"$tmpl")
	for var in "$@"; do
		[ -n "${!var}" ] || die "$tmpl: $var is empty"
		text=${text//"\${$var}"/"${!var}"}
	done
	left=$(grep -oE '\$\{[A-Za-z_][A-Za-z0-9_]*\}' <<<"$text" | sort -u | tr '\n' ' ') || true
	[ -z "$left" ] || die "$tmpl: no value for $left"
	printf '%s\n' "$text"
}

# render_frr DIR writes FRR's configuration files into DIR/frr.
render_frr() {
	mkdir -p "$1/frr"
	cp "$here/frr/daemons" "$here/frr/vtysh.conf" "$1/frr/"
	render "$here/frr/frr.conf.tmpl" ROUTER_ASN BERTH_ASN KIND_SUBNET >"$1/frr/frr.conf"
	chmod 0644 "$1/frr/"*
}

# render_berth DIR writes berth's configuration, the workload, the images and the helm
# arguments into DIR.
render_berth() {
	local dir=$1 entry image file key
	is_ipv4_cidr "$BGP_POOL" || die "BGP_POOL must be an IPv4 CIDR: $BGP_POOL"
	is_ipv4 "$FRR_IP" || die "FRR_IP must be an IPv4 address: '$FRR_IP'"
	render "$here/berth.yaml.tmpl" L2_POOL BGP_POOL BERTH_ASN ROUTER_ASN FRR_IP >"$dir/berth.yaml"
	render "$here/app.yaml.tmpl" ECHO_IMAGE >"$dir/app.yaml"
	printf '%s/%s\n' "$app_ns" "$l2_service" "$app_ns" "$bgp_service" >"$dir/services"
	: >"$dir/images"
	: >"$dir/helm-args"
	for entry in "${built_images[@]}"; do
		read -r image file key <<<"$entry"
		echo "build $image:$IMAGE_TAG $file" >>"$dir/images"
		printf '%s\n' --set "$key.repository=$image" --set "$key.tag=$IMAGE_TAG" \
			--set "$key.pullPolicy=Never" >>"$dir/helm-args"
	done
	printf 'pull %s\n' "$FRR_IMAGE" "$ECHO_IMAGE" >>"$dir/images"
}

render_cmd() {
	[ $# -eq 1 ] || die "usage: demo.sh render DIR"
	KIND_SUBNET=${KIND_SUBNET:-$(kind_subnet)}
	L2_POOL=${L2_POOL:-$(top28 "$KIND_SUBNET")}
	FRR_IP=${FRR_IP:-$(container_ip "$frr")}
	mkdir -p "$1"
	render_frr "$1"
	render_berth "$1"
}

ingress() { k -n "$app_ns" get service "$1" -o jsonpath='{.status.loadBalancer.ingress[0].ip}'; }
has_ingress() { [ -n "$(ingress "$1")" ]; }
frr_has_route() { [ -n "$(docker exec "$frr" ip route show "$1")" ]; }

# answer URL: curl until it answers (a minute at most), and show the answer.
answer() {
	local deadline=$((SECONDS + 60)) out
	until out=$(curl -sS --max-time 2 "$1" 2>&1); do
		((SECONDS < deadline)) || die "no answer from $1: $out"
		sleep 1
	done
	echo "    curl $1"
	echo "    $out"
}

up() {
	need docker go curl ip
	docker info >/dev/null 2>&1 || die "cannot reach Docker (docker info fails)"
	local kind helm entry image file version l2_ip bgp_ip args=()
	kind=$("$repo/hack/kind/build.sh")
	helm=$("$repo/hack/helm/build.sh")
	mkdir -p "$state"

	step "kind cluster $CLUSTER_NAME"
	if "$kind" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
		echo "    exists: reusing it"
	else
		local create=(create cluster --name "$CLUSTER_NAME" --config "$here/cluster.yaml" --kubeconfig "$kubeconfig" --wait 3m)
		[ -z "$NODE_IMAGE" ] || create+=(--image "$NODE_IMAGE")
		"$kind" "${create[@]}"
	fi
	"$kind" export kubeconfig --name "$CLUSTER_NAME" --kubeconfig "$kubeconfig"

	step "building berth's images and loading them into the nodes"
	version=$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo dev)
	local build=(--build-arg "VERSION=$version")
	[ -z "$GO_IMAGE" ] || build+=(--build-arg "GO_IMAGE=$GO_IMAGE")
	for entry in "${built_images[@]}"; do
		read -r image file _ <<<"$entry"
		docker build -f "$repo/$file" -t "$image:$IMAGE_TAG" "${build[@]}" "$repo"
		"$kind" load docker-image --name "$CLUSTER_NAME" "$image:$IMAGE_TAG"
	done

	step "FRR router $frr on the docker network $network"
	KIND_SUBNET=${KIND_SUBNET:-$(kind_subnet)}
	L2_POOL=${L2_POOL:-$(top28 "$KIND_SUBNET")}
	render_frr "$state"
	docker rm -f "$frr" >/dev/null 2>&1 || true
	# Privileged: zebra installs the learned routes in the container's table.
	docker run -d --name "$frr" --network "$network" --privileged \
		--sysctl net.ipv4.ip_forward=1 \
		-v "$state/frr/daemons:/etc/frr/daemons:ro" \
		-v "$state/frr/vtysh.conf:/etc/frr/vtysh.conf:ro" \
		-v "$state/frr/frr.conf:/etc/frr/frr.conf:ro" \
		"$FRR_IMAGE" >/dev/null
	FRR_IP=$(container_ip "$frr")
	echo "$FRR_IP" >"$state/frr-ip"
	echo "    AS $ROUTER_ASN at $FRR_IP, accepting AS $BERTH_ASN from $KIND_SUBNET"
	render_berth "$state"

	step "berth from deploy/helm/berth into $berth_ns"
	k get namespace "$berth_ns" >/dev/null 2>&1 || k create namespace "$berth_ns"
	# The speaker needs hostNetwork, NET_ADMIN and NET_RAW: the privileged level only.
	k label namespace "$berth_ns" pod-security.kubernetes.io/enforce=privileged --overwrite
	mapfile -t args <"$state/helm-args"
	"$helm" upgrade --install berth "$repo/deploy/helm/berth" --namespace "$berth_ns" \
		--kubeconfig "$kubeconfig" "${args[@]}"
	k -n "$berth_ns" rollout status deployment/berth-controller --timeout 3m
	k -n "$berth_ns" rollout status daemonset/berth-speaker --timeout 3m

	step "berth's configuration: L2 pool $L2_POOL, BGP pool $BGP_POOL, peer $FRR_IP"
	k wait --for condition=Established --timeout 60s crd --all
	k apply --server-side -f - <"$state/berth.yaml"

	step "the echo workload ($ECHO_IMAGE) and its Services"
	k apply -f - <"$state/app.yaml"
	k -n "$app_ns" rollout status deployment/echo --timeout 3m
	poll 120 "an address for Service $app_ns/$l2_service" has_ingress "$l2_service"
	poll 120 "an address for Service $app_ns/$bgp_service" has_ingress "$bgp_service"
	l2_ip=$(ingress "$l2_service")
	bgp_ip=$(ingress "$bgp_service")
	k -n "$app_ns" get services

	step "L2: $app_ns/$l2_service at $l2_ip, answered for with ARP on the Docker bridge"
	answer "http://$l2_ip/"

	step "BGP: $app_ns/$bgp_service at $bgp_ip, announced by the nodes to FRR"
	poll 120 "FRR's route to $bgp_ip" frr_has_route "$bgp_ip"
	docker exec "$frr" vtysh -c "show ip route $bgp_ip/32"
	if as_root ip route replace "$BGP_POOL" via "$FRR_IP"; then
		echo "    this host: $BGP_POOL via $FRR_IP"
		answer "http://$bgp_ip/"
	else
		warn "no route to $BGP_POOL here: as root, run ip route replace $BGP_POOL via $FRR_IP; then curl http://$bgp_ip/"
	fi

	echo
	echo "kubectl:  export KUBECONFIG=$kubeconfig"
	echo "FRR:      docker exec $frr vtysh -c 'show bgp ipv4 unicast'"
	echo "remove:   $0 down"
}

down() {
	need docker ip
	local kind addr=""
	kind=$("$repo/hack/kind/build.sh")
	[ ! -r "$state/frr-ip" ] || addr=$(<"$state/frr-ip")
	[ -n "$addr" ] || addr=$(container_ip "$frr" 2>/dev/null) || true
	if [ -n "$addr" ] && [[ "$(ip route show exact "$BGP_POOL" 2>/dev/null) " == *"via $addr "* ]]; then
		step "host route $BGP_POOL via $addr"
		as_root ip route del "$BGP_POOL" via "$addr" || warn "the route stays: as root, run ip route del $BGP_POOL via $addr"
	fi
	if docker inspect "$frr" >/dev/null 2>&1; then
		step "FRR container $frr"
		docker rm -f "$frr" >/dev/null
	fi
	if "$kind" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
		step "kind cluster $CLUSTER_NAME"
		"$kind" delete cluster --name "$CLUSTER_NAME" --kubeconfig "$kubeconfig"
	fi
	rm -rf "$state"
}

case ${1:-up} in
up) up ;;
down) down ;;
render)
	shift
	render_cmd "$@"
	;;
help | -h | --help) usage ;;
*)
	usage >&2
	exit 2
	;;
esac
