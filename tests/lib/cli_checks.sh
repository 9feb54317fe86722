# Shared by the tests/cli_*.sh scripts that source it: pass/fail counting and the one-line-error check.
# Needs $tmp (a scratch folder). `finish` prints the tally and exits 1 on any failure.
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "  ok    $1"; }
bad() { failed=$((failed + 1)); echo "  FAIL  $1"; [ -n "${2:-}" ] && sed 's/^/        /' <<<"$2"; }
check() {  # check NAME COMMAND...: passes when the command exits 0
  local name=$1; shift
  if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$out"; fi
}
# expect_fail NAME NEEDLE COMMAND...: non-zero exit, exactly one line on stderr, and it mentions NEEDLE
expect_fail() {
  local name=$1 needle=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$? lines
  lines=$(grep -c '' "$tmp/err")
  if [ "$rc" -ne 0 ] && [ "$lines" -eq 1 ] && grep -qF -- "$needle" "$tmp/err"; then
    ok "$name (exit $rc: $(cat "$tmp/err"))"
  else
    bad "$name" "exit $rc, $lines stderr line(s), wanted one mentioning '$needle':
$(cat "$tmp/err")"
  fi
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}
