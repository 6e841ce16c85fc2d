#!/usr/bin/env bash
# nbpipe's pull-request loop; docs/github-workflow.yml calls it, docs/ci.md explains it.
#
#   nbpipe-ci.sh pr     a pull request from this repository (secrets available): plan and diff
#                       into the job summary, render what changed within $NBPIPE_MAX_COST, push
#                       the images to the shared remote cache (none configured: said, skipped),
#                       write the review page
#   nbpipe-ci.sh fork   a pull request from a fork (no secrets): plan, diff and a review page
#                       whose new frames are preview placeholders; spends nothing
#   nbpipe-ci.sh main   after a merge: build (everything the pull request paid for is restored
#                       from the remote cache: 0 renders), then commit nbpipe.lock and outputs
#                       and push (never forced; main moved meanwhile: see push_main)
#
# Settings (environment): NBPIPE (the command, default `nbpipe`), NBPIPE_PROJECT (the project
# folder, default .), NBPIPE_BASE (the git ref to compare with, default origin/$GITHUB_BASE_REF),
# NBPIPE_MAX_COST (USD a pull request may spend, default 5), NBPIPE_REVIEW_DIR (default review),
# NBPIPE_COMMIT_PUSH (main: push the commit to this ref, default the current branch; `no` to
# only commit), GITHUB_STEP_SUMMARY (where the Markdown goes; default stdout).
set -euo pipefail

mode=${1:?usage: nbpipe-ci.sh pr|fork|main}

read -r -a nbpipe <<< "${NBPIPE:-nbpipe}"
cd "${NBPIPE_PROJECT:-.}"
summary=${GITHUB_STEP_SUMMARY:-/dev/stdout}
base=${NBPIPE_BASE:-origin/${GITHUB_BASE_REF:-main}}
max_cost=${NBPIPE_MAX_COST:-5}
review_dir=${NBPIPE_REVIEW_DIR:-review}

# The plan as preformatted text (escaped: frame names and reasons come from the pull request),
# cut at 100 kB: GitHub drops a step summary over 1 MiB, and the diff after it may take 900 kB.
plan_summary() {
  local text
  text=$("${nbpipe[@]}" plan "$@" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g')
  local LC_ALL=C  # lengths and cuts count bytes
  if [ "${#text}" -gt 100000 ]; then
    text="${text:0:100000}"
    text="${text%$'\n'*}"$'\n'"… cut here (${#text} bytes shown): \`nbpipe plan\` prints all of it"
  fi
  printf '### nbpipe plan\n\n<pre>\n%s\n</pre>\n\n' "$text" >> "$summary"
}

# main: build within what is left of NBPIPE_MAX_COST for the whole job (it may build again on a
# newer main: see push_main), then commit the lock and outputs; $committed says whether there
# was anything. What a build spent is read from its own summary line ("spent USD X"), so
# nothing the cache restored can raise the job's cap. Never called as a condition: `set -e`
# does not apply inside a function that is.
spent=0
build_and_commit() {
  local left log status
  left=$(awk -v cap="$max_cost" -v spent="$spent" \
         'BEGIN { left = cap - spent; if (left < 0) left = 0; printf "%.6f", left }')
  log=$(mktemp)
  set +e
  "${nbpipe[@]}" build --max-cost "$left" | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  spent=$(awk -v spent="$spent" '
    { while (match($0, /spent USD [0-9.,]+/)) { last = substr($0, RSTART + 10, RLENGTH - 10)
                                              $0 = substr($0, RSTART + RLENGTH) } }
    END { gsub(/,/, "", last); printf "%.6f", spent + last }' "$log")
  rm -f "$log"
  [ "$status" -eq 0 ] || exit "$status"
  git add -A -- .
  git reset -q -- .nbpipe  # the lock and outputs; never the local cache, ignored or not
  committed=no
  if ! git diff --cached --quiet; then
    "${as_bot[@]}" commit -q -m "nbpipe build [skip ci]"
    committed=yes
  fi
}

# main: push the nbpipe commit (HEAD, one commit) to $1, never forced. A push rejected because
# the branch moved during the job (another merge, an earlier run's commit): fetch it and replay
# the commit onto it (rebase --onto HEAD~1: a shallow checkout is enough), then push again, at
# most 3 times in all. A replay that conflicts (the newer main committed its own lock or
# outputs) is aborted and the build runs again on the newer main: it restores every image this
# job paid for from the cache (0 renders) and renders only what that main changed, which its own
# run would otherwise render (and then finds done). Not "skip the push and leave it to that run":
# the commit that moved main may start no run at all (an earlier run's `[skip ci]` commit, which
# the workflow's one-at-a-time main jobs make the usual case), and main would keep a lock that
# does not match its manifest. A push that fails while the branch has not moved (permissions,
# protection) fails the job at once.
push_main() {
  local target=$1 attempt log status upstream
  for attempt in 1 2 3; do
    status=0
    log=$(git push -q origin "HEAD:$target" 2>&1) || status=$?
    if [ "$status" -eq 0 ]; then
      echo "nbpipe: pushed the lock and outputs to $target"
      return 0
    fi
    upstream=
    if git fetch -q origin "$target" 2> /dev/null; then
      upstream=$(git rev-parse FETCH_HEAD)
    fi
    if [ -z "$upstream" ] || git merge-base --is-ancestor "$upstream" HEAD; then
      printf '%s\n' "$log" >&2
      echo "nbpipe: the push to $target failed, and not because $target moved" >&2
      return "$status"
    fi
    [ "$attempt" -lt 3 ] || break
    echo "nbpipe: $target moved to ${upstream:0:12} during this job: replaying the nbpipe commit onto it"
    if "${as_bot[@]}" rebase -q --onto "$upstream" HEAD~1 > /dev/null 2>&1; then
      if [ "$(git rev-parse HEAD)" = "$upstream" ]; then
        echo "nbpipe: $target already has this lock and these outputs: nothing to push"
        return 0
      fi
    else
      git rebase --abort 2> /dev/null || true  # a replay that never started: as a conflict
      echo "nbpipe: $target also changed the lock or outputs: building again on it (what this" \
           "job paid for is restored from the cache)"
      git reset -q --hard "$upstream"
      build_and_commit
      if [ "$committed" = no ]; then
        echo "nbpipe: $target already has the lock and outputs of its manifest: nothing to push"
        return 0
      fi
    fi
  done
  echo "nbpipe: $target moved 3 times during this job: not pushed. Nothing paid is lost: the" \
       "images are in the cache (and the remote cache), and the next run on $target restores them" >&2
  return 1
}

case "$mode" in
  pr)
    plan_summary
    status=0
    "${nbpipe[@]}" build --max-cost "$max_cost" || status=$?
    if [ "$status" -eq 0 ]; then  # frames skipped over budget: red as well
      "${nbpipe[@]}" build --check > /dev/null || status=$?
    fi
    if [ "$status" -ne 0 ]; then  # said first: a later step that fails ends the script
      printf '\n**nbpipe build failed (exit %s)**: a render failed or the frames did not fit ' \
        "$status" >> "$summary"
      printf 'in USD %s (NBPIPE_MAX_COST); the log lists which and why.\n\n' "$max_cost" >> "$summary"
    fi
    # The build pushes as it goes; this makes sure before main needs them. No remote (a first
    # trial of the loop, offline on the preview backend): say so, and still diff and review.
    pushed=0
    push_log=$("${nbpipe[@]}" push 2>&1) || pushed=$?
    if [ "$pushed" -eq 2 ] && grep -q "no remote cache is configured" <<< "$push_log"; then
      echo "nbpipe: no remote cache is configured: nothing pushed (main renders these again)" >&2
      printf '\nNo remote cache is configured (`cache.remote`, NBPIPE_REMOTE): the images ' \
        >> "$summary"
      printf 'rendered here stay in this job; main renders them again.\n\n' >> "$summary"
    elif [ "$pushed" -ne 0 ]; then
      printf '%s\n' "$push_log" >&2
      exit "$pushed"
    else
      printf '%s\n' "$push_log"
    fi
    "${nbpipe[@]}" diff "$base" --format markdown >> "$summary"
    "${nbpipe[@]}" review "$base" -o "$review_dir" --self-contained
    exit "$status"
    ;;
  fork)
    plan_summary --offline
    "${nbpipe[@]}" diff "$base" --format markdown --offline >> "$summary"
    "${nbpipe[@]}" review "$base" -o "$review_dir" --self-contained --preview --offline
    printf '\nA pull request from a fork renders nothing: new frames are preview placeholders; ' \
      >> "$summary"
    printf 'main renders them after the merge.\n' >> "$summary"
    ;;
  main)
    target=${NBPIPE_COMMIT_PUSH:-$(git rev-parse --abbrev-ref HEAD)}
    # a CI checkout has no git identity: the commit and a replay of it need one
    as_bot=(git -c user.name="${GIT_AUTHOR_NAME:-nbpipe}"
                -c user.email="${GIT_AUTHOR_EMAIL:-nbpipe@users.noreply.github.com}")
    build_and_commit
    if [ "$committed" = no ]; then
      echo "nbpipe: lock and outputs already up to date"
      exit 0
    fi
    if [ "$target" != "no" ]; then
      push_main "$target"
    fi
    ;;
  *)
    echo "usage: nbpipe-ci.sh pr|fork|main" >&2
    exit 2
    ;;
esac
