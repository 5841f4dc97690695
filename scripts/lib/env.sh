# The environment variables that the scripts in scripts/ read, each declared ONCE here with its kind,
# and the check every script runs when it reads one: `bct_env NAME DEFAULT` sets NAME to its value
# (DEFAULT when unset or empty; `bct_env NAME DEFAULT keep-empty`: an empty value stays empty) or
# ends the script with one line naming the variable and exit code 2. An empty value means "not given"
# for every kind. Sourced by every script (directly or through launch.sh); a test reads the table.
#
# Kinds: count (whole number >= 1), nonneg (whole number >= 0), bool (0 or 1), truth (True, False, 1
# or 0), port (1..65535), method (a method of the catalogue), fractions (comma list of fractions in
# (0, 1]), start (old, pretext or random: own.sh's start without ImageNet weights), file (an existing file), folder (an existing folder), outdir (a folder to write: not a
# file), config (a yaml file, or <setting>/new_<method>.yml of a catalogue method), name (letters,
# digits, '_', '.', '+', '-'), host (a host name or address), command (a program on PATH), text
# (handed as is to a tool, whose parser checks it).
declare -A BCT_ENV_KINDS=(
  [GPUS]=nonneg [NNODES]=count [NODE_RANK]=nonneg [MASTER_ADDR]=host [MASTER_PORT]=port
  [METHOD]=method [FRESH]=bool [LONG]=bool [PYCACHE]=bool [PRETRAINED]=truth
  [GENERATIONS]=count [FRACTIONS]=fractions [GPU_CHECK_TIMEOUT]=count [WORKERS]=nonneg [TEST_WORKERS]=nonneg
  [CONFIG]=config [CONFIG_DIR]=folder [OLD_MODEL_PATH]=file [NEW_MODEL_PATH]=file [WEIGHTS]=file
  [SAVE_DIR]=outdir [OUT]=outdir [DATA_DIR]=outdir
  [ARCH]=name [NEW_MODEL_ARCH]=name [OLD_MODEL_ARCH]=name [TAG]=name
  [PYTHON]=command [PREPARE_ARGS]=text [START]=start [METHODS]=text
  # Python's own variables, passed through.
  [PYTHONPATH]=text [PYTHONDONTWRITEBYTECODE]=text [PYTHONPYCACHEPREFIX]=text
)
BCT_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# bct_env_check NAME KIND VALUE: nothing, or one line on stderr and status 1.
bct_env_check() {
  local name=$1 kind=$2 v=$3 why=""
  [ -z "$v" ] && return 0
  case "$kind" in
    count|nonneg|port)
      if [[ "$v" =~ ^-[0-9]+$ ]]; then why="negative"
      elif ! [[ "$v" =~ ^[0-9]+$ ]]; then why="not a whole number"
      elif [ "${#v}" -gt 9 ]; then why="too large"
      elif [ "$kind" != nonneg ] && (( 10#$v < 1 )); then why="not a positive number (>= 1)"
      elif [ "$kind" = port ] && (( 10#$v > 65535 )); then why="not a port (1..65535)"
      fi ;;
    bool) [[ "$v" == 0 || "$v" == 1 ]] || why="expected 0 or 1" ;;
    truth) [[ "$v" =~ ^(True|False|true|false|0|1)$ ]] || why="expected True or False" ;;
    fractions)
      local f
      for f in ${v//,/ }; do
        if ! [[ "$f" =~ ^[0-9]*\.?[0-9]+$ ]] || ! awk -v x="$f" 'BEGIN { exit !(x > 0 && x <= 1) }'; then
          why="'$f' is not a fraction in (0, 1] (e.g. 0.3,0.6,1.0)"; break
        fi
      done
      [[ "$v" =~ ^[^,]+(,[^,]+)*$ ]] || why="${why:-not a comma list such as 0.3,0.6,1.0}" ;;
    method)
      local names
      names=$(cd "$BCT_REPO" && PYTHONPATH="$BCT_REPO${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python3}" -c \
        "from bct.config.methods import method_names; print(' '.join(method_names(include_oracle=True)))") \
        || { why="the method catalogue cannot be read"; names=""; }
      [ -n "$why" ] || [[ " $names " == *" $v "* ]] || why="not a method of the catalogue (${names// /, })" ;;
    file) [ -f "$v" ] || why=$([ -d "$v" ] && echo "a folder, not a file" || echo "no such file") ;;
    folder) [ -d "$v" ] || why=$([ -e "$v" ] && echo "a file, not a folder" || echo "no such folder") ;;
    outdir) [ ! -e "$v" ] || [ -d "$v" ] || why="a file, not a folder to write into" ;;
    config) [ -f "$v" ] || [[ "$v" == */new_*.yml && -d "$(dirname "$v")" ]] || why="no such config file" ;;
    name) [[ "$v" =~ ^[A-Za-z0-9][A-Za-z0-9_.+-]*$ ]] || why="expected letters, digits, '_', '.', '+' or '-'" ;;
    host) [[ "$v" =~ ^[A-Za-z0-9][A-Za-z0-9.:_-]*$ ]] || why="not a host name or address" ;;
    command) command -v "${v%% *}" > /dev/null 2>&1 || why="no such command" ;;
    start) [[ "$v" =~ ^(old|pretext|random)$ ]] || why="expected old, pretext or random" ;;
    text) ;;
    *) why="unknown kind $kind in scripts/lib/env.sh" ;;
  esac
  [ -z "$why" ] && return 0
  echo "error: $name=$v: $why" >&2
  return 1
}

# bct_env NAME DEFAULT [keep-empty]
bct_env() {
  local name=$1 default=${2:-} kind=${BCT_ENV_KINDS[$1]:-} value
  if [ -z "$kind" ]; then
    echo "error: the variable $name is not declared in scripts/lib/env.sh (BCT_ENV_KINDS)" >&2
    exit 2
  fi
  if [ -n "${!name:-}" ] || { [ "${3:-}" = keep-empty ] && [ "${!name+set}" = set ]; }; then
    value=${!name}
  else
    value=$default
  fi
  bct_env_check "$name" "$kind" "$value" || exit 2
  printf -v "$name" '%s' "$value"
}

# bct_start "STARTS" WHO: the one rule of PRETRAINED and START (after bct_env has read both). With
# PRETRAINED False (False, false or 0) it sets OFFLINE=1 and START (default old), refusing a start not
# in STARTS (WHO names the scripts that take them); otherwise OFFLINE=0, and a START given is refused.
bct_start() {
  local starts=" $1 " who=$2
  OFFLINE=0
  if [[ "${PRETRAINED:-True}" =~ ^(False|false|0)$ ]]; then
    OFFLINE=1
    START=${START:-old}
    if [[ "${starts}" != *" ${START} "* ]]; then
      echo "error: START=${START}: ${who} take ${1// / or }; pretext (a start trained on the images without labels) is scripts/own.sh's" >&2
      exit 2
    fi
  elif [ -n "${START:-}" ]; then
    echo "error: START=${START} is for PRETRAINED=False (without ImageNet weights); drop it or set PRETRAINED=False" >&2
    exit 2
  fi
}
