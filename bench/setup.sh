#!/usr/bin/env bash
# Installs what the comparators in bench/ run besides git: nginx and fcgiwrap
# (nginx + git-http-backend) and OpenSSH's sshd (OpenSSH + git-shell).
# Idempotent: installs nothing when the commands are there. It never starts
# the system services (policy-rc.d refuses them during the install). Not
# root: it only says what is missing, and the benchmarks skip those
# comparators.
set -euo pipefail

missing=()
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
[ -x /usr/sbin/fcgiwrap ] || command -v fcgiwrap >/dev/null 2>&1 || missing+=(fcgiwrap)
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	# Not fatal: the benchmarks skip the comparators whose programs are missing.
	echo "bench/setup.sh: missing ${missing[*]}; as root: apt-get install ${missing[*]}" >&2
	exit 0
fi

echo "bench/setup.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Refuse service starts while installing (exit 101 = "action forbidden"),
# and put back whatever policy was there before.
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then
	saved=$(mktemp)
	cp -p "$policy" "$saved"
fi
restore() {
	if [ -n "$saved" ]; then
		mv -f "$saved" "$policy"
	else
		rm -f "$policy"
	fi
}
trap restore EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 755 "$policy"

# The package lists may be missing (fresh image) or stale: update once.
if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
