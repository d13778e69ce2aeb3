/* runbook list: list runbooks (stdlib/runbook/cli.lua does the work). */
#include "runbook/host.h"

static const rb_optdef list_options[] = {
    { RB_OPT_FLAG, "help", 'h', NULL, "show this help" },
    { RB_OPT_END, NULL, 0, NULL, NULL },
};

int cmd_list(lua_State *L, int argc, char **argv)
{
    return rb_host_command(L, argc, argv, "",
        "List the runbooks found in ./runbooks, $RUNBOOK_PATH and the installed share dir.", list_options);
}
