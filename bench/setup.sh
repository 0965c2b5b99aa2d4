#!/usr/bin/env bash
# Installs what the comparators in bench/ run besides git: nginx and fcgiwrap
# (nginx + git-http-backend) and OpenSSH's sshd (OpenSSH + git-shell).
# As root it also makes the account OpenSSH's side signs in as,
# gitgate-bench, whose login shell is git-shell, as git-shell(1) sets up a
# git account: sshd runs every command through the account's login shell, and
# root's (bash reading ~/.bashrc, which sshd makes it do) would add its own
# start-up to every OpenSSH connection measured.
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

# bench_account makes the git-shell account (see above), once.
bench_account() {
	if [ "$(id -u)" -ne 0 ]; then
		return 0
	fi
	if id gitgate-bench >/dev/null 2>&1; then
		# git-shell starts in the account's home: an earlier version made none.
		local home
		home=$(getent passwd gitgate-bench | cut -d: -f6)
		if [ ! -d "$home" ]; then
			usermod --home /var/lib/gitgate-bench gitgate-bench
			install -d -o gitgate-bench -g gitgate-bench -m 755 /var/lib/gitgate-bench
		fi
		return 0
	fi
	local shell
	shell=$(command -v git-shell || true)
	if [ -z "$shell" ]; then
		echo "bench/setup.sh: git-shell not found; OpenSSH's side signs in as $(id -un)" >&2
		return 0
	fi
	# sshd reads the keys from the benchmark's own file; git-shell starts in
	# the home. The password field '*' (not the '!' of a locked account,
	# which sshd refuses without PAM) allows public keys only.
	useradd --system --create-home --home-dir /var/lib/gitgate-bench --shell "$shell" gitgate-bench
	usermod -p '*' gitgate-bench
}

if [ ${#missing[@]} -eq 0 ]; then
	bench_account
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
bench_account
