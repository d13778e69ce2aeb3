/* runbook verify: check a transcript (stdlib/runbook/cli.lua does the work). */
#include "runbook/host.h"

static const rb_optdef verify_options[] = {
    { RB_OPT_VALUE, "expect-hash", 0, "HEX", "also require the last line to have this hash" },
    { RB_OPT_FLAG, "help", 'h', NULL, "show this help" },
    { RB_OPT_END, NULL, 0, NULL, NULL },
};

int cmd_verify(lua_State *L, int argc, char **argv)
{
    return rb_host_command(L, argc, argv, "TRANSCRIPT",
        "Check a transcript's hash chain. Exit 0 when every line verifies; otherwise\nexit 1 and name the first bad line.", verify_options);
}
