# bash completion for runbook(1).  Installed into bash-completion's
# completionsdir, or sourced from ~/.bashrc.  The candidates come from
# `runbook __complete WORD...` (stdlib/runbook/shellcomplete.lua), which reads
# the commands' own option tables, the config's targets and the runbooks'
# plans, so this file never lists a command or a flag itself.

_runbook()
{
    local cur words cword
    # '=' and ':' split words for bash; runbook reads `-p k=v` as one word.
    if declare -F _get_comp_words_by_ref >/dev/null; then
        _get_comp_words_by_ref -n =: cur words cword
    else
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
        cur=${COMP_WORDS[COMP_CWORD]}
    fi
    local line directive="" cands=()
    while IFS= read -r line; do
        case $line in
            :*) directive=$line ;;
            *) cands+=("${line%%$'\t'*}") ;;
        esac
    done < <("${words[0]}" __complete "${words[@]:1:cword}" 2>/dev/null)

    COMPREPLY=()
    local c
    for c in "${cands[@]}"; do
        COMPREPLY+=("$c")
    done
    case $directive in
        :nospace)
            compopt -o nospace 2>/dev/null ;;
        :dirs)
            compopt -o filenames 2>/dev/null
            while IFS= read -r c; do COMPREPLY+=("$c"); done < <(compgen -d -- "$cur") ;;
        :files*)
            compopt -o filenames 2>/dev/null
            local exts=${directive#:files} ext
            while IFS= read -r c; do COMPREPLY+=("$c"); done < <(compgen -d -- "$cur")
            if [[ -z ${exts// } ]]; then
                while IFS= read -r c; do
                    [[ -d $c ]] || COMPREPLY+=("$c")
                done < <(compgen -f -- "$cur")
            else
                for ext in $exts; do
                    while IFS= read -r c; do
                        [[ -d $c ]] || COMPREPLY+=("$c")
                    done < <(compgen -f -X "!*.$ext" -- "$cur")
                done
            fi ;;
    esac
    # With ':' a word break, bash would insert a candidate after its colon.
    if declare -F __ltrim_colon_completions >/dev/null; then
        __ltrim_colon_completions "$cur"
    fi
}
complete -F _runbook runbook
