/* runbook check: lint runbooks (stdlib/runbook/cli.lua does the work). */
#include "runbook/host.h"

static const rb_optdef check_options[] = {
    { RB_OPT_FLAG, "help", 'h', NULL, "show this help" },
    { RB_OPT_END, NULL, 0, NULL, NULL },
};

int cmd_check(lua_State *L, int argc, char **argv)
{
    return rb_host_command(L, argc, argv, "NAME|FILE...",
        "Check runbooks: load errors (file:line), duplicate step ids, undeclared params.\nExit 2 when a problem is found.", check_options);
}
