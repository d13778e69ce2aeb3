/* runbook show: print the plan (stdlib/runbook/cli.lua does the work). */
#include "runbook/host.h"

static const rb_optdef show_options[] = {
    { RB_OPT_FLAG, "help", 'h', NULL, "show this help" },
    { RB_OPT_END, NULL, 0, NULL, NULL },
};

int cmd_show(lua_State *L, int argc, char **argv)
{
    return rb_host_command(L, argc, argv, "NAME|FILE",
        "Print a runbook's plan as a numbered checklist. Nothing is run.", show_options);
}
