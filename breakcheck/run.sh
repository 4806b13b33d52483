#!/usr/bin/env bash
# breakcheck: every reliability and security test must fail when the
# guarantee it backs is broken. Each file in breakcheck/breaks/ is a
# deliberate break (a patch to the code or to a configuration) with a
# header naming the test that must catch it:
#
#   Break:   what the patch breaks
#   Package: the Go package of the test
#   Run:     the -run pattern
#   Build:   caddy (the test needs a Caddy built from the broken tree) or none
#   Tags:    build tags for the test (soak), optional
#   Expect:  text the failure must contain, optional
#
# For each break: a clean copy of HEAD, the patch applied, Caddy built if
# needed (a plain `go build` of breakcheck/caddy, seconds with a warm build
# cache), the test run. A break is "caught" when the test fails (with the
# Expect text, when given); the script fails if any break is missed.
#
# Run it on a commit where `make test` is green, so a failure means the
# break was seen. Usage: breakcheck/run.sh [NAME ...]   (default: every break)
set -euo pipefail

root=$(git rev-parse --show-toplevel)
work=$(mktemp -d /tmp/edgetier-breakcheck.XXXXXX)
cleanup() {
	git -C "$root" worktree remove --force "$work" >/dev/null 2>&1 || rm -rf "$work"
}
trap cleanup EXIT
git -C "$root" worktree add --detach "$work" HEAD >/dev/null
cd "$work"

field() { sed -n "s/^$1: //p" "$2" | head -n 1; }

patches=()
if [ $# -gt 0 ]; then
	for name in "$@"; do patches+=("$root/breakcheck/breaks/$name.patch"); done
else
	patches=("$root"/breakcheck/breaks/*.patch)
fi

caught=0
missed=()
summary=""
for patch in "${patches[@]}"; do
	name=$(basename "$patch" .patch)
	what=$(field Break "$patch")
	pkg=$(field Package "$patch")
	run=$(field Run "$patch")
	build=$(field Build "$patch")
	tags=$(field Tags "$patch")
	expect=$(field Expect "$patch")
	echo "== $name: $what"
	git checkout -q -- . && git clean -qfd -e bin
	if ! git apply "$patch"; then
		echo "   the patch no longer applies: update it"
		missed+=("$name (does not apply)")
		continue
	fi
	env=()
	if [ "$build" = caddy ] || [ "$pkg" = ./integration/ ]; then
		if ! go build -tags breakcheck -o bin/caddy ./breakcheck/caddy || ! go build -o bin/edgeagent ./cmd/edgeagent; then
			echo "   the broken tree does not build: fix the patch"
			missed+=("$name (does not build)")
			continue
		fi
		env=(EDGETIER_CADDY="$work/bin/caddy" EDGETIER_AGENT="$work/bin/edgeagent")
	fi
	start=$(date +%s)
	if out=$(env "${env[@]}" go test -count=1 -timeout 15m ${tags:+-tags "$tags"} -run "$run" "$pkg" 2>&1); then
		result=passed
	else
		result=failed
	fi
	took=$(($(date +%s) - start))
	if [ "$result" = failed ] && grep -q -- "--- FAIL" <<<"$out" && { [ -z "$expect" ] || grep -qF -- "$expect" <<<"$out"; }; then
		caught=$((caught + 1))
		# The last message of a test file (not a process log dump): the failure.
		if [ -n "$expect" ]; then
			first=$(grep -F -m 1 -- "$expect" <<<"$out" | sed 's/^[[:space:]]*//' | cut -c 1-150 || true)
		else
			first=$(grep -E '^\s+\S+_test\.go:[0-9]+: ' <<<"$out" | grep -v 'log:$' | tail -n 1 | sed 's/^[[:space:]]*//' | cut -c 1-150 || true)
		fi
		echo "   caught in ${took}s: $first"
		summary+="| \`$name\` | $what | \`${run//|/\\|}\` | caught: ${first//|/\\|} |"$'\n'
	else
		echo "   MISSED: the test $result in ${took}s"
		tail -n 20 <<<"$out" | sed 's/^/   | /'
		missed+=("$name")
		summary+="| \`$name\` | $what | \`${run//|/\\|}\` | **missed** |"$'\n'
	fi
done

echo
echo "| break | what it breaks | test | result |"
echo "|---|---|---|---|"
printf '%s' "$summary"
echo
echo "$caught caught, ${#missed[@]} missed"
if [ ${#missed[@]} -gt 0 ]; then
	printf 'missed: %s\n' "${missed[@]}"
	exit 1
fi
