# bash completion for tumbler(1) and tumblerd(8).
#
# Installed as /usr/share/bash-completion/completions/tumbler (and tumblerd, a link), or
# sourced from ~/.bashrc.  Needs nothing from the bash-completion package.  Profile names
# come from the user's hosts file: --profiles FILE on the line, else $TUMBLER_PROFILES,
# else $XDG_CONFIG_HOME/tumbler/hosts.conf (~/.config when unset); door names from the
# daemon's config (-c FILE on the line, else /etc/tumbler/tumblerd.conf).  The option lists
# follow each command's --help (tests/unit/test_completion.py keeps them in step).

_tumbler_reply() {
    # COMPREPLY: the words of $1 that start with $2.
    local IFS=$'\n'
    # shellcheck disable=SC2207
    COMPREPLY=($(IFS=$' \t\n' compgen -W "$1" -- "$2"))
}

_tumbler_files() {
    compopt -o filenames 2>/dev/null
    local IFS=$'\n'
    # shellcheck disable=SC2207
    COMPREPLY=($(compgen -f -- "$1"))
}

_tumbler_option_value() {
    # The value given to option $1 earlier on the line (--opt VALUE or --opt=VALUE).
    local i word
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ $word == "$1" ]]; then
            if [[ ${COMP_WORDS[i + 1]} == "=" ]]; then
                printf '%s\n' "${COMP_WORDS[i + 2]}"
            else
                printf '%s\n' "${COMP_WORDS[i + 1]}"
            fi
            return 0
        elif [[ $word == "$1="* ]]; then
            printf '%s\n' "${word#*=}"
            return 0
        fi
    done
    return 1
}

_tumbler_profiles() {
    # The NAMEs of the [host-NAME] sections of the profile file in use.
    local file
    if ! file=$(_tumbler_option_value --profiles); then
        file=${TUMBLER_PROFILES:-${XDG_CONFIG_HOME:-$HOME/.config}/tumbler/hosts.conf}
    fi
    # A literal ~/ typed on the line (bash does not expand it inside a word being completed).
    # shellcheck disable=SC2088
    [[ $file == "~/"* ]] && file=$HOME/${file#"~/"}
    [[ -r $file ]] || return 0
    sed -n 's/^[[:space:]]*\[host-\([A-Za-z0-9][A-Za-z0-9_.-]*\)\][[:space:]]*$/\1/p' -- "$file"
}

_tumblerd_doors() {
    # The NAMEs of the [door-NAME] sections of the daemon's config: -c/--config FILE on the
    # line, else /etc/tumbler/tumblerd.conf.  Only header lines are read; the file is never
    # sourced, and one this user cannot read (it holds secrets, mode 0600) offers nothing.
    local file
    if ! file=$(_tumbler_option_value --config) && ! file=$(_tumbler_option_value -c); then
        file=/etc/tumbler/tumblerd.conf
    fi
    # shellcheck disable=SC2088
    [[ $file == "~/"* ]] && file=$HOME/${file#"~/"}
    [[ -f $file && -r $file ]] || return 0
    sed -n 's/^[[:space:]]*\[[[:space:]]*door-\([A-Za-z0-9][A-Za-z0-9_.-]*\)[[:space:]]*\][[:space:]]*\([[:space:]]#.*\)\{0,1\}$/\1/p' -- "$file" 2>/dev/null
}

_tumbler_current() {
    # cur and prev, with bash's split of --opt=value undone.
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    if [[ $cur == "=" ]]; then
        cur=""
    elif [[ $prev == "=" && $COMP_CWORD -ge 2 ]]; then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    elif [[ $cur == --*=* ]]; then
        prev=${cur%%=*}
        cur=${cur#*=}
    fi
}

_tumbler_positionals() {
    # How many arguments that are not options (nor option values) come before the word
    # being completed, from word $1 on; $2 lists the options that take a value.
    local i word count=0
    for ((i = $1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ $word == "=" ]]; then
            ((i++))
        elif [[ $word == -* ]]; then
            [[ " $2 " == *" $word "* && ${COMP_WORDS[i + 1]} != "=" ]] && ((i++))
        else
            ((count++))
        fi
    done
    printf '%s\n' "$count"
}

_tumbler() {
    local cur prev command=""
    _tumbler_current
    COMPREPLY=()
    local commands="open ssh-proxy knock sniff keygen"
    [[ $COMP_CWORD -ge 2 ]] && command=${COMP_WORDS[1]}
    [[ " $commands " == *" $command "* ]] || command=""

    local options takes
    case $command in
        open)
            options="-h --help --profiles -v --verbose"
            takes="--profiles"
            ;;
        ssh-proxy)
            options="-h --help --profiles --url --secret-file --ssh-key --from -4 -6
                --wait-timeout --retry-after -v --verbose"
            takes="--profiles --url --secret-file --ssh-key --from --wait-timeout --retry-after"
            ;;
        knock)
            options="-h --help -4 -6 -u --udp --delay -v --verbose --dry-run"
            takes="--delay"
            ;;
        sniff)
            options="-h --help --port --secret --secret-file --key --key-file --authorized-keys
                --realm --window --udp --no-refused --date --json -v --verbose"
            takes="--port --secret --secret-file --key --key-file --authorized-keys --realm --window
                --date"
            ;;
        keygen)
            options="-h --help --door --open --host --port --realm --passphrase --key-file --qr"
            takes="--door --open --host --port --realm --key-file"
            ;;
        *)
            options="-h --help --open --secret-file --ssh-key --fwknoprc --from -4 -6 --dry-run
                -v --verbose --version"
            takes="--open --secret-file --ssh-key --fwknoprc --from"
            ;;
    esac

    case $prev in
        --secret-file | --profiles | --key-file | --ssh-key | --authorized-keys | --fwknoprc)
            _tumbler_files "$cur"
            return 0
            ;;
    esac
    if [[ " $takes " == *" $prev "* ]]; then
        return 0 # a URL, an address, a number: nothing to offer
    fi
    if [[ $cur == -* ]]; then
        _tumbler_reply "$options" "$cur"
        return 0
    fi

    local before
    case $command in
        "")
            [[ $COMP_CWORD -eq 1 ]] && _tumbler_reply "$commands" "$cur"
            ;;
        open | ssh-proxy)
            before=$(_tumbler_positionals 2 "$takes")
            [[ $before -eq 0 ]] && _tumbler_reply "$(_tumbler_profiles)" "$cur"
            ;;
        sniff)
            _tumbler_files "$cur"
            ;;
    esac
    return 0
}

_tumblerd() {
    local cur prev command="" i
    _tumbler_current
    COMPREPLY=()
    local commands="firewall status close import-fwknop demo"
    for ((i = 1; i < COMP_CWORD; i++)); do
        if [[ " $commands " == *" ${COMP_WORDS[i]} "* ]]; then
            command=${COMP_WORDS[i]}
            break
        fi
    done

    case $prev in
        -c | --config)
            _tumbler_files "$cur"
            return 0
            ;;
        -p | --port)
            return 0
            ;;
        --backend)
            _tumbler_reply "auto nftables iptables iptables-nft iptables-legacy" "$cur"
            return 0
            ;;
        --door)
            _tumbler_reply "$(_tumblerd_doors)" "$cur"
            return 0
            ;;
    esac

    local options
    case $command in
        firewall) options="-h --help -c --config --print --backend" ;;
        status) options="-h --help -c --config --json" ;;
        close) options="-h --help -c --config --door" ;;
        import-fwknop) options="-h --help" ;;
        demo) options="-h --help" ;;
        *) options="-h --help -c --config -p --port --check-config -v --verbose --version" ;;
    esac
    if [[ $cur == -* ]]; then
        _tumbler_reply "$options" "$cur"
        return 0
    fi
    local before
    case $command in
        "")
            _tumbler_reply "$commands" "$cur"
            ;;
        status)
            before=$(_tumbler_positionals $((i + 1)) "-c --config")
            [[ $before -eq 0 ]] && _tumbler_reply "$(_tumblerd_doors)" "$cur"
            ;;
        firewall)
            before=$(_tumbler_positionals $((i + 1)) "-c --config --backend")
            [[ $before -eq 0 ]] && _tumbler_reply "init list flush remove" "$cur"
            ;;
        import-fwknop)
            _tumbler_files "$cur"
            ;;
    esac
    return 0
}

complete -F _tumbler tumbler
complete -F _tumblerd tumblerd
