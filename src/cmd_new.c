/* runbook new: write a skeleton (stdlib/runbook/cli.lua does the work). */
#include "runbook/host.h"

static const rb_optdef new_options[] = {
    { RB_OPT_VALUE, "dir", 0, "DIR", "write into DIR instead of ./runbooks" },
    { RB_OPT_FLAG, "force", 'f', NULL, "overwrite an existing file" },
    { RB_OPT_FLAG, "help", 'h', NULL, "show this help" },
    { RB_OPT_END, NULL, 0, NULL, NULL },
};

int cmd_new(lua_State *L, int argc, char **argv)
{
    return rb_host_command(L, argc, argv, "NAME",
        "Write runbooks/NAME.lua, a commented skeleton that passes 'runbook check'.", new_options);
}
