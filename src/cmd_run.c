/* runbook run: execute a runbook (stdlib/runbook/cli.lua does the work). */
#include "runbook/host.h"

static const rb_optdef run_options[] = {
    { RB_OPT_LIST, "param", 'p', "K=V", "set parameter K (repeatable)" },
    { RB_OPT_VALUE, "target", 't', "NAME", "use target NAME from the config file" },
    { RB_OPT_VALUE, "config", 0, "FILE", "config file (default $XDG_CONFIG_HOME/runbook/config.lua)" },
    { RB_OPT_FLAG, "dry-run", 'n', NULL, "rehearse: show mutating actions instead of running them" },
    { RB_OPT_FLAG, "yes", 'y', NULL, "answer confirmations yes; abort on the first failure" },
    { RB_OPT_VALUE, "answers", 0, "FILE", "answer questions from FILE (see 'runbook run --help')" },
    { RB_OPT_VALUE, "start-at", 0, "STEP", "start at step STEP (number or id)" },
    { RB_OPT_VALUE, "resume", 0, "TRANSCRIPT", "continue after the last step that ended ok" },
    { RB_OPT_VALUE, "transcript", 0, "PATH", "write the transcript to PATH" },
    { RB_OPT_VALUE, "scenario", 0, "FILE", "replace chosen call results (game days)" },
    { RB_OPT_FLAG, "help", 'h', NULL, "show this help" },
    { RB_OPT_END, NULL, 0, NULL, NULL },
};

int cmd_run(lua_State *L, int argc, char **argv)
{
    return rb_host_command(L, argc, argv, "NAME|FILE [options]",
        "Run a runbook step by step. NAME is looked up in ./runbooks, $RUNBOOK_PATH\n"
        "and the installed share dir. Every action is recorded in a transcript.\n"
        "An answers file holds lines '[step-id] question = answer'; '!error' as the\n"
        "question answers retry/skip/abort after a failure.",
        run_options);
}
