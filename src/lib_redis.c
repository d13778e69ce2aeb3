/*
 * lib_redis.c: Redis connections on the event loop (hiredis 0.14).
 *
 * Two verbs, both non-blocking through rb_loop_wait:
 *
 *   redis.open(host, port, connect_timeout [, label]) -> conn | nil, facts
 *       resolves the name and tries each address (src/net.c), then hands
 *       the connected socket to hiredis.
 *   redis.argv(hide, max, name, args...) or redis.argv(hide, max, {name, args...})
 *       -> argv, plain | nil, position, type
 *       the command as the strings sent (see push_arg), checked, and
 *       whether the record may show it as it is.
 *   conn:call(timeout, argv) -> true, value | nil, facts
 *       sends one command and reads its reply.  A server error reply is
 *       nil, {kind = "server", message}.  After a transport failure
 *       (timeout, Ctrl-C, lost connection) the connection is closed, since
 *       a late reply would otherwise be read as the next command's answer.
 *
 * Failures are facts, never prose: {kind = "resolve" | "refused" |
 * "timeout" | "closed" | "protocol" | "server", stage = "resolve" |
 * "connect" | "call", errno, reason, host, port, addr, wake, timeout,
 * command, who, eof, message}; stdlib/runbook/networds.lua words them for
 * the operator, as it does for ssh and http.  Misuse (a closed or busy
 * connection, a bad argument) still raises.
 *
 * Reply mapping: status and string -> string, integer -> integer, nil ->
 * nil at the top and false inside an array (so # and ipairs see every
 * element; RESP2 has no booleans, so false is unambiguous), array -> table,
 * error inside an array (EXEC) -> {err = text}, as Redis's own Lua
 * scripting does.  URLs, AUTH, SELECT, dry run and the transcript are the
 * stdlib's business (stdlib/runbook/prim/redis.lua).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <lauxlib.h>

#include "runbook/host.h"
#include "runbook/loop.h"
#include "runbook/net.h"

#define CONN_MT "runbook.redis.conn"
#define WHERE_MAX 300
#define READS_PER_WAKE 64           /* 1 MiB of a big reply, then a loop round */
#define FRESH 0.010                 /* s: see usable() */

struct conn {
    redisContext *ctx;          /* NULL when not connected */
    struct rb_net net;          /* during open: the lookup and connect */
    redisReply *reply;          /* a reply being pushed (push_reply) */
    int busy;                   /* a call is in flight */
    int written;                /* the command has left the buffer */
    double deadline, timeout;
    double answered;            /* rb_loop_now() of the last reply */
    unsigned long answered_polls;   /* rb_loop_polls() then */
    char where[WHERE_MAX];      /* "redis host:port", the facts' who */
    char cmd[40];               /* the command in flight, the facts' command */
};

/* Stack slots of redis.open and conn:call. */
enum { S_HOST = 1, S_PORT, S_CTIMEOUT, S_LABEL, S_OPEN_CONN };
enum { S_CONN = 1, S_TIMEOUT, S_ARGV };

/* Close everything; safe to call twice (__gc after __close or close()). */
static void conn_release(struct conn *c)
{
    redisContext *ctx = c->ctx;
    c->ctx = NULL;
    c->busy = 0;
    if (c->reply != NULL)
        freeReplyObject(c->reply);
    c->reply = NULL;
    if (ctx != NULL)
        redisFree(ctx);
    rb_net_close(&c->net);
}

static int l_gc(lua_State *L)
{
    conn_release(luaL_checkudata(L, 1, CONN_MT));
    return 0;
}

static struct conn *check_open(lua_State *L)
{
    struct conn *c = rb_self(L, CONN_MT);
    if (c->ctx == NULL)
        luaL_error(L, "%s: the connection is closed", c->where);
    return c;
}

/* ---- opening ---------------------------------------------------------- */

/* nil, facts (the table on top gets who); closes c.  Returns 2. */
static int open_failed(lua_State *L, struct conn *c)
{
    rb_net_set(L, "who", c->where);
    lua_pushnil(L);
    lua_insert(L, -2);
    conn_release(c);
    return 2;
}

static int k_connected(lua_State *L, int status, lua_KContext ctx);

/* The socket is connected: hand it to hiredis, which takes it over.
 * redisConnectFd marks a context blocking; ours is not (EAGAIN from a
 * non-blocking read must mean "later", not an error). */
static int attach(lua_State *L, struct conn *c)
{
    int fd = rb_net_take(&c->net);
    redisContext *ctx = redisConnectFd(fd);
    if (ctx == NULL) {
        close(fd);
        conn_release(c);
        return luaL_error(L, "%s: out of memory", c->where);
    }
    ctx->flags &= ~REDIS_BLOCK;
    c->ctx = ctx;
    redisEnableKeepAlive(ctx);      /* a REPL session may idle for hours */
    lua_settop(L, S_OPEN_CONN);
    return 1;
}

/* Where the connect loop goes next: wait, attach or fail. */
static int connect_on(lua_State *L, struct conn *c, enum rb_net_result r)
{
    if (r == RB_NET_WAIT)
        return rb_loop_wait(L, c->net.fd, POLLOUT, c->deadline, k_connected, 0);
    if (r == RB_NET_READY)
        return attach(L, c);
    rb_net_push_failure(L, &c->net);
    return open_failed(L, c);
}

/* nil, facts when a wait of the opening did not end READY, else 0. */
static int opening_woke(lua_State *L, struct conn *c, const char *stage)
{
    enum rb_wake w = rb_loop_woke(L, NULL, 0);
    if (w == RB_WAKE_READY)
        return 0;
    rb_net_push_wake(L, w, stage, c->timeout);
    return open_failed(L, c);
}

static int k_connected(lua_State *L, int status, lua_KContext kctx)
{
    (void)status;
    (void)kctx;
    struct conn *c = luaL_checkudata(L, S_OPEN_CONN, CONN_MT);
    int n = opening_woke(L, c, "connect");
    return n ? n : connect_on(L, c, rb_net_connected(&c->net));
}

static int k_resolved(lua_State *L, int status, lua_KContext kctx)
{
    (void)status;
    (void)kctx;
    struct conn *c = luaL_checkudata(L, S_OPEN_CONN, CONN_MT);
    int n = opening_woke(L, c, "resolve");
    if (n)
        return n;
    if (rb_net_resolved(&c->net) != RB_NET_READY) {
        rb_net_push_failure(L, &c->net);
        return open_failed(L, c);
    }
    return connect_on(L, c, rb_net_connect(&c->net));
}

/* redis.open(host, port, connect_timeout [, label]) -> conn | nil, facts;
 * label names the server in the facts (default "redis host:port"). */
static int l_open(lua_State *L)
{
    const char *host = luaL_checkstring(L, S_HOST);
    lua_Integer port = luaL_checkinteger(L, S_PORT);
    double timeout = luaL_optnumber(L, S_CTIMEOUT, 5);
    const char *label = luaL_optstring(L, S_LABEL, NULL);
    luaL_argcheck(L, *host != '\0' && strlen(host) < 256, S_HOST, "host name empty or too long");
    luaL_argcheck(L, port > 0 && port < 65536, S_PORT, "port must be 1-65535");
    luaL_argcheck(L, timeout >= 0, S_CTIMEOUT, "timeout must not be negative");
    lua_settop(L, S_LABEL);

    struct conn *c = lua_newuserdatauv(L, sizeof *c, 0);    /* S_OPEN_CONN, closed */
    memset(c, 0, sizeof *c);
    rb_net_init(&c->net);
    luaL_setmetatable(L, CONN_MT);
    if (label != NULL)
        snprintf(c->where, sizeof c->where, "%s", label);
    else
        snprintf(c->where, sizeof c->where, strchr(host, ':') ? "redis [%s]:%d" : "redis %s:%d",
                 host, (int)port);
    c->timeout = timeout;
    c->deadline = rb_loop_deadline(timeout);
    enum rb_net_result r = rb_net_start(&c->net, host, (int)port);
    if (r == RB_NET_WAIT)
        return rb_loop_wait(L, c->net.fd, POLLIN, c->deadline, k_resolved, 0);
    return connect_on(L, c, r == RB_NET_READY ? rb_net_connect(&c->net) : r);
}

/* ---- replies ---------------------------------------------------------- */

static void push_value(lua_State *L, const redisReply *r, int in_array);

static void push_array(lua_State *L, const redisReply *r)
{
    luaL_checkstack(L, 4, "redis reply nested too deeply");
    lua_createtable(L, r->elements > 0x7fffffff ? 0 : (int)r->elements, 0);
    for (size_t i = 0; i < r->elements; i++) {
        push_value(L, r->element[i], 1);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static void push_value(lua_State *L, const redisReply *r, int in_array)
{
    switch (r->type) {
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_STRING:
        lua_pushlstring(L, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        lua_pushinteger(L, (lua_Integer)r->integer);
        break;
    case REDIS_REPLY_ARRAY:
        push_array(L, r);
        break;
    case REDIS_REPLY_ERROR:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, r->str, r->len);
        lua_setfield(L, -2, "err");
        break;
    default:            /* REDIS_REPLY_NIL */
        if (in_array)
            lua_pushboolean(L, 0);
        else
            lua_pushnil(L);
        break;
    }
}

/* The facts of a failed call: {kind, stage = "call", command, who, ...}. */
static void push_call_facts(lua_State *L, struct conn *c, const char *kind)
{
    rb_net_push_facts(L, kind, "call");
    rb_net_set(L, "command", c->cmd);
    rb_net_set(L, "who", c->where);
}

/* Push ok, value for a reply and free it (takes ownership of reply).  An
 * error reply is nil, {kind = "server", message = the server's text}.
 * The reply waits in c->reply while it is pushed: if a push raises (out
 * of memory), the next reply or the connection's release frees it. */
static int push_reply(lua_State *L, struct conn *c, redisReply *r)
{
    if (c->reply != NULL)
        freeReplyObject(c->reply);
    c->reply = r;
    if (r->type == REDIS_REPLY_ERROR) {
        lua_pushnil(L);
        push_call_facts(L, c, "server");
        lua_pushlstring(L, r->str, r->len);
        lua_setfield(L, -2, "message");
    } else {
        lua_pushboolean(L, 1);
        push_value(L, r, 0);
    }
    c->reply = NULL;
    freeReplyObject(r);
    return 2;
}

/* ---- calls ------------------------------------------------------------ */

/* The connection failed under a call: nil, facts, and the connection
 * closed (a late reply would be read as the next command's). */
static int call_io_failed(lua_State *L, struct conn *c)
{
    int err = c->ctx->err;
    lua_pushnil(L);
    push_call_facts(L, c, err == REDIS_ERR_PROTOCOL ? "protocol" : "closed");
    if (err == REDIS_ERR_EOF) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "eof");
    } else {
        rb_net_set(L, "reason", c->ctx->errstr);
    }
    conn_release(c);
    return 2;
}

static int call_wait_failed(lua_State *L, struct conn *c, enum rb_wake w)
{
    lua_pushnil(L);
    rb_net_push_wake(L, w, "call", c->timeout);
    rb_net_set(L, "command", c->cmd);
    rb_net_set(L, "who", c->where);
    conn_release(c);
    return 2;
}

/* Read what has arrived into hiredis's reader, without waiting, and take
 * a whole reply if there is one.  Keeps reading while the socket has data
 * (up to READS_PER_WAKE reads), so a big reply costs few loop rounds, and
 * the blocking fallback of rb_loop_wait does not nest once per 16 KiB.
 * Returns -1 on a connection error. */
static int read_reply(struct conn *c, void **reply)
{
    for (int i = 0; i < READS_PER_WAKE; i++) {
        if (redisBufferRead(c->ctx) != REDIS_OK || redisGetReplyFromReader(c->ctx, reply) != REDIS_OK)
            return -1;
        if (*reply != NULL)
            return 0;
        struct pollfd p = { .fd = c->ctx->fd, .events = POLLIN, .revents = 0 };
        if (poll(&p, 1, 0) <= 0)
            return 0;
    }
    return 0;
}

/* Write the command out, then read until one whole reply is in. */
static int k_call(lua_State *L, int status, lua_KContext woke)
{
    (void)status;
    struct conn *c = rb_self(L, CONN_MT);
    if (c->ctx == NULL) {          /* r:close() from another task */
        lua_pushnil(L);
        push_call_facts(L, c, "closed");
        rb_net_set(L, "by", "runbook");
        return 2;
    }
    if (woke) {
        enum rb_wake w = rb_loop_woke(L, NULL, 0);
        if (w != RB_WAKE_READY)
            return call_wait_failed(L, c, w);
    }
    redisContext *ctx = c->ctx;
    if (!c->written) {
        int done = 0;
        if (redisBufferWrite(ctx, &done) != REDIS_OK)
            return call_io_failed(L, c);
        if (!done)
            return rb_loop_wait(L, ctx->fd, POLLOUT, c->deadline, k_call, 1);
        c->written = 1;
        return rb_loop_wait(L, ctx->fd, POLLIN, c->deadline, k_call, 1);
    }
    void *reply = NULL;
    if (read_reply(c, &reply) != 0)
        return call_io_failed(L, c);
    if (reply == NULL)
        return rb_loop_wait(L, ctx->fd, POLLIN, c->deadline, k_call, 1);
    c->busy = 0;
    c->answered = rb_loop_now();
    c->answered_polls = rb_loop_polls();
    return push_reply(L, c, reply);
}

/* Stack slots of redis.argv: the set of command names (in capitals)
 * whose arguments can hold a password, the longest argument the record
 * shows whole (both redis.lua's, so each is written once), then the
 * command. */
enum { S_HIDE = 1, S_MAX, S_CMD };

/* Is the command named by the n bytes at name in the set at S_HIDE?  A
 * name longer than any command is not. */
static int may_hide(lua_State *L, const char *name, size_t n)
{
    char up[32];
    if (n >= sizeof up)
        return 0;
    for (size_t i = 0; i < n; i++)
        up[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
    up[n] = '\0';
    int hide = lua_getfield(L, S_HIDE, up) != LUA_TNIL && lua_toboolean(L, -1);
    lua_pop(L, 1);
    return hide;
}

/* The argument at idx as the string sent: a string as it is, an integer
 * in decimal, an integral float without ".0", any other float as %.14g,
 * or %.17g when that does not read back the same.  Pushes it and returns
 * 1, or pushes nothing and returns 0 for any other type. */
static int push_arg(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        lua_pushvalue(L, idx);
        return 1;
    }
    if (lua_type(L, idx) != LUA_TNUMBER)
        return 0;
    if (lua_isinteger(L, idx)) {
        lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
        return 1;
    }
    double v = lua_tonumber(L, idx);
    char buf[40];
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {      /* 2^53 */
        snprintf(buf, sizeof buf, "%lld", (long long)v);
    } else {
        snprintf(buf, sizeof buf, "%.14g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, sizeof buf, "%.17g", v);
    }
    lua_pushstring(L, buf);
    return 1;
}

/* redis.argv: a command's name and arguments (as the call's arguments, or
 * the array part of a table) to a new list of strings, and plain: true
 * when the record may show it as it is (not a command of the set at
 * S_HIDE, no argument over S_MAX bytes).  Wrong input is nil, its
 * position and its type's name: position 0 for no name, 1 for a name
 * that is not a non-empty string (type "empty" for ""), so the stdlib
 * words the error. */
static int l_argv(lua_State *L)
{
    luaL_checktype(L, S_HIDE, LUA_TTABLE);
    size_t max = (size_t)luaL_checkinteger(L, S_MAX);
    int table = lua_type(L, S_CMD) == LUA_TTABLE;
    lua_Integer n = table ? luaL_len(L, S_CMD) : lua_gettop(L) - (S_CMD - 1);
    if (n < 1 || n >= 0x7fffffff) {
        lua_pushnil(L);
        lua_pushinteger(L, 0);
        lua_pushliteral(L, "nil");
        return 3;
    }
    lua_createtable(L, (int)n, 0);
    int out = lua_gettop(L), plain = 1;
    for (lua_Integer i = 1; i <= n; i++) {
        int idx = S_CMD - 1 + (int)i;
        if (table) {
            lua_geti(L, S_CMD, i);
            idx = lua_gettop(L);
        }
        size_t len = 0;
        int ok = (i > 1 || lua_type(L, idx) == LUA_TSTRING) && push_arg(L, idx);
        const char *a = ok ? lua_tolstring(L, -1, &len) : NULL;
        if (!ok || (i == 1 && len == 0)) {
            lua_pushnil(L);
            lua_pushinteger(L, i);
            lua_pushstring(L, ok ? "empty" : luaL_typename(L, idx));
            return 3;
        }
        if (len > max || (i == 1 && may_hide(L, a, len)))
            plain = 0;
        lua_rawseti(L, out, i);
        if (table)
            lua_pop(L, 1);
    }
    lua_pushboolean(L, plain);
    return 2;
}

#define SHORT_ARGV 8              /* arguments held on the C stack */

/* Queue argv (a list of strings) in hiredis's output buffer.  A short
 * command's pointers and lengths live on the C stack; a longer one's in
 * two userdata, popped at the end. */
static void append_command(lua_State *L, struct conn *c)
{
    lua_Integer n = luaL_len(L, S_ARGV);
    luaL_argcheck(L, n >= 1 && n < 0x7fffffff, S_ARGV, "expected {command, args...}");
    const char *short_argv[SHORT_ARGV];
    size_t short_lens[SHORT_ARGV];
    const char **argv = short_argv;
    size_t *lens = short_lens;
    if (n > SHORT_ARGV) {
        argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)n, 0);
        lens = lua_newuserdatauv(L, sizeof(size_t) * (size_t)n, 0);
    }
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, S_ARGV, i) != LUA_TSTRING)
            luaL_error(L, "%s: argument %d is a %s, not a string", c->where, (int)i,
                       luaL_typename(L, -1));
        argv[i - 1] = lua_tolstring(L, -1, &lens[i - 1]);   /* anchored in argv */
        lua_pop(L, 1);
    }
    size_t k = 0;
    for (; k < sizeof c->cmd - 1 && k < lens[0]; k++)
        c->cmd[k] = (char)(argv[0][k] >= 'a' && argv[0][k] <= 'z' ? argv[0][k] - 32 : argv[0][k]);
    c->cmd[k] = '\0';
    if (redisAppendCommandArgv(c->ctx, (int)n, argv, lens) != REDIS_OK)
        luaL_error(L, "%s: out of memory", c->where);
    if (n > SHORT_ARGV)
        lua_pop(L, 2);
}

/* conn:call(timeout, {cmd, args...}) -> true, value | nil, facts */
static int l_call(lua_State *L)
{
    struct conn *c = check_open(L);
    double timeout = luaL_checknumber(L, S_TIMEOUT);
    luaL_checktype(L, S_ARGV, LUA_TTABLE);
    luaL_argcheck(L, timeout >= 0, S_TIMEOUT, "timeout must not be negative");
    if (c->busy)
        return luaL_error(L, "%s: the connection is busy with %s (one call at a time)",
                          c->where, c->cmd);
    lua_settop(L, S_ARGV);
    append_command(L, c);
    c->busy = 1;
    c->written = 0;
    c->timeout = timeout;
    c->deadline = rb_loop_deadline(timeout);
    return k_call(L, LUA_OK, 0);
}

static int l_close(lua_State *L)
{
    conn_release(rb_self(L, CONN_MT));
    return 0;
}

/* Is c connected and usable?  An idle connection (no call in flight)
 * should have nothing to read: if it has, the server closed it (its
 * `timeout`, a restart, a proxy) or sent what we never asked for, so it
 * is closed here, before a command is sent on it.  The check is a poll
 * of its own (a tenth of what runbook adds to a call in a loop of them),
 * so it is skipped when the connection answered less than FRESH ago and
 * the loop has not polled since: nothing waited in between, for another
 * call (a CLIENT KILL on another connection), a process, a timer or the
 * operator, only computation.  A close in that window fails the call as
 * a close during it would, and the next call reconnects. */
static int usable(struct conn *c)
{
    if (c->ctx != NULL && !c->busy &&
        (rb_loop_polls() != c->answered_polls || rb_loop_now() - c->answered >= FRESH)) {
        struct pollfd p = { .fd = c->ctx->fd, .events = POLLIN, .revents = 0 };
        if (poll(&p, 1, 0) != 0)
            conn_release(c);
    }
    return c->ctx != NULL;
}

/* conn:isopen() -> true while connected and usable */
static int l_isopen(lua_State *L)
{
    lua_pushboolean(L, usable(rb_self(L, CONN_MT)));
    return 1;
}

/* conn:ready() -> isopen() and not busy(): what a call asks first, in one */
static int l_ready(lua_State *L)
{
    struct conn *c = rb_self(L, CONN_MT);
    lua_pushboolean(L, usable(c) && !c->busy);
    return 1;
}

static int l_busy(lua_State *L)
{
    struct conn *c = rb_self(L, CONN_MT);
    lua_pushboolean(L, c->busy);
    return 1;
}

static int l_tostring(lua_State *L)
{
    struct conn *c = luaL_checkudata(L, 1, CONN_MT);
    lua_pushfstring(L, "%s (%s)", c->where, c->ctx ? "open" : "closed");
    return 1;
}

int luaopen_runbook_redis(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "open", l_open },
        { "argv", l_argv },
        { NULL, NULL },
    };
    static const luaL_Reg methods[] = {
        { "call", l_call },
        { "close", l_close },
        { "isopen", l_isopen },
        { "busy", l_busy },
        { "ready", l_ready },
        { NULL, NULL },
    };
    rb_class(L, CONN_MT, l_gc, l_tostring, methods);
    luaL_newlib(L, funcs);
    return 1;
}
