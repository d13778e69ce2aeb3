/*
 * lib_redis.c: Redis connections on the event loop (hiredis 0.14).
 *
 * Two verbs, both non-blocking through rb_loop_wait:
 *
 *   redis.open(host, port, connect_timeout [, label]) -> conn
 *       resolves the name (in a helper thread, so the wait has a deadline
 *       and Ctrl-C works), then tries each address with
 *       redisConnectNonBlock until one accepts.
 *   conn:call(timeout, argv) -> true, value | false, error_text
 *       sends one command and reads its reply.  A server error reply is
 *       returned (false, text), not raised: the stdlib decides what to say.
 *       Transport failures (timeout, Ctrl-C, lost connection) raise and
 *       close the connection, since a late reply would otherwise be read
 *       as the answer to the next command.
 *
 * Reply mapping: status and string -> string, integer -> integer, nil ->
 * nil at the top and false inside an array (so # and ipairs see every
 * element; RESP2 has no booleans, so false is unambiguous), array -> table,
 * error inside an array (EXEC) -> {err = text}, as Redis's own Lua
 * scripting does.  URLs, AUTH, SELECT, dry run and the transcript are the
 * stdlib's business (stdlib/runbook/prim/redis.lua).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <lauxlib.h>

#include "runbook/host.h"
#include "runbook/loop.h"

#define CONN_MT "runbook.redis.conn"
#define WHERE_MAX 300
#define READS_PER_WAKE 64           /* 1 MiB of a big reply, then a loop round */

/* A name lookup running in a detached thread.  The thread and the
 * connection each hold a reference; whoever drops the last one frees it,
 * so an abandoned lookup (timeout, Ctrl-C) finishes harmlessly. */
struct lookup {
    atomic_int refs;
    int wfd;                    /* the thread writes one byte, then closes */
    int rc;                     /* getaddrinfo's result */
    int sys_errno;              /* the thread's errno, for EAI_SYSTEM */
    struct addrinfo *res;
    char host[256];
    char port[16];
};

struct conn {
    redisContext *ctx;          /* NULL when not connected */
    struct lookup *lookup;      /* during open: this conn's reference */
    int lookup_fd;              /* during open: read end of the pipe */
    struct addrinfo *next_ai;   /* during open: next address to try */
    int last_errno;             /* during open: why the last address failed */
    char last_err[128];
    int busy;                   /* a call is in flight */
    int written;                /* the command has left the buffer */
    double deadline, timeout;
    char where[WHERE_MAX];      /* "redis host:port" for messages */
    char cmd[40];               /* the command in flight, for messages */
};

/* Stack slots of redis.open and conn:call. */
enum { S_HOST = 1, S_PORT, S_CTIMEOUT, S_LABEL, S_OPEN_CONN };
enum { S_CONN = 1, S_TIMEOUT, S_ARGV };

/* Raise a message without a position: api.raise adds the runbook's line. */
static int raise_text(lua_State *L, const char *fmt, ...)
{
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lua_pushstring(L, buf);
    return lua_error(L);
}

static void lookup_unref(struct lookup *lk)
{
    if (atomic_fetch_sub(&lk->refs, 1) == 1) {
        if (lk->res != NULL)
            freeaddrinfo(lk->res);
        free(lk);
    }
}

static void *lookup_thread(void *arg)
{
    struct lookup *lk = arg;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    lk->rc = getaddrinfo(lk->host, lk->port, &hints, &lk->res);
    lk->sys_errno = errno;
    ssize_t n = write(lk->wfd, "!", 1);    /* EPIPE if nobody waits: fine */
    (void)n;
    close(lk->wfd);
    lookup_unref(lk);
    return NULL;
}

static struct lookup *lookup_new(const char *host, int port)
{
    struct lookup *lk = calloc(1, sizeof *lk);
    if (lk == NULL)
        return NULL;
    snprintf(lk->host, sizeof lk->host, "%s", host);
    snprintf(lk->port, sizeof lk->port, "%d", port);
    lk->wfd = -1;
    atomic_init(&lk->refs, 1);
    return lk;
}

/* A numeric address needs no query: convert it here, at once. */
static int lookup_numeric(struct conn *c, const char *host, int port)
{
    struct lookup *lk = lookup_new(host, port);
    if (lk == NULL)
        return -1;
    struct addrinfo hints = { .ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM };
    if (getaddrinfo(lk->host, lk->port, &hints, &lk->res) != 0) {
        lookup_unref(lk);
        return 0;
    }
    c->lookup = lk;
    c->next_ai = lk->res;
    return 1;
}

/* Start the lookup of a host name in a thread; returns the read end of its
 * pipe, or -1 with errno set.  Signals are blocked in the thread so that
 * Ctrl-C is always handled by the thread running the loop. */
static int lookup_start(struct conn *c, const char *host, int port)
{
    int fds[2];
    struct lookup *lk = lookup_new(host, port);
    if (lk == NULL || pipe2(fds, O_CLOEXEC) != 0) {
        free(lk);
        return -1;
    }
    lk->wfd = fds[1];
    atomic_init(&lk->refs, 2);
    sigset_t all, old;
    sigfillset(&all);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t tid;
    int rc = pthread_create(&tid, &attr, lookup_thread, lk);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        close(fds[0]);
        close(fds[1]);
        free(lk);
        errno = rc;
        return -1;
    }
    c->lookup = lk;
    c->lookup_fd = fds[0];
    return fds[0];
}

static void lookup_release(struct conn *c)
{
    if (c->lookup_fd >= 0)
        close(c->lookup_fd);
    c->lookup_fd = -1;
    if (c->lookup != NULL)
        lookup_unref(c->lookup);
    c->lookup = NULL;
    c->next_ai = NULL;
}

/* Close everything; safe to call twice (__gc after __close or close()). */
static void conn_release(struct conn *c)
{
    redisContext *ctx = c->ctx;
    c->ctx = NULL;
    c->busy = 0;
    if (ctx != NULL)
        redisFree(ctx);
    lookup_release(c);
}

static int l_gc(lua_State *L)
{
    conn_release(luaL_checkudata(L, 1, CONN_MT));
    return 0;
}

static struct conn *check_open(lua_State *L, int idx)
{
    struct conn *c = luaL_checkudata(L, idx, CONN_MT);
    if (c->ctx == NULL)
        luaL_error(L, "%s: the connection is closed", c->where);
    return c;
}

/* ---- opening ---------------------------------------------------------- */

static int connect_failed(lua_State *L, struct conn *c)
{
    int e = c->last_errno;
    conn_release(c);
    if (e == ECONNREFUSED)
        return raise_text(L, "%s: connection refused (is Redis running and listening there? "
                          "check the host and port in the URL)", c->where);
    if (e == ENETUNREACH || e == EHOSTUNREACH)
        return raise_text(L, "%s: cannot connect: %s (check the host in the URL and the "
                          "network route to it)", c->where, strerror(e));
    if (e == 0 && c->last_err[0] == '\0')
        return raise_text(L, "%s: cannot connect: the name has no usable address (check the "
                          "host in the URL)", c->where);
    return raise_text(L, "%s: cannot connect: %s (check the host and port in the URL)",
                      c->where, c->last_err[0] ? c->last_err : strerror(e));
}

static int k_connected(lua_State *L, int status, lua_KContext ctx);

/* Try the next address of the lookup; hiredis resolves the numeric form
 * it is given without a query. */
static int try_next(lua_State *L, struct conn *c)
{
    while (c->next_ai != NULL) {
        struct addrinfo *ai = c->next_ai;
        c->next_ai = ai->ai_next;
        char ip[NI_MAXHOST];
        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, ip, sizeof ip, NULL, 0, NI_NUMERICHOST) != 0)
            continue;
        redisContext *ctx = redisConnectNonBlock(ip, (int)lua_tointeger(L, S_PORT));
        if (ctx == NULL)
            return raise_text(L, "%s: out of memory", c->where);
        if (ctx->err) {
            c->last_errno = errno;
            snprintf(c->last_err, sizeof c->last_err, "%s", ctx->errstr);
            redisFree(ctx);
            continue;
        }
        c->ctx = ctx;
        return rb_loop_wait(L, ctx->fd, POLLOUT, c->deadline, k_connected, 0);
    }
    return connect_failed(L, c);
}

/* How a wait of the opening ended: nothing when the fd is ready; else the
 * connection is released and the timeout (with the hint of what to check),
 * Ctrl-C or error raised, so this does not return. */
static void opening_woke(lua_State *L, struct conn *c, const char *op, const char *doing,
                         const char *hint)
{
    enum rb_wake w = rb_loop_woke(L, NULL, 0);
    if (w == RB_WAKE_READY)
        return;
    conn_release(c);
    if (w == RB_WAKE_TIMEOUT)
        raise_text(L, "%s: %s timed out after %.1f s (%s)", c->where, doing, c->timeout, hint);
    rb_loop_raise(L, w, c->where, op, c->timeout);
}

static int k_connected(lua_State *L, int status, lua_KContext kctx)
{
    (void)status;
    (void)kctx;
    struct conn *c = luaL_checkudata(L, S_OPEN_CONN, CONN_MT);
    opening_woke(L, c, "connect", "connect", "is the host up, and the port not dropped by a "
                 "firewall? connect_timeout= raises the limit");
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->ctx->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        c->last_errno = err;
        c->last_err[0] = '\0';
        redisFree(c->ctx);
        c->ctx = NULL;
        return try_next(L, c);
    }
    lookup_release(c);
    int one = 1;
    setsockopt(c->ctx->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    redisEnableKeepAlive(c->ctx);   /* a REPL session may idle for hours */
    lua_settop(L, S_OPEN_CONN);
    return 1;
}

static int k_resolved(lua_State *L, int status, lua_KContext kctx)
{
    (void)status;
    (void)kctx;
    struct conn *c = luaL_checkudata(L, S_OPEN_CONN, CONN_MT);
    opening_woke(L, c, "name lookup", "resolving the host name",
                 "check DNS and the host in the URL");
    struct lookup *lk = c->lookup;
    if (lk->rc != 0) {
        const char *why = lk->rc == EAI_SYSTEM ? strerror(lk->sys_errno) : gai_strerror(lk->rc);
        char host[256];
        snprintf(host, sizeof host, "%s", lk->host);
        conn_release(c);
        return raise_text(L, "%s: cannot resolve host name '%s': %s (check the host in the "
                          "URL and DNS)", c->where, host, why);
    }
    c->next_ai = lk->res;
    return try_next(L, c);
}

/* redis.open(host, port, connect_timeout [, label]) -> conn; label names
 * the server in messages (default "redis host:port"). */
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
    c->lookup_fd = -1;
    luaL_setmetatable(L, CONN_MT);
    if (label != NULL)
        snprintf(c->where, sizeof c->where, "%s", label);
    else if (strchr(host, ':') != NULL)
        snprintf(c->where, sizeof c->where, "redis [%s]:%d", host, (int)port);
    else
        snprintf(c->where, sizeof c->where, "redis %s:%d", host, (int)port);
    c->timeout = timeout;
    c->deadline = rb_loop_deadline(timeout);
    int numeric = lookup_numeric(c, host, (int)port);
    if (numeric > 0)
        return try_next(L, c);
    int fd = numeric < 0 ? -1 : lookup_start(c, host, (int)port);
    if (fd < 0)
        return raise_text(L, "%s: cannot start the name lookup: %s", c->where, strerror(errno));
    return rb_loop_wait(L, fd, POLLIN, c->deadline, k_resolved, 0);
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

/* Protected half of push_reply: may raise (memory) without leaking. */
static int l_push_reply(lua_State *L)
{
    const redisReply *r = lua_touserdata(L, 1);
    if (r->type == REDIS_REPLY_ERROR) {
        lua_pushboolean(L, 0);
        lua_pushlstring(L, r->str, r->len);
    } else {
        lua_pushboolean(L, 1);
        push_value(L, r, 0);
    }
    return 2;
}

/* Push ok, value for a reply and free it (takes ownership of reply). */
static int push_reply(lua_State *L, redisReply *reply)
{
    lua_pushcfunction(L, l_push_reply);
    lua_pushlightuserdata(L, reply);
    int rc = lua_pcall(L, 1, 2, 0);
    freeReplyObject(reply);
    if (rc != LUA_OK)
        return lua_error(L);
    return 2;
}

/* ---- calls ------------------------------------------------------------ */

/* The connection failed under a call: close it, then say why. */
static int call_io_failed(lua_State *L, struct conn *c)
{
    int err = c->ctx->err;
    char detail[128];
    snprintf(detail, sizeof detail, "%s", c->ctx->errstr);
    conn_release(c);
    if (err == REDIS_ERR_EOF)
        return raise_text(L, "%s: %s: the server closed the connection (check the server's log: "
                          "a restart, maxclients, or a proxy's idle timeout)", c->where, c->cmd);
    if (err == REDIS_ERR_PROTOCOL)
        return raise_text(L, "%s: %s: the reply is not Redis protocol (%s); is that port a "
                          "Redis server?", c->where, c->cmd, detail);
    return raise_text(L, "%s: %s: connection lost: %s (check the server and the network)",
                      c->where, c->cmd, detail);
}

static int call_wait_failed(lua_State *L, struct conn *c, enum rb_wake w)
{
    conn_release(c);
    if (w == RB_WAKE_TIMEOUT)
        return raise_text(L, "%s: %s timed out after %.1f s waiting for the reply (is the "
                          "server overloaded, or not Redis? timeout= raises the limit)",
                          c->where, c->cmd, c->timeout);
    return rb_loop_raise(L, w, c->where, c->cmd, c->timeout);
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
    struct conn *c = luaL_checkudata(L, S_CONN, CONN_MT);
    if (c->ctx == NULL)
        return raise_text(L, "%s: %s: the connection was closed during the call", c->where, c->cmd);
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
    return push_reply(L, reply);
}

/* Queue argv (a list of strings) in hiredis's output buffer. */
static void append_command(lua_State *L, struct conn *c)
{
    lua_Integer n = luaL_len(L, S_ARGV);
    luaL_argcheck(L, n >= 1 && n < 0x7fffffff, S_ARGV, "expected {command, args...}");
    const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)n, 0);
    size_t *lens = lua_newuserdatauv(L, sizeof(size_t) * (size_t)n, 0);
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
    lua_pop(L, 2);
}

/* conn:call(timeout, {cmd, args...}) -> true, value | false, error_text */
static int l_call(lua_State *L)
{
    struct conn *c = check_open(L, S_CONN);
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
    conn_release(luaL_checkudata(L, 1, CONN_MT));
    return 0;
}

/* conn:isopen() -> true while connected and usable.  An idle connection
 * (no call in flight) should have nothing to read: if it has, the server
 * closed it (its `timeout`, a restart, a proxy) or sent what we never
 * asked for, so it is closed here, before a command is sent on it. */
static int l_isopen(lua_State *L)
{
    struct conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (c->ctx != NULL && !c->busy) {
        struct pollfd p = { .fd = c->ctx->fd, .events = POLLIN, .revents = 0 };
        if (poll(&p, 1, 0) != 0)
            conn_release(c);
    }
    lua_pushboolean(L, c->ctx != NULL);
    return 1;
}

static int l_busy(lua_State *L)
{
    struct conn *c = luaL_checkudata(L, 1, CONN_MT);
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
        { NULL, NULL },
    };
    static const luaL_Reg methods[] = {
        { "call", l_call },
        { "close", l_close },
        { "isopen", l_isopen },
        { "busy", l_busy },
        { NULL, NULL },
    };
    rb_class(L, CONN_MT, l_gc, l_tostring, methods);
    luaL_newlib(L, funcs);
    return 1;
}
