#!/usr/bin/env bash
# A small Dockerfile linter for this repository's images (hadolint is not packaged in Debian 12):
#   - every FROM names a stage or an image with an explicit tag (or digest), never `latest`,
#     also through ARG defaults (FROM ${CUDA_IMAGE});
#   - the final stage sets a USER that is not root, a HEALTHCHECK and an exec-form ENTRYPOINT or CMD;
#   - apt-get install uses --no-install-recommends and the same RUN removes the package lists;
#   - no ADD from a URL, no `sudo`.
# Usage: scripts/dockerfile-lint.sh Dockerfile [more Dockerfiles]. Prints one line per problem.
set -euo pipefail
status=0
for file in "$@"; do
  # Join continuation lines, drop comments.
  text=$(sed -e 's/^[[:space:]]*#.*$//' "$file" | sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta')
  problem() { echo "$file: $*"; status=1; }
  declare -A args=() stages=()
  final_user='' final_health='' final_entry=''
  while IFS= read -r line; do
    [ -n "${line// /}" ] || continue
    instr=$(awk '{print toupper($1)}' <<<"$line")
    rest=${line#*[[:space:]]}
    case "$instr" in
      ARG)
        if [[ $rest =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then args[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}; fi
        ;;
      FROM)
        read -r -a words <<<"$rest"
        image=${words[0]}
        [ "${words[0]#--platform}" = "${words[0]}" ] || image=${words[1]}
        if [[ $image =~ ^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$ ]]; then
          name=${BASH_REMATCH[1]}
          [ -n "${args[$name]:-}" ] || problem "FROM $image: ARG $name has no default"
          image=${args[$name]:-}
        fi
        if [ -n "${stages[$image]:-}" ] || [ "$image" = scratch ]; then :; 
        elif [[ $image == *@sha256:* ]]; then :;
        elif [[ ${image##*/} != *:* ]]; then problem "FROM $image: no tag (pin one)"
        elif [[ ${image##*:} == latest ]]; then problem "FROM $image: 'latest' is not a pin"
        fi
        for ((i = 0; i < ${#words[@]}; i++)); do
          if [ "$(tr '[:upper:]' '[:lower:]' <<<"${words[$i]}")" = as ]; then stages[${words[$((i + 1))]}]=1; fi
        done
        final_user='' final_health='' final_entry=''
        ;;
      USER) final_user=${rest%%:*} ;;
      HEALTHCHECK) [ "${rest^^}" = NONE ] || final_health=1 ;;
      ENTRYPOINT | CMD)
        [[ $rest == \[* ]] || problem "$instr $rest: use the exec form [\"…\"] so signals reach the process"
        final_entry=1
        ;;
      ADD) [[ $rest != *://* ]] || problem "ADD from a URL: download in a RUN with a checksum instead" ;;
      RUN)
        if [[ $rest == *"apt-get install"* ]]; then
          [[ $rest == *--no-install-recommends* ]] || problem "apt-get install without --no-install-recommends"
          [[ $rest == *"rm -rf /var/lib/apt/lists"* ]] || problem "apt-get install without removing /var/lib/apt/lists in the same RUN"
        fi
        [[ $rest != *sudo* ]] || problem "RUN uses sudo"
        ;;
    esac
  done <<<"$text"
  [ -n "$final_user" ] || problem "the final stage sets no USER (it would run as root)"
  [ "$final_user" != root ] && [ "$final_user" != 0 ] || problem "the final stage runs as root"
  [ -n "$final_health" ] || problem "the final stage has no HEALTHCHECK"
  [ -n "$final_entry" ] || problem "the final stage has no ENTRYPOINT or CMD"
  unset args stages
done
[ "$status" -ne 0 ] || echo "Dockerfile lint: $* OK"
exit "$status"
